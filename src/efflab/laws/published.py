"""Published scaling laws as data: functional form, constants, source, fitted range, what N counts.

Each law is a `Law`: `loss(N, D, **config)` in nats/token on the paper's own corpus and tokenizer
(never on the user's: only ratios of compute taken from a law are portable), and the compute
convention C = 6ND that every paper below uses for its budgets (6 FLOPs per parameter per token,
multiply-add = 2, attention not counted).

Status of each entry (the `status` field):
- "verified": constants transcribed from the paper and a test in tests/unit/test_laws.py reproduces
  a number the paper prints (named in `printed_check`).
- "unverified": constants transcribed without a check; no printed number reproduced yet. The law
  evaluates, but frontier anchoring does not use it.
- "form only": the form and the paper's qualitative result; constants not transcribed (efflab could
  not check them against the paper), so the law does not evaluate.
- "prior": no law exists; the published result is stated as a prior.
- "excluded": not used; `notes` says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from efflab.laws.moe import optimal_moe

__all__ = ["Law", "LAWS", "get_law", "law_names"]


@dataclass(frozen=True)
class Law:
    """One published law. `fitted_range` holds (lo, hi) for "params", "tokens" (and "flops")."""

    name: str
    title: str
    kind: str  # dense | moe | distill | data | curriculum
    status: str  # verified | unverified | form only | prior | excluded
    form: str
    source: str
    n_counts: str
    constants: dict = field(default_factory=dict)
    fitted_range: dict = field(default_factory=dict)
    config_keys: tuple = ()  # extra inputs the loss needs (experts, granularity, unique_tokens)
    printed_check: str = ""
    notes: str = ""
    compute_convention: str = "C = 6ND (6 FLOPs per parameter per token, multiply-add = 2)"
    _loss: Callable | None = field(default=None, repr=False, compare=False)
    # compute-optimal point under the paper's own FLOP count, for laws whose budgets are not 6ND
    _optimal: Callable | None = field(default=None, repr=False, compare=False)

    @property
    def evaluable(self) -> bool:
        return self._loss is not None

    def loss(self, N: float, D: float, **config) -> float:
        """Loss in nats/token (the paper's corpus) for N parameters (as `n_counts`) and D tokens."""
        if self._loss is None:
            raise ValueError(f"law {self.name} has no constants to evaluate ({self.status}): {self.notes}")
        return float(self._loss(float(N), float(D), **config))

    def in_range(self, N: float | None = None, D: float | None = None) -> bool:
        """True when N and D (those given) lie inside the ranges the law was fitted on."""
        for key, v in (("params", N), ("tokens", D)):
            r = self.fitted_range.get(key)
            if v is not None and r is not None and not (r[0] <= v <= r[1]):
                return False
        return True

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "kind": self.kind,
            "status": self.status,
            "evaluable": self.evaluable,
            "form": self.form,
            "constants": dict(self.constants),
            "source": self.source,
            "n_counts": self.n_counts,
            "fitted_range": {k: list(v) for k, v in self.fitted_range.items()},
            "config_keys": list(self.config_keys),
            "printed_check": self.printed_check,
            "notes": self.notes,
            "compute_convention": self.compute_convention,
        }


# ---- forms -------------------------------------------------------------------------------------


def _chinchilla(E, A, B, alpha, beta):
    def loss(N, D):
        return E + A / N**alpha + B / D**beta

    return loss


def _effective(U, repeats, r_star):
    """Muennighoff et al. 2023, Eq. 5: U + U R* (1 - exp(-R/R*)), R = repetitions beyond the first."""
    return U + U * r_star * (1.0 - math.exp(-repeats / r_star))


def _muennighoff(E, A, B, alpha, beta, R_D, R_N):
    def loss(N, D, unique_tokens=None):
        # D' (Eq. 5): D tokens drawn from U unique ones are U_D (1 + R_D* (1 - e^(-R_D/R_D*))) with
        # R_D = D/U - 1 repetitions. Parameters are taken as unique (N' = N, i.e. R_N = 0): efflab's
        # use is a repeated corpus, not excess parameters.
        U = D if unique_tokens is None else min(float(unique_tokens), D)
        d_eff = _effective(U, D / U - 1.0, R_D)
        return E + A / N**alpha + B / d_eff**beta

    return loss


