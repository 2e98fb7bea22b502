"""The suite report: report.md, a self-contained report.html (PNG figures embedded as base64) and
figures/*.png, written from SUITE_DIR/compare.json and SUITE_DIR/extrapolate.json (plus the run
directories suite.json lists, for loss curves and ledgers). Nothing is typed in.

It leads with the verdict: one figure (measured M per technique at C_ref with its interval, the
controls beside, and the scenario band and published laws at frontier budgets) and one sentence per
technique. Then verdicts, reference, ledger, loss curves, laws and scenarios, what-if, backtest,
claims, conventions.

Modules: `fmt` (numbers; no multiplier outside [1e-3, 1e3] or interval wider than 100x printed as a
result), `data` (what is read), `figures`, `tables`, `text` (sentences and the markdown), `html`
(markdown-it-py rendering).
"""

from __future__ import annotations

from pathlib import Path

from efflab.io import atomic_write_text
from efflab.report import figures
from efflab.report.data import load
from efflab.report.fmt import COLORS, PRESET_LABELS, f3, fl, pct, table, usd
from efflab.report.html import markdown_to_html
from efflab.report.text import render_markdown

__all__ = [
    "COLORS",
    "PRESET_LABELS",
    "f3",
    "fl",
    "markdown_to_html",
    "pct",
    "render_markdown",
    "table",
    "usd",
    "write_report",
]


def write_report(
    suite_dir, comparison: dict | None = None, extra: dict | None = None, state: dict | None = None, sc=None
) -> dict:
    """Write report.md, report.html and figures/*.png into `suite_dir`; return their paths.

    comparison / extra / state: the compare.json (efflab.compare/2), extrapolate.json
    (efflab.extrapolate/2) and suite.json dicts when the caller has them; otherwise (or when they are
    not those schemas) they are read from `suite_dir`, and extrapolate.json is computed when missing.
    `sc` is accepted for the suite's older call signature and not used.
    """
    sdir = Path(suite_dir)
    data = load(sdir, comparison, extra, state)
    fdir = sdir / "figures"
    made = {
        "verdict": figures.fig_verdict(data, fdir / "verdict.png"),
        "curves": figures.fig_curves(data, fdir / "curves.png"),
        "ledger": figures.fig_ledger(data, fdir / "ledger.png"),
    }
    rel = {k: p.relative_to(sdir).as_posix() for k, p in made.items() if p is not None}
    md = render_markdown(data, rel)
    atomic_write_text(sdir / "report.md", md)
    atomic_write_text(sdir / "report.html", markdown_to_html(md, sdir, title=f"efflab report: {sdir.name}"))
    return {
        "md": sdir / "report.md",
        "html": sdir / "report.html",
        "figures": [p for p in made.values() if p],
    }
