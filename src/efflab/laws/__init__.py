"""Published scaling laws as data (`published`) and the compute arithmetic on them (`frontier`).

`efflab laws list | eval | optimal` is the command line; `efflab extrapolate` anchors a suite's
measured multipliers on these laws.
"""

from efflab.laws.frontier import (
    SCENARIOS,
    baseline_loss,
    compute_for_loss,
    gamma,
    local_slope,
    multiplier_at,
    optimal,
    scenario_multipliers,
    size_multiplier,
)
from efflab.laws.published import HOFFMANN_TEX, LAWS, Law, get_law, law_names

__all__ = [
    "HOFFMANN_TEX",
    "LAWS",
    "Law",
    "SCENARIOS",
    "baseline_loss",
    "compute_for_loss",
    "gamma",
    "get_law",
    "law_names",
    "local_slope",
    "multiplier_at",
    "optimal",
    "scenario_multipliers",
    "size_multiplier",
]
