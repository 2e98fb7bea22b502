"""efflab: measure which efficiency technique saves training compute, and what it is worth at frontier scale."""

from typing import Literal

__version__ = "0.1.0"

# the recipes efflab knows, by name: the one list (free of heavy imports, for the CLI parser and the
# config's `recipe:` key); what each name runs is in efflab.recipes.RECIPE_MODULES
RECIPES = ("baseline", "moe", "distill", "curriculum", "synthetic")
RecipeName = Literal[RECIPES]  # the type of a `recipe:` field (the run config's, a suite arm's)
