"""The suite: the main job of efflab (`efflab suite configs/suite/quick.yaml`).

One question, answered well: at a stated reference compute C_ref, does technique X reach a given loss
with less compute than a properly trained dense baseline, by how much, and how sure are we?

A suite file (YAML, typed below; unknown keys fail; every problem in one message) names:
- `scales`: the reference scale(s): the dense baseline's shape and C_ref (`budget_flops`, train-phase
  FLOPs). The quick suite has one; the GPU suite a ladder at one tokens-per-parameter ratio.
- `frontier`: baseline budgets as multiples of C_ref, each a complete run (its own warmup and a full
  cosine decay), with `frontier.seeds` seeds each (the baseline at C_ref gets `seeds`, for pairing).
- `seeds`: paired seeds per arm. Seed i of every arm and of the baseline at C_ref share the data
  order (train.seed = i) and, where the shapes match, the initial weights.
- `techniques`: the arms, each a recipe with its config; `primary: false` marks a control (e.g.
  random pacing for curriculum ordering), which is reported but is not in Holm's family.
- `controls`: A/A (the baseline against itself with other initial weights, same data order: its
  interval must cover 1) and `oversized` (a model about 4x the reference trained at C_ref: the
  Chinchilla form predicts M of about 0.53-0.58 for it; the suite must detect it as costing compute).
- `lr_sweep`: the same sweep for every arm (factors of train.lr at a fraction of C_ref, seed 0,
  scored on a validation split carved out of training, never on the eval set); each arm then
  trains at its best factor.
- `shared`: the teacher (distill) and generator (synthetic), trained once per scale at a multiple of
  C_ref; its bill is `sunk.teacher_pretrain` in the total views.
- `workers`: independent runs in parallel processes (one thread each where train.threads = 1).

Layout of a suite directory:
    suite.yaml   suite.json   compare.json   (extrapolate.json, report.md, report.html, figures/)
    shared/<scale>-teacher/          the shared teacher / generator run
    runs/<scale>-<arm>-s<seed>/      one run directory each; sweeps: <scale>-sweep-<arm>-x<factor>
    logs/<run name>.log              each run's own output

Idempotent: a complete run directory is reused, an incomplete one resumes from its last checkpoint,
so an interrupted suite continues where it stopped; a rerun after completion trains nothing.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from efflab import RecipeName, recipes
from efflab.accounting.flops import train_flops_per_token
from efflab.compare_suite import CONTROL_ARMS, compare_suite
from efflab.config import (
    DataConfig,
    EvalConfig,
    LogConfig,
    ModelConfig,
    Section,
    _set_dotted,
    _validation_messages,
    config_from_dict,
    parse_overrides,
    section_problems,
)
from efflab.data import prepare
from efflab.errors import Problems, RunFailed, UserError, parse_count
from efflab.estimate import estimate_run
from efflab.extrapolate import extrapolate_suite
from efflab.io import atomic_write_json, atomic_write_text, read_json, read_yaml_mapping
from efflab.models import build_model_config
from efflab.report import write_report
from efflab.rundir import RunDir

# config keys of the recipes that consume the shared model, filled in by the suite
SHARED_USERS = {"distill": "teacher", "synthetic": "generator"}


def _count(v):
    return parse_count(v) if isinstance(v, str) else v


# =============================================================================================
# the suite file
# =============================================================================================
class SharedSpec(Section):
    """The shared teacher / generator: a baseline run of a larger model, trained once per scale."""

    model: ModelConfig
    budget: float = Field(default=4.0, gt=0, description="train-phase FLOPs as a multiple of C_ref")
    train: dict[str, Any] = Field(default_factory=dict, description="train settings overriding the suite's")
    scale: str | None = Field(
        default=None,
        description="train it once, at this scale's C_ref, and share it "
        "with every scale (default: one per scale, at its own C_ref)",
    )


class ScaleSpec(Section):
    """A reference scale: the dense baseline's shape and C_ref."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.]+$", description="short label, used in run names")
    model: ModelConfig
    budget_flops: float = Field(
        gt=0, description="C_ref: train-phase FLOPs of every arm (docs/conventions.md section 2)"
    )
    shared: SharedSpec | None = Field(default=None, description="this scale's teacher; default the suite's")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="arm name (or 'all') -> config overrides at this scale only"
    )

    _c = field_validator("budget_flops", mode="before")(_count)


class FrontierSpec(Section):
    budgets: list[float] = Field(
        default_factory=lambda: [0.25, 0.5, 1.0, 2.0],
        min_length=3,
        description="baseline budgets as multiples of C_ref (1 must be among them)",
    )
    seeds: int = Field(default=2, ge=1, description="seeds per frontier budget (C_ref itself gets `seeds`)")

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v):
        if any(not (math.isfinite(b) and b > 0) for b in v):
            raise ValueError("budgets must be positive, finite multiples of C_ref")
        if 1.0 not in v:
            raise ValueError("budgets must include 1 (C_ref itself: the paired baseline)")
        if max(v) / min(v) < 8 - 1e-9:
            raise ValueError(f"budgets must span at least 8x around C_ref (they span {max(v) / min(v):.3g}x)")
        if len(set(v)) != len(v):
            raise ValueError("duplicate budgets")
        return sorted(v)


class SweepSpec(Section):
    enabled: bool = True
    factors: list[float] = Field(default_factory=lambda: [0.5, 1.0, 2.0], min_length=1)
    budget: float = Field(default=0.125, gt=0, le=1, description="sweep runs' budget as a fraction of C_ref")


