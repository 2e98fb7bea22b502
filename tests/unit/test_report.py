"""report.py: report.md and a self-contained report.html with PNG figures, written from compare /
extrapolate output; every number in the tables is the one compare computed."""

import re

import pytest
from test_compare import make_run, power_curve  # same directory: run directories written by hand

from efflab import compare as C
from efflab import report as R


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """A three-scale suite directory: baseline, distill (with a shared teacher) and curriculum."""
    root = tmp_path_factory.mktemp("suite")
    runs, entries = [], []
    for i, budget in enumerate([1e12, 4e12, 1.6e13]):
        s = f"s{i + 1}"
        for tech, shift, sunk in (("baseline", 1.0, 0.0), ("distill", 0.6, 2e13), ("curriculum", 0.8, 0.0)):
            name = f"{s}-{tech}-s0"
            runs.append(make_run(root / "runs", name, tech, power_curve(budget, shift=shift), sunk=sunk))
            entries.append(
                {
                    "name": name,
                    "scale": s,
                    "technique": tech,
                    "seed": 0,
                    "dir": f"runs/{name}",
                    "state": "complete",
                    "seconds": 12.5,
                }
            )
    entries.append(
        {
            "name": "s1-moe-s0",
            "scale": "s1",
            "technique": "moe",
            "seed": 0,
            "dir": "runs/s1-moe-s0",
            "state": "not available",
            "seconds": None,
            "message": "not available: the moe recipe <b>is missing</b>",
        }
    )
    state = {
        "name": "unit",
        "runs": entries,
        "not_available": {"moe": "not available: the moe recipe <b>is missing</b>"},
        "shared": None,
    }
    comp = C.compare_runs(C.load_runs(runs, with_serving=False))
    comp["lifetime"] = C.lifetime(comp)
    extra = C.extrapolate(comp, n_bootstrap=40)
    paths = R.write_report(root, comp, extra, state)
    return root, comp, extra, paths


def test_writes_markdown_html_and_png_figures(suite):
    root, comp, extra, paths = suite
    md = paths["md"].read_text()
    figs = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(figs) >= 5
    for f in figs:
        data = (root / f).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    html = paths["html"].read_text()
    assert html.count("src='data:image/png;base64,") == len(figs)  # every figure embedded
    assert not re.search(r"src=['\"](?!data:)", html)  # nothing loaded from outside the file
    for section in (
        "Headline",
        "Per scale",
        "ledger by phase",
        "Scaling fits",
        "frontier scale",
        "Lifetime",
        "Backtest",
        "BACKGROUND.md claims",
        "Conventions and assumptions",
    ):
        assert section in md, section


def test_tables_carry_the_numbers_compare_computed(suite):
    _, comp, extra, paths = suite
    md = paths["md"].read_text()
    seen = 0
    for sc in comp["scales"]:
        for tech in ("distill", "curriculum"):
            for view in ("marginal", "total", "amortised"):
                v = sc["techniques"][tech]["views"][view]
                if tech == "curriculum" and view != "marginal":
                    continue
                assert C.multiplier_text(v) in md
                seen += 1
    assert seen == 12
    # distillation's total view (the teacher's 2e13 FLOPs charged) is a loss at every scale, and says so
    assert all(sc["techniques"]["distill"]["views"]["total"]["M"] < 1 for sc in comp["scales"])
    row = next(r for r in extra["techniques"] if r["technique"] == "curriculum")["views"]["marginal"][
        "frontier"
    ][0]
    assert R.usd(row["saved"]["value"]["cost_usd"]) in md


def test_not_available_and_claims_are_stated(suite):
    _, comp, extra, paths = suite
    md = paths["md"].read_text()
    assert "**moe: not available: the moe recipe <b>is missing</b>.**" in md
    html = paths["html"].read_text()
    assert "&lt;b&gt;is missing&lt;/b&gt;" in html and "<b>is missing</b>" not in html  # user text is escaped
    claims = {
        row[0]: row
        for row in R.claims(comp, extra, {"not_available": {"moe": "not available: x"}}, paths["md"].parent)
    }
    gpt3 = next(v for k, v in claims.items() if k.startswith("GPT-3"))
    assert "3.14e+23" in gpt3[1] and gpt3[2] == "consistent"
    moe = next(v for k, v in claims.items() if k.startswith("Mixture"))
    assert moe[2] == "not tested here" and "not available: x" in moe[1]
    cur = next(v for k, v in claims.items() if k.startswith("Curriculum"))
    m = comp["scales"][-1]["techniques"]["curriculum"]["views"]["marginal"]
    assert C.multiplier_text(m) in cur[1] and cur[2] in ("consistent", "a saving, outside 20-30%")
    for _, _, verdict in claims.values():
        assert verdict.split(" (")[0] in (
            "consistent",
            "differs",
            "not tested here",
            "not reproduced at this scale",
            "a saving, outside 20-30%",
            "presets imply lower MFU than the claim",
            "consistent (presets); not tested here",
            "inconclusive",
            "not reproduced at this scale (costs compute)",
        )


def test_markdown_to_html_tables_lists_and_escaping(tmp_path):
    md = "# T <x>\n\n| a | b |\n|---|---|\n| 1 | `c` |\n\n- **bold** & more\n\ntext"
    html = R.markdown_to_html(md, tmp_path)
    assert "<h1>T &lt;x&gt;</h1>" in html
    assert "<th>a</th><th>b</th>" in html and "<td><code>c</code></td>" in html
    assert "<li><strong>bold</strong> &amp; more</li>" in html and "<p>text</p>" in html
