"""The report's words: one sentence per technique for the first screen, and the whole markdown."""

from __future__ import annotations

import math

from efflab.report import tables as T
from efflab.report.figures import scale_free_band
from efflab.report.fmt import f3, fl, label, m_interval, m_range, mx, saving

FIRST_BUDGET = "gpt4-estimate"  # the frontier budget the first screen speaks about, when present


def _headline_budget(extra: dict) -> str | None:
    b = list(extra["budgets"])
    return FIRST_BUDGET if FIRST_BUDGET in b else (b[-1] if b else None)


def _frontier_clause(e: dict, budget: str | None) -> str:
    if budget is None:
        return ""
    where = f"{label(budget)} scale"
    parts = []
    band = scale_free_band(e, budget)
    if band:
        dl = (e.get("scenarios") or {}).get("constant_delta_L", {}).get(budget)
        dl_txt = mx(dl) if dl is not None else "beyond the law's floor"
        parts.append(f"at {where} scenarios give {m_range(*band)} (a constant delta-L: {dl_txt})")
    laws = [a for a in e.get("anchored", []) if a["multiplier"].get(budget) is not None]
    if laws:
        vals = [a["multiplier"][budget] for a in laws]
        names = ", ".join(a["law"] + (f" on {a['scope']}" if a.get("scope") else "") for a in laws)
        flag = "" if all(a["in_range"] for a in laws) else ", outside their fitted range"
        kind = "a published prior puts" if all(a["status"] == "prior" for a in laws) else "published laws put"
        parts.append(f"{kind} it at {m_range(min(vals), max(vals))} ({names}{flag})")
    elif e.get("anchored"):
        parts.append("no verified published law covers it")
    return "; ".join(parts)


def sentence(t: str, e: dict, c_ref: float | None, budget: str | None) -> str:
    """One sentence: the verdict at C_ref, how sure, and what the frontier anchors say."""
    me = e["measured"]
    m = me["multiplier"]
    head = f"**{t}**"
    if not me.get("identifiable", True) or m.get("value") is None:
        return f"{head}: {me.get('note') or 'not identifiable from this data'}."
    v = me.get("verdict")
    if v == "saves":
        s = f"{head} saves {saving(m)} of compute (M {m_interval(m)})"
    elif v == "costs":
        more = 1 / m["value"] - 1
        s = f"{head} costs compute: it spent {100 * more:.0f}% more than the baseline needs for the same loss (M {m_interval(m)})"
    else:
        det = me.get("detectable_multiplier")
        s = f"{head} is inconclusive (M {m_interval(m)}" + (
            f"; this design detects M >= {det:.3g})" if det else ")"
        )
    clause = _frontier_clause(e, budget)
    return s + (f"; {clause}." if clause else ".")


SCENARIO_TEXT = (
    "Scenarios carry the measured value to each budget under one mechanism each: a constant M; a constant "
    "loss difference delta-L (in nats, which flattens the frontier's advantage into very large or unreachable "
    "multipliers far out); a constant fraction of the reducible loss; an effective-parameter multiplier; an "
    "effective-data multiplier. They use the dense law named below at each budget's published tokens per "
    "parameter where known (GPT-3: 1.7, Llama-3.1 405B: 38.5), compute-optimal otherwise. Their spread is the "
    "honest uncertainty of a frontier number; three close measurements cannot tell the mechanisms apart, and "
    "no fitted trend of M is evaluated outside the measured compute range."
)


