"""`efflab scaling fit CSV` and `efflab extrapolate SUITE_DIR`.

`scaling fit` fits a scaling law to rows of params, tokens, loss (and/or FLOPs).

    efflab scaling fit runs.csv                       # Chinchilla form, 400 bootstrap resamples
    efflab scaling fit runs.csv --form power          # L(C) = E + A * C^-alpha
    efflab scaling fit epoch.csv --budget 1e24 --json

Columns are matched by name, case- and punctuation-insensitively, with common aliases (the Epoch
replication's file uses "Model Size", "Training FLOP", "loss"). When one of tokens and FLOPs is
missing it is derived with C = 6ND, and the output says so.
"""

from __future__ import annotations

import csv
import math
import re
import sys
from pathlib import Path

import numpy as np

from efflab.errors import Problems, UserError, parse_count

CHINCHILLA_BUDGET = 5.76e23  # Chinchilla / Gopher training budget, FLOPs (Hoffmann et al. 2022)

# role -> accepted column names after normalisation (lower case, runs of " _-./()" -> one space)
ALIASES = {
    "params": ("params", "parameters", "n", "n params", "num params", "model size", "model params", "size"),
    "tokens": ("tokens", "d", "n tokens", "num tokens", "training tokens", "train tokens", "data"),
    "flops": ("flops", "flop", "c", "compute", "training flop", "training flops", "train flops"),
    "loss": ("loss", "eval loss", "final loss", "val loss", "validation loss", "test loss"),
}


def register(sub) -> None:
    p = sub.add_parser(
        "scaling", help="scaling-law fits (scaling fit CSV)", description=__doc__.splitlines()[0]
    )
    inner = p.add_subparsers(dest="scaling_command", metavar="SUBCOMMAND", parser_class=type(p))
    f = inner.add_parser(
        "fit",
        help="fit L(N, D) or L(C) to rows of params, tokens, loss",
        description="Fit a scaling law with bootstrap intervals. " + __doc__.split("\n\n")[-1].strip(),
    )
    f.add_argument("csv", metavar="CSV", help="rows with params, tokens, loss (and/or flops) columns")
    f.add_argument(
        "--form",
        choices=("chinchilla", "power"),
        default="chinchilla",
        help="chinchilla: L = E + A/N^alpha + B/D^beta (default); power: L = E + A*C^-alpha",
    )
    f.add_argument(
        "--budget",
        action="append",
        metavar="C",
        help="compute budget in FLOPs to evaluate at (repeatable); default: the largest row's "
        f"budget and Chinchilla's {CHINCHILLA_BUDGET:.3g}",
    )
    f.add_argument("--bootstrap", type=int, default=None, metavar="N", help="resamples (default 400 / 500)")
    f.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    f.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9: 5th-95th pct)")
    f.add_argument("--group", metavar="COLUMN", help="resample whole groups (runs) named by this column")
    f.add_argument(
        "--exclude-highest-loss",
        type=int,
        default=0,
        metavar="K",
        help="drop the K rows with the highest loss first (the Epoch replication drops 5 outliers)",
    )
    f.add_argument("--e-zero", action="store_true", help="power form only: fix E = 0 (pure power law)")
    f.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    f.set_defaults(func=cmd_fit)

    def _no_sub(args):
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=_no_sub)
    _register_extrapolate(sub)