class ArmSpec(Section):
    recipe: RecipeName
    label: str | None = None
    primary: bool = Field(default=True, description="one of the primary endpoints (Holm's family)")
    control_of: str | None = Field(default=None, description="the arm this one controls (report pairing)")
    enabled: bool = True
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="config sections / dotted keys merged into every run of this arm "
        "(e.g. {distill: {alpha: 0.5}, train.lr: 2e-3})",
    )


class OversizedSpec(Section):
    enabled: bool = True
    model: ModelConfig | None = Field(default=None, description="default: the shared teacher's shape")


class AdaptiveSeedsSpec(Section):
    max: int = Field(
        default=0,
        ge=0,
        le=64,
        description="add paired seeds up to this many for primary techniques still inconclusive (0: off)",
    )
    minutes: float = Field(default=20, gt=0, description="only while the suite's wall time stays within this")


class ControlsSpec(Section):
    aa: bool = True
    oversized: OversizedSpec = Field(default_factory=OversizedSpec)


class ExtrapolateSpec(Section):
    to: list[str] = Field(
        default_factory=lambda: ["gpt3-175b", "gpt4-estimate", "llama-3.1-405b", "frontier-2026"]
    )
    gpu: str = "h100"
    mfu: float | None = Field(
        default=None, gt=0, le=1, description="default: accounting.hardware.DEFAULT_MFU"
    )
    price: float | None = Field(
        default=None, ge=0, description="$ per GPU-hour; default: the hardware table's"
    )
    pue: float | None = Field(default=None, ge=1, description="default: accounting.hardware.DEFAULT_PUE")


