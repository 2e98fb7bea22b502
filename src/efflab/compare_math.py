"""Comparison math on loss curves: FLOPs-to-target, loss at a budget, compute multipliers.

Pure numpy functions (docs/conventions.md section 4). A curve is a pair of arrays over one run's eval points:
cumulative training FLOPs (increasing, > 0) and eval loss (nats/token, or bits per byte: the
functions only need "lower is better"). Interpolation is linear in loss against log(FLOPs),
because loss curves are close to straight over short stretches of log compute (Kaplan et al.
2020, arXiv:2001.08361), while linear-in-FLOPs interpolation would bias every crossing late.

The compute multiplier M = FLOPs_baseline(target) / FLOPs_technique(target): M = 2 means the
technique reaches the baseline's loss with half the compute. saving = 1 - 1/M. M < 1 is a loss
(the technique needs more compute) and its saving is negative; nothing here clips either.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "flops_to_target",
    "loss_at_flops",
    "multiplier",
    "saving",
    "multiplier_interval",
]


def _curve(flops, losses) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve; keep the points before the first non-finite loss (a diverged run)."""
    f = np.asarray(flops, dtype=float).ravel()
    y = np.asarray(losses, dtype=float).ravel()
    if f.shape != y.shape:
        raise ValueError(f"flops and losses differ in length ({f.size} vs {y.size})")
    if f.size and (not np.all(np.isfinite(f)) or np.any(f <= 0)):
        raise ValueError("flops must be finite and > 0 (cumulative training FLOPs)")
    if f.size > 1 and np.any(np.diff(f) <= 0):
        raise ValueError("flops must be strictly increasing along the curve")
    bad = ~np.isfinite(y)
    if bad.any():  # a NaN/inf eval means the run diverged there: nothing after it counts
        cut = int(np.argmax(bad))
        f, y = f[:cut], y[:cut]
    return f, y


def flops_to_target(flops, losses, target: float) -> float | None:
    """First cumulative FLOPs at which the eval loss reaches `target` (loss <= target).

    flops: cumulative training FLOPs at each eval point, strictly increasing.
    losses: eval loss at those points (nats/token or bits/byte; same unit as `target`).
    Returns FLOPs, linearly interpolated in log(FLOPs) between the two eval points that bracket
    the first crossing. If the first eval point is already at or below the target, that point's
    FLOPs are returned (the crossing happened earlier, unobserved: an upper bound on the true
    value). Returns None when the curve never reaches the target: callers report "not reached"
    and never invent a value. Evals after the first non-finite loss are ignored (divergence).
    """
    f, y = _curve(flops, losses)
    if not math.isfinite(target):
        raise ValueError(f"target must be a finite loss, got {target!r}")
    hit = np.nonzero(y <= target)[0]
    if hit.size == 0:
        return None
    i = int(hit[0])
    if i == 0:
        return float(f[0])
    # y[i-1] > target >= y[i]: fraction of the way from point i-1 to point i, in log FLOPs
    t = (y[i - 1] - target) / (y[i - 1] - y[i])
    logf = math.log(f[i - 1]) + t * (math.log(f[i]) - math.log(f[i - 1]))
    return float(math.exp(logf))


def loss_at_flops(flops, losses, budget: float) -> float | None:
    """Eval loss at `budget` cumulative FLOPs, interpolated linearly in log(FLOPs).

    Returns None when the budget lies outside the evaluated range [flops[0], flops[-1]]
    (no extrapolation) or the curve is empty.
    """
    f, y = _curve(flops, losses)
    if f.size == 0 or not (budget > 0) or budget < f[0] or budget > f[-1]:
        return None
    return float(np.interp(math.log(budget), np.log(f), y))


def multiplier(
    flops_baseline_to_target: float | None, flops_technique_to_target: float | None
) -> float | None:
    """Compute multiplier M = baseline FLOPs-to-target / technique FLOPs-to-target.

    M > 1: the technique reaches the target with less compute; M < 1: it needs more (a loss,
    reported as one, never clipped). Returns None when either run never reached the target.
    """
    if flops_baseline_to_target is None or flops_technique_to_target is None:
        return None
    b, t = float(flops_baseline_to_target), float(flops_technique_to_target)
    if not (b > 0 and t > 0 and math.isfinite(b) and math.isfinite(t)):
        raise ValueError(f"FLOPs-to-target must be finite and > 0, got {b!r} and {t!r}")
    return b / t


def saving(m: float | None) -> float | None:
    """Fraction of baseline compute saved at equal loss: 1 - 1/M (negative when M < 1)."""
    if m is None:
        return None
    return 1.0 - 1.0 / float(m)


def _geomean(v: np.ndarray, axis=-1) -> np.ndarray:
    return np.exp(np.mean(np.log(v), axis=axis))


def multiplier_interval(
    base_values,
    tech_values,
    level: float = 0.9,
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
) -> tuple[float, float | None, float | None]:
    """M with a bootstrap interval over seeds: (M, lo, hi).

    base_values, tech_values: FLOPs-to-target of each seed of the baseline and of the technique
    (all finite and > 0; drop runs that never reached the target before calling, and say so).
    M is the ratio of geometric means (the multiplier is a ratio, so seeds average in log space).
    The interval resamples the seeds of each arm with replacement, independently, and takes the
    (1-level)/2 and (1+level)/2 percentiles of the resampled ratio (90%: 5th-95th). With one
    seed in each arm there is no spread to resample: (M, None, None).
    """
    b = np.asarray(base_values, dtype=float).ravel()
    t = np.asarray(tech_values, dtype=float).ravel()
    if b.size == 0 or t.size == 0:
        raise ValueError("multiplier_interval needs at least one value per arm")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(t)) and np.all(b > 0) and np.all(t > 0)):
        raise ValueError("FLOPs-to-target values must be finite and > 0")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = float(_geomean(b) / _geomean(t))
    if b.size == 1 and t.size == 1:
        return m, None, None
    rng = np.random.default_rng(seed)
    bb = b[rng.integers(0, b.size, size=(n_bootstrap, b.size))]
    tt = t[rng.integers(0, t.size, size=(n_bootstrap, t.size))]
    ratios = _geomean(bb) / _geomean(tt)
    lo, hi = np.percentile(ratios, [50 * (1 - level), 50 * (1 + level)])
    return m, float(lo), float(hi)
