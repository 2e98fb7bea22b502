"""The report's tables, as markdown. Every number is read from compare.json, extrapolate.json or the
run directories; multipliers go through fmt.mx / fmt.m_interval, which refuse to print a value
outside [1e-3, 1e3] or an interval wider than 100x as a result."""

from __future__ import annotations

from efflab.laws import LAWS
from efflab.report.figures import ledger_rows, scale_free_band
from efflab.report.fmt import (
    count,
    f3,
    fl,
    label,
    m_interval,
    m_ok,
    m_range,
    mx,
    nats,
    table,
    usd,
)


def verdict_table(data) -> str:
    rows = []
    for t, e in data.extra["techniques"].items():
        me = e["measured"]
        rows.append(
            [
                f"{t} ({e.get('label') or t})",
                me.get("verdict") or "-",
                m_interval(me["multiplier"]) if me.get("identifiable", True) else me.get("note") or "-",
                nats(me["delta_loss"]),
                mx(me.get("detectable_multiplier")),
                f3(me.get("p_holm")),
                mx(me.get("wallclock_multiplier")),
                me.get("n_pairs") or "-",
            ]
        )
    ctl = data.compare.get("controls") or {}
    if ctl.get("aa"):
        a = ctl["aa"]
        ok = "covers 1" if a.get("covers_one") else "does NOT cover 1: the design is biased"
        rows.append(
            [
                "A/A control",
                ok,
                m_interval(a["multiplier"]),
                nats(a["delta_loss"]),
                "-",
                "-",
                "-",
                a.get("n_pairs", "-"),
            ]
        )
    if ctl.get("oversized"):
        o = ctl["oversized"]
        p = o.get("predicted") or {}
        det = "detected" if o.get("detected") else "NOT detected"
        rows.append(
            [
                f"oversized control ({o.get('size_ratio', 4):.2g}x params at C_ref)",
                f"{det}; predicted {m_range(p.get('lo'), p.get('hi'))}",
                m_interval(o["multiplier"]),
                nats(o["delta_loss"]),
                "-",
                "-",
                "-",
                o.get("n_pairs", "-"),
            ]
        )
    return table(
        [
            "arm",
            "verdict",
            "M at C_ref [90%]",
            "delta-L nats [90%]",
            "detectable M",
            "p (Holm)",
            "wall-clock M",
            "pairs",
        ],
        rows,
    )