def _register_extrapolate(sub) -> None:
    # An older `extrapolate` parser (the fitted multiplier trend) may still be registered by
    # efflab.commands.suite; this one replaces it.
    if "extrapolate" in sub.choices:
        sub._name_parser_map.pop("extrapolate")
        sub._choices_actions[:] = [a for a in sub._choices_actions if a.dest != "extrapolate"]
    p = sub.add_parser(
        "extrapolate",
        help="frontier figures of a suite's verdicts: measured, published laws, scenarios, what-if",
        description="Read SUITE_DIR/compare.json and write SUITE_DIR/extrapolate.json: per technique the "
        "measured M and delta-L at the reference compute, published scaling laws evaluated for its "
        "configuration (flagged outside their fitted range), the measured value carried to each frontier "
        "budget under five scenarios, and a what-if table of GPU-hours, dollars and MWh saved at M = 1.1, "
        "1.5, 2 and 4. No fitted trend of M is ever evaluated outside the measured compute range.",
    )
    p.add_argument("suite_dir", metavar="SUITE_DIR", help="a suite directory with compare.json")
    p.add_argument(
        "--to",
        action="extend",
        nargs="+",
        metavar="PRESET",
        help="frontier budgets (default gpt3-175b gpt4-estimate llama-3.1-405b frontier-2026)",
    )
    p.add_argument("--gpu", help="accelerator for the what-if table (default h100, or the suite file's)")
    p.add_argument("--mfu", type=float, help="model FLOPs utilisation (default 0.40, or the suite file's)")
    p.add_argument("--price", type=float, help="$ per GPU-hour (default: the hardware table's)")
    p.add_argument("--pue", type=float, help="data-centre PUE (default 1.2)")
    p.add_argument(
        "--law", default="besiroglu2024", help="dense law for the scenarios (default besiroglu2024)"
    )
    p.add_argument("--no-report", action="store_true", help="do not rewrite report.md / report.html")
    p.add_argument("--json", action="store_true", help="print extrapolate.json on stdout")
    p.set_defaults(func=cmd_extrapolate)


# ------------------------------------------------------------------------------------------------
# reading the CSV


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-./()]+", " ", name.strip().lower()).strip()


def read_rows(path: str, group_col: str | None, problems: Problems) -> tuple[dict, list[str]]:
    """Read the CSV into {role: float array} (+ "group": list). Adds every problem it finds."""
    p = Path(path)
    if not p.exists():
        problems.add(f"{path}: no such file")
        return {}, []
    if p.is_dir():
        problems.add(f"{path}: is a directory, not a CSV file")
        return {}, []
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        problems.add(f"{path}: not a text CSV (it does not decode as UTF-8)")
        return {}, []
    except OSError as e:
        problems.add(f"{path}: cannot be read ({e.strerror or e})")
        return {}, []
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:
        problems.add(f"{path}: not a readable CSV ({e})")
        return {}, []
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        problems.add(f"{path}: empty (expected a header row and data rows)")
        return {}, []
    header, data = rows[0], rows[1:]
    if not data:
        problems.add(f"{path}: has a header but no data rows")

    roles: dict[str, int] = {}
    for role, names in ALIASES.items():
        hits = [i for i, h in enumerate(header) if _norm(h) in names]
        if len(hits) > 1:
            problems.add(
                f"{path}: columns {', '.join(repr(header[i]) for i in hits)} all look like {role}; keep one"
            )
        elif hits:
            roles[role] = hits[0]
    gcol = None
    if group_col is not None:
        matches = [i for i, h in enumerate(header) if h == group_col or _norm(h) == _norm(group_col)]
        if not matches:
            problems.add(f"{path}: no column {group_col!r} for --group (columns: {', '.join(header)})")
        else:
            gcol = matches[0]

    out: dict = {}
    for role, i in roles.items():
        vals, bad = [], []
        for lineno, r in enumerate(data, start=2):
            cell = r[i].strip() if i < len(r) else ""
            try:
                v = parse_count(cell, role) if cell else float("nan")
            except UserError:
                v = float("nan")
            if not (math.isfinite(v) and v > 0):
                bad.append(f"{lineno} ({cell!r})" if cell else f"{lineno} (empty)")
            vals.append(v)
        if bad:
            shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
            problems.add(f"{path}: column {header[i]!r} ({role}) needs numbers > 0; line {shown}")
        out[role] = np.array(vals, dtype=float)
    if gcol is not None:
        out["group"] = [r[gcol].strip() if gcol < len(r) else "" for r in data]
    return out, header


def _accepted(role: str) -> str:
    return "/".join(ALIASES[role][:4])


# ------------------------------------------------------------------------------------------------
# the command


