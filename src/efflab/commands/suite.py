"""`efflab suite FILE`, `efflab compare RUN_DIR...` and `efflab extrapolate SUITE_DIR`.

efflab suite configs/suite/quick.yaml                 # ladder x techniques -> report.md / report.html
efflab compare runs/suite-quick/runs/* --json         # FLOPs-to-target and multipliers
efflab extrapolate runs/suite-quick --to gpt4-estimate --gpu h100 --mfu 0.45
"""

from __future__ import annotations

import sys
from pathlib import Path

from efflab.errors import Problems, UserError, parse_count


def register(sub) -> None:
    p = sub.add_parser(
        "suite",
        help="the main job: a ladder of scales x techniques -> compare, extrapolate, report",
        description="Run every technique against the dense baseline on a ladder of model sizes, "
        "then compare, extrapolate and write report.md / report.html. Idempotent: "
        "complete runs are reused, interrupted ones resumed.",
    )
    p.add_argument("file", metavar="FILE", help="suite YAML (e.g. configs/suite/quick.yaml)")
    p.add_argument("--out", help="suite directory (default: the file's `out`, else runs/suite-<name>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the suite summary as one JSON object")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides of the suite file")
    p.set_defaults(func=cmd_suite)

    p = sub.add_parser(
        "compare",
        help="FLOPs-to-target and compute multipliers across finished runs",
        description="Compare complete runs at equal loss: final eval loss, FLOPs (marginal and "
        "total), FLOPs to the target, the compute multiplier M (interval over seeds) "
        "and the loss difference at the baseline's budget, per scale and technique.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories, or a suite directory")
    p.add_argument(
        "--target", type=float, help="target eval loss (default: each scale's baseline final loss)"
    )
    p.add_argument(
        "--serve-tokens",
        action="extend",
        nargs="+",
        metavar="S",
        help="served tokens for the lifetime view (default 1x, 10x and 100x the training tokens)",
    )
    p.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "extrapolate",
        help="frontier savings of a suite's multipliers, with intervals",
        description="Fit the trend of each technique's compute multiplier over the suite's "
        "scales and evaluate it at frontier budgets: GPU-hours, dollars and MWh saved "
        "(marginal and total), with intervals, and a backtest one step out.",
    )
    p.add_argument("suite_dir", metavar="SUITE_DIR", help="a suite directory (efflab suite --out)")
    p.add_argument(
        "--to",
        action="extend",
        nargs="+",
        metavar="PRESET",
        help="frontier budgets (default gpt3-175b gpt4-estimate llama-3.1-405b frontier-2026)",
    )
    p.add_argument("--gpu", help="accelerator (default h100, or the suite file's)")
    p.add_argument("--mfu", type=float, help="model FLOPs utilisation (default 0.40)")
    p.add_argument("--price", type=float, help="$ per GPU-hour (default: the hardware table's)")
    p.add_argument("--pue", type=float, help="data-centre PUE (default 1.2)")
    p.add_argument(
        "--serve-tokens", action="extend", nargs="+", metavar="S", help="served tokens for the lifetime view"
    )
    p.add_argument("--no-report", action="store_true", help="do not rewrite report.md / report.html")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_extrapolate)


def _serve(values) -> list[float] | None:
    if not values:
        return None
    probs = Problems(header="bad --serve-tokens")
    out = []
    for v in values:
        try:
            x = parse_count(v, "--serve-tokens")
        except UserError as e:
            probs.extend(e.problems)
            continue
        if x < 0:
            probs.add(f"--serve-tokens {v}: must be >= 0")
        out.append(x)
    probs.raise_if_any()
    return out


# =============================================================================================
# efflab suite
# =============================================================================================
def cmd_suite(args) -> int:
    from efflab.cli import emit_json
    from efflab.commands.run import resolve_config_path
    from efflab.suite import run_suite

    path = resolve_config_path(args.file)
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    state = run_suite(path, out=args.out, overrides=args.overrides, progress=not args.no_progress, log=log)
    if args.json:
        emit_json(state)
    return 1 if state.get("failed") else 0