def views_table(data) -> str | None:
    """M per technique in each accounting view (marginal is the primary endpoint)."""
    names = ("marginal", "total_k1", "total_kinf")
    rows = []
    for t, e in data.compare["techniques"].items():
        v = e.get("views") or {}
        if any(v.get(k) for k in names):
            rows.append([t, *[m_interval(v.get(k)) for k in names]])
    if not rows:
        return None
    defs = data.compare.get("views") or {}
    head = ["technique", "marginal (primary)", "total, K = 1 student", "total, K -> infinity"]
    notes = [f"- {k}: {defs[k]}" for k in names if defs.get(k)]
    return table(head, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def reference_table(data) -> str:
    r = data.compare["reference"]
    fr = data.compare.get("frontier") or {}
    noise = data.compare.get("noise") or {}
    rows = [
        ["model", r.get("description", "-")],
        [
            "parameters (non-embedding)",
            f"{r.get('params') or 0:,.0f} ({r.get('non_embedding_params') or 0:,.0f})",
        ],
        ["training tokens", f"{f3(r.get('tokens'))} ({f3(r.get('tokens_per_param'))} per parameter)"],
        ["reference compute C_ref", f"{fl(r['flops'])} FLOPs"],
        [
            "baseline frontier",
            f"{len(fr.get('budgets') or [])} budgets "
            f"{', '.join(fl(b) for b in fr.get('budgets') or [])} x {fr.get('seeds', '-')} seeds",
        ],
        [
            "frontier slope at C_ref",
            f"{f3((fr.get('fit') or {}).get('slope_at_ref'))} nats per e-fold of compute",
        ],
        ["run-to-run noise sigma_L", f"{f3(noise.get('sigma_loss'))} nats"],
    ]
    return table(["", ""], rows)


def ledger_table(data) -> str | None:
    rows = ledger_rows(data)
    if not rows:
        return None
    phases = sorted({p for v in rows.values() for p in v if not p.startswith("_") and p != "eval"})
    out = []
    for t, v in rows.items():
        marginal = sum(v.get(p, 0.0) for p in phases if not p.startswith("sunk."))
        total = marginal + sum(v.get(p, 0.0) for p in phases if p.startswith("sunk."))
        out.append(
            [
                t,
                v["_n"],
                *[fl(v.get(p)) if v.get(p) else "-" for p in phases],
                fl(marginal),
                fl(total),
                fl(v.get("eval")),
            ]
        )
    return table(["arm", "runs", *phases, "marginal", "total", "eval (not summed)"], out)


def laws_table(data) -> str:
    rows = []
    for law in LAWS.values():
        rng = ", ".join(f"{k} {lo:.2g}-{hi:.2g}" for k, (lo, hi) in law.fitted_range.items()) or "-"
        rows.append([law.name, law.status, law.kind, law.source, law.n_counts, rng])
    return table(["law", "status", "kind", "source", "N counts", "fitted on"], rows)


def frontier_table(data, tech: str) -> str:
    """Per technique: published laws and scenarios at C_ref and at each budget."""
    e = data.extra["techniques"][tech]
    budgets = list(data.extra["budgets"])
    head = ["", "C_ref", *[f"{label(b)} ({fl(data.extra['budgets'][b]['flops'])})" for b in budgets]]
    rows, notes = [], []
    m = e["measured"]
    rows.append(
        [
            "measured",
            m_interval(m["multiplier"]) if m.get("identifiable", True) else m.get("note"),
            *["(not measured)" for _ in budgets],
        ]
    )
    for a in e.get("anchored", []):
        vals = a["multiplier"]
        if any(v is not None for v in vals.values()):
            flag = "" if a["in_range"] else " (outside its fitted range)"
            rows.append(
                [
                    f"law {a['law']} [{a['status']}]{flag}",
                    mx(vals.get("reference")),
                    *[mx(vals.get(b)) for b in budgets],
                ]
            )
        else:
            rows.append([f"law {a['law']} [{a['status']}]", "not evaluated (below)", *["" for _ in budgets]])
            notes.append(f"- {a['law']}: {a.get('note') or 'not evaluated'}")
    ivs = e.get("scenario_intervals") or {}
    for s, row in (e.get("scenarios") or {}).items():
        cells = []
        for b in budgets:
            v = row.get(b)
            iv = (ivs.get(s) or {}).get(b)
            if v is None:
                cells.append("below the law's floor (the baseline cannot reach that loss)")
            elif iv and m_ok(v):
                cells.append(f"{mx(v)} ({m_range(iv['lo'], iv['hi'])})")
            else:
                cells.append(mx(v))
        rows.append([f"scenario: {s.replace('_', ' ')}", "", *cells])
    bands = [scale_free_band(e, b) if e.get("scenarios") else None for b in budgets]
    rows.append(["band of the four scale-free scenarios", "", *[m_range(*x) if x else "-" for x in bands]])
    return table(head, rows) + ("\n\n" + "\n".join(notes) if notes else "")


def what_if_table(data) -> str:
    budgets = list(data.extra["budgets"])
    rows = []
    for M, row in data.extra["what_if"].items():
        cells = []
        for b in budgets:
            w = row[b]
            cells.append(
                f"{usd(w['cost_usd'])} / {count(w['gpu_hours'])} GPU-h / {count(w['energy_mwh'])} MWh"
            )
        rows.append([f"M = {M}", *cells])
    return table(
        ["saved at", *[f"{label(b)} ({fl(data.extra['budgets'][b]['flops'])} FLOPs)" for b in budgets]], rows
    )


_CLAIMS = {
    "moe": "Mixture-of-experts: quality competitive with much larger dense models at a fraction of the active "
    "parameters",
    "distill": "Knowledge distillation: it cuts deployment cost, not the teacher's training cost",
    "curriculum": "Curriculum learning: easy-to-hard ordering can improve training efficiency by 20-30%",
    "synthetic": "Synthetic data: models generate training data for later models; generation has its own bill",
}


def claims_table(data) -> str | None:
    """Common claims about the techniques, only for the techniques this suite measured."""
    rows = []
    for t, claim in _CLAIMS.items():
        e = data.extra["techniques"].get(t)
        if not e:
            continue
        me = e["measured"]
        m = me["multiplier"]
        what = f"M {m_interval(m)}, verdict {me.get('verdict')}"
        if t == "curriculum":
            lo, hi = m.get("lo"), m.get("hi")
            covers = lo is not None and hi is not None and lo <= 1 / 0.7 and hi >= 1 / 0.8
            verdict = (
                "consistent"
                if covers and me.get("verdict") == "saves"
                else (
                    "compatible (the interval reaches a 20-30% saving)" if covers else "not reproduced here"
                )
            )
        elif t == "distill":
            k1 = (data.compare["techniques"][t].get("views") or {}).get("total_k1") or {}
            what += f"; total view with the teacher trained for this one student: {m_interval(k1)}"
            verdict = "consistent" if k1.get("hi") is not None and k1["hi"] < 1 else "not shown here"
        else:
            verdict = {"saves": "supported here", "costs": "not supported here"}.get(
                me.get("verdict"), "inconclusive here"
            )
        rows.append([claim, what, verdict])
    return table(["published claim", "this suite", "verdict"], rows) if rows else None
