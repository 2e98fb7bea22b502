"""compare_math against hand computations (docs/conventions.md section 4)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from efflab.compare_math import flops_to_target, loss_at_flops, multiplier, multiplier_interval, saving

FLOPS = [1e9, 1e10, 1e11]
LOSS = [5.0, 4.0, 3.0]


def test_flops_to_target_interpolates_in_log_flops():
    # 3.5 is halfway from 4 to 3, so halfway from 1e10 to 1e11 in log10: 10^10.5
    assert flops_to_target(FLOPS, LOSS, 3.5) == pytest.approx(10**10.5, rel=1e-12)
    # a quarter of the way from 5 to 4: 10^9.25 (linear-in-FLOPs would give 3.25e9)
    assert flops_to_target(FLOPS, LOSS, 4.75) == pytest.approx(10**9.25, rel=1e-12)


def test_flops_to_target_exact_hit_and_first_crossing():
    assert flops_to_target(FLOPS, LOSS, 4.0) == pytest.approx(1e10)
    # the curve dips below 4.5 at 1e10, rises, and dips again: the first crossing counts
    assert flops_to_target([1e9, 1e10, 1e11, 1e12], [5.0, 4.0, 4.8, 3.0], 4.5) == pytest.approx(10**9.5)


def test_flops_to_target_first_point_already_below():
    assert flops_to_target(FLOPS, LOSS, 6.0) == 1e9


def test_flops_to_target_never_reached_is_none():
    assert flops_to_target(FLOPS, LOSS, 2.9) is None
    assert flops_to_target([], [], 3.0) is None


def test_flops_to_target_ignores_evals_after_divergence():
    # nan at 1e10: the run diverged there, so the later 3.0 does not count
    assert flops_to_target(FLOPS, [5.0, float("nan"), 3.0], 3.5) is None
    assert flops_to_target(FLOPS, [5.0, 4.0, float("inf")], 4.5) == pytest.approx(10**9.5)


def test_flops_to_target_rejects_bad_curves():
    with pytest.raises(ValueError, match="length"):
        flops_to_target([1e9, 1e10], [5.0], 4.0)
    with pytest.raises(ValueError, match="increasing"):
        flops_to_target([1e10, 1e9], [5.0, 4.0], 4.5)
    with pytest.raises(ValueError, match="> 0"):
        flops_to_target([0.0, 1e9], [5.0, 4.0], 4.5)


def test_loss_at_flops():
    assert loss_at_flops(FLOPS, LOSS, 10**9.5) == pytest.approx(4.5)
    assert loss_at_flops(FLOPS, LOSS, 1e11) == pytest.approx(3.0)
    assert loss_at_flops(FLOPS, LOSS, 1e8) is None  # before the first eval
    assert loss_at_flops(FLOPS, LOSS, 2e11) is None  # beyond the last eval: no extrapolation


def test_multiplier_and_saving_including_a_loss():
    m = multiplier(4e10, 1e10)
    assert m == pytest.approx(4.0)
    assert saving(m) == pytest.approx(0.75)
    # the technique needs twice the compute: M = 0.5, saving -100%, never clipped to 0
    m = multiplier(2e10, 4e10)
    assert m == pytest.approx(0.5)
    assert saving(m) == pytest.approx(-1.0)
    assert multiplier(None, 1e10) is None and multiplier(1e10, None) is None
    assert saving(None) is None


def test_multiplier_interval_one_seed_each_has_no_interval():
    assert multiplier_interval([3e10], [1e10]) == (pytest.approx(3.0), None, None)


def test_multiplier_interval_uses_geometric_means():
    # geometric mean of 1e10 and 4e10 is 2e10
    m, lo, hi = multiplier_interval([1e10, 4e10], [1e10])
    assert m == pytest.approx(2.0)
    # resamples of the two baseline seeds give ratios 1, 2 or 4
    assert 1.0 - 1e-12 <= lo <= m <= hi <= 4.0 + 1e-12
    # identical seeds: no spread, interval collapses on M
    m, lo, hi = multiplier_interval([2e10, 2e10, 2e10], [4e10, 4e10])
    assert (m, lo, hi) == (pytest.approx(0.5), pytest.approx(0.5), pytest.approx(0.5))


def test_multiplier_interval_covers_a_known_ratio():
    rng = np.random.default_rng(3)
    base = 2e10 * np.exp(rng.normal(0, 0.05, 5))
    tech = 1e10 * np.exp(rng.normal(0, 0.05, 5))
    m, lo, hi = multiplier_interval(base, tech, level=0.9, seed=1)
    assert lo < 2.0 < hi
    assert lo < m < hi
    assert math.isclose(m, np.exp(np.log(base).mean() - np.log(tech).mean()))


def test_multiplier_interval_rejects_bad_values():
    with pytest.raises(ValueError):
        multiplier_interval([1e10, -1.0], [1e10])
    with pytest.raises(ValueError):
        multiplier_interval([], [1e10])