# =============================================================================================
# efflab compare
# =============================================================================================
def _expand(paths: list[str]) -> tuple[list[Path], dict]:
    """Run directories; a suite directory stands for its complete runs (with their scale labels)."""
    from efflab.io import read_json

    out, scales = [], {}
    for p in map(Path, paths):
        if (p / "suite.json").is_file() and not (p / "manifest.json").is_file():
            st = read_json(p / "suite.json")
            for e in st.get("runs", []):
                d = p / e["dir"]
                if e.get("state") == "failed":  # left out of the comparison, and said so
                    print(f"efflab: {d} left out: failed ({e.get('message') or 'no reason recorded'})", file=sys.stderr)
                    continue
                if e.get("state") != "not available" and d.exists():
                    out.append(d)
                    scales[str(d)] = e["scale"]
        else:
            out.append(p)
    return out, scales


def cmd_compare(args) -> int:
    from efflab import compare as C
    from efflab.cli import emit_json

    if not 0 < args.level < 1:
        raise UserError(f"--level must be in (0, 1), got {args.level}")
    if args.target is not None and not args.target > 0:
        raise UserError(f"--target must be a positive loss, got {args.target}")
    serve = _serve(args.serve_tokens)
    paths, scales = _expand(args.runs)
    records = C.load_runs(paths, scales=scales)
    res = C.compare_runs(records, target=args.target, level=args.level)
    res["lifetime"] = C.lifetime(res, serve)
    if args.json:
        for r in res["runs"]:
            r.pop("curve", None)
        emit_json(res)
        return 0
    print(format_compare(res))
    return 0


