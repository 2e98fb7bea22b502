"""Krajewski et al. 2024 (arXiv:2402.07871): the fine-grained MoE law's own compute model and optimum.

The MoE law (Eq. 9, constants in Table 1) takes N = total non-embedding parameters (all experts),
D tokens and granularity G at expansion rate E = 64. Its budgets are not 6ND: the paper counts
FLOPs with routing (Eq. 10, Section 6.1)

    F = (12 d_model^2 c_f + d_model E G c_r) D n_blocks,   c_f = 6, c_r = 14 (Appendix E),

with d_model = 64 n_blocks, active non-embedding parameters N_act = 12 d_model^2 n_blocks and
total N = d_model^2 (8E + 4) n_blocks (multiply-add = 2; embeddings and unembedding not counted).
The 12 d^2 c_f D n_blocks term is 6 N_act D, so without routing F reduces to C = 6 N_act D, the
convention of the paper's dense law (Eq. 1, Table 1, N = non-embedding parameters).

`optimal_moe` minimises the MoE law over d_model (continuous) and G (powers of two) at a fixed F,
the paper's Section 6.2 problem; tests/unit/test_laws.py reproduces Table 2 with it.
`moe_multiplier` is the compute multiplier of the compute-optimal MoE over the paper's own
compute-optimal dense law: (dense FLOPs to reach the MoE's loss) / F.
"""

from __future__ import annotations

import math

from scipy import optimize

__all__ = [
    "EXPANSION",
    "C_F",
    "C_R",
    "GRANULARITIES",
    "moe_shape",
    "moe_flops",
    "optimal_moe",
    "optimal_dense",
    "dense_flops_for_loss",
    "moe_multiplier",
]

EXPANSION = 64  # E: the only expansion rate the law was fitted at (Section 5)
C_F = 6.0  # FLOPs per active parameter per token outside routing (Eq. 10, Appendix E)
C_R = 14.0  # FLOPs per routing parameter per token (Eq. 10, Appendix E)
WIDTH_PER_BLOCK = 64.0  # d_model = 64 n_blocks (Section 6.1)
GRANULARITIES = tuple(2**i for i in range(8))  # G = 1 ... 128 searched by optimal_moe


def moe_shape(d_model: float, E: float = EXPANSION) -> dict:
    """n_blocks, active and total non-embedding parameters of the paper's model at width d_model."""
    n = d_model / WIDTH_PER_BLOCK
    return {
        "d_model": d_model,
        "n_blocks": n,
        "active_params": 12.0 * d_model**2 * n,
        "params": d_model**2 * (8.0 * E + 4.0) * n,
    }


def moe_flops(d_model: float, tokens: float, granularity: float, E: float = EXPANSION) -> float:
    """Training FLOPs by Eq. 10 (routing included), multiply-add = 2."""
    n = d_model / WIDTH_PER_BLOCK
    return (12.0 * d_model**2 * C_F + d_model * E * granularity * C_R) * tokens * n


def _moe_at(law, flops: float, G: float) -> dict:
    def loss_at(log_d):
        d = math.exp(log_d)
        D = flops / moe_flops(d, 1.0, G)
        return law.loss(moe_shape(d)["params"], D, granularity=G)

    lo, hi = math.log(8.0), math.log(1e7)
    r = optimize.minimize_scalar(loss_at, bounds=(lo, hi), method="bounded", options={"xatol": 1e-9})
    d = math.exp(float(r.x))
    shape = moe_shape(d)
    D = flops / moe_flops(d, 1.0, G)
    return {
        "flops": float(flops),
        "granularity": G,
        **shape,
        "tokens": D,
        "loss": law.loss(shape["params"], D, granularity=G),
        "tokens_per_active_param": D / shape["active_params"],
        "convention": "Krajewski et al. 2024 Eq. 10: F = (12 d^2 c_f + d E G c_r) D n_blocks, "
        "c_f = 6, c_r = 14 (routing counted; multiply-add = 2)",
    }


def optimal_moe(law, flops: float, granularity: float | None = None) -> dict:
    """Compute-optimal MoE (E = 64) at `flops` FLOPs (Eq. 10) for a given G, or over G in GRANULARITIES.

    Returns flops, granularity, d_model, n_blocks, active_params, params (total, as the law's N),
    tokens, loss (nats/token on the paper's C4 corpus), tokens_per_active_param, convention.
    """
    F = float(flops)
    if not (math.isfinite(F) and F > 0):
        raise ValueError(f"flops must be a positive number, got {flops!r}")
    if granularity is not None:
        return _moe_at(law, F, float(granularity))
    return min((_moe_at(law, F, float(G)) for G in GRANULARITIES), key=lambda o: o["loss"])


def _dense(law) -> dict:
    return law.constants["dense"]


def optimal_dense(law, flops: float) -> dict:
    """Compute-optimal point of the paper's dense law (Eq. 1, Table 1) at C = 6ND, closed form."""
    c = _dense(law)
    s = c["alpha"] + c["beta"]
    G = (c["alpha"] * c["a"] / (c["beta"] * c["b"])) ** (1.0 / s)
    N = G * (float(flops) / 6.0) ** (c["beta"] / s)
    D = float(flops) / 6.0 / N
    return {"flops": float(flops), "params": N, "tokens": D, "loss": law.loss(N, D)}


def dense_flops_for_loss(law, loss: float) -> float | None:
    """FLOPs (6ND) the compute-optimal dense law needs to reach `loss`; None at or below its floor c."""
    if loss <= _dense(law)["c"]:
        return None

    def gap(logc):
        return optimal_dense(law, math.exp(logc))["loss"] - loss

    lo, hi = math.log(1e6), math.log(1e60)
    if gap(hi) > 0:
        return None
    if gap(lo) < 0:
        return 1e6
    return math.exp(optimize.brentq(gap, lo, hi, xtol=1e-12, rtol=1e-12))


def moe_multiplier(law, flops: float, granularity: float | None = None) -> dict:
    """M of the compute-optimal MoE at `flops` over the same paper's compute-optimal dense law.

    M = (6ND FLOPs the dense law needs to reach the MoE's loss) / flops, where the MoE's budget is
    counted by Eq. 10 (routing included) and the dense one as 6ND: both the paper's conventions.
    """
    moe = optimal_moe(law, flops, granularity)
    need = dense_flops_for_loss(law, moe["loss"])
    return {"moe": moe, "dense_flops": need, "multiplier": None if need is None else need / float(flops)}
