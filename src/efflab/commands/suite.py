"""`efflab suite FILE` and `efflab compare RUN_DIR...|SUITE_DIR` (`efflab extrapolate`: commands/scaling.py).

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
    p.add_argument(
        "--plan",
        action="store_true",
        help="validate every run config and print the plan (runs by kind, FLOPs); trains nothing",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="--plan, and the wall time on this machine, timed "
        "from a few steps of each shape; trains nothing",
    )
    p.add_argument("--workers", type=int, help="runs in parallel processes (default: the file's `workers`)")
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
    from efflab.paths import resolve_config_path
    from efflab.suite import run_suite

    path = resolve_config_path(args.file)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.plan or args.dry_run:
        from efflab.suite import describe_plan, load_suite

        sc, _ = load_suite(path, args.overrides)
        summary = describe_plan(sc, measure=args.dry_run)
        if args.json:
            emit_json(summary)
        else:
            print(summary["text"])
        return 0
    log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
    state = run_suite(
        path,
        out=args.out,
        overrides=args.overrides,
        progress=not args.no_progress,
        log=log,
        workers=args.workers,
    )
    if args.json:
        emit_json(state)
    else:
        from efflab.compare_suite import format_verdicts
        from efflab.io import read_json

        cj = Path(state["dir"]) / "compare.json"
        if cj.is_file():
            print("\n" + format_verdicts(read_json(cj)))
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
                    print(
                        f"efflab: {d} left out: failed ({e.get('message') or 'no reason recorded'})",
                        file=sys.stderr,
                    )
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
    if len(args.runs) == 1 and (Path(args.runs[0]) / "suite.yaml").is_file():  # a suite: its verdicts
        from efflab.compare_suite import format_verdicts
        from efflab.suite import analyse_suite

        res = analyse_suite(args.runs[0], log=(lambda *a, **k: print(*a, file=sys.stderr, **k)))["compare"]
        if args.json:
            emit_json(res)
        else:
            print(format_verdicts(res))
        return 0
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
        "Loose runs, no verdicts: M is read where an eval curve first crosses the target, mid-schedule (a run "
        "crossing before its learning rate decays understates M > 1; M < 1 shows as 'not reached'); an arm "
        "of one seed has no interval. For verdicts, `efflab suite` measures against a frontier of completed "
        "baseline runs with paired seeds and controls.",
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
