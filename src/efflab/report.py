"""The suite report: report.md, a self-contained report.html (PNG figures embedded as base64), and
figures/*.png, written from compare.json / extrapolate.json / suite.json. Every number comes from
the runs (or, in the claims table, from the presets and the accounting layer): nothing is typed in.

Figures (matplotlib, Agg backend): eval loss against cumulative FLOPs per technique and scale (log
x); FLOPs-to-target bars with the multiplier; the ledger by phase; the L(C) fits and the multiplier
trend with their extrapolation bands; the lifetime view; the backtest.
"""

from __future__ import annotations

import base64
import html
import math
import re
import time
from pathlib import Path

from efflab.io import atomic_write_text, read_json

COLORS = {
    "baseline": "#333333",
    "moe": "#1f77b4",
    "distill": "#d62728",
    "curriculum": "#2ca02c",
    "synthetic": "#9467bd",
}
PHASE_COLORS = {
    "train": "#4c72b0",
    "teacher_forward": "#dd8452",
    "generation": "#8172b3",
    "scoring": "#55a868",
    "sunk": "#c44e52",
}
PRESET_LABELS = {
    "gpt3-175b": "GPT-3 175B",
    "gpt4-estimate": "GPT-4 (est.)",
    "llama-3.1-405b": "Llama-3.1 405B",
    "frontier-2026": "2026 frontier",
    "chinchilla-70b": "Chinchilla 70B",
    "palm-540b": "PaLM 540B",
}


