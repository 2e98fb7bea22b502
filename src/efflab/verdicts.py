"""Verdicts of the main job: compute-equivalent gain read off a frontier of completed baseline runs,
with paired seeds, pooled t-intervals, Holm's correction, the design's detectable effect, and controls.

The quantity (Davidson et al. 2023, arXiv:2312.07413; Ho et al. 2024, arXiv:2403.05812; read off a
tradeoff curve of fully trained baselines as in Portes et al. 2022, arXiv:2206.00832):

    M = C_b^-1(L_t) / C_t

C_b^-1 inverts the baseline frontier L_b(C) fitted to completed runs (each with its own warmup and full
cosine decay) at several budgets; L_t is the technique's final eval loss after its own complete
schedule, and C_t what it spent (its ledger, in the view asked for). For seed pair i (the technique and
the baseline trained on the same data order, from the same initialisation where the shapes match):

    ln M_i = [ln C_b^-1(L_t,i) - ln C_b^-1(L_b,i)] + [ln C_b,i - ln C_t,i]

so the frontier's level cancels within a pair and only its local slope matters. A ledger scaled by
1/k on a run identical to its baseline gives M = k exactly; an A/A pair gives M = 1.

Statistics: per arm, the mean of ln M_i with a t-interval whose variance is pooled over every paired
arm (one residual variance, sum(n_j - 1) degrees of freedom); p-values two-sided, Holm-adjusted over
the primary techniques (marginal view); the detectable multiplier is the smallest M > 1 the design
finds with 80% power at the Holm level alpha / m (Bonferroni's first step). Delta-L (technique minus
baseline final loss, nats, at the reference compute) is reported beside M with the same machinery.

Everything here is pure math over plain numbers, except `compare_suite`, which reads run directories.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

LEVEL = 0.90
POWER = 0.80
VERDICTS = ("saves", "costs", "inconclusive")
# phases of the ledger, by how they amortise over K students that share a teacher/generator
PER_RUN = ("train", "teacher_forward")  # every student pays these itself
ONE_OFF = (
    "generation",
    "scoring",
)  # artifacts (a synthetic corpus, difficulty scores) a second student reuses
SUNK = ("sunk.teacher_pretrain", "sunk.dense_pretrain")  # training the teacher / generator / reference
VIEWS = ("marginal", "total_k1", "total_kinf")
VIEW_HELP = {
    "marginal": "the teacher/generator exists; this student pays its own training, teacher forwards, "
    "generation and scoring",
    "total_k1": "marginal + training the teacher/generator/reference, for one student (K = 1)",
    "total_kinf": "teacher/generator training and one-off artifacts (generated corpus, scores) shared "
    "by infinitely many students (K -> infinity): training and teacher forwards only",
}


# =============================================================================================
# the baseline frontier
# =============================================================================================
@dataclass
class Frontier:
    """L(C) = E + A (C / C_ref)^-a fitted to completed baseline runs (least squares in loss), or a
    straight line in ln C when the saturating form does not fit. Invert only inside the budgets."""

    c_ref: float
    budgets: list[float]
    points: list[tuple[float, float]]  # (flops, final loss)
    E: float = 0.0
    A: float = 0.0
    a: float = 0.0
    form: str = "power"
    line: tuple[float, float] | None = None  # (intercept, slope in ln(C / C_ref)) for form == "line"
    residual_sd: float = 0.0

    def loss(self, c) -> np.ndarray:
        x = np.log(np.asarray(c, dtype=float) / self.c_ref)
        if self.form == "line":
            return self.line[0] + self.line[1] * x
        return self.E + self.A * np.exp(-self.a * x)

    def flops_at(self, loss: float) -> float | None:
        """C_b^-1(L): the FLOPs the frontier needs to reach `loss` (None where it never does)."""
        if self.form == "line":
            b0, b1 = self.line
            return float(self.c_ref * math.exp((loss - b0) / b1))
        if loss <= self.E:
            return None
        return float(self.c_ref * ((loss - self.E) / self.A) ** (-1.0 / self.a))

    def slope(self, c: float) -> float:
        """-dL/d ln C at c (nats per e-fold of compute)."""
        if self.form == "line":
            return float(-self.line[1])
        x = math.log(c / self.c_ref)
        return float(self.a * self.A * math.exp(-self.a * x))

    @property
    def loss_range(self) -> tuple[float, float]:
        lo, hi = float(self.loss(max(self.budgets))), float(self.loss(min(self.budgets)))
        return lo, hi

    def inside(self, loss: float) -> bool:
        lo, hi = self.loss_range
        return lo <= loss <= hi

    def to_dict(self) -> dict:
        lo, hi = self.loss_range
        if self.form == "line":
            form = f"L = {self.line[0]:.4f} - {-self.line[1]:.4f} ln(C / C_ref)"
        else:
            form = f"L = {self.E:.4f} + {self.A:.4f} (C / C_ref)^-{self.a:.4f}"
        return {
            "form": form,
            "kind": self.form,
            "params": {"E": self.E, "A": self.A, "a": self.a}
            if self.form == "power"
            else {"intercept": self.line[0], "slope": self.line[1]},
            "slope_at_ref": self.slope(self.c_ref),
            "residual_sd": self.residual_sd,
            "loss_range": [lo, hi],
        }


def fit_frontier(points, c_ref: float) -> Frontier:
    """Fit the frontier to (flops, loss) points of completed baseline runs (at least 3 budgets)."""
    pts = [(float(c), float(loss)) for c, loss in points]
    budgets = sorted({c for c, _ in pts})
    if len(budgets) < 3:
        raise ValueError(
            f"a frontier needs at least 3 budgets of completed baseline runs, got {len(budgets)}"
        )
    c = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    x = np.log(c / c_ref)
    fr = Frontier(c_ref=c_ref, budgets=budgets, points=pts)
    b1, b0 = np.polyfit(x, y, 1)
    line_res = y - (b0 + b1 * x)
    try:
        from scipy.optimize import curve_fit

        def f(xx, E, A, a):
            return E + A * np.exp(-a * xx)

        a0 = max(0.05, min(2.0, -b1 / max(1e-6, y.mean() - y.min() + 0.5)))
        p0 = (max(0.0, y.min() - 0.5), max(1e-3, y.mean() - y.min() + 0.5), a0)
        (E, A, a), _ = curve_fit(
            f, x, y, p0=p0, bounds=([0.0, 1e-9, 1e-4], [np.inf, np.inf, 10.0]), maxfev=20000
        )
        res = y - f(x, E, A, a)
        if np.sum(res**2) <= np.sum(line_res**2) + 1e-15:
            fr.E, fr.A, fr.a = float(E), float(A), float(a)
            fr.residual_sd = float(np.sqrt(np.sum(res**2) / max(1, len(y) - 3)))
            return fr
    except (RuntimeError, ValueError):
        pass
    if b1 >= 0:
        raise ValueError(
            "the baseline frontier does not fall with compute: its runs do not learn with budget"
        )
    fr.form, fr.line = "line", (float(b0), float(b1))
    fr.residual_sd = float(np.sqrt(np.sum(line_res**2) / max(1, len(y) - 2)))
    return fr


# =============================================================================================
# paired statistics
# =============================================================================================
def t_quantile(q: float, df: float) -> float:
    from scipy.stats import t

    return float(t.ppf(q, df))


@dataclass
class Arm:
    """Paired differences of one arm against its baseline seeds (log-ratios, or loss differences)."""

    name: str
    values: list[float]
    primary: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")


def pooled_sd(arms: list[Arm]) -> tuple[float, int]:
    """Pooled within-arm standard deviation and its degrees of freedom (arms with n >= 2)."""
    ss, df = 0.0, 0
    for a in arms:
        if a.n >= 2:
            v = np.asarray(a.values)
            ss += float(np.sum((v - v.mean()) ** 2))
            df += a.n - 1
    return (math.sqrt(ss / df) if df else float("nan")), df


def shared_baseline_df(table: dict[str, dict[int, float]]) -> float | None:
    """Satterthwaite degrees of freedom of the pooled variance when every arm is paired with the same
    baseline seeds: d_as = mu_a + beta_s + e_as, where beta_s (the baseline's own noise at seed s) is
    common to every arm and has only n - 1 degrees of freedom. The pooled variance is
    (MS_seed + (K - 1) MS_res) / K; its effective df lies between n - 1 and K (n - 1).
    `table`: arm -> {seed: d}. Uses the arms and seeds complete in the table; None if too few."""
    arms = [a for a in table.values() if len(a) >= 2]
    if len(arms) < 2:
        return None
    seeds = sorted(set.intersection(*(set(a) for a in arms)))
    K, n = len(arms), len(seeds)
    if n < 2:
        return None
    D = np.array([[a[s] for s in seeds] for a in arms])
    R = D - D.mean(axis=1, keepdims=True)
    beta = R.mean(axis=0)
    eps = R - beta
    ms_seed = K * float(np.sum(beta**2)) / (n - 1)
    ms_res = float(np.sum(eps**2)) / ((K - 1) * (n - 1))
    num = (ms_seed / K + (K - 1) * ms_res / K) ** 2
    den = (ms_seed / K) ** 2 / (n - 1) + ((K - 1) * ms_res / K) ** 2 / ((K - 1) * (n - 1))
    return float(num / den) if den > 0 else float(K * (n - 1))


def t_interval(mean: float, sd: float, n: int, df: float, level: float = LEVEL) -> tuple[float, float]:
    if n < 1 or not df or df <= 0 or not math.isfinite(sd):
        return float("nan"), float("nan")
    h = t_quantile(0.5 + level / 2, df) * sd / math.sqrt(n)
    return mean - h, mean + h


def p_value(mean: float, sd: float, n: int, df: int) -> float:
    from scipy.stats import t

    if n < 1 or not df or df <= 0 or not math.isfinite(sd):
        return float("nan")
    se = sd / math.sqrt(n)
    if se == 0:
        return 0.0 if mean != 0 else 1.0
    return float(2 * t.sf(abs(mean) / se, df))


def holm(pvals: dict[str, float]) -> dict[str, float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    items = sorted(((p, k) for k, p in pvals.items() if math.isfinite(p)), key=lambda t: t[0])
    m, out, run_max = len(items), {}, 0.0
    for i, (p, k) in enumerate(items):
        run_max = max(run_max, min(1.0, (m - i) * p))
        out[k] = run_max
    for k in pvals:
        out.setdefault(k, float("nan"))
    return out


def detectable_effect(sd: float, n: int, df: int, *, alpha: float, power: float = POWER) -> float:
    """Smallest |mean| a two-sided t-test at `alpha` detects with `power` (normal-shift approximation
    on the t scale): (t_{1-alpha/2} + t_{power}) sd / sqrt(n)."""
    if n < 1 or not df or df <= 0 or not math.isfinite(sd):
        return float("nan")
    return (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * sd / math.sqrt(n)


def verdict(p_adj: float, mean: float, *, alpha: float, n: int) -> str:
    if n < 2 or not math.isfinite(p_adj) or p_adj >= alpha:
        return "inconclusive"
    return "saves" if mean > 0 else "costs"


# =============================================================================================
# the Chinchilla-form prediction for the oversized control
# =============================================================================================
# Hoffmann et al. 2022 (approach 3, eq. 10) and the Besiroglu et al. 2024 refit (arXiv:2404.10102, eq. 4)
CHINCHILLA_FORMS = {
    "hoffmann2022": {"alpha": 0.34, "beta": 0.28},
    "besiroglu2024": {"alpha": 0.3478, "beta": 0.3658},
}


def oversized_multiplier(k: float, alpha: float, beta: float, *, frontier: str = "fixed") -> float:
    """M of a model k times the compute-optimal size trained at the same compute, under
    L = E + A/N^alpha + B/D^beta (scale-free: the constants A, B, E cancel).

    frontier='fixed': read off a frontier of the compute-optimal shape trained for several budgets (what
    the suite measures): M = [k^beta + (beta/alpha)(k^-alpha - 1)]^(-1/beta).
    frontier='optimal': read off the compute-optimal envelope: (L - E)/(L* - E) =
    (beta k^-alpha + alpha k^beta)/(alpha + beta), M = that ratio^(-1/gamma), gamma = alpha beta/(alpha + beta).
    """
    if frontier == "fixed":
        return (k**beta + (beta / alpha) * (k**-alpha - 1)) ** (-1.0 / beta)
    gamma = alpha * beta / (alpha + beta)
    return ((beta * k**-alpha + alpha * k**beta) / (alpha + beta)) ** (-1.0 / gamma)


def oversized_prediction(k: float, frontier: str = "fixed") -> dict:
    vals = {name: oversized_multiplier(k, **c, frontier=frontier) for name, c in CHINCHILLA_FORMS.items()}
    return {"lo": min(vals.values()), "hi": max(vals.values()), "by_law": vals, "frontier": frontier}


# =============================================================================================
# spend of a run, by view
# =============================================================================================
def spend(ledger: dict, view: str) -> float:
    """FLOPs a run spent under a view, from its ledger.json dict. Reused artifacts (recorded with their
    original cost, not charged again) count in the views where this student would have had to pay."""
    phases = {k: float(v.get("flops", 0.0)) for k, v in (ledger.get("phases") or {}).items()}
    for r in ledger.get("reuse") or []:
        phases[r["phase"]] = phases.get(r["phase"], 0.0) + float(r.get("flops", 0.0))
    per_run = sum(phases.get(p, 0.0) for p in PER_RUN)
    one_off = sum(phases.get(p, 0.0) for p in ONE_OFF)
    sunk = sum(phases.get(p, 0.0) for p in SUNK)
    if view == "marginal":
        return per_run + one_off
    if view == "total_k1":
        return per_run + one_off + sunk
    if view == "total_kinf":
        return per_run
    raise ValueError(f"unknown view {view!r}; views: {', '.join(VIEWS)}")


def seconds(ledger: dict, view: str = "marginal") -> float:
    """Wall seconds of the phases a view counts (this run's own; reused artifacts took no time here)."""
    ph = ledger.get("phases") or {}
    names = {"marginal": PER_RUN + ONE_OFF, "total_k1": PER_RUN + ONE_OFF, "total_kinf": PER_RUN}[view]
    return float(sum((ph.get(p) or {}).get("seconds", 0.0) for p in names))


# =============================================================================================
# comparing arms against the frontier
# =============================================================================================
@dataclass
class RunResult:
    """What the verdicts need from one complete run."""

    name: str
    seed: int
    loss: float
    ledger: dict
    budget: float | None = None  # planned train-phase FLOPs, for frontier runs

    def spend(self, view: str = "marginal") -> float:
        return spend(self.ledger, view)


def _interval(mean: float, lo: float, hi: float, *, exp: bool) -> dict:
    f = (
        (lambda v: float(math.exp(v)) if math.isfinite(v) else None)
        if exp
        else (lambda v: float(v) if math.isfinite(v) else None)
    )
    return {"value": f(mean), "lo": f(lo), "hi": f(hi)}


def pair(base: dict[int, RunResult], arm: dict[int, RunResult]) -> list[int]:
    return sorted(set(base) & set(arm))


def log_ratios(fr: Frontier, base: dict[int, RunResult], arm: dict[int, RunResult], view: str) -> list[float]:
    out = []
    for s in pair(base, arm):
        b, t = base[s], arm[s]
        ct, cb = fr.flops_at(t.loss), fr.flops_at(b.loss)
        if ct is None or cb is None:  # below the frontier's asymptote: not invertible
            out.append(float("nan"))
            continue
        out.append(math.log(ct) - math.log(cb) + math.log(b.spend("marginal")) - math.log(t.spend(view)))
    return out


def _to_log_m(fr: Frontier, base_loss: float, d: float, log_spend: float) -> float:
    """ln M of a technique whose loss is base_loss + d, at a spend ratio exp(log_spend) = C_b / C_t."""
    ct, cb = fr.flops_at(base_loss + d), fr.flops_at(base_loss)
    if ct is None or cb is None:
        return float("nan")
    return math.log(ct) - math.log(cb) + log_spend


def compare_arms(
    fr: Frontier,
    base: dict[int, RunResult],
    arms: dict[str, dict[int, RunResult]],
    *,
    primary: list[str],
    level: float = LEVEL,
) -> dict:
    """Per arm: multiplier and delta-L with pooled t-intervals, per view; Holm over `primary`.

    The interval is a t-interval on the paired loss differences d_i = L_t,i - L_b,i (variance pooled
    over every arm: run noise is additive in loss, so one variance fits all arms there, whereas in
    log-compute it grows where the frontier flattens), mapped to M through the frontier, a monotone map:
    ln M(d) = ln C_b^-1(Lbar_b + d) - ln C_b^-1(Lbar_b) + mean_i ln(C_b,i / C_t,i). The map preserves
    the interval's coverage; the per-pair log-ratios (`log_ratios`) give the same point estimate to
    first order and are kept in the output for inspection.
    """
    alpha = 1 - level
    m_family = max(1, len(primary))
    dl = {
        name: Arm(name, [runs[s].loss - base[s].loss for s in pair(base, runs)], primary=name in primary)
        for name, runs in arms.items()
    }
    sd, df = pooled_sd(list(dl.values()))
    # every arm is paired with the same baseline runs: the pooled variance has fewer effective df
    eff = shared_baseline_df(
        {name: {s: runs[s].loss - base[s].loss for s in pair(base, runs)} for name, runs in arms.items()}
    )
    if eff is not None:
        df = min(df, eff)
    out: dict[str, dict] = {}
    pv = {}
    for name, a in dl.items():
        seeds = pair(base, arms[name])
        lb = float(np.mean([base[s].loss for s in seeds])) if seeds else float("nan")
        lo, hi = t_interval(a.mean, sd, a.n, df, level)
        row: dict = {"n_pairs": a.n, "views": {}, "delta_loss": _interval(a.mean, lo, hi, exp=False)}
        for view in VIEWS:
            ls = (
                float(
                    np.mean(
                        [
                            math.log(base[s].spend("marginal")) - math.log(arms[name][s].spend(view))
                            for s in seeds
                        ]
                    )
                )
                if seeds
                else float("nan")
            )
            # lower loss -> larger M: the interval's ends swap through the map
            vals = [_to_log_m(fr, lb, x, ls) for x in (a.mean, hi, lo)]
            row["views"][view] = _interval(*vals, exp=True)
        row["multiplier"] = row["views"]["marginal"]
        row["log_ratios"] = [x for x in log_ratios(fr, base, arms[name], "marginal")]
        # H0: M = 1 (marginal), i.e. mean d = d0, the loss change that exactly offsets the spend difference
        ls = (
            float(
                np.mean(
                    [
                        math.log(base[s].spend("marginal")) - math.log(arms[name][s].spend("marginal"))
                        for s in seeds
                    ]
                )
            )
            if seeds
            else float("nan")
        )
        cb = fr.flops_at(lb) if math.isfinite(lb) else None
        d0 = float(fr.loss(cb * math.exp(-ls))) - lb if cb is not None and math.isfinite(ls) else float("nan")
        row["p"] = p_value(a.mean - d0, sd, a.n, df)
        pv[name] = row["p"]
        det = detectable_effect(sd, a.n, df, alpha=alpha / m_family if a.primary else alpha)
        up = _to_log_m(fr, lb, d0 - det, ls) if math.isfinite(det) and math.isfinite(d0) else float("nan")
        row["detectable_multiplier"] = float(math.exp(up)) if math.isfinite(up) else None
        row["detectable_delta_loss"] = det if math.isfinite(det) else None
        row["_mean"] = _to_log_m(fr, lb, a.mean, ls) if a.n else float("nan")
        lo_r, hi_r = fr.loss_range
        losses = [r.loss for r in arms[name].values()]
        row["in_frontier"] = bool(losses) and all(lo_r <= x <= hi_r for x in losses)
        if not row["in_frontier"]:
            row["note"] = (
                f"some final losses lie outside the frontier's range [{lo_r:.4f}, {hi_r:.4f}] nats: M "
                f"there extrapolates the frontier fit beyond its budgets and is not a measurement"
            )
        out[name] = row
    adj = holm({k: v for k, v in pv.items() if k in primary})
    for name, row in out.items():
        p_h = adj.get(name)
        row["p_holm"] = p_h if p_h is not None and math.isfinite(p_h) else None
        p_use = p_h if name in primary else row["p"]
        row["verdict"] = verdict(
            p_use if p_use is not None else float("nan"), row.pop("_mean"), alpha=alpha, n=row["n_pairs"]
        )
    return {"arms": out, "pooled": {"delta_loss": {"sd": sd, "df": df}}}


def wallclock_multiplier(
    fr: Frontier, base: dict[int, RunResult], runs: dict[int, RunResult]
) -> float | None:
    """Seconds the baseline needs to reach the technique's loss (at its own seconds per FLOP) over the
    technique's seconds (marginal phases), geometric mean over pairs."""
    vals = []
    for s in pair(base, runs):
        b, t = base[s], runs[s]
        c = fr.flops_at(t.loss)
        sb, st, cb = seconds(b.ledger), seconds(t.ledger), b.spend("marginal")
        if c is None or sb <= 0 or st <= 0:
            continue
        vals.append(math.log(c * sb / cb) - math.log(st))
    return float(math.exp(np.mean(vals))) if vals else None


def sigma_loss(runs: list[RunResult]) -> float | None:
    """Per-run final-loss standard deviation of the baseline at one budget."""
    if len(runs) < 2:
        return None
    return float(np.std([r.loss for r in runs], ddof=1))
