"""efflab: measure which efficiency technique saves training compute, and what it is worth at frontier scale."""

__version__ = "0.1.0"

# the recipes `efflab run` knows (kept here, free of heavy imports, for the CLI parser)
RECIPES = ("baseline", "moe", "distill", "curriculum", "synthetic")