def render_markdown(data, figs: dict) -> str:
    cmp, ex = data.compare, data.extra
    ref = cmp["reference"]
    c_ref = ref["flops"]
    budget = _headline_budget(ex)
    title = f"efflab suite report: {cmp.get('suite') or data.dir.name}"
    lines = [f"# {title}", ""]
    lines.append(
        f"Verdicts at C_ref = {fl(c_ref)} FLOPs ({ref.get('description', '')}, "
        f"{f3(ref.get('tokens_per_param'))} tokens/parameter). M = baseline compute for the technique's loss "
        "/ the technique's compute (> 1 saves); 90% intervals."
    )
    lines.append("")
    if figs.get("verdict"):
        lines += [f"![verdict]({figs['verdict']})", ""]
    for t, e in ex["techniques"].items():
        lines.append(f"- {sentence(t, e, c_ref, budget)}")
    lines.append("")

    lines += ["## Verdicts at the reference compute", "", T.verdict_table(data), ""]
    lines += [
        "A/A: baseline seeds against each other (its interval must cover 1). Oversized: a model "
        f"{(cmp.get('controls') or {}).get('oversized', {}).get('size_ratio', 4):.2g}x the reference trained at "
        "C_ref, which the Chinchilla form predicts costs compute; the suite must detect it. Detectable M: the "
        "smallest multiplier this design detects at 80% power. Wall-clock M: the same comparison in seconds.",
        "",
    ]
    vt = T.views_table(data)
    if vt:
        lines += ["### Who pays for the teacher: accounting views", "", vt, ""]
    lines += ["## Reference scale and baseline frontier", "", T.reference_table(data), ""]

    lines += ["## Ledger: where the FLOPs go", ""]
    if figs.get("ledger"):
        lines += [f"![ledger]({figs['ledger']})", ""]
    lt = T.ledger_table(data)
    lines += [lt if lt else "No run ledgers found next to this compare.json (suite.json lists none).", ""]

    lines += ["## Loss curves", ""]
    lines += [f"![curves]({figs['curves']})" if figs.get("curves") else "No run curves found.", ""]

    lines += ["## Published laws and scenarios at frontier budgets", "", SCENARIO_TEXT, ""]
    gaps = ", ".join(
        f"{label(b)} {math.log10(v['flops'] / c_ref):.1f}" for b, v in ex["budgets"].items() if v.get("flops")
    )
    fb = [b for b in (cmp.get("frontier") or {}).get("budgets") or [] if b]
    span = f"; the measured frontier spans {math.log10(max(fb) / min(fb)):.1f}" if len(fb) >= 2 else ""
    lines += [f"Decades of compute from C_ref to each budget: {gaps}{span}.", ""]
    sl = ex.get("scenario_law") or {}
    lines += [f"Scenario law: {sl.get('name')} ({sl.get('source')}).", ""]
    for t in ex["techniques"]:
        lines += [f"### {t}", "", T.frontier_table(data, t), ""]
    lines += ["Published laws efflab knows (`efflab laws list`):", "", T.laws_table(data), ""]

    hw = ex["hardware"]
    lines += [
        "## What-if: what a multiplier would be worth",
        "",
        "Separate from any measurement: dollars, GPU-hours and MWh saved if a technique were worth M at each "
        f"budget, on {hw['gpu']} at MFU {hw['mfu']}, PUE {hw['pue']}"
        + (
            f", ${hw['price_per_gpu_hour']}/GPU-hour"
            if hw.get("price_per_gpu_hour")
            else ", the GPU table's price"
        )
        + ". Saved = cost(C) - cost(C/M); `efflab cost --flops C/M` prints the remaining cost.",
        "",
        T.what_if_table(data),
        "",
    ]
    lines += ["## Backtest", "", ex.get("backtest", {}).get("note", "-"), ""]
    bt = (ex.get("backtest") or {}).get("loss")
    if bt:
        p = bt["predicted"]
        lines += [
            f"Largest frontier budget {fl(bt['held_out_compute_flops'])} FLOPs: predicted {p['value']:.4f} "
            f"[{p['lo']:.4f}, {p['hi']:.4f}], measured {bt['measured']:.4f} ({100 * bt['rel_error']:+.1f}%).",
            "",
        ]
    life = cmp.get("lifetime")
    if isinstance(life, dict) and life.get("equation"):
        lines += ["## Lifetime view", "", f"{life['equation']}", ""]
    ct = T.claims_table(data)
    if ct:
        lines += ["## Common claims, where this suite tests them", "", ct, ""]
    lines += ["## Conventions", ""]
    for c in (cmp.get("conventions"), ex.get("conventions"), *ex.get("notes", [])):
        if c:
            lines.append(f"- {c}")
    for x in cmp.get("excluded") or []:
        lines.append(f"- excluded run {x.get('run')}: {x.get('reason')}")
    lines.append(
        f"- multipliers outside [1e-3, 1e3] or intervals wider than 100x are printed as "
        f"'not identifiable from this data', never as a result ({mx(None)} = not computed)."
    )
    lines.append("")
    return "\n".join(lines)