def _krajewski(moe: dict, dense: dict):
    def loss(N, D, granularity=None):
        if granularity is None:  # the dense law of the same paper
            return dense["c"] + dense["a"] / N ** dense["alpha"] + dense["b"] / D ** dense["beta"]
        G = float(granularity)
        a = moe["g"] / G ** moe["gamma"] + moe["a"]
        return moe["c"] + a / N ** moe["alpha"] + moe["b"] / D ** moe["beta"]

    return loss


def _krajewski_optimal(law, flops, granularity=None):
    """Compute-optimal MoE under the paper's Eq. 10 FLOPs (efflab.laws.moe.optimal_moe)."""

    o = optimal_moe(law, flops, granularity)
    o["tokens_per_param"] = o["tokens"] / o["params"]  # per total parameter, as the law's N counts
    return o


def _busbridge(sup: dict, dist: dict):
    """Busbridge et al. 2025: supervised Eq. 1 (no teacher) or the distillation law Eq. 8."""

    def supervised(N, D):
        return sup["E"] + (sup["A"] / N ** sup["alpha"] + sup["B"] / D ** sup["beta"]) ** sup["gamma"]

    def loss(N, D, teacher_loss=None):
        if teacher_loss is None:
            return supervised(N, D)
        LT = float(teacher_loss)
        ratio = LT / (supervised(N, D) * dist["d1"])  # L_T / (L~_S d_1): the capacity-gap transition
        gap = (1.0 + ratio ** (1.0 / dist["f1"])) ** (-dist["c1"] * dist["f1"])
        mimic = (dist["A"] / N ** dist["alpha"] + dist["B"] / D ** dist["beta"]) ** dist["gamma"]
        return LT + gap * mimic / LT ** dist["c0"]

    return loss


# ---- the laws ------------------------------------------------------------------------------------

_CHIN_RANGE = {"params": (70e6, 16e9), "tokens": (5e9, 500e9), "flops": (6e18, 3e21)}
_HOFF = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
# the TeX source's unrounded values, as Besiroglu et al. 2024 quote them (their Section 2)
HOFFMANN_TEX = {"E": 1.6934, "A": 406.4, "B": 410.7, "alpha": 0.3392, "beta": 0.2849}
_BES = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
_MUEN = {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.353, "beta": 0.353, "R_D*": 15.387, "R_N*": 5.309}
# Krajewski et al. 2024, Table 1 (MoE at E = 64, and their dense fit)
_KRAJ_MOE = {"a": 18.1, "alpha": 0.115, "b": 30.8, "beta": 0.147, "g": 2.1, "gamma": 0.58, "c": 0.47}
# Busbridge et al. 2025, Table 6 (Appendix F.3): supervised Eq. 1 and distillation Eq. 8 (primed)
_BUSB_SUP = {"E": 1.220, "A": 3355.0, "B": 18186.0, "alpha": 0.408, "beta": 0.431, "gamma": 0.452}
_BUSB_DIST = {
    "A": 2243.0,
    "B": 24181.0,
    "alpha": 0.321,
    "beta": 0.637,
    "gamma": 0.764,
    "c0": 2.549,
    "c1": 522.6,
    "f1": 0.090,
    "d1": 1.315,
}
_KRAJ_DENSE = {"a": 16.3, "alpha": 0.126, "b": 26.7, "beta": 0.127, "c": 0.47}

LAWS: dict[str, Law] = {}


def _add(law: Law) -> None:
    LAWS[law.name] = law


