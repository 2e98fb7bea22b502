"""Number formatting for the report. A multiplier outside [1e-3, 1e3], or an interval wider than 100x,
is never printed as a result: the cell says what it is instead."""

from __future__ import annotations

import math

COLORS = {
    "baseline": "#333333",
    "moe": "#1f77b4",
    "distill": "#d62728",
    "curriculum": "#2ca02c",
    "seqlen_warmup": "#17becf",
    "synthetic": "#9467bd",
    "random_pacing": "#8c8c8c",
}
VERDICT_COLORS = {"saves": "#2a9d4b", "costs": "#c0392b", "inconclusive": "#7f7f7f"}
PHASE_COLORS = {
    "train": "#4c72b0",
    "teacher_forward": "#dd8452",
    "generation": "#8172b3",
    "scoring": "#55a868",
    "sunk.teacher_pretrain": "#c44e52",
    "sunk.dense_pretrain": "#937860",
}
PRESET_LABELS = {
    "gpt3-175b": "GPT-3 175B",
    "gpt4-estimate": "GPT-4 (est.)",
    "llama-3.1-405b": "Llama-3.1 405B",
    "frontier-2026": "2026 frontier",
    "chinchilla-70b": "Chinchilla 70B",
    "palm-540b": "PaLM 540B",
}
M_RANGE = (1e-3, 1e3)
MAX_RATIO = 100.0
NOT_IDENTIFIABLE = "not identifiable from this data"


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
    if a >= 1e13:
        return f"{sign}${a:.2g}"
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{sign}${a / div:.3g}{suf}"
    return f"{sign}${a:.3g}"


def count(x) -> str:
    """A large count, short: 16.8, 20.0k, 1.34M, 4.2e9."""
    if x is None:
        return "-"
    a = abs(x)
    if a >= 1e9:
        return f"{x:.2g}"
    for div, suf in ((1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def pct(x) -> str:
    return "-" if x is None else f"{100 * x:+.0f}%"


def label(budget: str) -> str:
    return PRESET_LABELS.get(budget, budget)


def m_ok(v) -> bool:
    return v is not None and M_RANGE[0] <= v <= M_RANGE[1]


def _m(v: float) -> str:
    """Two decimals between 0.1 and 10 (1.00x, 0.92x), three significant digits elsewhere."""
    return f"{v:.2f}" if 0.1 <= v < 10 else f"{v:.3g}"


def mx(v) -> str:
    """One multiplier: '1.22x', or what it is when it cannot be a result."""
    if v is None:
        return "-"
    if not m_ok(v):
        return NOT_IDENTIFIABLE
    return f"{_m(v)}x"


def m_interval(d: dict | None) -> str:
    """'1.22x [1.10, 1.35]' for {value, lo, hi}; never a value outside [1e-3, 1e3] or a >100x interval."""
    if not d or d.get("value") is None:
        return "-"
    v, lo, hi = d["value"], d.get("lo"), d.get("hi")
    if not m_ok(v):
        return NOT_IDENTIFIABLE
    if lo is None or hi is None:
        return f"{_m(v)}x (no interval)"
    if lo <= 0 or hi / lo > MAX_RATIO or not (m_ok(lo) and m_ok(hi)):
        return f"{NOT_IDENTIFIABLE} (interval over 100x)"
    return f"{_m(v)}x [{_m(lo)}, {_m(hi)}]"


def m_range(lo, hi) -> str:
    """A band 'a-bx' of two multipliers (scenarios, laws)."""
    if lo is None or hi is None:
        return "-"
    if not (m_ok(lo) and m_ok(hi)):
        return NOT_IDENTIFIABLE
    if hi / lo > MAX_RATIO:
        return f"{NOT_IDENTIFIABLE} (band over 100x)"
    return f"{_m(lo)}x" if _m(lo) == _m(hi) else f"{_m(lo)}-{_m(hi)}x"


def nats(d: dict | None) -> str:
    if not d or d.get("value") is None:
        return "-"
    s = f"{d['value']:+.3f}"
    if d.get("lo") is not None and d.get("hi") is not None:
        s += f" [{d['lo']:+.3f}, {d['hi']:+.3f}]"
    return s


def saving(d: dict) -> str:
    """'saves 18% [9%, 26%]' of compute from M {value, lo, hi} (saving = 1 - 1/M)."""
    v, lo, hi = d["value"], d.get("lo"), d.get("hi")
    s = f"{100 * (1 - 1 / v):.0f}%"
    if lo is not None and hi is not None and lo > 0:
        s += f" [{100 * (1 - 1 / lo):.0f}%, {100 * (1 - 1 / hi):.0f}%]"
    return s


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "/").replace("\n", " ") for c in r) + " |")
    return "\n".join(out)
