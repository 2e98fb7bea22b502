"""Recipes: one readable file per technique, each exposing `main(cfg, ...)`; nothing runs at import.

The one recipe registry: `efflab.RECIPES` names them (the config's `recipe:` key and a suite arm's are
typed from it), `RECIPE_MODULES` maps each name to its module here, and `run_recipe` runs one. The CLI
(`efflab run`) and the suite both go through it. A recipe module that fails to import is a bug and
raises: it is never reported as a recipe that is "not available".
"""

from __future__ import annotations

import importlib

from efflab import RECIPES
from efflab.errors import UserError, suggest
from efflab.rundir import guarded

RECIPE_MODULES = {name: f"efflab.recipes.{name}" for name in RECIPES}


def check_recipe(recipe: str) -> None:
    """UserError for a name that is not a recipe (with the closest names)."""
    if recipe not in RECIPE_MODULES:
        raise UserError(f"unknown recipe {recipe!r}{suggest(recipe, RECIPES)}; recipes: {', '.join(RECIPES)}")


def recipe_main(recipe: str):
    """The `main(cfg, ...)` of a recipe by name; UserError for an unknown name (an ImportError of the
    recipe's module, or of anything it imports, propagates)."""
    check_recipe(recipe)
    return importlib.import_module(RECIPE_MODULES[recipe]).main


def run_recipe(recipe: str, cfg, **kw) -> dict:
    """Run a recipe in this process; a failure after its run directory was started marks it `failed`
    with the reason, an interruption leaves it resumable (efflab.runs.guarded)."""
    return guarded(recipe_main(recipe), cfg, **kw)