class SuiteConfig(Section):
    """A suite file. See the module docstring and configs/suite/*.yaml."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    out: str | None = Field(default=None, description="suite directory; default runs/suite-<name>")
    seeds: int = Field(default=3, ge=1, le=64, description="paired seeds per arm (0 .. seeds-1)")
    data: DataConfig = Field(default_factory=DataConfig)
    train: dict[str, Any] = Field(default_factory=dict, description="train settings shared by every run")
    eval: EvalConfig = Field(default_factory=EvalConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    evals_per_run: int = Field(
        default=4, ge=1, description="eval.every is set per run to give about this many"
    )
    checkpoints_per_run: int = Field(default=1, ge=0, description="checkpoints per run (0: at the end only)")
    scales: list[ScaleSpec] = Field(min_length=1)
    reference: str | None = Field(
        default=None, description="the scale compare.json leads with; default the first"
    )
    frontier: FrontierSpec = Field(default_factory=FrontierSpec)
    lr_sweep: SweepSpec = Field(default_factory=SweepSpec)
    shared: SharedSpec | None = None
    techniques: dict[str, ArmSpec] = Field(default_factory=dict)
    controls: ControlsSpec = Field(default_factory=ControlsSpec)
    workers: int = Field(default=2, ge=1, le=256, description="runs trained in parallel processes")
    adaptive_seeds: AdaptiveSeedsSpec = Field(default_factory=AdaptiveSeedsSpec)
    level: float = Field(default=0.9, gt=0, lt=1, description="interval level of every interval")
    extrapolate: ExtrapolateSpec = Field(default_factory=ExtrapolateSpec)

    @model_validator(mode="after")
    def _check(self):
        errs = []
        names = [s.name for s in self.scales]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            errs.append(f"scales: duplicate names {dup}")
        if self.reference is not None and self.reference not in names:
            errs.append(f"reference: {self.reference!r} is not a scale ({', '.join(names)})")
        arms = set(self.techniques) | {"baseline", *CONTROL_ARMS}
        for t, spec in self.techniques.items():
            if t in ("baseline", *CONTROL_ARMS, "sweep", "teacher"):
                errs.append(f"techniques.{t}: reserved name")
            if not all(c.isalnum() or c == "_" for c in t):
                errs.append(f"techniques.{t}: names are letters, digits and _")
            if spec.control_of is not None and spec.control_of not in self.techniques:
                errs.append(f"techniques.{t}.control_of: {spec.control_of!r} is not a technique")
        for s in self.scales:
            sh = self.shared_for(s)
            if sh is not None and sh.scale is not None and sh.scale not in names:
                errs.append(f"shared.scale: {sh.scale!r} is not a scale ({', '.join(names)})")
            wrong = [k for k in s.overrides if k not in arms and k != "all"]
            if wrong:
                errs.append(f"scales.{s.name}.overrides: unknown {wrong}; keys are arm names or 'all'")
        for key in ("budget_flops", "budget_tokens", "steps", "seed", "init_seed"):
            if key in self.train:
                errs.append(f"train.{key}: set by the suite (budgets from the scales, seeds from `seeds`)")
        if self.seeds < 2:
            errs.append("seeds: at least 2 paired seeds (one seed never yields a verdict)")
        if errs:
            raise ValueError("; ".join(errs))
        return self

    def arms(self) -> dict[str, ArmSpec]:
        """Every arm that trains at C_ref besides the baseline: enabled techniques, then the controls."""
        out = {t: s for t, s in self.techniques.items() if s.enabled}
        if self.controls.aa:
            out["aa"] = ArmSpec(
                recipe="baseline", label="A/A (baseline, other initial weights)", primary=False
            )
        if self.controls.oversized.enabled:
            out["oversized"] = ArmSpec(
                recipe="baseline", label="oversized model (positive control)", primary=False
            )
        return out

    def shared_for(self, scale: ScaleSpec) -> SharedSpec | None:
        return scale.shared or self.shared

    def primary_scale(self) -> ScaleSpec:
        return next(s for s in self.scales if s.name == (self.reference or self.scales[0].name))


def load_suite(path, overrides: list[str] | None = None) -> tuple[SuiteConfig, dict]:
    """Read and validate a suite file (yaml.safe_load); dotted overrides apply first. (config, raw dict)."""
    p = Path(path)
    raw = read_yaml_mapping(p, "suite")
    probs = Problems(header=f"invalid suite file {p}")
    pairs, bad = parse_overrides(overrides or [])
    probs.extend(bad)
    for k, v in pairs:
        _set_dotted(raw, k, v, probs)
    probs.raise_if_any()
    return suite_from_dict(raw, source=str(p)), raw


def suite_from_dict(raw: dict, *, source: str = "suite") -> SuiteConfig:
    """Validate a suite mapping, then every run config it implies; one UserError with every problem."""
    probs = Problems(header=f"invalid suite file {source}")
    try:
        sc = SuiteConfig.model_validate(raw)
    except ValidationError as e:
        probs.extend(_validation_messages(e))
        probs.extend(m for m in section_problems(raw) if m not in probs.items)  # every section, one message
        probs.raise_if_any()
    where: dict[str, list[str]] = {}  # one problem shared by many runs is reported once, with their names
    tasks = plan(sc, validate_only=True)
    for t in tasks:
        try:
            config_from_dict(t.raw, recipe=t.recipe, source=t.name)
        except UserError as e:
            for p in e.problems:
                where.setdefault(p, []).append(t.name)
    for p, names in where.items():
        probs.add(
            f"{p} (every run)"
            if len(names) == len(tasks) > 1
            else f"{', '.join(names[:4])}{' ...' if len(names) > 4 else ''}: {p}"
        )
    users = [a for a, s in sc.arms().items() if _uses_shared(s)]
    missing = [s.name for s in sc.scales if sc.shared_for(s) is None]
    if users and missing:
        probs.add(
            f"shared: {', '.join(users)} need(s) a teacher/generator at scale(s) {', '.join(missing)}: add a "
            f"`shared` section (a model and a budget), or give distill.teacher / synthetic.generator"
        )
    probs.raise_if_any()
    return sc


def load_suite_dir(sdir) -> SuiteConfig:
    """The SuiteConfig a suite directory was run with (suite.yaml)."""
    import yaml

    p = Path(sdir) / "suite.yaml"
    if not p.is_file():
        raise UserError(
            f"{sdir}: not a suite directory (no suite.yaml; run `efflab suite FILE --out {sdir}`)"
        )
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    try:
        return SuiteConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(_validation_messages(e), header=f"{p}: invalid") from None


# =============================================================================================
# the plan: which runs, with which configs, after which others
# =============================================================================================
@dataclass
class Task:
    name: str
    kind: Literal["shared", "sweep", "frontier", "arm"]
    scale: str
    arm: str  # 'baseline' for frontier runs, 'teacher' for the shared model
    seed: int
    recipe: str
    raw: dict
    dir: str  # relative to the suite directory
    cost: float  # planned train-phase FLOPs (for the ETA)
    deps: list[str] = field(default_factory=list)
    lr_from: str | None = None  # the arm whose sweep sets this run's learning rate
    factor: float | None = None  # sweep runs: the lr factor
    budget_mult: float | None = None  # frontier runs: budget / C_ref


def _merge(dst: dict, src: dict) -> dict:
    """Merge `src` into `dst`: nested mappings recursively, dotted keys ('train.lr') as paths."""
    for k, v in (src or {}).items():
        if "." in str(k):
            head, rest = str(k).split(".", 1)
            dst.setdefault(head, {})
            if isinstance(dst[head], dict):
                _merge(dst[head], {rest: v})
            else:
                dst[head] = _merge({}, {rest: v})
        elif isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def _uses_shared(arm: ArmSpec) -> bool:
    """Does this arm need the suite's shared model (given no model path of its own)?"""
    key = SHARED_USERS.get(arm.recipe)
    if key is None:
        return False
    sec = arm.config.get(arm.recipe) or {}
    if arm.recipe == "synthetic":
        return sec.get("generator", "train") == "train"
    return not sec.get("teacher") and not sec.get("teacher_train")


def _train_flops_per_token(model: ModelConfig, sc: SuiteConfig) -> float | None:
    try:
        probe = config_from_dict(
            {
                "model": model.model_dump(mode="json", exclude_unset=True),
                "data": sc.data.model_dump(mode="json"),
                "train": {"steps": 1, "batch_size": int(sc.train.get("batch_size", 16))},
            },
            recipe="baseline",
            source="scale",
        )
        return train_flops_per_token(build_model_config(probe, sc.data.vocab_size), sc.data.seq_len)
    except (TypeError, ValueError, UserError):
        return None