# =============================================================================================
# number formatting
# =============================================================================================
def f3(x, unit: str = "") -> str:
    """3 significant digits, '-' for None."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.3g}{unit}"


def fl(x) -> str:
    """FLOPs in scientific notation: 1.23e12."""
    if x is None:
        return "-"
    if x == 0:
        return "0"
    e = int(math.floor(math.log10(abs(x))))
    return f"{x / 10**e:.2f}e{e}"


def usd(x) -> str:
    if x is None:
        return "-"
    sign = "-" if x < 0 else ""
    a = abs(x)
    if a >= 1e13:  # beyond any budget: say it in powers of ten
        return f"{sign}${a:.2g}"
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{sign}${a / div:.3g}{suf}"
    return f"{sign}${a:.3g}"


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:+.0f}%"


def mult(v: dict) -> str:
    from efflab.compare import multiplier_text

    return multiplier_text(v) if v else "-"


def _interval(v, lo, hi, fmt) -> str:
    if v is None:
        return "-"
    s = fmt(v)
    if lo is not None and hi is not None:
        a, b = sorted((lo, hi))
        s += f" [{fmt(a)}, {fmt(b)}]"
    return s


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |")
    return "\n".join(out)


# =============================================================================================
# figures
# =============================================================================================
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "font.size": 9,
            "axes.titlesize": 10,
            "legend.fontsize": 8,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _unit(comparison) -> str:
    return "eval loss (nats/token)" if comparison["metric"] == "loss" else "eval bits per byte"


def fig_curves(comparison: dict, path: Path) -> Path:
    """Eval loss against cumulative FLOPs (log x), one panel per scale; solid marginal, dashed total."""
    plt = _plt()
    scales = [s for s in comparison["scales"] if s.get("baseline")]
    n = max(1, len(scales))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False, sharey=True)
    runs = comparison["runs"]
    for ax, sc in zip(axes[0], scales):
        seen = set()
        for r in runs:
            if r["scale"] != sc["scale"]:
                continue
            t = r["technique"]
            for view, style in (("marginal", "-"), ("total", "--")):
                x, y = r["curve"][view]
                if not x or (view == "total" and r["sunk_flops"] <= 0):
                    continue
                label = None
                if view == "marginal" and t not in seen:
                    label, _ = t, seen.add(t)
                elif view == "total" and (t + "-total") not in seen:
                    label, _ = f"{t} (total)", seen.add(t + "-total")
                ax.plot(
                    x,
                    y,
                    style,
                    color=COLORS.get(t, "#777777"),
                    label=label,
                    lw=1.4,
                    alpha=1.0 if view == "marginal" else 0.55,
                    marker="." if len(x) < 15 else None,
                )
        ax.axhline(sc["target"], color="#777777", ls=":", lw=1, label="target (baseline's final loss)")
        ax.set_xscale("log")
        ax.set_title(f"scale {sc['scale']}")
        ax.set_xlabel("cumulative FLOPs")
    axes[0][0].set_ylabel(_unit(comparison))
    _fig_legend(fig, axes[0])
    fig.suptitle(
        "Eval loss against compute (solid: marginal FLOPs; dashed: total, with the teacher's "
        "training charged from step 0)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, path)


def _fig_legend(fig, axes, ncol: int = 6) -> None:
    """One legend for the whole figure, below the panels, so that no legend covers a curve."""
    seen = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    if seen:
        fig.legend(
            list(seen.values()),
            list(seen.keys()),
            loc="lower center",
            ncol=min(ncol, len(seen)),
            frameon=False,
            fontsize=8,
        )


def fig_flops_to_target(comparison: dict, path: Path) -> Path:
    """FLOPs-to-target (marginal view) per scale and technique, log y, seed range as error bars."""
    import numpy as np

    plt = _plt()
    scales = [s for s in comparison["scales"] if s.get("baseline")]
    techs = []
    for sc in scales:
        for t in sc["techniques"]:
            if t not in techs:
                techs.append(t)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(scales) * len(techs) / 2.5), 3.8))
    width = 0.8 / max(1, len(techs))
    for j, t in enumerate(techs):
        for i, sc in enumerate(scales):
            e = sc["techniques"].get(t)
            if not e:
                continue
            v = e["views"]["marginal"]
            x = i + (j - (len(techs) - 1) / 2) * width
            vals = [f for f in v["flops_to_target"] if f is not None]
            label = t if i == 0 else None
            if len(vals) == len(v["flops_to_target"]) and vals:
                g = float(np.exp(np.mean(np.log(vals))))
                err = [[g - min(vals)], [max(vals) - g]] if len(vals) > 1 else None
                ax.bar(x, g, width * 0.92, color=COLORS.get(t, "#777"), label=label, yerr=err, capsize=3)
                if t != "baseline" and v.get("M") is not None:
                    ax.text(x, g * 1.15, f"{v['M']:.2g}x", ha="center", va="bottom", fontsize=7, rotation=90)
            else:
                top = e["flops_marginal"]
                ax.bar(
                    x,
                    top,
                    width * 0.92,
                    facecolor="none",
                    edgecolor=COLORS.get(t, "#777"),
                    hatch="//",
                    label=label,
                )
                ax.text(x, top * 1.15, "not reached", ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_yscale("log")
    ax.set_xticks(range(len(scales)))
    ax.set_xticklabels([f"scale {s['scale']}" for s in scales])
    ax.set_ylabel("marginal FLOPs to reach the target loss")
    ax.set_title(
        "FLOPs to the baseline's final loss (bars: geometric mean over seeds, whiskers: seed range; "
        "label: multiplier M; hatched: never reached within its budget)",
        fontsize=8,
    )
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi * 6)  # room for the labels above the bars
    ax.legend(loc="upper left", ncol=min(5, len(techs)))
    fig.tight_layout()
    return _save(fig, path)


def fig_ledger(comparison: dict, path: Path) -> Path:
    """The ledger by phase per technique and scale: stacked marginal phases + the amortised sunk share."""
    plt = _plt()
    scales = [s for s in comparison["scales"] if s.get("baseline")]
    n = max(1, len(scales))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.8), squeeze=False)
    for ax, sc in zip(axes[0], scales):
        techs = list(sc["techniques"])
        for i, t in enumerate(techs):
            e = sc["techniques"][t]
            bottom = 0.0
            for ph in ("train", "teacher_forward", "generation", "scoring"):
                val = e["phases"].get(ph, 0.0)
                if val > 0:
                    ax.bar(i, val, 0.7, bottom=bottom, color=PHASE_COLORS[ph], label=ph.replace("_", " "))
                    bottom += val
            sunk = (e.get("sunk_flops") or 0.0) / max(1, e.get("sunk_shared_by") or 1)
            if sunk > 0:
                ax.bar(
                    i,
                    sunk,
                    0.7,
                    bottom=bottom,
                    facecolor="white",
                    edgecolor=PHASE_COLORS["sunk"],
                    hatch="//",
                    label="sunk teacher, amortised share",
                )
                bottom += sunk
            if (e.get("sunk_flops") or 0) > 0:
                ax.text(
                    i, bottom * 1.02, f"total\n{fl(e['flops_total'])}", ha="center", va="bottom", fontsize=6.5
                )
        ax.set_xticks(range(len(techs)))
        ax.set_xticklabels(techs, rotation=20)
        ax.set_title(f"scale {sc['scale']}")
        ax.set_ylabel("FLOPs")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
    _fig_legend(fig, axes[0])
    fig.suptitle(
        "The ledger by phase (marginal phases stacked; hatched: the teacher's training divided over the "
        "runs sharing it; 'total': with the whole teacher)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path)


def fig_scaling(comparison: dict, extra: dict, path: Path) -> Path:
    """Left: L(C) fits per technique with bootstrap bands, extended 10x past the data. Right: the
    multiplier trend (marginal) against compute out to the frontier budgets, with prediction bands."""
    import numpy as np

    from efflab import scaling

    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.0))
    fits = extra.get("fits", {})
    allc = [r["flops_marginal"] for r in comparison["runs"] if r["flops_marginal"] > 0]
    for t, f in fits.items():
        pts = f.get("points") or []
        if pts:
            a1.scatter(
                [p["compute_flops"] for p in pts],
                [p["loss"] for p in pts],
                color=COLORS.get(t, "#777"),
                s=16,
                zorder=3,
            )
        band = f.get("band")
        if not band:
            continue
        al = f["params"]["alpha"]["value"]
        a1.plot(
            band["compute_flops"],
            band["value"],
            color=COLORS.get(t, "#777"),
            lw=1.3,
            label=f"{t}: alpha={al:.2g}",
        )
        if band.get("lo") is not None:
            a1.fill_between(
                band["compute_flops"], band["lo"], band["hi"], color=COLORS.get(t, "#777"), alpha=0.12, lw=0
            )
    if allc and any(f.get("band") for f in fits.values()):
        xend = max(f["band"]["compute_flops"][-1] for f in fits.values() if f.get("band"))
        a1.axvspan(max(allc), xend, color="#999999", alpha=0.08)
        a1.text(
            max(allc) * 1.1,
            0.02,
            "extrapolated",
            fontsize=7,
            va="bottom",
            color="#555555",
            transform=a1.get_xaxis_transform(),
        )
    a1.set_xscale("log")
    a1.set_xlabel("marginal training FLOPs")
    a1.set_ylabel(_unit(comparison))
    a1.set_title("L(C) fits per technique (band: bootstrap, 90%)")
    a1.legend(loc="lower left", fontsize=7)

    budgets = extra.get("budgets", [])
    xmax = max([b["flops"] for b in budgets] + [max(allc) if allc else 1.0])
    any_line = False
    shown = [1.0]  # values the y axis must show: the points and the fitted lines, not the whole band
    for e in extra.get("techniques", []):
        v = e["views"].get("marginal") or {}
        pts = v.get("points") or []
        t = e["technique"]
        if not pts:
            continue
        shown += [p["M"] for p in pts]
        a2.scatter(
            [p["compute_flops"] for p in pts],
            [p["M"] for p in pts],
            color=COLORS.get(t, "#777"),
            s=18,
            zorder=3,
        )
        tr = v.get("trend")
        if not tr:
            continue
        xs = np.logspace(np.log10(min(p["compute_flops"] for p in pts)), np.log10(xmax), 50)
        trend = scaling.fit_multiplier_trend(
            [p["compute_flops"] for p in pts],
            [p["M"] for p in pts],
            scales=[p["scale"] for p in pts],
            level=extra.get("level", 0.9),
        )
        preds = [trend.predict(x) for x in xs]
        ys = [p.value for p in preds]
        shown += ys
        label = f"{t}" + (" (constant M: < 3 scales)" if tr.get("kind") == "constant" else "")
        a2.plot(xs, ys, color=COLORS.get(t, "#777"), lw=1.3, label=label)
        if all(p.lo is not None for p in preds):
            a2.fill_between(
                xs,
                [p.lo for p in preds],
                [p.hi for p in preds],
                color=COLORS.get(t, "#777"),
                alpha=0.12,
                lw=0,
            )
        any_line = True
    for b in budgets:
        a2.axvline(b["flops"], color="#888888", ls=":", lw=0.8)
    prev = None
    for b in sorted(budgets, key=lambda b: b["flops"]):
        # budgets within half a decade of each other get their labels at different heights
        y = 0.02 if prev is None or math.log10(b["flops"] / prev[0]) > 0.5 or prev[1] > 0.02 else 0.5
        a2.text(
            b["flops"],
            y,
            PRESET_LABELS.get(b["name"], b["name"]),
            rotation=90,
            fontsize=7,
            va="bottom",
            ha="right",
            color="#555555",
            transform=a2.get_xaxis_transform(),
        )
        prev = (b["flops"], y)
    a2.axhline(1.0, color="#333333", lw=0.8, ls="--")
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_ylim(min(0.1, min(shown) / 3), max(10.0, max(shown) * 3))  # a wide band is clipped, not the lines
    a2.set_xlabel("baseline training FLOPs (measured scales, then frontier budgets)")
    a2.set_ylabel("compute multiplier M (marginal)")
    a2.set_title("Multiplier trend and its 90% prediction band (clipped to the axes)")
    if any_line:
        a2.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def fig_lifetime(life: dict, path: Path) -> Path | None:
    """Lifetime FLOPs of each technique over the baseline's (training to the target + serving S tokens)
    against S, one panel per scale: below 1 the technique is cheaper over the model's life."""
    import numpy as np

    plt = _plt()
    scales = [
        s
        for s in life.get("scales", [])
        if any(r["views"]["marginal"]["train_flops"] for r in s["rows"] if r["technique"] != "baseline")
    ]
    if not scales:
        return None
    fig, axes = plt.subplots(1, len(scales), figsize=(4.2 * len(scales), 3.6), squeeze=False, sharey=True)
    for ax, sc in zip(axes[0], scales):
        base = next((r for r in sc["rows"] if r["technique"] == "baseline"), None)
        bv = base["views"]["marginal"] if base else None
        if not bv or bv["train_flops"] is None:
            continue
        S_ref = max(sc["serve_tokens"]) if sc["serve_tokens"] else 1e6
        xs = np.logspace(np.log10(S_ref) - 4, np.log10(S_ref) + 2, 100)
        lb = bv["train_flops"] + xs * base["serve_flops_per_token"]
        for row in sc["rows"]:
            v = row["views"]["marginal"]
            if row["technique"] == "baseline" or v["train_flops"] is None:
                continue
            ratio = (v["train_flops"] + xs * row["serve_flops_per_token"]) / lb
            ax.plot(xs, ratio, color=COLORS.get(row["technique"], "#777"), lw=1.5, label=row["technique"])
            be = v["break_even"]
            if be["tokens"] and xs[0] <= be["tokens"] <= xs[-1]:
                ax.plot([be["tokens"]], [1.0], "o", color=COLORS.get(row["technique"], "#777"), ms=5)
        ax.axhline(1.0, color="#333333", lw=0.8, ls="--", label="baseline")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("served tokens S")
        ax.set_title(f"scale {sc['scale']}")
    axes[0][0].set_ylabel("lifetime FLOPs / baseline's")
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda y, _: f"{y:g}")
    for ax in axes[0]:  # ratios near 1: plain numbers read better than powers of ten
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
    _fig_legend(fig, axes[0])
    fig.suptitle(
        "Lifetime compute relative to the baseline: training to the target (marginal) + serving S tokens "
        "(below 1: cheaper; dot: break-even)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return _save(fig, path)


def fig_backtest(bt: dict, path: Path) -> Path | None:
    """Predicted against measured at the held-out largest scale, with the prediction interval."""
    plt = _plt()
    rows = [r for r in bt.get("loss", []) + bt.get("multiplier", []) if "predicted" in r]
    if not rows:
        return None
    panels = [
        (q, lab)
        for q, lab in (
            ("loss", "eval loss at the held-out scale"),
            ("multiplier", "multiplier M at the held-out scale"),
        )
        if any(r["quantity"] == q for r in rows)
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (q, ylabel) in zip(axes[0], panels):
        rs = [r for r in rows if r["quantity"] == q]
        labels = []
        for i, r in enumerate(rs):
            p = r["predicted"]
            t = r["technique"]
            lab = t + (f" ({r['view']})" if q == "multiplier" else "")
            labels.append(lab)
            yerr = None
            if p["lo"] is not None and p["hi"] is not None:
                yerr = [[max(0.0, p["value"] - p["lo"])], [max(0.0, p["hi"] - p["value"])]]
            ax.errorbar(
                i - 0.1,
                p["value"],
                yerr=yerr,
                fmt="o",
                color=COLORS.get(t, "#777"),
                capsize=3,
                label="predicted" if i == 0 else None,
                mfc="white",
            )
            ax.plot(
                i + 0.1, r["measured"], "s", color=COLORS.get(t, "#777"), label="measured" if i == 0 else None
            )
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=20, fontsize=7)
        ax.set_ylabel(ylabel)
        if q == "multiplier" and rs:
            ax.set_yscale("log")
        ax.set_xlim(-0.6, max(0.6, len(labels) - 0.4))
        if rs:
            ax.legend(loc="best")
    fig.suptitle(
        f"Backtest: fit every scale but the largest ({bt.get('held_out_scale')}), predict it "
        f"(open circle, with interval) and measure it (square)",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


# =============================================================================================
# the report text
# =============================================================================================
def _headline(comparison: dict) -> tuple[list[str], list[list]]:
    scales = [s for s in comparison["scales"] if s.get("baseline")]
    techs = [t for t in _all_techniques(comparison) if t != "baseline"]
    header = ["technique", "view"] + [f"M at {s['scale']}" for s in scales] + ["saving at largest"]
    rows = []
    for t in techs:
        views = (
            ("marginal", "total", "amortised")
            if any((s["techniques"].get(t) or {}).get("sunk_flops") for s in scales)
            else ("marginal",)
        )
        for v in views:
            cells = [t, v]
            last = None
            for s in scales:
                e = s["techniques"].get(t)
                cells.append(mult(e["views"][v]) if e else "-")
                last = e["views"][v] if e else None
            cells.append(pct(last.get("saving")) if last and last.get("saving") is not None else "-")
            rows.append(cells)
    return header, rows


def _summary(comparison: dict, extra: dict) -> list[str]:
    """One sentence per technique: the largest scale's result and what it would be worth on GPT-4's budget."""
    out = []
    scales = [s for s in comparison["scales"] if s.get("baseline")]
    if not scales:
        return out
    sc = scales[-1]
    ex = {e["technique"]: e for e in extra.get("techniques", [])}
    for t in _all_techniques(comparison):
        e = sc["techniques"].get(t)
        if t == "baseline" or not e:
            continue
        v = e["views"]["marginal"]
        if v.get("M") is not None:
            what = (
                f"reaches the baseline's loss with {100 * v['saving']:.0f}% less compute"
                if v["M"] >= 1
                else f"needs {1 / v['M']:.2g}x the baseline's compute to reach its loss"
            )
            what += f" (M = {mult(v)}, marginal)"
        else:
            what = "does not reach the baseline's loss within the same training budget" + (
                f" (M < {v['M_upper_bound']:.2g}x)" if v.get("M_upper_bound") else ""
            )
        if e.get("sunk_flops"):
            vt = e["views"]["total"]
            what += (
                f"; with the teacher's training charged, M = {mult(vt)}"
                if vt.get("M") is not None
                else "; with the teacher's training charged it does not reach it either"
            )
        worth = ""
        xv = ex.get(t, {}).get("views", {}).get("marginal") or {}
        fr = xv.get("frontier") or []
        row = next((r for r in fr if r["preset"] == "gpt4-estimate"), None)
        if row and row["saved"]["value"] and row["saved"]["value"].get("cost_usd") is not None:
            model = "constant M, fewer than three scales" if row.get("assumption") else "fitted trend"
            used = sorted({p["scale"] for p in xv.get("points", [])})
            if sc["scale"] in xv.get("missing_scales", []):  # extrapolated from smaller scales only
                out.append(
                    f"- **{t}** at scale {sc['scale']}: {what}. It reached the baseline's loss only at "
                    f"{', '.join(used)}; carried to a GPT-4-class budget that M would claim "
                    f"{_saved(row, 'cost_usd', usd)}, which the larger scale does not support."
                )
                continue
            worth = (
                f" On a GPT-4-class budget ({fl(row['budget_flops'])} FLOPs; {model}) that is "
                f"{_saved(row, 'cost_usd', usd)} of compute at {extra['gpu']} prices"
            )
            const = next(
                (
                    r
                    for r in (ex[t]["views"]["marginal"].get("frontier_constant") or [])
                    if r["preset"] == "gpt4-estimate"
                ),
                None,
            )
            if const:
                worth += f" ({_saved(const, 'cost_usd', usd)} if M stays at its pooled value)"
            worth += "."
        out.append(f"- **{t}** at scale {sc['scale']}: {what}.{worth}")
    return out


def _all_techniques(comparison: dict) -> list[str]:
    from efflab.compare import _techniques

    return _techniques(comparison)


def _scale_table(sc: dict, unit: str) -> str:
    rows = []
    for t, e in sc["techniques"].items():
        m, tot, am = e["views"]["marginal"], e["views"]["total"], e["views"]["amortised"]
        ft = [f for f in m["flops_to_target"] if f is not None]
        d = m.get("loss_delta_at_baseline_budget")
        rows.append(
            [
                t,
                f"{e['final']:.4f}",
                fl(e["flops_marginal"]),
                fl(e["flops_total"]),
                fl(math.exp(sum(map(math.log, ft)) / len(ft)))
                if ft and len(ft) == m["of"]
                else "not reached",
                mult(m),
                mult(tot) if e.get("sunk_flops") else "= marginal",
                mult(am) if e.get("sunk_flops") else "= marginal",
                "-" if d is None else f"{d:+.4f}",
            ]
        )
    return table(
        [
            "technique",
            f"final {unit}",
            "FLOPs marginal",
            "FLOPs total",
            "FLOPs to target (marginal)",
            "M marginal",
            "M total",
            "M amortised",
            f"loss diff at baseline budget ({unit})",
        ],
        rows,
    )


def _models(v: dict):
    """(label, rows) for the trend and, beside it, the pooled constant-M alternative."""
    out = [("trend" if not v.get("assumption") else "constant (< 3 scales)", v["frontier"])]
    if v.get("frontier_constant"):
        out.append(("constant (pooled)", v["frontier_constant"]))
    return out


def _saved(row: dict, key: str, fmt) -> str:
    s = row["saved"]
    return _interval((s["value"] or {}).get(key), (s["lo"] or {}).get(key), (s["hi"] or {}).get(key), fmt)


def _frontier_tables(extra: dict) -> list[str]:
    out = []
    budgets = extra.get("budgets", [])
    header = ["technique", "view", "model"] + [PRESET_LABELS.get(b["name"], b["name"]) for b in budgets]
    rows_m, rows_usd, rows_gpu, rows_mwh, rows_mfu = [], [], [], [], []
    skipped = []
    for e in extra.get("techniques", []):
        for view, v in e["views"].items():
            if "frontier" not in v:
                skipped.append(f"{e['technique']} ({view})")
                continue
            for label, frows in _models(v):
                key = [e["technique"], view, label]
                rows_m.append(
                    key
                    + [
                        _interval(r["M"]["value"], r["M"]["lo"], r["M"]["hi"], lambda x: f"{x:.3g}x")
                        for r in frows
                    ]
                )
                rows_usd.append(key + [_saved(r, "cost_usd", usd) for r in frows])
                rows_gpu.append(key + [_saved(r, "gpu_hours", lambda x: f"{x:.3g}") for r in frows])
                rows_mwh.append(key + [_saved(r, "energy_mwh", lambda x: f"{x:.3g}") for r in frows])
                names = {r["preset"] for r in frows}
                keep = {"gpt4-estimate", "frontier-2026"} & names or names  # two budgets say how $ move
                for r in frows:
                    if r["preset"] not in keep:
                        continue
                    by = r["saved_usd_by_mfu"]
                    rows_mfu.append(
                        key + [PRESET_LABELS.get(r["preset"], r["preset"])] + [usd(by[k]) for k in sorted(by)]
                    )
    decades = sorted(
        {
            round(r["decades_beyond_data"], 1)
            for e in extra.get("techniques", [])
            for v in e["views"].values()
            for r in v.get("frontier", [])
        }
    )
    span = f"{decades[0]:g} to {decades[-1]:g}" if decades else "-"
    out.append(
        "**Compute multiplier M at each budget** with its 90% prediction interval. `trend`: log M "
        "linear in log C, fitted over the measured scales; `constant (pooled)`: no trend, M pooled over the "
        f"scales (the alternative to hold the trend against). These budgets lie {span} decades of "
        "compute beyond the largest measured scale.\n\n"
        + (table(header, rows_m) if rows_m else "No technique reached the baseline's loss at any scale.")
    )
    if skipped:
        out.append(
            "Not extrapolated, because they never reached the baseline's loss at any scale: "
            + ", ".join(skipped)
            + "."
        )
    if rows_usd:
        out.append(
            f"**Dollars saved** on {extra['gpu']} at MFU {extra['mfu']:.2f} and "
            f"${extra['price_per_gpu_hour']:.2f}/GPU-hour (negative: the technique costs more; a saving "
            f"cannot exceed the run's whole cost):\n\n" + table(header, rows_usd)
        )
        out.append("**GPU-hours saved:**\n\n" + table(header, rows_gpu))
        out.append(
            f"**Energy saved, MWh** (board power x PUE {extra['pue']:.2f}):\n\n" + table(header, rows_mwh)
        )
        mfus = sorted(
            next(
                iter(
                    r["saved_usd_by_mfu"]
                    for e in extra["techniques"]
                    for v in e["views"].values()
                    for r in v.get("frontier", [])
                ),
                {},
            )
        )
        out.append(
            "**Dollars saved across the 38-55% MFU range** (point estimate of M): a higher MFU makes every "
            "GPU-hour do more, so the same saving in FLOPs is worth fewer dollars.\n\n"
            + table(["technique", "view", "model", "budget"] + [f"MFU {m}" for m in mfus], rows_mfu)
        )
    return out


def _run_cost_table(extra: dict) -> str:
    rows = []
    for b in extra.get("budgets", []):
        rc = b.get("run_cost") or {}
        rows.append(
            [
                PRESET_LABELS.get(b["name"], b["name"]),
                fl(b["flops"]),
                "estimate" if b["estimate"] else "published",
                f3(rc.get("gpu_hours")),
                usd(rc.get("cost_usd")),
                f3(rc.get("energy_mwh")),
                b["source"],
            ]
        )
    return table(["budget", "FLOPs", "kind", f"GPU-hours ({extra['gpu']})", "cost", "MWh", "source"], rows)


def _lifetime_table(life: dict) -> str:
    parts = []
    for sc in life.get("scales", []):
        S = sc["serve_tokens"]
        rows = []
        for row in sc["rows"]:
            m, t = row["views"]["marginal"], row["views"]["total"]
            rows.append(
                [row["technique"], fl(row["serve_flops_per_token"]), fl(m["train_flops"])]
                + [fl(x) for x in (m["lifetime"] or [None] * len(S))]
                + [m["break_even"]["text"], t["break_even"]["text"]]
            )
        parts.append(
            f"Scale {sc['scale']}:\n\n"
            + table(
                ["technique", "serve FLOPs/token", "train FLOPs to target"]
                + [f"lifetime at S={s:.2g}" for s in S]
                + ["break-even vs baseline (marginal)", "break-even (total)"],
                rows,
            )
        )
    return "\n\n".join(parts)


def _backtest_table(bt: dict, unit: str) -> str:
    rows = []
    for r in bt.get("loss", []) + bt.get("multiplier", []):
        if "predicted" not in r:
            rows.append(
                [
                    r["technique"],
                    f"M ({r['view']})" if "view" in r else "loss",
                    "-",
                    "-",
                    "-",
                    "-",
                    r.get("note", ""),
                ]
            )
            continue
        p = r["predicted"]
        q = "loss" if r["quantity"] == "loss" else f"M ({r['view']})"
        fmt = (lambda x: f"{x:.4f}") if r["quantity"] == "loss" else (lambda x: f"{x:.3g}x")
        within = {True: "yes", False: "no", None: "no interval"}[r["within_interval"]]
        rows.append(
            [
                r["technique"],
                q,
                _interval(p["value"], p["lo"], p["hi"], fmt),
                fmt(r["measured"]),
                f"{100 * r['rel_error']:+.1f}%",
                within,
                r.get("assumption") or r.get("form") or "",
            ]
        )
    return table(
        ["technique", "quantity", "predicted [interval]", "measured", "error", "inside interval", "model"],
        rows,
    )


def _estimate(f: dict, k: str, fmt) -> str:
    """One fitted parameter with its bootstrap interval ('0 (fixed)' for a fixed E; no interval when
    every bootstrap draw gave the same fit, as with as many points as parameters)."""
    if k == "E" and f.get("E_fixed"):
        return "0 (fixed)"
    P = f["params"][k]
    lo, hi = P["lo"], P["hi"]
    if lo is not None and hi is not None and math.isclose(lo, hi, rel_tol=1e-9):
        lo = hi = None
    return _interval(P["value"], lo, hi, fmt)


def _fits_table(extra: dict) -> str:
    rows = []
    g = lambda x: f"{x:.3g}"  # noqa: E731
    for t, f in extra.get("fits", {}).items():
        if "params" not in f:
            rows.append([t, "-", "-", "-", f.get("note", "")])
            continue
        rows.append(
            [
                t,
                _estimate(f, "E", g),
                _estimate(f, "A", g),
                _estimate(f, "alpha", g),
                f.get("note", f"{f['n_rows']} runs"),
            ]
        )
    return table(["technique", "E", "A", "alpha", "note"], rows)


# =============================================================================================
# BACKGROUND.md claims against this suite
# =============================================================================================
def claims(comparison: dict, extra: dict, state: dict, suite_dir: Path) -> list[list[str]]:
    """Each BACKGROUND.md claim, what the presets compute or the suite measured, and a verdict."""
    from efflab.accounting import flops as F
    from efflab.accounting import hardware, presets

    rows = []
    P = presets.PRESETS
    g3, g4 = P["gpt3-175b"], P["gpt4-estimate"]
    c6 = F.flops_6nd(g3.params, g3.tokens)
    rows.append(
        [
            "GPT-3 (2020) took about 3.14e23 FLOPs",
            f"presets: 6ND = 6 x {g3.params:.4g} params x {g3.tokens:.3g} tokens = {c6:.3g} FLOPs "
            f"(published {g3.train_flops:.3g})",
            "consistent" if abs(c6 / 3.14e23 - 1) < 0.05 else "differs",
        ]
    )
    ratio = g4.train_flops / g3.train_flops
    rows.append(
        [
            "GPT-4 (2023): an estimated 2.15e25 FLOPs, about 70x GPT-3",
            f"presets: gpt4-estimate {g4.train_flops:.3g} FLOPs (an outside estimate) = {ratio:.0f}x GPT-3",
            "consistent (an estimate)" if 55 <= ratio <= 85 else "differs",
        ]
    )
    # MoE: active fraction (presets) and what the suite measured
    mix = F.count_flops("mixtral-8x7b")
    frac = mix.params_active / mix.params_total
    moe = _technique_result(comparison, "moe")
    if moe is None:
        why = (state.get("not_available") or {}).get("moe", "no moe runs in this suite")
        meas, verdict = (
            f"presets: Mixtral 8x7B {mix.params_active / 1e9:.1f}B of {mix.params_total / 1e9:.1f}B "
            f"active ({100 * frac:.0f}%). Suite: {why}",
            "not tested here",
        )
    else:
        e, v, sc = moe
        act = (
            f"{e['params_active']:,} of {e['params']:,} params active"
            if e.get("params")
            else "params unknown"
        )
        meas = (
            f"presets: Mixtral {100 * frac:.0f}% active. Suite, scale {sc}: {act}; M = {mult(v)} "
            f"(marginal) at the baseline's loss"
        )
        verdict = _verdict_m(v)
    rows.append(
        [
            "Mixture-of-experts: a fraction of the parameters is active per token (Mixtral 12.9B of 46.7B), "
            "quality competitive with larger dense models",
            meas,
            verdict,
        ]
    )
    # distillation: ~90% of the teacher's quality at ~10% of its parameters
    dist = _technique_result(comparison, "distill")
    teacher = _shared_result(state, suite_dir)
    if dist is None or teacher is None:
        why = (state.get("not_available") or {}).get("distill", "no distill runs or no shared teacher")
        rows.append(
            [
                "Distillation: ~90% of the teacher's quality at ~10% of its parameters; it cuts deployment "
                "cost, not the teacher's training cost",
                f"Suite: {why}",
                "not tested here",
            ]
        )
    else:
        e, v, sc = dist
        pr = e["params"] / teacher["params"] if e.get("params") and teacher.get("params") else None
        q = teacher["final_eval_loss"] / e["final_eval_loss"] if e.get("final_eval_loss") else None
        vt = e["views"]["total"]
        meas = (
            f"scale {sc}: student {fl(e['params'])} params = {f3(100 * pr if pr else None)}% of the teacher's; "
            f"teacher loss / student loss = {f3(100 * q if q else None)}% (quality proxy); M marginal "
            f"{mult(v)}, M total (teacher's training charged) {mult(vt)}"
        )
        ok = pr is not None and q is not None and pr <= 0.15 and q >= 0.9
        if pr is not None and pr > 0.3:  # the claim is about a much smaller student
            verdict = (
                f"not tested here (the student has {100 * pr:.0f}% of the teacher's parameters, not ~10%)"
            )
        else:
            verdict = "consistent" if ok else "not reproduced at this scale"
        if ok and (vt.get("M") is None or vt["M"] < 1):
            verdict += " (and the teacher's training is not recovered in the total view)"
        rows.append(
            [
                "Distillation: ~90% of the teacher's quality at ~10% of its parameters; it cuts deployment "
                "cost, not the teacher's training cost",
                meas,
                verdict,
            ]
        )
    # curriculum: 20-30% savings
    cur = _technique_result(comparison, "curriculum")
    if cur is None:
        why = (state.get("not_available") or {}).get("curriculum", "no curriculum runs")
        rows.append(
            ["Curriculum learning: easy-to-hard ordering can save 20-30%", f"Suite: {why}", "not tested here"]
        )
    else:
        e, v, sc = cur
        s = v.get("saving")
        meas = f"scale {sc}: M = {mult(v)}, saving {pct(s)} of the baseline's compute at its loss (marginal)"
        if s is None:
            verdict = "not reproduced at this scale"
        elif 0.2 <= s <= 0.3 or (
            v.get("saving_lo") is not None and v["saving_lo"] <= 0.3 and v["saving_hi"] >= 0.2
        ):
            verdict = "consistent"
        elif s > 0:
            verdict = "a saving, outside 20-30%"
        else:
            verdict = "not reproduced at this scale"
        rows.append(["Curriculum learning: easy-to-hard ordering can save 20-30%", meas, verdict])
    # MFU
    mf = []
    for name in ("llama-3.1-405b", "deepseek-v3"):
        p = P.get(name)
        if p and p.gpu_hours and p.gpu:
            fl_ = p.train_flops or F.flops_6nd(p.params_active or p.params, p.tokens)
            mf.append((name, hardware.implied_mfu(fl_, p.gpu, p.gpu_hours), p.train_flops is None))
    txt = "; ".join(f"{n}: {100 * m:.0f}%{' (6ND)' if est else ''}" for n, m, est in mf)
    inside = all(0.38 <= m <= 0.55 for _, m, _ in mf)
    rows.append(
        [
            "State-of-the-art MFU is 38-55%",
            f"presets, published FLOPs / (published GPU-hours x dense BF16 peak): {txt}. The GPU-hours of a "
            f"report include restarts and evaluation, so these are lower bounds. This suite ran on "
            f"{_device(state, suite_dir)} and does not measure GPU MFU.",
            "consistent" if inside else "presets imply lower MFU than the claim",
        ]
    )
    # Chinchilla 20 tokens/param
    ch = P["chinchilla-70b"]
    tpp = ch.tokens / ch.params
    base = [r for r in comparison["runs"] if r["technique"] == "baseline" and r.get("params")]
    ours = ", ".join(
        f"{r['scale']}: {r['train_tokens'] / r['params']:.2g}" for r in base if r.get("train_tokens")
    )
    rows.append(
        [
            "Chinchilla: about 20 training tokens per parameter is compute-optimal",
            f"presets: Chinchilla 70B on 1.4T tokens = {tpp:.0f} tokens/param. This suite's baselines "
            f"(tokens/param, embeddings included): {ours or '-'}; the ladder is not an iso-FLOP sweep, so it "
            f"does not test the optimum",
            "consistent (presets); not tested here",
        ]
    )
    life = comparison.get("lifetime", {})
    be = [
        (r["technique"], r["views"]["marginal"]["break_even"]["text"])
        for s in life.get("scales", [])[-1:]
        for r in s["rows"]
        if r["technique"] != "baseline"
    ]
    rows.append(
        [
            "Inference is becoming the larger share of lifetime compute",
            "lifetime view, largest scale: " + ("; ".join(f"{t}: {x}" for t, x in be) or "-"),
            "not tested here (shown for these models)",
        ]
    )
    return rows


def _verdict_m(v: dict) -> str:
    if v.get("M") is None:
        return "not reproduced at this scale"
    if v.get("lo") is not None:
        if v["lo"] > 1:
            return "consistent (saves compute)"
        if v["hi"] < 1:
            return "not reproduced at this scale (costs compute)"
        return "inconclusive (interval spans 1)"
    return "consistent (saves compute)" if v["M"] > 1 else "not reproduced at this scale"


def _technique_result(comparison: dict, tech: str):
    """(entry, marginal view, scale) at the largest scale where the technique ran, or None."""
    for sc in reversed(comparison["scales"]):
        e = sc["techniques"].get(tech)
        if e:
            return e, e["views"]["marginal"], sc["scale"]
    return None


def _shared_result(state: dict, suite_dir: Path) -> dict | None:
    sh = state.get("shared") or {}
    d = suite_dir / sh["dir"] if sh.get("dir") else None
    if d is None or not (d / "manifest.json").is_file():
        return None
    man = read_json(d / "manifest.json")
    if man.get("status") != "complete":
        return None
    from efflab.accounting import flops as F

    out = dict(man.get("result", {}))
    try:
        out["params"] = F.count_flops(str(d / "model"), man.get("data", {}).get("seq_len")).params_total
    except Exception:  # an unreadable model dir: the claim row says so through params None
        out["params"] = None
    return out


def _device(state: dict, suite_dir: Path) -> str:
    for e in state.get("runs", []):
        m = suite_dir / e["dir"] / "manifest.json"
        if m.is_file():
            return read_json(m).get("device", "?")
    return "?"


# =============================================================================================
# assembling report.md and report.html
# =============================================================================================
def write_report(suite_dir, comparison: dict, extra: dict, state: dict, sc=None) -> dict:
    """Write figures/*.png, report.md and report.html; return their paths."""
    suite_dir = Path(suite_dir)
    figdir = suite_dir / "figures"
    figs = {
        "curves": fig_curves(comparison, figdir / "loss_vs_flops.png"),
        "ftt": fig_flops_to_target(comparison, figdir / "flops_to_target.png"),
        "ledger": fig_ledger(comparison, figdir / "ledger.png"),
        "scaling": fig_scaling(comparison, extra, figdir / "scaling.png"),
        "lifetime": fig_lifetime(comparison.get("lifetime", {}), figdir / "lifetime.png"),
        "backtest": fig_backtest(extra.get("backtest", {}), figdir / "backtest.png"),
    }
    md = render_markdown(suite_dir, comparison, extra, state, figs)
    atomic_write_text(suite_dir / "report.md", md)
    atomic_write_text(
        suite_dir / "report.html",
        markdown_to_html(md, suite_dir, title=f"efflab suite {state.get('name', '')}"),
    )
    return {"md": suite_dir / "report.md", "html": suite_dir / "report.html", "figures": figdir}


def _wall(state: dict) -> str:
    """Training time summed over the runs, and this invocation's wall time with the machine's load."""
    runs = [e.get("seconds") or 0.0 for e in state.get("runs", [])]
    trained = sum(runs) + ((state.get("shared") or {}).get("seconds") or 0.0)
    out = f"training time summed over the runs, shared teacher included: {trained / 60:.1f} min"
    cur = state.get("current")
    if cur and cur.get("trained", 0) + cur.get("resumed", 0):
        load = [
            x
            for x in (cur.get("load_average_at_start"), cur.get("load_average_after_training"))
            if x is not None
        ]
        out += (
            f"; this invocation trained {cur['trained'] + cur['resumed']} run(s) in "
            f"{cur['train_seconds'] / 60:.1f} min wall"
        )
        if load:
            out += f" (load average {' -> '.join(f'{x:.1f}' for x in load)} on {cur.get('cpu_count')} cores)"
    return out


def render_markdown(suite_dir: Path, comparison: dict, extra: dict, state: dict, figs: dict) -> str:
    unit = comparison["unit"]
    name = state.get("name", suite_dir.name)
    runs = state.get("runs", [])
    n_complete = sum(e["state"] == "complete" for e in runs)
    scales = [s["scale"] for s in comparison["scales"] if s.get("baseline")]
    L = [f"# efflab suite `{name}`: which technique saves compute at equal loss", ""]
    L.append(
        f"Generated {time.strftime('%Y-%m-%d %H:%M')} from `{suite_dir}`: {n_complete} complete runs over "
        f"{len(scales)} scale(s) ({', '.join(scales)}); device: {_device(state, suite_dir)}; "
        f"{_wall(state)}. Quality is {unit} on one shared held-out set. M = baseline FLOPs to the target loss "
        f"/ technique FLOPs to it: M > 1 saves compute, M < 1 costs compute."
    )
    L.append("")
    na = state.get("not_available") or {}
    failed = [e for e in runs if e["state"] == "failed"]
    for t, why in na.items():
        L.append(f"- **{t}: {why}.** No result is shown for it.")
    for e in failed:
        L.append(f"- **{e['name']} failed:** {e.get('message', '')}")
    for e in runs:
        if e["state"] not in ("complete", "failed", "not available"):
            L.append(f"- {e['name']}: {e['state']} (run the suite again to finish it)")
    L.append("")
    L.append("## Headline: compute multiplier at the baseline's loss")
    L.append("")
    h, rows = _headline(comparison)
    L.append(table(h, rows) if rows else "No technique runs are complete yet.")
    L.append("")
    L.extend(_summary(comparison, extra))
    L.append("")
    L.append(
        "Views: **marginal** = "
        + comparison["views"]["marginal"]
        + "; **total** = "
        + comparison["views"]["total"]
        + "; **amortised** = "
        + comparison["views"]["amortised"]
        + ". "
        + (f"Intervals: {comparison['interval']}." if comparison.get("interval") else "")
    )
    L.append("")
    L.append("## Per scale")
    for s in comparison["scales"]:
        L.append("")
        if not s.get("baseline"):
            L.append(f"### Scale {s['scale']}\n\n{s.get('note', '')}")
            continue
        b = s["baseline"]
        L.append(
            f"### Scale {s['scale']}: baseline {fl(b['params'])} params, {fl(b['train_tokens'])} tokens, "
            f"target {s['target']:.4f} {unit} ({s['target_source']})"
        )
        L.append("")
        L.append(_scale_table(s, unit))
    L.append("")
    L.append("## Loss against compute")
    L.append("")
    L.append(f"![eval loss against cumulative FLOPs]({_rel(figs['curves'], suite_dir)})")
    L.append("")
    L.append(f"![FLOPs to target]({_rel(figs['ftt'], suite_dir)})")
    L.append("")
    L.append("## The ledger by phase")
    L.append("")
    L.append(f"![ledger by phase]({_rel(figs['ledger'], suite_dir)})")
    L.append("")
    L.append(_ledger_table(comparison))
    L.append("")
    L.append("## Scaling fits and the extrapolation")
    L.append("")
    L.append(f"![scaling fits]({_rel(figs['scaling'], suite_dir)})")
    L.append("")
    L.append(
        "L(C) fits over each technique's final (marginal FLOPs, loss) points (90% bootstrap intervals over "
        "scales):"
    )
    L.append("")
    L.append(_fits_table(extra))
    L.append("")
    L.append("Multiplier trend, log M = m0 + m1 log C, per technique and view:")
    L.append("")
    L.append(_trend_table(extra))
    L.append("")
    L.append("## What it would be worth at frontier scale")
    L.append("")
    L.append("The budgets and what each run costs at these settings:")
    L.append("")
    L.append(_run_cost_table(extra))
    L.append("")
    for part in _frontier_tables(extra):
        L.append(part)
        L.append("")
    L.append("## Lifetime: training plus serving")
    L.append("")
    life = comparison.get("lifetime", {})
    L.append(
        f"{life.get('equation', '')}; training FLOPs to the target (equal quality); serving FLOPs per token "
        f"of each trained model from the accounting layer at its context length. Served volumes: "
        f"{life.get('serve_tokens_rule', '')}."
    )
    L.append("")
    if figs.get("lifetime"):
        L.append(f"![lifetime compute]({_rel(figs['lifetime'], suite_dir)})")
        L.append("")
    L.append(_lifetime_table(life))
    L.append("")
    L.append("## Backtest: how far the method was right one step out")
    L.append("")
    bt = extra.get("backtest", {})
    L.append(
        f"{bt.get('method', '')} (held-out scale: {bt.get('held_out_scale')}). " + (bt.get("note", "") or "")
    )
    L.append("")
    if figs.get("backtest"):
        L.append(f"![backtest]({_rel(figs['backtest'], suite_dir)})")
        L.append("")
    L.append(_backtest_table(bt, unit))
    L.append("")
    L.append("## BACKGROUND.md claims against this suite")
    L.append("")
    L.append(
        table(
            ["claim", "what the presets compute / what this suite measured", "verdict"],
            claims(comparison, extra, state, suite_dir),
        )
    )
    L.append("")
    L.append("## Conventions and assumptions")
    L.append("")
    for k, v in (comparison.get("conventions") or {}).items():
        L.append(f"- FLOPs, {k}: {v}")
    L.append(
        f"- Target: {comparison['target_rule']}; FLOPs-to-target interpolated linearly in loss against "
        f"log FLOPs between eval points; 'not reached' means the run never got there (M is then bounded, "
        f"never invented)."
    )
    L.append(
        "- Cached artifacts (a synthetic corpus, teacher logits, curriculum scores) reused from another run are "
        "added to the run that used them, so results do not depend on the cache."
    )
    for a in extra.get("assumptions", []):
        L.append(f"- {a}")
    for n in comparison.get("notes", []):
        L.append(f"- {n}")
    L.append(
        "- Small scale: these models have thousands to millions of parameters; a multiplier measured here "
        "says what happened here. The backtest above is the evidence for carrying it further."
    )
    L.append("")
    L.append("## Runs")
    L.append("")
    rows = []
    sh = state.get("shared")
    if sh:
        rows.append(
            [
                sh.get("name", "shared"),
                "shared teacher",
                sh.get("state", "-"),
                f3(sh.get("seconds")),
                sh.get("dir", ""),
            ]
        )
    for e in runs:
        rows.append(
            [e["name"], e["technique"], e["state"], f3(e.get("seconds")), e.get("message") or e["dir"]]
        )
    L.append(table(["run", "technique", "state", "seconds (training)", "directory / message"], rows))
    L.append("")
    return "\n".join(L)


def _rel(p, base: Path) -> str:
    return str(Path(p).relative_to(base)) if p else ""


def _ledger_table(comparison: dict) -> str:
    rows = []
    for s in comparison["scales"]:
        for t, e in s["techniques"].items():
            ph = e["phases"]
            share = e.get("sunk_shared_by") or 1
            rows.append(
                [s["scale"], t]
                + [
                    fl(ph.get(k)) if ph.get(k) else "-"
                    for k in ("train", "teacher_forward", "generation", "scoring")
                ]
                + [
                    fl(e["flops_marginal"]),
                    fl(e["sunk_flops"]) if e.get("sunk_flops") else "-",
                    fl(e["flops_total"]),
                    f"{fl(e['flops_amortised'])} (/{share})" if e.get("sunk_flops") else "= marginal",
                    fl(ph.get("eval")),
                ]
            )
    return table(
        [
            "scale",
            "technique",
            "train",
            "teacher forward",
            "generation",
            "scoring",
            "marginal",
            "sunk (teacher etc.)",
            "total",
            "amortised",
            "eval (not summed)",
        ],
        rows,
    )


def _trend_table(extra: dict) -> str:
    rows = []
    for e in extra.get("techniques", []):
        for view, v in e["views"].items():
            tr = v.get("trend")
            if not tr:
                rows.append([e["technique"], view, "-", "-", "-", "-", "-", v.get("note", "")])
                continue
            sl = tr.get("slope")
            slope = f"{sl['value']:+.3g} [{sl['lo']:+.3g}, {sl['hi']:+.3g}]" if sl else f"{tr['m1']:+.3g}"
            pval = f"{sl['p_value']:.2g}" if sl else "-"
            const = f"{v['constant']['M']:.3g}x" if v.get("constant") else "-"
            rows.append(
                [
                    e["technique"],
                    view,
                    tr["kind"],
                    slope,
                    pval,
                    str(tr["n_scales"]),
                    const,
                    tr.get("assumption") or v.get("note") or "",
                ]
            )
    return table(
        [
            "technique",
            "view",
            "model",
            "slope m1 = d log M / d log C [90%]",
            "p (slope = 0)",
            "scales",
            "pooled constant M",
            "assumption / note",
        ],
        rows,
    )


# =============================================================================================
# a small Markdown -> HTML converter for exactly what render_markdown writes
# =============================================================================================
CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1180px;margin:24px auto;
padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.2em}h2{font-size:1.3em;margin-top:1.6em;
border-bottom:1px solid #eee}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.84em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr:nth-child(even) td{background:#fafafa}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
code{background:#f2f2f2;padding:0 3px;border-radius:3px}li{margin:.15em 0}
"""


def _inline(text: str) -> str:
    t = html.escape(text, quote=False)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    return t


def markdown_to_html(md: str, base: Path, *, title: str = "efflab report") -> str:
    """HTML with every figure embedded (base64 PNG): the file stands alone."""
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>"
    ]
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in block]
            out.append(
                "<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells[0]) + "</tr></thead>"
                "<tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in cells[2:])
                + "</tbody></table>"
            )
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(lines[i][2:])
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in items) + "</ul>")
            continue
        m = re.match(r"^(#{1,3}) (.*)$", line)
        if m:
            n = len(m.group(1))
            out.append(f"<h{n}>{_inline(m.group(2))}</h{n}>")
        elif m := re.match(r"^!\[([^\]]*)\]\(([^)]+)\)$", line):
            p = base / m.group(2)
            if p.is_file():
                data = base64.b64encode(p.read_bytes()).decode()
                out.append(f"<p><img alt='{html.escape(m.group(1))}' src='data:image/png;base64,{data}'></p>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    out.append("</body></html>")
    return "\n".join(out)