_add(
    Law(
        name="hoffmann2022",
        title="Chinchilla parametric loss, approach 3",
        kind="dense",
        status="verified",
        form="L(N, D) = E + A/N^alpha + B/D^beta",
        constants=dict(_HOFF),
        source="Hoffmann et al. 2022, arXiv:2203.15556, Section 3.3 (Eq. 10, rounded constants)",
        n_counts="all parameters, embeddings included",
        fitted_range=dict(_CHIN_RANGE),
        printed_check="Table 2, approach 3: N_opt ~ C^0.46, D_opt ~ C^0.54 (from the unrounded TeX "
        "constants; the rounded ones give 0.45 / 0.55)",
        notes="The rounded constants put the optimum for 5.76e23 FLOPs at about 32B parameters, not "
        "Chinchilla's 70B: Besiroglu et al. 2024 trace this to the rounding and to an optimiser "
        "stopped before convergence. Prefer besiroglu2024.",
        _loss=_chinchilla(**_HOFF),
    )
)
_add(
    Law(
        name="besiroglu2024",
        title="Chinchilla approach 3, refitted on the reconstructed data",
        kind="dense",
        status="verified",
        form="L(N, D) = E + A/N^alpha + B/D^beta",
        constants=dict(_BES),
        source="Besiroglu et al. 2024, arXiv:2404.10102, Table 1 (Epoch AI replication of Hoffmann et "
        "al. 2022 approach 3; Huber loss, 240 points)",
        n_counts="all parameters, embeddings included (Hoffmann et al.'s convention)",
        fitted_range=dict(_CHIN_RANGE),
        printed_check="compute-optimal allocation at 5.76e23 FLOPs: Chinchilla's 70B parameters on "
        "1.4T tokens (Hoffmann et al. 2022, Table 3), about 20 tokens per parameter",
        _loss=_chinchilla(**_BES),
    )
)
_add(
    Law(
        name="muennighoff2023",
        title="Data-constrained scaling: repeated tokens are worth less",
        kind="data",
        status="verified",
        form="L = E + A/N^alpha + B/D'^beta, D' = U + U R_D* (1 - exp(-R_D/R_D*)), R_D = D/U - 1",
        constants=dict(_MUEN),
        source="Muennighoff et al. 2023, arXiv:2305.16264, Eq. 5 (effective data) and the fitted "
        "constants of Section 5 / Appendix (C4)",
        n_counts="all parameters; U = unique tokens, D = tokens trained on",
        fitted_range={"params": (10e6, 9e9), "tokens": (100e6, 900e9)},
        config_keys=("unique_tokens",),
        printed_check="R_D* = 15.4; up to 4 epochs of repetition cost a negligible amount of loss (abstract)",
        notes="Parameters are treated as unique (R_N = 0). efflab uses D'/D as the effective-data "
        "multiplier of a synthetic corpus trained on for several epochs.",
        _loss=_muennighoff(
            _MUEN["E"], _MUEN["A"], _MUEN["B"], _MUEN["alpha"], _MUEN["beta"], _MUEN["R_D*"], _MUEN["R_N*"]
        ),
    )
)
_add(
    Law(
        name="krajewski2024",
        title="Fine-grained mixture of experts: granularity law",
        kind="moe",
        status="verified",
        form="L(N, D, G) = c + (g/G^gamma + a)/N^alpha + b/D^beta (Eq. 9, E = 64 experts); dense: c + "
        "a/N^alpha + b/D^beta (Eq. 1)",
        constants={"moe": dict(_KRAJ_MOE), "dense": dict(_KRAJ_DENSE)},
        source="Krajewski et al. 2024, arXiv:2402.07871, Eq. 9 and Table 1 (constants), Eq. 10 and "
        "Appendix E (FLOPs: c_f = 6, c_r = 14, d_model = 64 n_blocks), Table 2 (compute-optimal "
        "configurations)",
        n_counts="MoE: N = total non-embedding parameters, every expert's included (Section 5), "
        "N = d_model^2 (8E + 4) n_blocks, about 43x the active N_act = 12 d_model^2 n_blocks at E = 64 "
        "(Section 6.1; Table 2 writes a model as E x N_act); dense: non-embedding parameters",
        fitted_range={"params": (129e6, 3.7e9), "tokens": (16e9, 130e9)},
        config_keys=("granularity",),
        printed_check="Table 2: minimising the law under Eq. 10 FLOPs at each printed budget (2.95e18 "
        "to 4.97e25) gives the printed G exactly (8, 16, 16, 32, 32, 64, 64), N_act and D within 3%, "
        "the loss within 0.025 nats, and the FLOPs of each printed (N_act, D, G) within 0.5%",
        notes="Fitted at expansion rate E = 64 only (64 x 3M to 64 x 85M active, G 1-16, 16B-130B "
        "tokens, C4, GPT-2 tokenizer, expert-choice routing); the dense law on 3M-85M parameters. N is "
        "total parameters, so at equal N and D the MoE law is worse than the dense one (the paper: "
        "dense models scale better with total parameters); at equal FLOPs, counting only active "
        "parameters (Eq. 10), the compute-optimal MoE beats the dense law at every budget (Section "
        "6.3). The printed losses sit 0.011-0.024 nats above the ones the rounded Table 1 constants "
        "give. Against the dense law (efflab.laws.moe.moe_multiplier) the rounded constants give 21x "
        "at 1e20 FLOPs (the paper, Section 1: 20x) but 32x at 1e25 (the paper: over 40x past 1e25): "
        "at large budgets M is sensitive to the third decimal of the exponents. Without "
        "--granularity, eval and optimal give the paper's dense law.",
        compute_convention="MoE: Eq. 10, F = (12 d^2 c_f + d E G c_r) D n_blocks, c_f = 6, c_r = 14 "
        "(routing counted, embeddings not; multiply-add = 2), i.e. 6 N_act D plus routing; dense: C = 6ND",
        _loss=_krajewski(_KRAJ_MOE, _KRAJ_DENSE),
        _optimal=_krajewski_optimal,
    )
)
_add(
    Law(
        name="clark2022",
        title="Unified scaling laws for routed language models (expert count)",
        kind="moe",
        status="form only",
        form="log L(N, E) = a log N + b log E^ + c log N log E^ + d, with 1/E^ = 1/(E - 1 + (1/E_start - "
        "1/E_max)^-1) + 1/E_max (saturating expert count); without the saturation, L = (10^(d/a)/N)^a "
        "(1/E)^(b + c log N) (as Krajewski et al. 2024, Eq. 2, restate it)",
        source="Clark et al. 2022, arXiv:2202.01169 (law and per-routing-method fits: S-BASE, RL-R, Hash)",
        n_counts="dense-equivalent parameters N of the base model (15M-1.3B); E = experts; fixed 130B "
        "training tokens",
        fitted_range={"params": (15e6, 1.3e9)},
        printed_check="none: constants not transcribed",
        notes="Not evaluated: the fitted a, b, c, d, E_start, E_max per routing method could not be "
        "read from the paper or a faithful transcription of it in the sources efflab searched (the "
        "form above is as Krajewski et al. 2024 Eq. 2 and later papers quote it, not checked against "
        "Clark et al.'s own equation numbers). Fitted at a fixed 130B tokens, so it says nothing about "
        "compute-optimal training; Krajewski et al. 2024 (Section 6.3) trace its predicted loss of "
        "the MoE advantage with size to that fixed D. Qualitative result: gains from more experts "
        "shrink as the base model grows.",
    )
)
_add(
    Law(
        name="busbridge2025",
        title="Distillation scaling law",
        kind="distill",
        status="verified",
        form="L_S = L_T + L_T^-c0 (1 + (L_T/(L~_S d1))^(1/f1))^(-c1 f1) (A'/N_S^alpha' + B'/D_S^beta')^gamma' "
        "(Eq. 8), L~_S = L(N_S, D_S) = E + (A/N^alpha + B/D^beta)^gamma (Eq. 1, supervised)",
        constants={"supervised": dict(_BUSB_SUP), "distillation": dict(_BUSB_DIST)},
        source="Busbridge et al. 2025, arXiv:2502.08606, Eq. 1 and Eq. 8 (forms), Appendix F.3 Table 6 "
        "(constants, 73 supervised and 697 distillation runs)",
        n_counts="non-embedding parameters (normalisation gains included, Table 1 and Appendix H.2): "
        "student N_S distilled on D_S tokens from a teacher of cross-entropy L_T (nats, C4); without "
        "a teacher loss, the supervised law in N and D",
        fitted_range={"params": (143e6, 12.6e9), "tokens": (4e9, 512e9)},
        config_keys=("teacher_loss",),
        printed_check="Table 6: the compute-optimal exponents a = 0.513, b = 0.486 (supervised) and "
        "a' = 0.664, b' = 0.335 (distillation) from the transcribed alpha, beta; Appendix E.6 (Eqs. "
        "35-37, Figure 40): with the optimal teacher, infinite-data students match the supervised "
        "bound E + (A N^-alpha)^gamma for N in 100M-100B (to 0.8% with the rounded constants)",
        notes="Pure distillation (lambda = 1, temperature 1), C4 English, sequence length 4096, muP; "
        "teacher loss L_T on the same corpus (a teacher's loss on another corpus does not transfer). "
        "The paper's budgets (Eq. 9) count 3 F(N) D with F(N) = 2N(1 + c1 N^-1/3 + c2 N^-2/3) "
        "(attention included, Appendix H.1); efflab uses C = 6ND for the student (the large-N limit) "
        "and leaves teacher pretraining and logits out (the paper's 'best case', teacher already "
        "exists). The paper's result (abstract): with an existing teacher, or many students, "
        "distillation beats supervised training up to a compute level that grows with student size; "
        "with one student and a teacher to train, supervised training is generally better. Without "
        "--teacher-loss, eval and optimal give the paper's supervised law.",
        compute_convention="C = 6 N_S D_S for the student (the paper's Eq. 9 with F(N) = 2N, "
        "teacher costs excluded); multiply-add = 2",
        _loss=_busbridge(_BUSB_SUP, _BUSB_DIST),
    )
)
_add(
    Law(
        name="ludziejewski2025",
        title="Joint MoE scaling law (small expert counts)",
        kind="moe",
        status="excluded",
        form="L(N_act, D, E^) (joint dense/MoE law)",
        source="Ludziejewski et al. 2025, arXiv:2502.05172",
        n_counts="active parameters",
        printed_check="none",
        notes="Excluded: the transcription in circulation has a positive exponent on N_act (loss that "
        "grows with model size); its signs and constants could not be checked against the paper.",
    )
)
_add(
    Law(
        name="fedus2021",
        title="Switch Transformer speed-up (prior)",
        kind="moe",
        status="prior",
        form="none",
        source="Fedus et al. 2021, arXiv:2101.03961 (abstract)",
        n_counts="-",
        notes="Up to 7x faster pre-training than T5-Base at equal FLOPs per token, with 128 experts; "
        "not a law for other expert counts, so not evaluated for this configuration.",
    )
)
_add(
    Law(
        name="wu2021",
        title="Curriculum ordering: no law (prior)",
        kind="curriculum",
        status="prior",
        form="none",
        source="Wu et al. 2021, arXiv:2012.03107",
        n_counts="-",
        notes="Random ordering does as well as a curriculum except under a short budget or noisy data: "
        "prior M = 1 at compute-optimal training.",
    )
)
_add(
    Law(
        name="li2022",
        title="Sequence-length warmup: stability, not a law (prior)",
        kind="curriculum",
        status="prior",
        form="none",
        source="Li et al. 2022, arXiv:2108.06084",
        n_counts="-",
        notes="Sequence-length warmup keeps training stable at 4x the learning rate and 8x the batch; "
        "any compute saving comes from that larger learning rate / batch, not from a law.",
    )
)


def law_names() -> list[str]:
    return list(LAWS)


def get_law(name: str) -> Law:
    """The law called `name` (case-insensitive); KeyError naming the known laws otherwise."""
    key = str(name).lower()
    if key not in LAWS:
        raise KeyError(f"unknown law {name!r}; laws: {', '.join(LAWS)}")
    return LAWS[key]
