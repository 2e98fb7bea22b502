"""Each technique recipe reads as a diff of recipes/baseline.py: it keeps
the baseline's sections in the baseline's order, puts what it changes under `# ---- technique: <name>`
banners, and adds at most about 60 lines to it."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[2] / "src" / "efflab" / "recipes"
TECHNIQUES = ("distill", "synthetic", "curriculum", "moe")
MAX_ADDED = 60
BANNER = re.compile(r"^\s*# ---- (?P<name>[a-z]+):")


def _lines(name: str) -> list[str]:
    return (RECIPES / f"{name}.py").read_text(encoding="utf-8").splitlines()


def added_lines(baseline: list[str], recipe: list[str]) -> int:
    """Lines a unified diff (no context) adds to `baseline`: '+' lines, its '+++' header left out."""
    diff = difflib.unified_diff(baseline, recipe, n=0, lineterm="")
    return sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))


def section_banners(lines: list[str]) -> list[str]:
    """The section banners in order (`# ---- setup: ...`), technique banners left out."""
    return [ln.strip() for ln in lines if (m := BANNER.match(ln)) and m["name"] != "technique"]


def test_the_baseline_spells_out_its_sections_and_wiring():
    lines = _lines("baseline")
    names = [BANNER.match(ln)["name"] for ln in section_banners(lines)]
    assert names == ["setup", "data", "model", "wiring", "train", "result"]
    body = "\n".join(lines)
    for wiring in ("sampler = loop.BlockSampler(", "loss_fn = loop.default_loss", "flops_per_token = "):
        assert wiring in body, wiring


def test_the_counter_sees_added_and_changed_lines():
    base = ["a", "b", "c"]
    assert added_lines(base, base) == 0
    assert added_lines(base, ["a", "B", "c", "d"]) == 2  # one changed, one added
    assert added_lines(base, ["a"]) == 0  # removals add nothing


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_a_technique_recipe_is_a_short_diff_of_the_baseline(technique):
    base, recipe = _lines("baseline"), _lines(technique)
    added = added_lines(base, recipe)
    print(f"diff recipes/baseline.py recipes/{technique}.py: {added} added lines")
    assert added <= MAX_ADDED, (
        f"recipes/{technique}.py adds {added} lines to recipes/baseline.py (at most {MAX_ADDED}): move "
        f"bookkeeping into efflab.techniques.{technique} or efflab.loop, keep the method in the recipe"
    )
    banners = [ln.strip() for ln in recipe if ln.strip().startswith(f"# ---- technique: {technique}")]
    assert banners, f"recipes/{technique}.py has no `# ---- technique: {technique}` banner"
    assert section_banners(recipe) == section_banners(base), (
        f"recipes/{technique}.py must keep the baseline's section banners, verbatim and in its order"
    )