def format_compare(res: dict) -> str:
    from efflab.compare import multiplier_text
    from efflab.report import fl

    out = [
        f"quality: {res['unit']} on one shared held-out set; target: {res['target_rule']}",
        "M = baseline FLOPs-to-target / technique FLOPs-to-target (> 1 saves compute; < 1 costs compute)",
        "",
    ]
    tw = max([11] + [len(t) for sc in res["scales"] for t in sc.get("techniques", {})])
    hdr = (
        f"{'scale':<8} {'technique':<{tw}} {'final':>8} {'FLOPs marg.':>11} {'FLOPs total':>11} "
        f"{'to target':>10}  {'M marginal':<24} {'M total':<24} {'M amortised':<24} {'dLoss@base':>10}"
    )
    out.append(hdr)
    out.append("-" * len(hdr))
    for sc in res["scales"]:
        if not sc.get("baseline"):
            out.append(f"{sc['scale']:<8} {sc.get('note', '')}")
            continue
        for t, e in sc["techniques"].items():
            m = e["views"]["marginal"]
            ft = [f for f in m["flops_to_target"] if f is not None]
            tt = fl(sorted(ft)[len(ft) // 2]) if ft and len(ft) == m["of"] else "not reached"
            d = m.get("loss_delta_at_baseline_budget")
            sunk = bool(e.get("sunk_flops"))
            out.append(
                f"{sc['scale']:<8} {t:<{tw}} {e['final']:>8.4f} {fl(e['flops_marginal']):>11} "
                f"{fl(e['flops_total']):>11} {tt:>10}  {multiplier_text(m):<24} "
                f"{multiplier_text(e['views']['total']) if sunk else '= marginal':<24} "
                f"{multiplier_text(e['views']['amortised']) if sunk else '= marginal':<24} "
                f"{'-' if d is None else f'{d:+.4f}':>10}"
            )
        out.append(f"{'':<8} target {sc['target']:.4f} {res['unit']} ({sc['target_source']})")
    life = res.get("lifetime", {})
    if life.get("scales"):
        out += ["", f"lifetime: {life['equation']} (served volumes: {life['serve_tokens_rule']})"]
        for sc in life["scales"]:
            for row in sc["rows"]:
                if row["technique"] == "baseline":
                    continue
                be = row["views"]["marginal"]["break_even"]["text"]
                out.append(
                    f"  {sc['scale']:<8} {row['technique']:<{tw}} serve {fl(row['serve_flops_per_token'])} "
                    f"FLOPs/token; cheaper than the baseline over a lifetime: {be}"
                )
    for n in res.get("notes", []):
        out.append(f"note: {n}")
    return "\n".join(out)


# =============================================================================================
# efflab extrapolate
# =============================================================================================
def cmd_extrapolate(args) -> int:
    from efflab.cli import emit_json
    from efflab.suite import analyse_suite, load_suite_dir

    sdir = Path(args.suite_dir)
    if not (sdir / "suite.json").is_file():
        raise UserError(
            f"{sdir}: not a suite directory (no suite.json); run `efflab suite FILE --out {sdir}` "
            f"first, or use `efflab compare RUN_DIR...` for loose runs"
        )
    sc = load_suite_dir(sdir)
    kw = {k: getattr(args, k) for k in ("gpu", "mfu", "price", "pue") if getattr(args, k) is not None}
    if args.to:
        kw["to"] = args.to
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    if args.no_report:
        from efflab import compare as C
        from efflab.io import read_json

        state = read_json(sdir / "suite.json")
        done = [e for e in state["runs"] if e["state"] == "complete"]
        recs = C.load_runs(
            [sdir / e["dir"] for e in done], scales={str(sdir / e["dir"]): e["scale"] for e in done}
        )
        comparison = C.compare_runs(recs, target=sc.target, level=sc.level)
        ex = sc.extrapolate
        full = {
            "to": ex.to,
            "gpu": ex.gpu,
            "mfu": ex.mfu,
            "price": ex.price,
            "pue": ex.pue,
            "level": sc.level,
            "n_bootstrap": sc.bootstrap,
        }
        full.update(kw)
        res = C.extrapolate(comparison, **full)
    else:
        res = analyse_suite(sdir, sc, serve_tokens=_serve(args.serve_tokens), extrapolate_kw=kw, log=log)[
            "extrapolate"
        ]
    if args.json:
        emit_json(res)
        return 0
    print(format_extrapolate(res))
    return 0


def format_extrapolate(res: dict) -> str:
    from efflab.report import PRESET_LABELS, fl, usd

    out = ["assumptions:"] + [f"  - {a}" for a in res["assumptions"]] + [""]
    for e in res["techniques"]:
        for view, v in e["views"].items():
            head = f"{e['technique']} ({view})"
            if "frontier" not in v:
                out.append(f"{head}: {v.get('note', 'no multiplier measured')}")
                continue
            tr = v["trend"]
            out.append(
                f"{head}: {tr['kind']} model over {tr['n_scales']} scale(s), slope d log M / d log C = "
                f"{tr['m1']:+.3g}"
                + (f"  [{v['assumption']}]" if v.get("assumption") else "")
                + (f"  ({v['note']})" if v.get("note") else "")
            )
            for row in v["frontier"]:
                M, s = row["M"], row["saved"]

                def rng(key, fmt, s=s):
                    val = (s["value"] or {}).get(key)
                    lo, hi = (s["lo"] or {}).get(key), (s["hi"] or {}).get(key)
                    txt = fmt(val) if val is not None else "-"
                    if lo is not None and hi is not None:
                        a, b = sorted((lo, hi))
                        txt += f" [{fmt(a)}, {fmt(b)}]"
                    return txt

                mtxt = f"{M['value']:.3g}x" + (
                    f" [{M['lo']:.3g}, {M['hi']:.3g}]" if M["lo"] is not None else ""
                )
                by = row["saved_usd_by_mfu"]
                out.append(
                    f"  {PRESET_LABELS.get(row['preset'], row['preset']):<15} {fl(row['budget_flops'])} "
                    f"FLOPs: M {mtxt}; saves {rng('gpu_hours', lambda x: f'{x:.3g}')} GPU-hours, "
                    f"{rng('cost_usd', usd)}, {rng('energy_mwh', lambda x: f'{x:.3g}')} MWh; "
                    f"$ by MFU " + ", ".join(f"{k}: {usd(x)}" for k, x in by.items())
                )
    bt = res.get("backtest", {})
    out += ["", f"backtest (held-out scale {bt.get('held_out_scale')}): {bt.get('note', '')}"]
    for r in bt.get("loss", []) + bt.get("multiplier", []):
        if "predicted" not in r:
            out.append(f"  {r['technique']} {r.get('view', 'loss')}: {r.get('note', '')}")
            continue
        p = r["predicted"]
        iv = f" [{p['lo']:.4g}, {p['hi']:.4g}]" if p["lo"] is not None else ""
        out.append(
            f"  {r['technique']:<11} {r['quantity'] + (' ' + r['view'] if 'view' in r else ''):<20} "
            f"predicted {p['value']:.4g}{iv}, measured {r['measured']:.4g}, error {100 * r['rel_error']:+.1f}%"
            + (f" ({r['assumption']})" if r.get("assumption") else "")
        )
    return "\n".join(out)
