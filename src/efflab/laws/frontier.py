"""Compute arithmetic on a published law: optimal allocation, compute to reach a loss, scenarios.

All budgets use the laws' own convention C = 6ND (FLOPs, multiply-add = 2). A baseline at budget C
is either compute-optimal (`ratio=None`) or trained at a fixed tokens-per-parameter ratio r
(N = sqrt(C / 6r), D = rN), e.g. a published frontier run's own allocation. A compute multiplier
M at budget C is (compute the same kind of baseline needs to reach the technique's loss) / C: the
compute-equivalent gain (Davidson et al. 2023, arXiv:2312.07413).

Scenarios carry one measured number to other budgets under a stated mechanism (docs/conventions.md
section 5): a constant M; a constant loss difference delta-L (nats); a constant fraction f of the
reducible loss L - E; an effective-parameter multiplier k (N -> kN); an effective-data multiplier
k (D -> kD). At compute-optimal allocation the last three give M = (1 - f)^(-1/gamma) and M = k at
every budget (gamma = alpha beta / (alpha + beta)); a constant delta-L gives an M that grows as the
frontier flattens.
"""

from __future__ import annotations

import math

from scipy import optimize

from efflab.laws.published import Law

__all__ = [
    "optimal",
    "baseline_point",
    "baseline_loss",
    "compute_for_loss",
    "multiplier_at",
    "size_multiplier",
    "local_slope",
    "gamma",
    "scenario_multipliers",
    "SCENARIOS",
]

SCENARIOS = ("constant_M", "constant_delta_L", "constant_fraction", "effective_params", "effective_data")
_C_LO, _C_HI = 1e6, 1e40  # FLOPs bracket for inverting a law


def _dense_constants(law: Law) -> dict:
    c = law.constants
    if not {"E", "A", "B", "alpha", "beta"} <= set(c):
        raise ValueError(f"law {law.name} is not of the form E + A/N^alpha + B/D^beta")
    return c


def gamma(law: Law) -> float:
    """Exponent of the compute-optimal reducible loss, L* - E ~ C^-gamma, gamma = alpha beta/(alpha+beta)."""
    c = _dense_constants(law)
    return c["alpha"] * c["beta"] / (c["alpha"] + c["beta"])


def optimal(law: Law, flops: float, **config) -> dict:
    """Compute-optimal N (params), D (tokens) and loss at `flops` FLOPs (C = 6ND).

    Closed form for E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, Eq. 4): N = G (C/6)^a with
    a = beta/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)). Other evaluable laws: a bounded
    one-dimensional search over log N. A law with its own FLOP count (`Law._optimal`, e.g.
    krajewski2024 with a granularity) uses it instead; its result carries `convention`.
    """
    C = float(flops)
    if not (math.isfinite(C) and C > 0):
        raise ValueError(f"flops must be a positive number, got {flops!r}")
    if law._optimal is not None and config:  # the paper's own FLOP count (krajewski2024: Eq. 10)
        return law._optimal(law, C, **config)
    if law.kind == "dense" and not config:
        c = _dense_constants(law)
        s = c["alpha"] + c["beta"]
        G = (c["alpha"] * c["A"] / (c["beta"] * c["B"])) ** (1.0 / s)
        N = G * (C / 6.0) ** (c["beta"] / s)
    else:
        half = math.log(C / 6.0)

        def f(logn):
            return law.loss(math.exp(logn), C / 6.0 / math.exp(logn), **config)

        r = optimize.minimize_scalar(f, bounds=(0.0, half), method="bounded", options={"xatol": 1e-6})
        N = math.exp(float(r.x))
    D = C / 6.0 / N
    return {"flops": C, "params": N, "tokens": D, "loss": law.loss(N, D, **config), "tokens_per_param": D / N}


def baseline_point(law: Law, flops: float, ratio: float | None = None) -> tuple[float, float]:
    """(N, D) of the baseline at `flops`: compute-optimal, or at `ratio` tokens per parameter."""
    if ratio is None:
        o = optimal(law, flops)
        return o["params"], o["tokens"]
    N = math.sqrt(float(flops) / (6.0 * ratio))
    return N, ratio * N


def baseline_loss(law: Law, flops: float, ratio: float | None = None) -> float:
    N, D = baseline_point(law, flops, ratio)
    return law.loss(N, D)


def compute_for_loss(law: Law, loss: float, ratio: float | None = None) -> float | None:
    """FLOPs the baseline (compute-optimal, or at `ratio`) needs to reach `loss`; None if it cannot
    (the loss is at or below the law's irreducible term, or beyond 1e40 FLOPs)."""

    def gap(logc):
        return baseline_loss(law, math.exp(logc), ratio) - loss

    lo, hi = math.log(_C_LO), math.log(_C_HI)
    if gap(hi) > 0:  # even 1e40 FLOPs does not get there: below the floor
        return None
    if gap(lo) < 0:
        return _C_LO
    return math.exp(optimize.brentq(gap, lo, hi, xtol=1e-10, rtol=1e-12))


def multiplier_at(law: Law, flops: float, technique_loss: float, ratio: float | None = None) -> float | None:
    """Compute multiplier of a technique that reaches `technique_loss` with `flops` FLOPs."""
    c = compute_for_loss(law, technique_loss, ratio)
    return None if c is None else c / float(flops)


def size_multiplier(law: Law, k: float, flops: float = 1e21) -> float:
    """M of a model k times the compute-optimal size trained at the same compute (the positive control).

    Under E + A/N^alpha + B/D^beta this is independent of the budget: (L - E)/(L* - E) =
    (beta k^-alpha + alpha k^beta)/(alpha + beta) and M = that ratio^(-1/gamma).
    """
    o = optimal(law, flops)
    M = multiplier_at(law, flops, law.loss(o["params"] * k, o["tokens"] / k))
    if M is None:
        raise ValueError(f"k = {k}: the baseline cannot reach that loss")
    return M


def local_slope(law: Law, flops: float, ratio: float | None = None) -> float:
    """-dL/d ln C of the baseline at `flops` (nats per e-fold of compute), central difference."""
    h = 1e-3
    return (
        baseline_loss(law, flops * math.exp(-h), ratio) - baseline_loss(law, flops * math.exp(h), ratio)
    ) / (2 * h)


def scenario_multipliers(
    law: Law, flops: float, *, M: float | None, delta_loss: float | None, ratio: float | None = None
) -> dict:
    """M at `flops` FLOPs under each scenario of SCENARIOS, from a measured M and delta-L.

    M: measured multiplier at the reference (> 0); delta_loss: technique minus baseline at equal
    compute, nats (negative = better). f = 1 - M^-gamma (the fraction of reducible loss that is
    worth M at compute-optimal allocation); k = M for the effective-parameter / -data scenarios.
    A scenario that cannot be evaluated (no input, or a loss below the law's floor) is None.
    """
    c = _dense_constants(law)
    N, D = baseline_point(law, flops, ratio)
    L0 = law.loss(N, D)
    out = dict.fromkeys(SCENARIOS)
    if M is not None and M > 0:
        out["constant_M"] = float(M)
        f = 1.0 - M ** (-gamma(law))
        out["constant_fraction"] = multiplier_at(law, flops, c["E"] + (1.0 - f) * (L0 - c["E"]), ratio)
        out["effective_params"] = multiplier_at(law, flops, law.loss(N * M, D), ratio)
        out["effective_data"] = multiplier_at(law, flops, law.loss(N, D * M), ratio)
    if delta_loss is not None:
        out["constant_delta_L"] = multiplier_at(law, flops, L0 + float(delta_loss), ratio)
    return out
