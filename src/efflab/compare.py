"""Compare loose finished runs at equal loss (`efflab compare RUN_DIR...`): an exploratory tool.

The main job's verdicts come from `efflab suite` (efflab.compare_suite: a frontier of completed baseline
runs, paired seeds, controls); frontier numbers from `efflab extrapolate` (efflab.extrapolate: published
laws and scenarios). This module answers two questions from run directories alone:

1. `compare_runs`: at each scale, how much compute does each technique need to reach the
   baseline's loss? For every run: the final eval loss, the FLOPs it spent (marginal and total),
   the FLOPs at which its eval loss first reached the target (interpolated in log FLOPs, from
   metrics.jsonl), the compute multiplier M = FLOPs_baseline / FLOPs_technique with a bootstrap
   interval over seeds, and the loss difference at the baseline's budget. Runs that are incomplete,
   or that were evaluated on another held-out set, are refused, by name. The crossing is read
   mid-schedule, so it gives no verdict (see `efflab suite`).
2. `lifetime`: training plus serving S tokens, lifetime(S) = training FLOPs + S x forward FLOPs per
   served token of the trained model (from the accounting layer), and the served-token volume at
   which a technique breaks even against the baseline.

Views of the FLOPs (ledger phases, docs/conventions.md section 3):
- marginal: train + teacher_forward + generation + scoring: "the teacher already exists".
- total: marginal + sunk teacher/generator/reference/dense pretraining, charged in full from step 0:
  "we had to train it too".
- amortised: marginal + the sunk cost divided over the runs of the comparison that share it (runs
  charging the same sunk amount): "the teacher was trained once for all of these runs".
An artifact a run reused from a cache (a synthetic corpus, teacher logits, curriculum scores) was
paid by another run; its ledger shows it without summing it. For comparison every run is charged for
every artifact it consumed, so a result does not depend on what happened to be in the cache: the
reused FLOPs of marginal phases are added to that run's curve, and `reused_flops` says how much.

Curves: the loss is a function of training progress (the FLOPs the training steps have spent), so
FLOPs-to-target is interpolated on that curve and each view adds its constant offset (costs paid
before the first step: generation, scoring, reused artifacts, and in the total / amortised views the
sunk teacher). Every view of one run therefore crosses the target at the same step.

No FLOP is re-derived here: curves come from the ledger rows in metrics.jsonl, serving costs from
`accounting.flops.forward_flops_per_token`, dollars from `accounting.hardware.cost`.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from efflab import compare_math as cm
from efflab.accounting import flops as F
from efflab.accounting.ledger import MARGINAL_PHASES, PHASES, SUNK_PHASES, Ledger
from efflab.errors import Problems, UserError
from efflab.io import read_jsonl
from efflab.rundir import RunDir, check_run

VIEWS = ("marginal", "total", "amortised")
VIEW_HELP = {
    "marginal": "train + teacher forward + generation + scoring (the teacher/generator already exists)",
    "total": "marginal + sunk pretraining of the teacher/generator/reference, charged in full to every run",
    "amortised": "marginal + sunk pretraining divided over the runs of this comparison that share it",
}
TECHNIQUE_ORDER = ("baseline", "moe", "distill", "curriculum", "synthetic")
RUN_NAME = re.compile(
    r"^(?P<scale>.+)-(?P<technique>baseline|moe|distill|curriculum|synthetic)-s(?P<seed>\d+)$"
)


# =============================================================================================
# one run directory
# =============================================================================================
@dataclass
class RunRecord:
    """A finished run, read from its directory. FLOPs are cumulative, multiply-add = 2."""

    path: Path
    name: str
    technique: str  # the recipe
    scale: str
    seed: int
    manifest: dict
    config: dict
    ledger: Ledger
    evals: list[dict]  # metrics.jsonl rows that carry an eval
    reused_flops: float  # marginal-phase FLOPs this run used from a cache paid by another run
    sunk_flops: float  # sunk.teacher_pretrain + sunk.dense_pretrain
    serve_flops_per_token: float | None = None  # forward FLOPs per token of the trained model
    params: int | None = None
    params_active: int | None = None
    share: int = 1  # runs of the comparison sharing this run's sunk cost (amortised view)
    notes: list[str] = field(default_factory=list)

    @property
    def data(self) -> dict:
        return self.manifest.get("data", {})

    @property
    def result(self) -> dict:
        return self.manifest.get("result", {})

    def final(self, metric: str) -> float:
        return float(self.result["final_eval_bpb" if metric == "bpb" else "final_eval_loss"])

    def flops_final(self, view: str) -> float:
        """All FLOPs of the finished run in `view` (reused artifacts included)."""
        m = float(self.ledger.marginal) + self.reused_flops
        return m + self.offset(view) - self.offset("marginal")

    @property
    def upfront(self) -> float:
        """Marginal FLOPs spent before the first step (generation, scoring, a logit cache), plus reuse."""
        row0 = next((r for r in self.evals if r.get("step") == 0), None)
        m0 = float((row0 or {}).get("flops", {}).get("marginal") or 0.0)
        return m0 + self.reused_flops

    def offset(self, view: str) -> float:
        """FLOPs of `view` that do not grow with training steps: up-front costs and the sunk teacher."""
        sunk = {"marginal": 0.0, "total": self.sunk_flops, "amortised": self.sunk_flops / max(self.share, 1)}[
            view
        ]
        return self.upfront + sunk

    def progress(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(FLOPs spent by the training steps so far, eval metric) at every eval after step 0.

        Loss is a function of training progress: FLOPs-to-target is found on this curve, in log
        FLOPs, and each view then adds its constant offset (up-front costs, the sunk teacher), so
        every view of one run crosses the target at the same step.
        """
        key = "eval_bpb" if metric == "bpb" else "eval_loss"
        base = self.upfront - self.reused_flops
        xs, ys = [], []
        for r in self.evals:
            fl = r.get("flops") or {}
            if r.get(key) is None or fl.get("marginal") is None:
                continue
            x = float(fl["marginal"]) - base
            if x <= 0 or (xs and x <= xs[-1]):
                continue  # step 0, or a repeated eval at the same FLOPs
            xs.append(x)
            ys.append(float(r[key]))
        return np.array(xs, dtype=float), np.array(ys, dtype=float)

    def curve(self, view: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
        """(cumulative FLOPs in `view`, eval metric) at every eval point after step 0, for plots."""
        x, y = self.progress(metric)
        return x + self.offset(view), y

    def flops_to_target(self, view: str, metric: str, target: float) -> float | None:
        x, y = self.progress(metric)
        f = cm.flops_to_target(x, y, target) if x.size else None
        return None if f is None else f + self.offset(view)

    def loss_at(self, view: str, metric: str, budget: float) -> float | None:
        """The eval metric when `budget` FLOPs of `view` were spent (None outside the evaluated range;
        a budget up to 2% past the run's end, a fraction of a step, takes its final eval)."""
        x, y = self.progress(metric)
        b = budget - self.offset(view)
        if not x.size or b <= 0:
            return None
        if 0 < b / x[-1] - 1 < 0.02:  # runs end a part of a step apart: their final eval stands for it
            b = float(x[-1])
        return cm.loss_at_flops(x, y, b)

    def phase_flops(self) -> dict[str, float]:
        """FLOPs per ledger phase, with cache reuse added to its phase (eval shown, never summed)."""
        out = {p: self.ledger.flops(p) for p in PHASES if self.ledger.flops(p)}
        for r in self.ledger.reuse:
            if r.get("phase") in MARGINAL_PHASES:
                out[r["phase"]] = out.get(r["phase"], 0.0) + float(r.get("flops", 0.0))
        return out


def run_problems(path: Path) -> list[str]:
    """Why a directory cannot be compared ([] when it can)."""
    p = Path(path)
    if not p.is_dir():
        return [f"{p}: no such run directory"]
    rd = RunDir(p)
    if not rd.manifest_path.is_file():
        return [f"{p}: not a run directory (no manifest.json)"]
    try:
        man = rd.read_manifest()
    except (OSError, ValueError):
        return [f"{p}: unreadable manifest.json"]
    status = man.get("status")
    if status != "complete":
        hint = " (finish it with --resume)" if status == "running" else ""
        return [f"{p}: incomplete run (status: {status}){hint}; compare uses complete runs only"]
    out = []
    for f in ("ledger.json", "metrics.jsonl", "config.yaml"):
        if not (p / f).is_file():
            out.append(f"{p}: complete but {f} is missing")
    if not man.get("data", {}).get("eval_set_hash"):
        out.append(
            f"{p}: the manifest records no eval-set hash (cannot check it was evaluated on the same text)"
        )
    if "final_eval_loss" not in man.get("result", {}):
        out.append(f"{p}: the manifest has no final eval loss")
    return out or check_run(
        p
    )  # damaged files (efflab.rundir): garbled or duplicate metrics, ledger mismatch, ...


def load_run(path, *, scale: str | None = None, with_serving: bool = True) -> RunRecord:
    """Read one complete run directory. UserError if it is incomplete or lacks a file."""

    p = Path(path)
    probs = run_problems(p)
    if probs:
        raise UserError(probs)
    rd = RunDir(p)
    man, cfg = rd.read_manifest(), rd.read_config()
    name = cfg.get("name") or p.name
    m = RUN_NAME.match(str(name))
    technique = man.get("recipe") or cfg.get("recipe", "baseline")
    if scale is None:
        scale = m.group("scale") if (m and m.group("technique") == technique) else "-"
    led = Ledger.load(p / "ledger.json")
    evals = [r for r in read_jsonl(p / "metrics.jsonl") if r.get("eval_loss") is not None]
    reused = sum(float(r.get("flops", 0.0)) for r in led.reuse if r.get("phase") in MARGINAL_PHASES)
    sunk = sum(led.flops(ph) for ph in SUNK_PHASES)
    rec = RunRecord(
        p,
        str(name),
        technique,
        str(scale),
        int(man.get("seed", cfg.get("train", {}).get("seed", 0))),
        man,
        cfg,
        led,
        evals,
        reused,
        sunk,
    )
    if reused:
        rec.notes.append(
            f"{reused:.4g} FLOPs of cached artifacts paid by another run are added to its marginal FLOPs"
        )
    if with_serving:
        _serving(rec)
    return rec


def _serving(rec: RunRecord) -> None:
    """Forward FLOPs per served token of the trained model at the run's context (accounting layer)."""

    model_dir = rec.path / "model"
    if not (model_dir / "config.json").is_file():
        rec.notes.append("no model/config.json: serving cost unknown")
        return
    T = int(rec.data.get("seq_len") or rec.config.get("data", {}).get("seq_len") or 0) or None
    try:
        fc = F.count_flops(str(model_dir), T)
    except UserError as e:
        rec.notes.append(f"serving cost unknown ({e.message})")
        return
    rec.serve_flops_per_token = float(fc.forward_flops_per_token)
    rec.params, rec.params_active = int(fc.params_total), int(fc.params_active)


def load_runs(paths, *, scales: dict | None = None, with_serving: bool = True) -> list[RunRecord]:
    """Read several run directories; one UserError naming every run that cannot be compared."""
    probs = Problems(header="cannot compare these runs")
    seen, out = set(), []
    for path in paths:
        p = Path(path)
        key = p.resolve()
        if key in seen:
            continue
        seen.add(key)
        bad = run_problems(p)
        if bad:
            probs.extend(bad)
            continue
        scale = (scales or {}).get(str(p)) or (scales or {}).get(str(key))
        out.append(load_run(p, scale=scale, with_serving=with_serving))
    probs.raise_if_any()
    return out


# =============================================================================================
# comparability: one held-out text, and one eval set when the tokenizer is shared
# =============================================================================================
def comparable(runs: list[RunRecord]) -> tuple[str, list[str], list[str]]:
    """(metric, problems, notes): 'loss' when every run shares the tokenizer, else 'bpb'.

    Refused: runs evaluated on different held-out text (eval_text_hash), and runs with the same
    tokenizer but a different eval set (eval_set_hash: other blocks, length or count).
    """
    probs, notes = [], []
    if not runs:
        return "loss", ["no runs to compare"], notes
    ref = runs[0]
    for r in runs[1:]:
        a, b = ref.data, r.data
        if a.get("eval_text_hash") and b.get("eval_text_hash") and a["eval_text_hash"] != b["eval_text_hash"]:
            probs.append(
                f"{r.path}: evaluated on other held-out text than {ref.path} (eval_text_hash "
                f"{b['eval_text_hash'][:12]} vs {a['eval_text_hash'][:12]}: another corpus or split)"
            )
        elif a.get("tokenizer_hash") == b.get("tokenizer_hash") and a.get("eval_set_hash") != b.get(
            "eval_set_hash"
        ):
            probs.append(
                f"{r.path}: evaluated on another eval set than {ref.path} (eval_set_hash "
                f"{str(b.get('eval_set_hash'))[:12]} vs {str(a.get('eval_set_hash'))[:12]}: "
                f"data.seq_len or eval.max_blocks differ)"
            )
    toks = {r.data.get("tokenizer_hash") for r in runs}
    metric = "loss"
    if len(toks) > 1:
        metric = "bpb"
        notes.append(
            f"{len(toks)} tokenizers among these runs: quality is compared in bits per byte of the "
            f"shared held-out text, which does not depend on the tokenizer"
        )
    return metric, probs, notes


# =============================================================================================
# comparison at equal loss
# =============================================================================================
def _geomean(xs) -> float:
    return float(math.exp(np.mean(np.log(np.asarray(xs, dtype=float)))))


def _assign_shares(runs: list[RunRecord]) -> None:
    """Runs charging the same sunk amount share one teacher: amortise it over them."""
    groups: dict[float, list[RunRecord]] = {}
    for r in runs:
        if r.sunk_flops > 0:
            groups.setdefault(float(f"{r.sunk_flops:.9e}"), []).append(r)
    for rs in groups.values():
        for r in rs:
            r.share = len(rs)


def compare_runs(runs: list[RunRecord], *, target: float | None = None, level: float = 0.9) -> dict:
    """The comparison table: per scale and technique, FLOPs-to-target and multipliers in each view.

    target: the quality to reach (nats/token, or bits/byte when tokenizers differ); default per
    scale: the baseline's final loss (the highest over its seeds, so every baseline seed reaches it).
    Returns a JSON-ready dict (see the `efflab compare --json` output).
    """
    metric, probs, notes = comparable(runs)
    if probs:
        raise UserError(probs, header="these runs cannot be compared")
    if not any(r.technique == "baseline" for r in runs):
        raise UserError("compare needs at least one complete baseline run: multipliers are relative to it")
    _assign_shares(runs)
    by_scale: dict[str, list[RunRecord]] = {}
    for r in runs:
        by_scale.setdefault(r.scale, []).append(r)
    bad = Problems(header="cannot tell the baselines apart")
    for scale, rs in by_scale.items():
        shapes = {_shape_key(r) for r in rs if r.technique == "baseline"}
        if len(shapes) > 1:
            bad.add(
                f"scale {scale!r}: {len(shapes)} baselines that differ in more than the seed; name runs "
                f"<scale>-<technique>-s<seed> (as `efflab suite` does) or compare them separately"
            )
    bad.raise_if_any()
    scales = []
    for scale, rs in by_scale.items():
        scales.append(_compare_scale(scale, rs, metric=metric, target=target, level=level))
    arm_of = {str(r.path): label for rs in by_scale.values() for label, arm in _arms(rs) for r in arm}
    scales.sort(key=lambda s: s["baseline"]["flops_marginal"] if s.get("baseline") else float("inf"))
    return {
        "metric": metric,
        "unit": "bits/byte" if metric == "bpb" else "nats/token",
        "level": level,
        "interval": f"bootstrap over seeds, {50 * (1 - level):g}th-{50 * (1 + level):g}th percentile "
        f"(none with one seed per arm)",
        "views": dict(VIEW_HELP),
        "target_rule": "given"
        if target is not None
        else "the baseline's final eval loss at that scale (the highest over its seeds)",
        "conventions": runs[0].ledger.conventions,
        "scales": scales,
        "runs": [{**_run_summary(r, metric), "arm": arm_of.get(str(r.path), r.technique)} for r in runs],
        "notes": notes + sorted({f"{r.name}: {n}" for r in runs for n in r.notes}),
    }


def _shape_key(r: RunRecord) -> str:
    c = copy.deepcopy(r.config)
    for k in ("name", "log"):
        c.pop(k, None)
    if isinstance(c.get("train"), dict):
        c["train"].pop("seed", None)
    return json.dumps(c, sort_keys=True, default=str)


def _run_summary(r: RunRecord, metric: str) -> dict:
    return {
        "name": r.name,
        "path": str(r.path),
        "technique": r.technique,
        "scale": r.scale,
        "seed": r.seed,
        "final": r.final(metric),
        "final_eval_loss": r.result.get("final_eval_loss"),
        "final_eval_bpb": r.result.get("final_eval_bpb"),
        "flops_marginal": r.flops_final("marginal"),
        "flops_total": r.flops_final("total"),
        "flops_amortised": r.flops_final("amortised"),
        "sunk_flops": r.sunk_flops,
        "sunk_shared_by": r.share,
        "reused_flops": r.reused_flops,
        "phases": r.phase_flops(),
        "train_tokens": r.result.get("train_tokens"),
        "steps": r.result.get("steps"),
        "params": r.params,
        "params_active": r.params_active,
        "serve_flops_per_token": r.serve_flops_per_token,
        "seconds": sum(p.seconds for k, p in r.ledger.phases().items()),
        "curve": {v: [list(map(float, a)) for a in r.curve(v, metric)] for v in VIEWS},
        "notes": r.notes,
    }


def _compare_scale(scale: str, rs: list[RunRecord], *, metric: str, target, level: float) -> dict:
    base = [r for r in rs if r.technique == "baseline"]
    out: dict = {"scale": scale, "techniques": {}}
    if not base:
        out["baseline"] = None
        out["note"] = "no baseline run at this scale: nothing to compare against"
        return out
    tgt = float(target) if target is not None else max(r.final(metric) for r in base)
    out["target"] = tgt
    out["target_source"] = "given" if target is not None else "baseline final (highest over seeds)"
    base_ft = {v: [r.flops_to_target(v, metric, tgt) for r in base] for v in VIEWS}
    base_budget = {v: _geomean([r.flops_final(v) for r in base]) for v in VIEWS}
    base_final = float(np.mean([r.final(metric) for r in base]))
    for tech, arm in _arms(rs):
        entry = _arm_summary(arm, metric)
        entry["views"] = {}
        for v in VIEWS:
            entry["views"][v] = _view(arm, v, metric, tgt, base_ft[v], base_budget[v], base_final, level)
        out["techniques"][tech] = entry
    out["baseline"] = out["techniques"]["baseline"]
    return out


def _arms(rs: list[RunRecord]) -> list[tuple[str, list[RunRecord]]]:
    """Runs grouped into arms: one technique, one config up to the seed. A technique run in several
    variants (two curriculum scorers, say) gives one arm per variant, labelled `technique (run name)`,
    so that variants are never pooled as if they were seeds of one arm."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for r in rs:
        key = (r.technique, "" if r.technique == "baseline" else _shape_key(r))
        groups.setdefault(key, []).append(r)
    per_tech: dict[str, int] = {}
    for tech, _ in groups:
        per_tech[tech] = per_tech.get(tech, 0) + 1
    out = []
    for (tech, _), arm in groups.items():
        arm = sorted(arm, key=lambda r: r.seed)
        label = tech
        if per_tech[tech] > 1:
            label = f"{tech} ({re.sub(r'-s[0-9]+$', '', arm[0].name)})"
        out.append((label, arm))
    order = {t: i for i, t in enumerate(TECHNIQUE_ORDER)}
    return sorted(out, key=lambda x: (order.get(x[1][0].technique, 99), x[0]))


def _arm_summary(arm: list[RunRecord], metric: str) -> dict:
    def mean(xs):
        xs = [x for x in xs if x is not None]
        return float(np.mean(xs)) if xs else None

    return {
        "runs": [r.name for r in arm],
        "seeds": [r.seed for r in arm],
        "final": mean([r.final(metric) for r in arm]),
        "final_per_seed": [r.final(metric) for r in arm],
        "final_eval_loss": mean([r.result.get("final_eval_loss") for r in arm]),
        "final_eval_bpb": mean([r.result.get("final_eval_bpb") for r in arm]),
        "flops_marginal": _geomean([r.flops_final("marginal") for r in arm]),
        "flops_total": _geomean([r.flops_final("total") for r in arm]),
        "flops_amortised": _geomean([r.flops_final("amortised") for r in arm]),
        "sunk_flops": mean([r.sunk_flops for r in arm]),
        "sunk_shared_by": arm[0].share,
        "reused_flops": mean([r.reused_flops for r in arm]),
        "train_tokens": mean([r.result.get("train_tokens") for r in arm]),
        "serve_flops_per_token": mean([r.serve_flops_per_token for r in arm]),
        "params": arm[0].params,
        "params_active": arm[0].params_active,
        "phases": {
            k: float(np.mean([r.phase_flops().get(k, 0.0) for r in arm]))
            for k in PHASES
            if any(r.phase_flops().get(k) for r in arm)
        },
    }


def _view(arm, view, metric, tgt, base_ft, base_budget, base_final, level) -> dict:
    """FLOPs-to-target, multiplier and iso-FLOP loss difference of one technique in one view."""
    ft = [r.flops_to_target(view, metric, tgt) for r in arm]
    reached_b = [f for f in base_ft if f is not None]
    d: dict = {"flops_to_target": ft, "reached": sum(f is not None for f in ft), "of": len(ft)}
    if not reached_b:
        d.update(status="baseline did not reach the target", M=None, lo=None, hi=None, saving=None)
    elif all(f is not None for f in ft):
        m, lo, hi = cm.multiplier_interval(reached_b, ft, level)
        d.update(
            status="reached",
            M=m,
            lo=lo,
            hi=hi,
            saving=cm.saving(m),
            saving_lo=cm.saving(lo),
            saving_hi=cm.saving(hi),
        )
    else:
        # never reached within its run: FLOPs-to-target > the run's last FLOPs, so M < that ratio
        last = max(r.flops_final(view) for r in arm)
        d.update(
            status="not reached",
            M=None,
            lo=None,
            hi=None,
            saving=None,
            M_upper_bound=_geomean(reached_b) / last if last > 0 else None,
        )
    losses = [r.loss_at(view, metric, base_budget) for r in arm]
    if all(x is not None for x in losses):
        d["loss_at_baseline_budget"] = float(np.mean(losses))
        d["loss_delta_at_baseline_budget"] = float(np.mean(losses)) - base_final
    else:
        up_front = any(base_budget <= r.offset(view) for r in arm)
        d["loss_at_baseline_budget"] = None
        d["loss_delta_at_baseline_budget"] = None
        d["loss_delta_note"] = (
            "the technique's up-front cost alone exceeds the baseline's budget"
            if up_front
            else "the baseline's budget falls outside the technique's evaluated range"
        )
    d["baseline_budget_flops"] = base_budget
    return d


def multiplier_text(v: dict, digits: int = 3) -> str:
    """'1.23x [1.10, 1.40]', 'not reached (M < 0.8x)', ... for tables."""
    if v.get("M") is not None:
        s = f"{v['M']:.{digits}g}x"
        if v.get("lo") is not None:
            s += f" [{v['lo']:.{digits}g}, {v['hi']:.{digits}g}]"
        return s
    if v.get("status") == "not reached":
        b = v.get("M_upper_bound")
        return "not reached" + (f" (M < {b:.{digits}g}x)" if b else "")
    return v.get("status", "-")


# =============================================================================================
# lifetime: training + serving S tokens
# =============================================================================================
def break_even(train_t: float, serve_t: float, train_b: float, serve_b: float) -> dict:
    """Served tokens S* at which technique and baseline cost the same lifetime FLOPs.

    lifetime(S) = train + S x serve (FLOPs). Returns {"kind": ..., "tokens": S* or None, "text"}:
    'always' (the technique is cheaper at every S >= 0), 'never', 'tie', 'after' (cheaper once S > S*: it
    trains dearer but serves cheaper) or 'until' (cheaper while S < S*: it trains cheaper but serves
    dearer).
    """
    dt, ds = train_t - train_b, serve_t - serve_b  # the technique's extra training and serving cost
    tol = 1e-9 * max(abs(serve_b), 1.0)
    if abs(ds) <= tol and abs(dt) <= 1e-9 * max(abs(train_b), 1.0):
        return {"kind": "tie", "tokens": None, "text": "tie (same training and serving cost)"}
    if abs(ds) <= tol:
        kind = "always" if dt < 0 else "never"
        return {"kind": kind, "tokens": None, "text": f"{kind} (same serving cost; training decides)"}
    s_star = -dt / ds
    if ds < 0:  # serves cheaper
        if s_star <= 0:
            return {"kind": "always", "tokens": None, "text": "always (cheaper to train and to serve)"}
        return {"kind": "after", "tokens": s_star, "text": f"after {s_star:.3g} served tokens"}
    if s_star <= 0:
        return {"kind": "never", "tokens": None, "text": "never (dearer to train and to serve)"}
    return {"kind": "until", "tokens": s_star, "text": f"until {s_star:.3g} served tokens"}


def lifetime(comparison: dict, serve_tokens=None) -> dict:
    """Lifetime FLOPs (training to the target + serving S tokens) per scale and technique.

    Training FLOPs are FLOPs-to-target (equal quality), in the marginal and the total view; serving
    FLOPs per token come from each trained model (accounting's forward FLOPs at the run's context).
    serve_tokens: served-token volumes to tabulate; default 1x, 10x and 100x the baseline's training
    tokens at each scale.
    """
    out = {
        "serve_tokens_rule": "given" if serve_tokens else "1x, 10x and 100x the baseline's training tokens",
        "equation": "lifetime(S) = FLOPs-to-target + S x forward FLOPs per served token",
        "scales": [],
    }
    for sc in comparison["scales"]:
        b = sc.get("baseline")
        if not b:
            continue
        S = (
            [float(s) for s in serve_tokens]
            if serve_tokens
            else [k * float(b["train_tokens"] or 0) for k in (1, 10, 100)]
        )
        rows = []
        for tech, e in sc["techniques"].items():
            row = {"technique": tech, "serve_flops_per_token": e["serve_flops_per_token"], "views": {}}
            for v in ("marginal", "total"):
                if tech == "baseline":  # the reference every break-even is measured against
                    tb = _geomean([x for x in b["views"][v]["flops_to_target"] if x is not None] or [1.0])
                    S_ = S if e["serve_flops_per_token"] is not None else []
                    row["views"][v] = {
                        "train_flops": tb,
                        "lifetime": [tb + s * e["serve_flops_per_token"] for s in S_] or None,
                        "break_even": {"kind": "reference", "tokens": None, "text": "(the reference)"},
                    }
                    continue
                ft, fb = e["views"][v]["flops_to_target"], b["views"][v]["flops_to_target"]
                if (
                    any(x is None for x in ft)
                    or any(x is None for x in fb)
                    or e["serve_flops_per_token"] is None
                ):
                    row["views"][v] = {
                        "train_flops": None,
                        "lifetime": None,
                        "break_even": {
                            "kind": "n/a",
                            "tokens": None,
                            "text": "n/a (does not reach the baseline's loss)",
                        },
                    }
                    continue
                tt, tb = _geomean(ft), _geomean(fb)
                st, sb = e["serve_flops_per_token"], b["serve_flops_per_token"]
                row["views"][v] = {
                    "train_flops": tt,
                    "lifetime": [tt + s * st for s in S],
                    "break_even": break_even(tt, st, tb, sb),
                }
            rows.append(row)
        out["scales"].append({"scale": sc["scale"], "serve_tokens": S, "rows": rows})
    return out


# =============================================================================================
# extrapolation to frontier budgets, and its backtest
# =============================================================================================
