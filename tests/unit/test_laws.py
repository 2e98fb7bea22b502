"""Published laws (efflab.laws): each evaluable law reproduces a number its paper prints."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from efflab.laws import (
    HOFFMANN_TEX,
    LAWS,
    SCENARIOS,
    compute_for_loss,
    gamma,
    get_law,
    local_slope,
    multiplier_at,
    optimal,
    scenario_multipliers,
    size_multiplier,
)
from efflab.laws.moe import (
    dense_flops_for_loss,
    moe_flops,
    moe_multiplier,
    moe_shape,
    optimal_dense,
    optimal_moe,
)
from efflab.laws.published import Law, _chinchilla

CHINCHILLA_BUDGET = 5.76e23  # Hoffmann et al. 2022, Table 3: Chinchilla and Gopher's budget
DATA = Path(__file__).resolve().parents[1] / "data" / "epoch_chinchilla_points.csv"


def test_besiroglu_refit_allocates_chinchilla_at_its_budget():
    # Hoffmann et al. 2022 trained Chinchilla, 70B parameters on 1.4T tokens, as compute-optimal for
    # 5.76e23 FLOPs (Table 3); Besiroglu et al. 2024's refit is consistent with that.
    o = optimal(get_law("besiroglu2024"), CHINCHILLA_BUDGET)
    assert o["params"] == pytest.approx(70e9, rel=0.10)
    assert o["tokens"] == pytest.approx(1.4e12, rel=0.10)
    assert 6 * o["params"] * o["tokens"] == pytest.approx(CHINCHILLA_BUDGET, rel=1e-9)
    assert o["tokens_per_param"] == pytest.approx(20, rel=0.10)  # "about 20 tokens per parameter"
    assert o["params"] == pytest.approx(72.2e9, rel=0.01)  # and 1.33T tokens, to the rounding shown
    assert o["tokens"] == pytest.approx(1.33e12, rel=0.01)


def _allocation_exponents(c: dict) -> tuple[float, float]:
    s = c["alpha"] + c["beta"]
    return c["beta"] / s, c["alpha"] / s


def test_hoffmann_approach3_exponents_match_table2():
    # Hoffmann et al. 2022, Table 2, approach 3: N_opt ~ C^0.46, D_opt ~ C^0.54. The unrounded (TeX)
    # constants give exactly that; the rounded ones printed in the text give 0.45 / 0.55.
    a, b = _allocation_exponents(HOFFMANN_TEX)
    assert round(a, 2) == 0.46 and round(b, 2) == 0.54
    a_r, b_r = _allocation_exponents(get_law("hoffmann2022").constants)
    assert round(a_r, 2) == 0.45 and round(b_r, 2) == 0.55
    # the closed-form optimum moves with exactly that exponent
    law = get_law("hoffmann2022")
    n1, n2 = optimal(law, 1e21)["params"], optimal(law, 1e23)["params"]
    assert math.log(n2 / n1) / math.log(100) == pytest.approx(a_r, rel=1e-9)


def test_hoffmann_rounded_constants_give_a_smaller_model_than_chinchilla():
    # Besiroglu et al. 2024: the rounded constants are biased; at Chinchilla's budget they put the
    # optimum far below 70B (about 32B at ~93 tokens per parameter).
    o = optimal(get_law("hoffmann2022"), CHINCHILLA_BUDGET)
    assert 25e9 < o["params"] < 40e9
    assert o["tokens_per_param"] > 60


def _epoch_points():
    with open(DATA, encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    N = np.array([float(r["Model Size"]) for r in rows])
    C = np.array([float(r["Training FLOP"]) for r in rows])
    L = np.array([float(r["loss"]) for r in rows])
    return N, C / (6 * N), L


def test_besiroglu_fits_the_reconstructed_data_and_hoffmann_does_not():
    # Besiroglu et al. 2024 (abstract): Hoffmann et al.'s estimates "fail at fitting the extracted
    # data"; their refit does. Median absolute log residual on the Epoch points shipped in tests/data.
    N, D, L = _epoch_points()

    def med_resid(law):
        pred = np.array([law.loss(n, d) for n, d in zip(N, D)])
        return float(np.median(np.abs(np.log(L) - np.log(pred))))

    good, bad = med_resid(get_law("besiroglu2024")), med_resid(get_law("hoffmann2022"))
    assert good < 0.02
    assert bad > 2 * good


def test_besiroglu_frontier_slopes_and_the_constant_delta_scenario():
    # The frontier flattens: -dL/dlnC about 0.30 nats at 1e18 FLOPs and 0.015 at 2.1e25 (GPT-4 est.),
    # so a constant 0.02-nat gain is worth M = 1.07 at 1e18 and about 4.7 at 2.1e25.
    law = get_law("besiroglu2024")
    assert local_slope(law, 1e18) == pytest.approx(0.30, abs=0.01)
    assert local_slope(law, 2.1e25) == pytest.approx(0.015, abs=0.001)
    s18 = scenario_multipliers(law, 1e18, M=None, delta_loss=-0.02)
    s25 = scenario_multipliers(law, 2.1e25, M=None, delta_loss=-0.02)
    assert s18["constant_delta_L"] == pytest.approx(1.07, abs=0.01)
    assert s25["constant_delta_L"] == pytest.approx(4.7, abs=0.1)


def test_scenarios_at_compute_optimal_allocation():
    # Removing a fraction f of the reducible loss is M = (1 - f)^(-1/gamma) at every budget; an
    # effective-parameter or -data multiplier k is M = k there (to the closed form's accuracy).
    law = get_law("besiroglu2024")
    f = 0.01
    M = (1 - f) ** (-1 / gamma(law))
    assert M == pytest.approx(1.058, abs=0.001)
    for C in (1e18, 1e21, 2.1e25):
        s = scenario_multipliers(law, C, M=M, delta_loss=None)
        assert set(s) == set(SCENARIOS)
        assert s["constant_M"] == M
        assert s["constant_fraction"] == pytest.approx(M, rel=1e-6)
        assert s["effective_params"] == pytest.approx(M, rel=2e-3)
        assert s["effective_data"] == pytest.approx(M, rel=2e-3)
        assert s["constant_delta_L"] is None


def test_scenarios_at_an_overtrained_allocation_differ_from_constant_m():
    # Llama-3.1 405B trained 38.5 tokens per parameter: an effective-parameter gain is worth more
    # than k there (the model is the scarce input), an effective-data gain less.
    law = get_law("besiroglu2024")
    s = scenario_multipliers(law, 3.8e25, M=1.5, delta_loss=None, ratio=15.6e12 / 405e9)
    assert s["effective_params"] > 1.5 > s["effective_data"] > 1


def test_compute_for_loss_inverts_the_frontier_and_refuses_below_the_floor():
    law = get_law("besiroglu2024")
    for C in (1e19, 1e23, 1e26):
        L = optimal(law, C)["loss"]
        assert compute_for_loss(law, L) == pytest.approx(C, rel=1e-6)
        assert multiplier_at(law, C, L) == pytest.approx(1.0, rel=1e-6)
    assert compute_for_loss(law, law.constants["E"] - 0.01) is None


def test_muennighoff_repetition_is_nearly_free_up_to_four_epochs():
    # Muennighoff et al. 2023: R_D* = 15.4 (Section 5), and "training with up to 4 epochs of repeated
    # data yields negligible changes to loss compared to having unique data" (abstract).
    law = get_law("muennighoff2023")
    assert round(law.constants["R_D*"], 1) == 15.4
    assert round(law.constants["R_N*"], 1) == 5.3
    N, U = 1e9, 100e9
    four = law.loss(N, 4 * U, unique_tokens=U)
    fresh = law.loss(N, 4 * U)
    assert 0 < four - fresh < 0.005 * fresh  # under 0.5% of the loss
    forty = law.loss(N, 40 * U, unique_tokens=U)
    assert forty - law.loss(N, 40 * U) > 5 * (four - fresh)  # far past the knee, repeats are worth little
    # D' saturates at U (1 + R_D*): more epochs of the same text cannot exceed 16.4 U of fresh data
    many = law.loss(N, 1e6 * U, unique_tokens=U)
    assert many == pytest.approx(law.loss(N, U * (1 + law.constants["R_D*"])), rel=1e-6)


def test_every_law_states_source_range_status_and_what_n_counts():
    assert len(LAWS) >= 8
    seen_eval = 0
    for law in LAWS.values():
        d = law.to_dict()
        assert d["source"] and "arXiv:" in d["source"], law.name
        assert d["status"] in ("verified", "unverified", "form only", "prior", "excluded")
        assert d["n_counts"]
        if law.status == "verified":
            assert law.evaluable and law.printed_check and law.fitted_range
            seen_eval += 1
        if law.status in ("form only", "prior", "excluded"):
            assert not law.evaluable
            with pytest.raises(ValueError):
                law.loss(1e9, 1e10)
    assert seen_eval >= 3


def test_in_range_flags():
    law = get_law("besiroglu2024")
    assert law.in_range(1e9, 20e9)
    assert not law.in_range(70e9, 1.4e12)
    assert not law.in_range(1.4e5, 2.8e6)


def test_generic_optimum_agrees_with_the_closed_form():
    law = get_law("besiroglu2024")
    generic = Law(
        "g",
        "g",
        "data",
        "verified",
        "f",
        "s arXiv:0",
        "n",
        constants=law.constants,
        _loss=_chinchilla(**law.constants),
    )
    a, b = optimal(law, 1e22), optimal(generic, 1e22)
    assert b["params"] == pytest.approx(a["params"], rel=1e-3)
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-9)


@pytest.mark.parametrize("k,lo,hi", [(4, 0.505, 0.575), (0.25, 0.515, 0.555), (2, 0.835, 0.865)])
def test_oversized_model_costs_what_the_chinchilla_form_predicts(k, lo, hi):
    # A model k times the optimal size at fixed compute: (L - E)/(L* - E) = (beta k^-alpha + alpha k^beta)
    # / (alpha + beta), M = ratio^(-1/gamma), the same at every budget (the suite's positive control).
    for name in ("hoffmann2022", "besiroglu2024"):
        law = get_law(name)
        c = law.constants
        a, b = c["alpha"], c["beta"]
        ratio = (b * k**-a + a * k**b) / (a + b)
        expected = ratio ** (-1 / gamma(law))
        for C in (1e18, 1e24):
            M = size_multiplier(law, k, C)
            assert M == pytest.approx(expected, rel=1e-4)
            assert lo <= M <= hi, (name, k, M)


# Krajewski et al. 2024, Table 2: (N_act, D, G, FLOPs, loss) of the compute-optimal MoE at E = 64
KRAJEWSKI_TABLE2 = [
    (100e6, 4.37e9, 8, 2.95e18, 3.133),
    (1e9, 28.94e9, 16, 1.93e20, 2.491),
    (3e9, 72.90e9, 16, 1.41e21, 2.245),
    (7e9, 137.60e9, 32, 6.46e21, 2.076),
    (70e9, 941.07e9, 32, 4.16e23, 1.694),
    (300e9, 2.96e12, 64, 5.69e24, 1.503),
    (1e12, 7.94e12, 64, 4.97e25, 1.367),
]


def test_krajewski_constants_are_table1_and_n_counts_all_experts():
    law = get_law("krajewski2024")
    assert law.status == "verified"
    assert law.constants["moe"] == {
        "a": 18.1, "alpha": 0.115, "b": 30.8, "beta": 0.147, "g": 2.1, "gamma": 0.58, "c": 0.47
    }  # fmt: skip
    assert law.constants["dense"] == {"a": 16.3, "alpha": 0.126, "b": 26.7, "beta": 0.127, "c": 0.47}
    # Appendix A, Table 3: 64 x 25M is d_model 512, 8 blocks; the fitted 129M-3.7B are total parameters
    s = moe_shape(512)
    assert s["n_blocks"] == 8 and s["active_params"] == pytest.approx(25e6, rel=0.01)
    # Section 5: "models with sizes ranging from 129M to 3.7B parameters" = 64 x 3M ... 64 x 85M
    assert moe_shape(256)["params"] == pytest.approx(129e6, rel=0.05)
    assert moe_shape(768)["params"] == pytest.approx(3.7e9, rel=0.02)


@pytest.mark.parametrize("n_act,D,G,F,L", KRAJEWSKI_TABLE2)
def test_krajewski_reproduces_table2_compute_optimal_configurations(n_act, D, G, F, L):
    law = get_law("krajewski2024")
    # Eq. 10 FLOPs of the printed configuration (d_model = 64 n_blocks, N_act = 12 d^2 n_blocks)
    d = (n_act / 12 * 64) ** (1 / 3)
    assert moe_flops(d, D, G) == pytest.approx(F, rel=0.005)
    # the law minimised at the printed budget (Section 6.2): G exact, N_act and D to 3%
    o = optimal_moe(law, F)
    assert o["granularity"] == G
    assert o["active_params"] == pytest.approx(n_act, rel=0.03)
    assert o["tokens"] == pytest.approx(D, rel=0.03)
    assert o["flops"] == F and moe_flops(o["d_model"], o["tokens"], G) == pytest.approx(F, rel=1e-9)
    # the printed loss, to the rounding of Table 1's constants (0.011-0.024 nats low)
    assert 0.005 < L - o["loss"] < 0.025
    assert optimal(law, F, granularity=G)["loss"] == pytest.approx(o["loss"], rel=1e-9)


def test_krajewski_moe_beats_the_dense_law_at_equal_flops_not_at_equal_n():
    law = get_law("krajewski2024")
    # at equal total N and D the dense law is lower (it uses all its parameters on every token)
    assert law.loss(1e9, 30e9, granularity=8) > law.loss(1e9, 30e9)
    # at equal FLOPs the compute-optimal MoE wins, more so with budget; Section 1: "a compute-optimal
    # MoE model trained with a budget of 10^20 FLOPs will achieve the same quality as a dense
    # Transformer trained with a 20x greater computing budget" (the rounded constants give 21x)
    ms = [moe_multiplier(law, C)["multiplier"] for C in (1e18, 1e20, 1e22, 1e25)]
    assert ms[1] == pytest.approx(20, rel=0.10)
    assert 1 < ms[0] < ms[1] < ms[2] < ms[3]
    # the multiplier inverts: the dense law at M x C reaches the MoE's loss
    r = moe_multiplier(law, 1e20)
    assert optimal_dense(law, r["dense_flops"])["loss"] == pytest.approx(r["moe"]["loss"], abs=1e-9)
    assert dense_flops_for_loss(law, 0.47) is None  # the floor c


def _busbridge_best_teacher(law, N, D):
    """min over the teacher loss L_T of the student loss (Eq. 8), bounded search."""
    from scipy import optimize

    r = optimize.minimize_scalar(
        lambda lt: law.loss(N, D, teacher_loss=lt),
        bounds=(1.25, 6.0),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(r.fun), float(r.x)


def test_busbridge_constants_reproduce_table6_allocation_exponents():
    # Busbridge et al. 2025, Table 6: a = beta/(alpha+beta) = 0.513, b = 0.486 (supervised);
    # a' = 0.664, b' = 0.335 (distillation), from the transcribed exponents
    law = get_law("busbridge2025")
    assert law.status == "verified"
    sup, dist = law.constants["supervised"], law.constants["distillation"]
    assert sup == {"E": 1.220, "A": 3355.0, "B": 18186.0, "alpha": 0.408, "beta": 0.431, "gamma": 0.452}
    assert (dist["c0"], dist["c1"], dist["f1"], dist["d1"]) == (2.549, 522.6, 0.090, 1.315)
    a, b = _allocation_exponents(sup)
    assert (round(a, 3), round(b, 3)) == (0.514, 0.486)  # printed 0.513 (0.5137 from the rounded alpha, beta)
    assert a == pytest.approx(0.513, abs=0.001)
    a2, b2 = _allocation_exponents(dist)
    assert (round(a2, 3), round(b2, 3)) == (0.665, 0.335)  # printed 0.664 (0.6649)
    assert a2 == pytest.approx(0.664, abs=0.001)
    # without a teacher loss the law is the paper's supervised Eq. 1
    N, D = 1.82e9, 36.4e9
    assert law.loss(N, D) == pytest.approx(1.220 + (3355 / N**0.408 + 18186 / D**0.431) ** 0.452, rel=1e-12)


@pytest.mark.parametrize("N", [1e8, 1e9, 1e10, 1e11])
def test_busbridge_infinite_data_student_matches_the_supervised_bound(N):
    # Appendix E.6 (Eqs. 35-37, Figure 40): with the optimal teacher, a student with unlimited
    # distillation data reaches the supervised lower bound E + (A N^-alpha)^gamma, N in 100M-100B
    law = get_law("busbridge2025")
    sup = law.constants["supervised"]
    bound = sup["E"] + (sup["A"] / N ** sup["alpha"]) ** sup["gamma"]
    best, lt = _busbridge_best_teacher(law, N, 1e30)  # D_S -> infinity: the data term vanishes
    assert best == pytest.approx(bound, rel=0.01)  # within 0.8% with the rounded Table 6 constants
    assert lt < best  # the optimal teacher is better than its student


def test_busbridge_eq8_properties_capacity_gap_and_when_distillation_wins():
    law = get_law("busbridge2025")
    # Section 4.3, properties 1 and 2: an unlimited student reaches its teacher; a random teacher
    # (L_T -> infinity) gives a student at L_T
    assert law.loss(1e15, 1e18, teacher_loss=2.0) == pytest.approx(2.0, abs=0.01)
    assert law.loss(1e9, 20e9, teacher_loss=50.0) == pytest.approx(50.0, rel=1e-3)
    # property 3, the capacity gap: for a fixed student the loss is U-shaped in the teacher's loss
    N, D = 1.82e9, 36.4e9
    best, lt = _busbridge_best_teacher(law, N, D)
    assert law.loss(N, D, teacher_loss=lt - 0.3) > best + 0.01 < law.loss(N, D, teacher_loss=lt + 0.3)
    # Section 5.1: the best-teacher student beats supervised training at a modest token budget,
    # and supervised training wins given enough tokens
    for n in (1e9, 3e9, 1e10):
        assert _busbridge_best_teacher(law, n, 20 * n)[0] < law.loss(n, 20 * n) - 0.01
        assert _busbridge_best_teacher(law, n, 1e14)[0] > law.loss(n, 1e14)
