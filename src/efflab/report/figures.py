"""The report's figures (matplotlib, Agg backend), each a PNG under SUITE_DIR/figures/.

- verdict: the first screen. Left, per technique, the measured M with its 90% interval at C_ref,
  the A/A and oversized controls beside (the oversized one with its predicted band); right, per
  technique and frontier budget, the scenario band and the published laws' values.
- curves: eval loss against marginal FLOPs, the baseline frontier and every technique arm.
- ledger: FLOPs by phase per arm at C_ref (mean over seeds), marginal and sunk.
"""

from __future__ import annotations

import math
from pathlib import Path

from efflab.report.fmt import COLORS, M_RANGE, PHASE_COLORS, VERDICT_COLORS, label

X_LIM = (0.1, 10.0)  # multiplier axis of the verdict figure; values beyond are drawn at the edge


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _clip(v: float) -> float:
    return min(max(v, X_LIM[0] * 1.02), X_LIM[1] / 1.02)


SCALE_FREE = ("constant_M", "constant_fraction", "effective_params", "effective_data")


def scale_free_band(e: dict, budget: str) -> tuple[float, float] | None:
    """(lo, hi) over the scenarios whose M does not run away with the frontier's slope."""
    vals = [e["scenarios"][s].get(budget) for s in SCALE_FREE if s in (e.get("scenarios") or {})]
    vals = [v for v in vals if v is not None and M_RANGE[0] <= v <= M_RANGE[1]]
    return (min(vals), max(vals)) if vals else None


def _rows(data) -> list[tuple[str, str, dict, str]]:
    """(key, label, multiplier estimate, kind) for the techniques then the two controls."""
    rows = []
    for t, e in data.extra["techniques"].items():
        rows.append((t, e.get("label") or t, e["measured"], "technique"))
    ctl = data.compare.get("controls") or {}
    if ctl.get("aa"):
        rows.append(
            ("aa", "A/A control (baseline vs baseline)", {"multiplier": ctl["aa"]["multiplier"]}, "aa")
        )
    if ctl.get("oversized"):
        o = ctl["oversized"]
        lab = f"oversized control ({o.get('size_ratio', 4):.2g}x params)"
        rows.append(
            ("oversized", lab, {"multiplier": o["multiplier"], "predicted": o.get("predicted")}, "oversized")
        )
    return rows


def fig_verdict(data, path: Path) -> Path:
    plt = _plt()
    rows = _rows(data)
    budgets = list(data.extra["budgets"])
    n = len(rows)
    fig, (a1, a2) = plt.subplots(
        1, 2, figsize=(12.5, 0.36 * n + 1.2), sharey=True, gridspec_kw={"wspace": 0.12}
    )
    ys = list(range(n))[::-1]
    c_ref = data.compare["reference"]["flops"]
    for y, (_key, _lab, me, kind) in zip(ys, rows):
        m = me["multiplier"]
        v, lo, hi = m.get("value"), m.get("lo"), m.get("hi")
        color = VERDICT_COLORS.get(me.get("verdict"), "#555555") if kind == "technique" else "#555555"
        if kind == "oversized" and me.get("predicted"):
            p = me["predicted"]
            a1.add_patch(
                plt.Rectangle((p["lo"], y - 0.3), p["hi"] - p["lo"], 0.6, color="#f0c36d", alpha=0.6, lw=0)
            )
        identifiable = v is not None and M_RANGE[0] <= v <= M_RANGE[1] and me.get("identifiable", True)
        if not identifiable:
            a1.text(
                1.0, y, "not identifiable from this data", ha="center", va="center", fontsize=8, color="#555"
            )
            continue
        if lo is not None and hi is not None:
            a1.plot([_clip(lo), _clip(hi)], [y, y], color=color, lw=2.5, solid_capstyle="butt")
        a1.plot([_clip(v)], [y], "o", color=color, ms=7)
        a1.text(_clip(v), y + 0.22, f"{v:.2f}x", ha="center", fontsize=7.5, color=color)
    a1.axvline(1.0, color="#333", lw=0.8, ls=":")
    a1.set_xscale("log")
    a1.set_xlim(*X_LIM)
    a1.set_yticks(ys)
    a1.set_yticklabels(
        [
            r[1] + (f" - {r[2].get('verdict')}" if r[3] == "technique" and r[2].get("verdict") else "")
            for r in rows
        ]
    )
    a1.set_xlabel("compute multiplier M (> 1 saves compute), 90% interval")
    a1.set_title(f"measured at C_ref = {c_ref:.3g} FLOPs", fontsize=10)

    shades = ["#9ecae1", "#6baed6", "#3182bd", "#08519c", "#08306b"]
    off = {b: (i - (len(budgets) - 1) / 2) * (0.7 / max(len(budgets), 1)) for i, b in enumerate(budgets)}
    for y, (key, _lab, _me, kind) in zip(ys, rows):
        if kind != "technique":
            continue
        e = data.extra["techniques"][key]
        if not e.get("scenarios"):
            a2.text(
                1.0, y, "no scenarios: not identifiable", ha="center", va="center", fontsize=8, color="#555"
            )
            continue
        for i, b in enumerate(budgets):
            yy = y + off[b]
            band = scale_free_band(e, b)
            if band:
                a2.plot(
                    [_clip(band[0]), _clip(band[1])],
                    [yy, yy],
                    color=shades[i % 5],
                    lw=4,
                    solid_capstyle="round",
                )  # round caps: a narrow band still shows
            dl = e["scenarios"].get("constant_delta_L", {}).get(b)
            if dl is not None and M_RANGE[0] <= dl <= M_RANGE[1]:
                marker = "<" if dl < X_LIM[0] else (">" if dl > X_LIM[1] else "o")
                a2.plot([_clip(dl)], [yy], marker, mfc="white", mec=shades[i % 5], ms=4.5)
            for a in e.get("anchored", []):
                x = a["multiplier"].get(b)
                if x is not None and M_RANGE[0] <= x <= M_RANGE[1]:
                    a2.plot([_clip(x)], [yy], "D", color="black", ms=4)
    for i, b in enumerate(budgets):
        a2.plot([], [], color=shades[i % 5], lw=3.5, label=label(b))
    a2.plot([], [], "o", mfc="white", mec="#3182bd", ms=4.5, label="constant delta-L (arrow: off the axis)")
    a2.plot([], [], "D", color="black", ms=4, label="published law / prior")
    a2.axvline(1.0, color="#333", lw=0.8, ls=":")
    a2.set_xscale("log")
    a2.set_xlim(*X_LIM)
    a2.set_xlabel("M at frontier budgets: bars, the measurement carried by four scale-free mechanisms")
    a2.set_title("what it could be worth at frontier scale", fontsize=10)
    a2.legend(loc="lower right", fontsize=7, frameon=True, framealpha=0.9, edgecolor="#ddd")
    return _save(fig, path)