def _raw(
    sc: SuiteConfig,
    name: str,
    recipe: str,
    model: ModelConfig,
    budget: float,
    seed: int,
    fpt: float | None,
    *,
    valid: bool = False,
) -> dict:
    train = {**copy.deepcopy(sc.train), "budget_flops": float(budget), "seed": int(seed)}
    ev = sc.eval.model_dump(mode="json")
    if fpt:
        steps = max(1, int(budget // (int(sc.train.get("batch_size", 16)) * sc.data.seq_len * fpt)))
        if "every" not in sc.eval.model_fields_set:
            ev["every"] = max(1, math.ceil(steps / sc.evals_per_run))
        train.setdefault(
            "checkpoint_every", max(1, steps // (sc.checkpoints_per_run + 1)) if sc.checkpoints_per_run else 0
        )
    if valid:
        ev["split"] = "valid"
    return {
        "recipe": recipe,
        "name": name,
        "model": model.model_dump(mode="json", exclude_unset=True),
        "data": sc.data.model_dump(mode="json"),
        "train": train,
        "eval": ev,
        "log": {**sc.log.model_dump(mode="json"), "progress": False},
    }


def _fmt_mult(x: float) -> str:
    return f"{x:g}"


def _plan_scale(
    sc: SuiteConfig,
    scale: ScaleSpec,
    suite_dir,
    validate_only: bool,
    arms: dict[str, ArmSpec],
    n_seeds: dict[str, int],
    n_base: int,
) -> list[Task]:
    """The runs of one reference scale: teacher, sweeps, frontier, paired arms."""
    tasks: list[Task] = []
    c_ref = scale.budget_flops
    fpt = _train_flops_per_token(scale.model, sc)
    shared = sc.shared_for(scale)
    owner = next(
        (s for s in sc.scales if shared is not None and s.name == shared.scale), scale
    )  # shared.scale
    tdir = f"shared/{owner.name}-teacher"
    teacher_name = f"{owner.name}-teacher"
    if shared is not None:
        sh_fpt = _train_flops_per_token(shared.model, sc)
        raw = _raw(sc, teacher_name, "baseline", shared.model, shared.budget * owner.budget_flops, 0, sh_fpt)
        _merge(raw["train"], shared.train)
        tasks.append(
            Task(
                teacher_name,
                "shared",
                owner.name,
                "teacher",
                0,
                "baseline",
                raw,
                tdir,
                shared.budget * owner.budget_flops,
            )
        )

    def arm_raw(arm_name: str, spec: ArmSpec, name: str, budget: float, seed: int, *, valid=False) -> dict:
        model = scale.model
        if arm_name == "oversized":
            model = sc.controls.oversized.model or (shared.model if shared else None)
            if model is None:
                raise UserError("controls.oversized: give controls.oversized.model (no shared model to copy)")
        raw = _raw(sc, name, spec.recipe, model, budget, seed, fpt, valid=valid)
        _merge(raw, spec.config)
        _merge(raw, scale.overrides.get("all", {}))
        _merge(raw, scale.overrides.get(arm_name, {}))
        raw["name"], raw["recipe"] = name, spec.recipe
        raw["train"]["budget_flops"], raw["train"]["seed"] = float(budget), int(seed)
        if arm_name == "aa":
            raw["train"]["init_seed"] = 1000 + seed
        if _uses_shared(spec):
            sec = raw.setdefault(spec.recipe, {})
            if validate_only:
                if spec.recipe == "distill" and shared is not None:
                    sec["teacher_train"] = {
                        "model": shared.model.model_dump(mode="json", exclude_unset=True),
                        "train": {"steps": 1},
                    }
            else:
                sec[SHARED_USERS[spec.recipe]] = str((Path(suite_dir) / tdir).resolve())
        return raw

    def deps_of(spec: ArmSpec) -> list[str]:
        return [teacher_name] if _uses_shared(spec) and shared is not None else []

    # ---- learning-rate sweeps: every arm the same factors, at a fraction of C_ref, seed 0 --------
    sweep_arms = {"baseline": ArmSpec(recipe="baseline"), **{a: s for a, s in arms.items() if a != "aa"}}
    sweeps: dict[str, list[str]] = {}
    if sc.lr_sweep.enabled:
        for arm_name, spec in sweep_arms.items():
            chain: list[str] = []
            for f in sc.lr_sweep.factors:
                name = f"{scale.name}-sweep-{arm_name}-x{_fmt_mult(f)}"
                raw = arm_raw(arm_name, spec, name, sc.lr_sweep.budget * c_ref, 0, valid=True)
                raw["train"]["lr"] = float(raw["train"].get("lr", 3e-3)) * f
                if spec.recipe == "synthetic" and isinstance(raw.get("synthetic"), dict):
                    # the corpus is generated once for the arm; at a fraction of C_ref its one-off cost
                    # could exceed the sweep's whole budget: a sweep run's budget pays training only
                    raw["synthetic"]["budget_includes"] = "train"
                # synthetic arms share one generated corpus: the first run generates it, the others reuse
                d = deps_of(spec) + (chain[:1] if spec.recipe == "synthetic" else [])
                tasks.append(
                    Task(
                        name,
                        "sweep",
                        scale.name,
                        arm_name,
                        0,
                        spec.recipe,
                        raw,
                        f"runs/{name}",
                        sc.lr_sweep.budget * c_ref,
                        d,
                        factor=f,
                    )
                )
                chain.append(name)
            sweeps[arm_name] = chain
    sweeps["aa"] = sweeps.get("baseline", [])

    # ---- the baseline frontier: complete runs at each budget --------------------------------------
    for m in sc.frontier.budgets:
        n = max(sc.frontier.seeds, n_base) if m == 1.0 else sc.frontier.seeds
        for seed in range(n):
            name = f"{scale.name}-baseline-f{_fmt_mult(m)}-s{seed}"
            raw = arm_raw("baseline", sweep_arms["baseline"], name, m * c_ref, seed)
            tasks.append(
                Task(
                    name,
                    "frontier",
                    scale.name,
                    "baseline",
                    seed,
                    "baseline",
                    raw,
                    f"runs/{name}",
                    m * c_ref,
                    list(sweeps.get("baseline", [])),
                    lr_from="baseline",
                    budget_mult=m,
                )
            )

    # ---- the arms at C_ref, paired seeds ------------------------------------------------------------
    for arm_name, spec in arms.items():
        first = None
        for seed in range(n_seeds[arm_name]):
            name = f"{scale.name}-{arm_name}-s{seed}"
            raw = arm_raw(arm_name, spec, name, c_ref, seed)
            d = deps_of(spec) + list(sweeps.get(arm_name, []))
            if spec.recipe == "synthetic" and not sweeps.get(arm_name) and first:
                d.append(first)
            tasks.append(
                Task(
                    name,
                    "arm",
                    scale.name,
                    arm_name,
                    seed,
                    spec.recipe,
                    raw,
                    f"runs/{name}",
                    c_ref,
                    d,
                    lr_from="baseline" if arm_name == "aa" else arm_name,
                )
            )
            first = first or name
    return tasks


def plan(
    sc: SuiteConfig, suite_dir=None, *, validate_only: bool = False, extra_seeds: dict[str, int] | None = None
) -> list[Task]:
    """Every run of the suite, in an order that respects dependencies.

    validate_only: the shared model does not exist yet, so arms that use it get a stand-in (distill:
    teacher_train with the shared spec; synthetic: generator 'train') that validates every other field.
    """
    tasks: list[Task] = []
    arms = sc.arms()
    n_seeds = {a: max(sc.seeds, (extra_seeds or {}).get(a, 0)) for a in arms}
    n_base = max([sc.seeds, *n_seeds.values()])
    for scale in sc.scales:
        tasks += _plan_scale(sc, scale, suite_dir, validate_only, arms, n_seeds, n_base)
    seen: set[str] = set()  # a teacher shared by several scales (shared.scale) is trained once
    return [t for t in tasks if not (t.name in seen or seen.add(t.name))]


def chosen_lr(sdir: Path, tasks: list[Task], scale: str, arm: str, default_lr: float) -> dict:
    """The sweep's winner for (scale, arm): lowest final validation loss among complete sweep runs."""
    losses, lrs = {}, {}
    for t in tasks:
        if t.kind == "sweep" and t.scale == scale and t.arm == arm:
            m = _manifest(sdir / t.dir)
            loss = ((m or {}).get("result") or {}).get("final_eval_loss")
            if (m or {}).get("status") == "complete" and loss is not None and math.isfinite(loss):
                losses[t.factor], lrs[t.factor] = float(loss), float(t.raw["train"]["lr"])
    if not losses:
        return {
            "factor": 1.0,
            "lr": default_lr,
            "valid_losses": {},
            "note": "no sweep: the configured train.lr",
        }
    best = min(losses, key=losses.get)
    return {
        "factor": best,
        "lr": lrs[best],
        "valid_losses": {_fmt_mult(k): v for k, v in sorted(losses.items())},
        "edge": best in (min(losses), max(losses)) and len(losses) > 1,
    }


def describe_plan(sc: SuiteConfig, *, measure: bool = False) -> dict:
    """What a suite will train: runs and train-phase FLOPs by kind and scale (validated, nothing trained)."""
    tasks = plan(sc, "PLAN")
    rows = {}
    for t in tasks:
        r = rows.setdefault((t.scale, t.kind), {"scale": t.scale, "kind": t.kind, "runs": 0, "flops": 0.0})
        r["runs"] += 1
        r["flops"] += t.cost
    total = sum(t.cost for t in tasks)
    lines = [
        f"suite {sc.name}: {len(tasks)} runs, {total:.3g} train-phase FLOPs (planned budgets; distillation's "
        f"teacher forwards and synthetic generation are inside the budgets of arms that say "
        f"budget_includes: marginal)",
        "",
    ]
    for r in rows.values():
        lines.append(f"  {r['scale']:<8} {r['kind']:<9} {r['runs']:>4} runs  {r['flops']:.3g} FLOPs")
    lines.append("")
    lines.append(f"  {sc.workers} worker(s); every run config above validated.")
    out = {"runs": len(tasks), "flops": total, "by_kind": list(rows.values())}
    if measure:
        out["wall_seconds_here"] = _predict_wall(sc, log=lambda m: None)
        w = out["wall_seconds_here"]
        lines.append(
            f"  wall time here: about {_fmt_s(w['total'])} ({w['runs_seconds']:.0f} s of runs over "
            f"{sc.workers} worker(s), {w['per_run_overhead']:.0f} s start-up per run, timed from a few "
            f"steps of each shape at load {_load_average()})"
        )
    out["text"] = "\n".join(lines)
    return out


def _predict_wall(sc: SuiteConfig, log=print) -> dict:
    """Wall time of the suite on this machine: each run's compute timed from a few steps of its shape
    (efflab.estimate, cached per shape), spread over the workers, plus start-up per run."""
    tasks = plan(sc, "PLAN", validate_only=True)
    runs_s = 0.0
    for t in tasks:
        raw = copy.deepcopy(t.raw)
        for sec in ("distill", "synthetic"):  # the shared model: its training is one task of its own
            if isinstance(raw.get(sec), dict):
                raw[sec].pop("teacher_train", None)
        try:
            cfg = config_from_dict(raw, recipe=t.recipe, source=t.name)
            e = estimate_run(cfg, measure=True)
            runs_s += float(e["wall_seconds_here"]["marginal"])
        except UserError as ex:  # a run whose model does not exist yet: priced as a baseline of its shape
            log(f"[suite] {t.name}: timed as a baseline ({ex.message.splitlines()[0]})")
            raw = {k: raw[k] for k in ("model", "data", "train", "eval", "log") if k in raw}
            e = estimate_run(config_from_dict(raw, recipe="baseline", source=t.name), measure=True)
            runs_s += float(e["wall_seconds_here"]["marginal"])
    overhead = 4.0  # per run: model build, eval set, save (data are read once per worker)
    total = (runs_s + overhead * len(tasks)) / max(1, sc.workers)
    return {"total": total, "runs_seconds": runs_s, "per_run_overhead": overhead, "runs": len(tasks)}


# =============================================================================================
# running it
# =============================================================================================
def suite_dir_for(sc: SuiteConfig, out=None) -> Path:
    return Path(out or sc.out or f"runs/suite-{sc.name}")


def _manifest(run_dir: Path) -> dict | None:
    rd = RunDir(run_dir)
    try:
        return rd.read_manifest() if rd.manifest_path.is_file() else None
    except (OSError, ValueError):
        return {"status": "unreadable"}


def _status(run_dir: Path) -> str | None:
    m = _manifest(run_dir)
    return None if m is None else m.get("status")


def _config_drift(run_dir: Path, raw: dict, recipe: str) -> list[str]:
    """Keys where an existing run directory's config differs from the planned one."""
    import yaml

    p = run_dir / "config.yaml"
    if not p.is_file():
        return []
    old = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    try:
        new = config_from_dict(raw, recipe=recipe, source=run_dir.name).to_dict()
    except UserError:  # e.g. the shared teacher is not finished yet: the run checks again when it starts
        return []

    def diff(a, b, prefix=""):
        if isinstance(a, dict) and isinstance(b, dict):
            return [d for k in sorted(set(a) | set(b)) for d in diff(a.get(k), b.get(k), f"{prefix}{k}.")]
        return [] if a == b else [prefix.rstrip(".")]

    return [d for d in diff(old, new) if not d.startswith("log.")]


def execute_run(recipe: str, raw: dict, run_dir: str, log_path: str | None = None) -> dict:
    """Train (or resume) one run; in a worker process its output goes to `log_path`. Returns
    {ok, message, seconds}; never raises for a run that fails (the suite records it and goes on)."""
    import torch

    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    out = {"ok": True, "message": "", "seconds": 0.0}
    cm = contextlib.nullcontext()
    fh = None
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        fh = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 (closed below)
        cm = contextlib.ExitStack()
        cm.enter_context(contextlib.redirect_stdout(fh))
        cm.enter_context(contextlib.redirect_stderr(fh))
    try:
        with cm:
            cfg = config_from_dict(raw, recipe=recipe, source=raw.get("name", "run"))
            recipes.run_recipe(recipe, cfg, out=run_dir, resume=True)
    except (RunFailed, UserError) as e:
        out.update(ok=False, message=getattr(e, "message", str(e)))
    finally:
        torch.set_num_threads(threads)
        if fh is not None:
            fh.close()
    out["seconds"] = time.perf_counter() - t0
    return out


def _load_average() -> float | None:
    """The 1-minute load average (wall times mean little without it on a shared machine)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _fmt_s(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _warm_data_cache(tasks: list[Task], log) -> None:
    """Train the tokenizer and tokenize the corpus once, before parallel workers would race to do it."""
    t = next((t for t in tasks if t.kind == "frontier"), None) or (tasks[0] if tasks else None)
    if t is None:
        return
    cfg = config_from_dict(t.raw, recipe="baseline" if t.recipe == "baseline" else t.recipe, source=t.name)
    prepare(cfg.data, cfg.eval.max_blocks, log=lambda m: log(f"[suite] {m}"))


def run_suite(
    path,
    *,
    out=None,
    overrides: list[str] | None = None,
    progress: bool = True,
    analyse: bool = True,
    log=print,
    workers: int | None = None,
) -> dict:
    """Run (or continue) a suite, then compare (and extrapolate and report). Returns the suite state.

    Complete runs are reused, incomplete ones resumed; a run that fails is recorded, the runs that
    depend on it are not started, and the others go on. With `adaptive_seeds`, primary techniques still
    inconclusive get one more paired seed per round while the time budget allows.
    """
    import yaml

    sc, raw_suite = load_suite(path, overrides)
    sdir = suite_dir_for(sc, out)
    sdir.mkdir(parents=True, exist_ok=True)
    state_path = sdir / "suite.json"
    prev = read_json(state_path) if state_path.is_file() else {}
    extra = dict(prev.get("extra_seeds") or {})
    tasks = plan(sc, sdir, extra_seeds=extra)
    n_workers = workers or sc.workers
    t_start = time.perf_counter()

    # ---- refuse a directory holding runs of another config, before anything trains --------------
    drift = Problems(
        header=f"{sdir} holds runs made with another suite config (use another --out, or delete them)"
    )
    for t in tasks:
        d = [k for k in _config_drift(sdir / t.dir, t.raw, t.recipe) if not (t.lr_from and k == "train.lr")]
        if d:
            drift.add(f"{t.name}: {', '.join(d[:6])}{' ...' if len(d) > 6 else ''}")
    drift.raise_if_any()

    prev_runs = {r["name"]: r for r in prev.get("runs", [])}
    state = {
        "name": sc.name,
        "config": str(Path(path).resolve()),
        "status": "running",
        "dir": str(sdir.resolve()),
        "started": prev.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "invocations": prev.get("invocations", []),
        "lr": {},
        "workers": n_workers,
        "extra_seeds": extra,
        "runs": [],
    }
    entries: dict[str, dict] = {}

    def add_entries(ts: list[Task]) -> None:
        for t in ts:
            if t.name in entries:
                continue
            old = prev_runs.get(t.name, {})
            e = {
                "name": t.name,
                "kind": t.kind,
                "scale": t.scale,
                "arm": t.arm,
                "seed": t.seed,
                "dir": t.dir,
                "state": "complete" if _status(sdir / t.dir) == "complete" else "pending",
                "seconds": old.get("seconds"),
            }
            entries[t.name] = e
            state["runs"].append(e)

    add_entries(tasks)
    atomic_write_text(
        sdir / "suite.yaml",
        f"# suite config as run (overrides applied): efflab suite {path}\n"
        + yaml.safe_dump(raw_suite, sort_keys=False),
    )
    atomic_write_json(state_path, state)
    invocation = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu_count": os.cpu_count(),
        "workers": n_workers,
        "load_average_at_start": _load_average(),
        "trained": 0,
        "reused": 0,
        "failed": 0,
        "rounds": 0,
    }

    def resolve(t: Task) -> dict:
        raw = copy.deepcopy(t.raw)
        if t.lr_from is not None:
            key = f"{t.scale}/{t.lr_from}"
            if key not in state["lr"]:
                state["lr"][key] = chosen_lr(
                    sdir, tasks, t.scale, t.lr_from, float(raw["train"].get("lr", 3e-3))
                )
            raw["train"]["lr"] = state["lr"][key]["lr"]
        return raw

    failed: dict[str, str] = {}
    done = {t.name for t in tasks if entries[t.name]["state"] == "complete"}
    invocation["reused"] = len(done)
    if len(done) < len(tasks):
        _warm_data_cache(tasks, log)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(tasks),
            initial=len(done),
            desc=f"suite {sc.name}",
            unit="run",
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} runs [{elapsed}{postfix}]",
            disable=None,
        )
    say = (lambda m: bar.write(m)) if bar is not None and not bar.disable else log
    if done:
        say(f"[suite] {len(done)} of {len(tasks)} runs already complete: reused")
    clock = {"cost_trained": 0.0, "run_seconds": 0.0}

    def rate() -> float | None:
        """Planned FLOPs per wall second of the whole suite: one run's FLOPs per second of its own
        (finished runs, pooled) times the workers that run side by side."""
        secs = clock["run_seconds"]
        if clock["cost_trained"] <= 0 or secs <= 0:
            return None
        return clock["cost_trained"] / secs * min(n_workers, max(1, len(tasks) - len(done)))

    def eta() -> str:
        r = rate()
        left = sum(t.cost for t in tasks if t.name not in done and t.name not in failed)
        return "ETA: after the first run" if r is None else f"ETA {_fmt_s(left / r)}"

    def finish(t: Task, res: dict) -> None:
        e = entries[t.name]
        e["seconds"] = (e.get("seconds") or 0.0) + res["seconds"]
        if res["ok"] and _status(sdir / t.dir) == "complete":
            e["state"] = "complete"
            done.add(t.name)
            clock["cost_trained"] += t.cost
            clock["run_seconds"] += res["seconds"]
            invocation["trained"] += 1
            msg = f"[suite] {len(done)}/{len(tasks)} {t.name}: complete in {res['seconds']:.0f} s; {eta()}"
        else:
            e.update(state="failed", message=res["message"] or "the run did not complete (see its log)")
            failed[t.name] = e["message"]
            invocation["failed"] += 1
            msg = f"[suite] {t.name}: FAILED: {e['message']} (log: {sdir / 'logs' / (t.name + '.log')})"
        say(msg)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(eta())
        atomic_write_json(state_path, state)

    def blocked(t: Task) -> str | None:
        bad = [d for d in t.deps if d in failed]
        return f"not started: {', '.join(bad)} failed" if bad else None

    def critical(t: Task) -> tuple:  # teachers first (they block whole arms), then sweeps, then the longest
        return (2 if t.kind == "shared" else 1 if t.kind == "sweep" else 0, t.cost)

    def execute(pending: list[Task], pool=None) -> None:
        running = {}
        while pending or running:
            for t in [t for t in pending if blocked(t)]:
                pending.remove(t)
                finish(t, {"ok": False, "message": blocked(t), "seconds": 0.0})
            go = sorted([t for t in pending if all(d in done for d in t.deps)], key=critical, reverse=True)
            if pool is None:
                if not go:
                    return
                t = go[0]
                pending.remove(t)
                entries[t.name]["state"] = "running"
                finish(
                    t,
                    execute_run(
                        t.recipe, resolve(t), str(sdir / t.dir), str(sdir / "logs" / f"{t.name}.log")
                    ),
                )
                continue
            from concurrent.futures import FIRST_COMPLETED, wait

            while go and len(running) < n_workers:
                t = go.pop(0)
                pending.remove(t)
                entries[t.name]["state"] = "running"
                running[
                    pool.submit(
                        execute_run,
                        t.recipe,
                        resolve(t),
                        str(sdir / t.dir),
                        str(sdir / "logs" / f"{t.name}.log"),
                    )
                ] = t
            if not running:
                return
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                t = running.pop(fut)
                try:
                    res = fut.result()
                except Exception as ex:  # a worker that died (killed, out of memory): record it, go on
                    res = {"ok": False, "message": f"worker died: {type(ex).__name__}: {ex}", "seconds": 0.0}
                finish(t, res)

    def more_seeds() -> dict[str, int]:
        """Arms that get one more paired seed: primary, inconclusive, below the cap, if time allows."""
        ad = sc.adaptive_seeds
        if ad.max <= sc.seeds or failed:
            return {}
        state["extra_seeds"] = extra
        doc = compare_suite(sdir, sc, state, tasks=plan(sc, sdir, extra_seeds=extra))
        want = {
            t: row["n_pairs"] + 1
            for t, row in (doc.get("techniques") or {}).items()
            if row.get("primary") and row.get("verdict") == "inconclusive" and row["n_pairs"] < ad.max
        }
        r = rate()
        if not want or r is None:
            return {}
        c_ref = sc.primary_scale().budget_flops
        need = (len(want) + 1) * c_ref * len(sc.scales) / r  # the arms' new seeds + the baseline's
        elapsed = time.perf_counter() - t_start
        if elapsed + need > ad.minutes * 60:
            say(
                f"[suite] {len(want)} technique(s) still inconclusive; one more seed each would take about "
                f"{_fmt_s(need)} beyond the {ad.minutes:g}-minute budget (adaptive_seeds.minutes): no more seeds"
            )
            return {}
        return want

    pool_cm = contextlib.nullcontext()
    if n_workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        pool_cm = ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn"))
    try:
        with pool_cm as pool:
            while True:
                invocation["rounds"] += 1
                execute([t for t in tasks if t.name not in done and t.name not in failed], pool)
                want = more_seeds()
                if not want:
                    break
                extra.update(want)
                state["extra_seeds"] = extra
                say(
                    f"[suite] inconclusive, adding a paired seed: {', '.join(f'{k} -> {v}' for k, v in want.items())}"
                )
                tasks = plan(sc, sdir, extra_seeds=extra)
                add_entries(tasks)
                if bar is not None:
                    bar.total = len(tasks)
                    bar.refresh()
    except KeyboardInterrupt:
        state["status"] = "interrupted"
        for e in state["runs"]:
            if e["state"] == "running":
                e["state"] = "interrupted"
        invocation["seconds"] = time.perf_counter() - t_start
        state["invocations"].append(invocation)
        atomic_write_json(state_path, state)
        log(
            f"[suite] interrupted: run `efflab suite {path}"
            + (f" --out {out}" if out else "")
            + "` again to continue where it stopped"
        )
        raise
    finally:
        if bar is not None:
            bar.close()

    invocation["train_seconds"] = time.perf_counter() - t_start
    invocation["load_average_after_training"] = _load_average()
    state["failed"] = sorted(failed)
    state["status"] = "complete" if not failed else "complete with failures"
    if analyse:
        t1 = time.perf_counter()
        analysis = analyse_suite(sdir, sc, state=state, log=log)
        invocation["analysis_seconds"] = time.perf_counter() - t1
        state["analysis"] = {k: str(v) for k, v in analysis.get("files", {}).items()}
    invocation["seconds"] = time.perf_counter() - t_start
    state["invocations"].append(invocation)
    state["train_seconds_total"] = sum(e.get("seconds") or 0.0 for e in state["runs"])
    atomic_write_json(state_path, state)
    log(
        f"[suite] {sc.name}: {invocation['trained']} trained, {invocation['reused']} reused, {len(failed)} failed; "
        f"{invocation['seconds']:.0f} s with {n_workers} worker(s), load {invocation['load_average_after_training']}"
    )
    return state


# =============================================================================================
# analysis
# =============================================================================================
def analyse_suite(sdir, sc: SuiteConfig | None = None, *, state: dict | None = None, log=print) -> dict:
    """compare.json (verdicts) over the suite's complete runs; then extrapolate and report."""
    sdir = Path(sdir)
    sc = sc or load_suite_dir(sdir)
    state = state or read_json(sdir / "suite.json")
    comparison = compare_suite(
        sdir, sc, state, tasks=plan(sc, sdir, extra_seeds=state.get("extra_seeds") or {})
    )
    atomic_write_json(sdir / "compare.json", comparison)
    files = {"compare": sdir / "compare.json"}
    if not comparison.get("reference") or not (comparison.get("frontier") or {}).get("fit"):
        log(f"[suite] verdicts: {sdir / 'compare.json'} ({comparison.get('note', 'no frontier')}); no report")
        return {"compare": comparison, "files": files}
    extra = extrapolate_suite(sdir)
    files["extrapolate"] = sdir / "extrapolate.json"
    paths = write_report(sdir)
    files.update(report_md=paths["md"], report_html=paths["html"])
    log(f"[suite] verdicts: {sdir / 'compare.json'}; report: {paths['md']} and {paths['html']}")
    return {"compare": comparison, "extrapolate": extra, "files": files}