def cmd_fit(args) -> int:
    from efflab import scaling

    problems = Problems(header=f"cannot fit {args.csv}")
    if args.bootstrap is not None and args.bootstrap < 0:
        problems.add(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not 0.0 < args.level < 1.0:
        problems.add(f"--level must be between 0 and 1 (e.g. 0.9), got {args.level}")
    if args.exclude_highest_loss < 0:
        problems.add(f"--exclude-highest-loss must be >= 0, got {args.exclude_highest_loss}")
    if args.e_zero and args.form != "power":
        problems.add("--e-zero applies to --form power only")
    budgets: list[float] = []
    for b in args.budget or []:
        try:
            v = parse_count(b, "--budget")
        except UserError as e:
            problems.extend(e.problems)
            continue
        if not (math.isfinite(v) and v > 0):
            problems.add(f"--budget must be a positive number of FLOPs, got {b!r}")
        else:
            budgets.append(v)

    cols, header = read_rows(args.csv, args.group, problems)
    notes: list[str] = []
    have = {k for k in ("params", "tokens", "flops", "loss") if k in cols}
    if header:
        if "loss" not in have:
            problems.add(f"{args.csv}: no loss column (accepted names: {_accepted('loss')})")
        if args.form == "chinchilla" and len(have & {"params", "tokens", "flops"}) < 2:
            problems.add(
                f"{args.csv}: the Chinchilla form needs two of params ({_accepted('params')}), tokens "
                f"({_accepted('tokens')}) and flops ({_accepted('flops')}); found "
                f"{', '.join(sorted(have - {'loss'})) or 'none'} among columns {', '.join(header)}"
            )
        if args.form == "power" and "flops" not in have and not {"params", "tokens"} <= have:
            problems.add(
                f"{args.csv}: the power form needs flops ({_accepted('flops')}), or params and tokens "
                f"to derive C = 6ND; found {', '.join(sorted(have - {'loss'})) or 'none'} among columns "
                f"{', '.join(header)}"
            )
    n_rows = len(cols["loss"]) if "loss" in cols else 0
    n_par = 5 if args.form == "chinchilla" else (2 if args.e_zero else 3)
    k_drop = max(args.exclude_highest_loss, 0)
    if header and n_rows and k_drop >= n_rows:
        problems.add(f"--exclude-highest-loss {k_drop} leaves no rows ({args.csv} has {n_rows})")
    elif header and n_rows and n_rows - k_drop < n_par:
        problems.add(
            f"{args.csv}: {n_rows - k_drop} rows{' after exclusions' if k_drop else ''} for a "
            f"{args.form} law with {n_par} parameters; need at least {n_par}"
        )
    problems.raise_if_any()

    # derive the missing one of tokens / flops (or params) with C = 6ND
    N, D, C, L = cols.get("params"), cols.get("tokens"), cols.get("flops"), cols["loss"]
    if args.form == "chinchilla":
        if D is None:
            D = C / (6.0 * N)
            notes.append("tokens derived as D = C / (6N) from the flops column (no tokens column)")
        elif N is None:
            N = C / (6.0 * D)
            notes.append("params derived as N = C / (6D) from the flops column (no params column)")
        if C is None:
            C = 6.0 * N * D
    elif C is None:
        C = 6.0 * N * D
        notes.append("compute C = 6ND from params and tokens (no flops column)")
    groups = cols.get("group")

    keep = np.ones(n_rows, dtype=bool)
    if k_drop:
        order = np.argsort(L)[::-1][:k_drop]
        keep[order] = False
        notes.append(
            f"excluded the {k_drop} highest-loss rows (CSV lines {', '.join(str(i + 2) for i in sorted(order))})"
        )
    sel = lambda a: None if a is None else np.asarray(a)[keep]  # noqa: E731
    if groups is not None:
        groups = [g for g, k in zip(groups, keep) if k]

    if not budgets:
        budgets = [float(np.max(C[keep])), CHINCHILLA_BUDGET]
    labels = _budget_labels(budgets, float(np.max(C[keep])), explicit=bool(args.budget))

    try:
        if args.form == "chinchilla":
            fit = scaling.fit_chinchilla(
                sel(N),
                sel(D),
                sel(L),
                groups=groups,
                n_bootstrap=400 if args.bootstrap is None else args.bootstrap,
                level=args.level,
                seed=args.seed,
            )
        else:
            fit = scaling.fit_power_law(
                sel(C),
                sel(L),
                fix_E_zero=args.e_zero,
                groups=groups,
                n_bootstrap=500 if args.bootstrap is None else args.bootstrap,
                level=args.level,
                seed=args.seed,
            )
    except ValueError as e:  # degenerate data the checks above could not see (e.g. one distinct C)
        raise UserError(f"{args.csv}: {e}") from None

    result = {
        "command": "scaling fit",
        "csv": str(args.csv),
        "form": args.form,
        "rows_used": int(keep.sum()),
        "notes": notes,
    }
    if args.form == "chinchilla":
        result.update(fit.to_dict(budgets))
    else:
        result.update(fit.to_dict())
        preds = []
        for b in budgets:
            v, lo, hi = fit.predict(b)
            preds.append({"budget_flops": b, "loss": {"value": v, "lo": lo, "hi": hi}})
        result["predictions"] = preds
    for d, lab in zip(result.get("compute_optimal", result.get("predictions", [])), labels):
        d["label"] = lab

    if args.json:
        from efflab.cli import emit_json

        emit_json(result)
    else:
        print(_render(result, fit))
    return 0


def _budget_labels(budgets, largest, explicit):
    out = []
    for b in budgets:
        if not explicit and b == largest:
            out.append("largest row")
        elif b == CHINCHILLA_BUDGET:
            out.append("Chinchilla/Gopher budget")
        else:
            out.append("")
    return out


def _g(x, digits=4) -> str:
    if x is None:
        return "-"
    x = float(x)
    if not math.isfinite(x):
        return "nan"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _iv(d) -> str:
    if d.get("lo") is None:
        return "(no interval)"
    return f"[{_g(d['lo'])}, {_g(d['hi'])}]"


def _render(result: dict, fit) -> str:
    lines = []
    pct = f"{result['level'] * 100:g}%"
    if result["form"] == "chinchilla":
        lines.append("Chinchilla fit  L(N, D) = E + A/N^alpha + B/D^beta   (N params, D tokens)")
        st = result["starts"]
        lines.append(
            f"{result['rows_used']} rows from {result['csv']}. Huber loss (delta {fit.delta:g}) on log L, "
            f"L-BFGS from the {st['optimised']} best-scored of {st['grid']} grid starts "
            f"({st['at_best']} reached the best); Hoffmann et al. 2022 Approach 3 as Besiroglu et al. 2024."
        )
    else:
        lines.append(
            "Power-law fit  L(C) = E + A * C^-alpha   (C in FLOPs)"
            + ("   E fixed to 0" if result["E_fixed"] else "")
        )
        lines.append(f"{result['rows_used']} rows from {result['csv']}. Huber least squares on log L.")
    lines.append(
        f"Intervals: {pct} bootstrap percentile ({result['interval'].split()[-1]}), "
        f"{result['n_bootstrap']} resamples of {'runs' if result.get('n_groups') else 'rows'}."
    )
    for n in result["notes"]:
        lines.append(f"Note: {n}")
    for w in result.get("warnings", []):
        lines.append(f"Warning: {w}")
    lines.append("")
    lines.append(f"{'param':<8}{'value':>12}   {pct} interval")
    for k, d in result["params"].items():
        lines.append(f"{k:<8}{_g(d['value']):>12}   {_iv(d)}")
    lines.append("")
    if result["form"] == "chinchilla":
        lines.append("Compute-optimal allocation (C = 6ND):")
        lines.append(
            f"{'budget (FLOPs)':<16}{'N (params)':>12}{'':<26}{'D (tokens)':>12}{'':<26}{'tokens/param':>12}"
        )
        for c in result["compute_optimal"]:
            lines.append(
                f"{_g(c['budget_flops']):<16}{_g(c['N']['value']):>12} {_iv(c['N']):<25}"
                f"{_g(c['D']['value']):>12} {_iv(c['D']):<25}{_g(c['tokens_per_param']['value']):>12} "
                f"{_iv(c['tokens_per_param'])}" + (f"   {c['label']}" if c.get("label") else "")
            )
        lines.append(
            "Predicted loss there: "
            + "; ".join(f"{_g(c['loss']['value'])} {_iv(c['loss'])}" for c in result["compute_optimal"])
        )
    else:
        lines.append("Predicted loss (extrapolation beyond the largest row is only as good as the law):")
        for c in result["predictions"]:
            lines.append(
                f"  C = {_g(c['budget_flops'])}: {_g(c['loss']['value'])} {_iv(c['loss'])}"
                + (f"   {c['label']}" if c.get("label") else "")
            )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# efflab extrapolate


def cmd_extrapolate(args) -> int:
    from efflab import extrapolate as X

    sdir = Path(args.suite_dir)
    if not sdir.is_dir():
        raise UserError(f"{sdir}: no such suite directory")
    kw = X.suite_defaults(sdir)
    kw.update(
        {k: getattr(args, k) for k in ("to", "gpu", "mfu", "price", "pue") if getattr(args, k) is not None}
    )
    kw["law"] = args.law
    res = X.extrapolate_suite(sdir, **kw)
    if not args.no_report:
        from efflab import report

        report.write_report(sdir)
    if args.json:
        from efflab.cli import emit_json

        emit_json(res)
        return 0
    print(format_extrapolate(res))
    return 0


def _m(x) -> str:
    if x is None:
        return "-"
    if not (1e-3 <= x <= 1e3):
        return "not identifiable"
    return f"{x:.3g}x"


def format_extrapolate(res: dict) -> str:
    """A terminal summary of extrapolate.json: one block per technique."""
    budgets = list(res["budgets"])
    ref = res["reference"]
    out = [
        f"reference compute C_ref = {ref['flops']:.3g} FLOPs ({ref.get('description', '')}); budgets: "
        + ", ".join(f"{b} {v['flops']:.3g}" for b, v in res["budgets"].items()),
        f"conventions: {res['conventions']}",
        f"scenarios on {res['scenario_law']['name']} ({res['scenario_allocation']})",
        "",
    ]
    for t, e in res["techniques"].items():
        me = e["measured"]
        m, dl = me["multiplier"], me["delta_loss"]
        head = f"{t} ({e['label']}): {me['verdict'] or '-'}"
        if me["identifiable"]:
            head += f", M {_m(m['value'])} [{_m(m['lo'])}, {_m(m['hi'])}] at C_ref"
        else:
            head += f", {me['note']}"
        if dl["value"] is not None:
            head += f", delta-L {dl['value']:+.3f} nats"
        out.append(head)
        for a in e["anchored"]:
            vals = ", ".join(f"{b} {_m(a['multiplier'].get(b))}" for b in budgets)
            flag = "" if a["in_range"] else " (outside the fitted range)"
            out.append(
                f"  law {a['law']} [{a['status']}]{flag}: {vals if any(a['multiplier'].values()) else a['note']}"
            )
        for s, row in e["scenarios"].items():
            out.append(f"  scenario {s:<17} " + ", ".join(f"{b} {_m(row[b])}" for b in budgets))
    out += [
        "",
        f"what-if at {res['hardware']['gpu']}, MFU {res['hardware']['mfu']}: saved GPU-hours / $ / MWh",
    ]
    for M, row in res["what_if"].items():
        cells = []
        for b in budgets:
            w = row[b]
            usd = "-" if w["cost_usd"] is None else f"${w['cost_usd']:.3g}"
            cells.append(f"{b} {w['gpu_hours']:.3g} h / {usd}")
        out.append(f"  M = {M}: " + "; ".join(cells))
    out.append(f"backtest: {res['backtest']['note']}")
    return "\n".join(out)