def fig_curves(data, path: Path) -> Path | None:
    """Eval loss against marginal FLOPs (log x): frontier baselines grey, technique arms coloured."""
    runs = [r for r in data.runs if r.curve[0]]
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.2))
    seen = set()
    for r in sorted(runs, key=lambda r: r.technique != "baseline"):
        t = r.technique
        lab = None if t in seen else t
        seen.add(t)
        ax.plot(
            *r.curve,
            color=COLORS.get(t, "#777777"),
            lw=1.0 if t == "baseline" else 1.3,
            alpha=0.6 if t == "baseline" else 0.9,
            label=lab,
        )
    fr = data.compare.get("frontier") or {}
    pts = fr.get("points") or []
    if pts:
        ax.plot(
            [p["flops"] for p in pts], [p["loss"] for p in pts], "ks", ms=4, label="frontier (final losses)"
        )
    ax.axvline(data.compare["reference"]["flops"], color="#999", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("cumulative FLOPs (marginal; detailed count)")
    ax.set_ylabel("eval loss (nats/token)")
    ys = [y for r in runs for y in r.curve[1]]
    lo, hi = min(ys), sorted(ys)[int(0.9 * (len(ys) - 1))]
    ax.set_ylim(lo - 0.05 * (hi - lo), hi)
    ax.legend(fontsize=7, ncol=2, frameon=False)
    ax.set_title("Eval loss against compute; dotted line: C_ref", fontsize=10)
    return _save(fig, path)


def ledger_rows(data) -> dict[str, dict]:
    """technique -> mean FLOPs by phase over its runs at C_ref (baseline: the runs at C_ref only)."""
    c_ref = data.compare["reference"]["flops"]
    pts = [
        p for p in (data.compare.get("frontier") or {}).get("points", []) if p.get("flops") and p.get("run")
    ]
    ref_runs = set()
    if pts:  # the frontier budget nearest C_ref (points carry measured FLOPs, not the nominal budget)
        near = min(abs(math.log(p["flops"] / c_ref)) for p in pts)
        ref_runs = {p["run"] for p in pts if abs(math.log(p["flops"] / c_ref)) <= near + 0.05}
    groups: dict[str, list] = {}
    for r in data.runs:
        if not r.phases:
            continue
        if r.technique == "baseline" and ref_runs and r.name not in ref_runs:
            continue
        groups.setdefault(r.technique, []).append(r)
    out = {}
    for t, rs in groups.items():
        phases = sorted({p for r in rs for p in r.phases})
        out[t] = {p: sum(r.phases.get(p, 0.0) for r in rs) / len(rs) for p in phases}
        out[t]["_n"] = len(rs)
    return out


def fig_ledger(data, path: Path) -> Path | None:
    rows = ledger_rows(data)
    if not rows:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.3))
    names = list(rows)
    for i, t in enumerate(names):
        left = 0.0
        for ph, color in PHASE_COLORS.items():
            w = rows[t].get(ph, 0.0)
            if w > 0:
                ax.barh(
                    i,
                    w,
                    left=left,
                    color=color,
                    label=ph if i == 0 or ph not in ax.get_legend_handles_labels()[1] else None,
                )
                left += w
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.set_xlabel("FLOPs per run at C_ref (mean over seeds; eval not included)")
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, frameon=False, loc="lower right")
    ax.set_title("Where each arm's FLOPs go (sunk phases: teacher / generator pretraining)", fontsize=10)
    return _save(fig, path)
