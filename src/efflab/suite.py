"""The suite: a ladder of scales x techniques (x seeds) against a dense baseline, then compare,
extrapolate and report. The main job of efflab (`efflab suite configs/suite/quick.yaml`).

A suite file (YAML, typed below; unknown keys fail; every problem in one message) names:
- `data`, `eval`, `log` and the shared `train` settings: one data section for every run, so every run
  is evaluated on the same held-out set with the same tokenizer;
- `scales`: dense-baseline shapes, each with its budget (the baseline at that scale is trained to it,
  and every technique at that scale gets the same training budget);
- `techniques`: which techniques run, with per-technique config (their sections, other overrides);
- `shared`: the teacher / generator / reference model, a baseline run at a larger size trained once
  per suite in <suite>/shared/teacher and handed to distillation (teacher), synthetic data
  (generator) and a reference-scored curriculum as a finished run directory. Every run that uses it
  charges its whole cost to `sunk.teacher_pretrain` (the "total" view); the report also shows it
  divided over the runs that share it (the "amortised" view).

Layout of a suite directory:
    suite.yaml         the suite config as run (resolved)
    suite.json         status, every planned run and its state, wall times
    shared/teacher/    the shared model's run directory
    runs/<scale>-<technique>-s<seed>/   one run directory each (DESIGN.md section 4)
    compare.json  extrapolate.json  report.md  report.html  figures/*.png

Idempotent: a complete run directory is reused as it is, an incomplete one resumes from its last
checkpoint, so an interrupted suite (Ctrl-C) continues where it stopped when run again.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from efflab.config import (
    RECIPES,
    DataConfig,
    EvalConfig,
    LogConfig,
    ModelConfig,
    Section,
    _validation_messages,
    config_from_dict,
    section_problems,
)
from efflab.errors import Problems, RunFailed, UserError, parse_count
from efflab.io import atomic_write_json, atomic_write_text, read_json
from efflab.runs import check_run

TECHNIQUES = ("moe", "distill", "curriculum", "synthetic")
# config keys of the techniques that consume the shared model, filled in by the suite
SHARED_USERS = {"distill": "teacher", "synthetic": "generator", "curriculum": "reference"}


# =============================================================================================
# the suite file
# =============================================================================================
def _count(v):
    return parse_count(v) if isinstance(v, str) else v


class Horizon(Section):
    """Exactly one of budget_flops (train-phase FLOPs), budget_tokens, steps."""

    budget_flops: float | None = Field(
        default=None, gt=0, description="train-phase FLOPs (DESIGN.md section 5)"
    )
    budget_tokens: float | None = Field(default=None, gt=0)
    steps: int | None = Field(default=None, ge=1)

    _c = field_validator("budget_flops", "budget_tokens", mode="before")(_count)

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("budget_flops", "budget_tokens", "steps") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of budget_flops, budget_tokens, steps (got {given or 'none'})"
            )
        return self

    def horizon(self) -> dict:
        return {
            k: getattr(self, k)
            for k in ("budget_flops", "budget_tokens", "steps")
            if getattr(self, k) is not None
        }


class ScaleSpec(Horizon):
    """One rung of the ladder: the dense baseline's shape and the training budget of every run at it."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.]+$", description="short label, used in run names")
    model: ModelConfig
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="technique name (or 'all') -> config overrides at this scale only"
    )


class SharedSpec(Horizon):
    """The shared teacher / generator / reference: a baseline run, larger than every scale, trained once."""

    model: ModelConfig
    train: dict[str, Any] = Field(default_factory=dict, description="train settings overriding the suite's")


class TechniqueSpec(Section):
    enabled: bool = True
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="config sections / dotted keys merged into "
        "every run of this technique (e.g. {distill: {alpha: 0.5}, train.lr: 2e-3})",
    )


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
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    data: DataConfig = Field(default_factory=DataConfig)
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="train settings shared by every run (no horizon: that comes from the scale)",
    )
    eval: EvalConfig = Field(default_factory=EvalConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    evals_per_run: int = Field(
        default=10, ge=2, description="eval.every is set per scale to give about this many"
    )
    checkpoints_per_run: int = Field(
        default=2, ge=0, description="train.checkpoint_every per scale (0: at the end)"
    )
    scales: list[ScaleSpec] = Field(min_length=1)
    shared: SharedSpec | None = None
    techniques: dict[str, TechniqueSpec] = Field(
        default_factory=lambda: {t: TechniqueSpec() for t in TECHNIQUES}
    )
    target: float | None = Field(
        default=None, gt=0, description="target eval loss; default: each scale's baseline"
    )
    serve_tokens: list[float] | None = Field(default=None, description="served tokens for the lifetime view")
    level: float = Field(default=0.9, gt=0, lt=1, description="interval level (0.9: 5th-95th percentile)")
    bootstrap: int = Field(
        default=200, ge=20, description="bootstrap resamples of the L(C) fits and backtest"
    )
    extrapolate: ExtrapolateSpec = Field(default_factory=ExtrapolateSpec)

    @field_validator("serve_tokens", mode="before")
    @classmethod
    def _counts(cls, v):
        return [_count(x) for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _check(self):
        errs = []
        names = [s.name for s in self.scales]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            errs.append(f"scales: duplicate names {dup}")
        bad = [t for t in self.techniques if t not in TECHNIQUES]
        if bad:
            errs.append(
                f"techniques: unknown {bad}; techniques: {', '.join(TECHNIQUES)} (the baseline always runs)"
            )
        for s in self.scales:
            wrong = [k for k in s.overrides if k not in (*RECIPES, "all")]
            if wrong:
                errs.append(f"scales.{s.name}.overrides: unknown {wrong}; keys are recipe names or 'all'")
        for key in ("budget_flops", "budget_tokens", "steps", "seed"):
            if key in self.train:
                errs.append(
                    f"train.{key}: set per scale (budgets) or in `seeds`, not in the shared train section"
                )
        if len(set(self.seeds)) != len(self.seeds):
            errs.append(f"seeds: duplicates in {self.seeds}")
        if errs:
            raise ValueError("; ".join(errs))
        return self

    def enabled(self) -> list[str]:
        return ["baseline"] + [t for t in TECHNIQUES if t in self.techniques and self.techniques[t].enabled]


def load_suite(path, overrides: list[str] | None = None) -> tuple[SuiteConfig, dict]:
    """Read and validate a suite file (yaml.safe_load); dotted overrides apply first. (config, raw dict)."""
    import yaml

    from efflab.config import _set_dotted, parse_overrides

    p = Path(path)
    if not p.is_file():
        raise UserError(f"suite file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a YAML suite file (binary or not UTF-8 text)") from None
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{p}: the top level must be a mapping")
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
    specs = [s for s in plan(sc, validate_only=True) if not s.get("unavailable")]
    for spec in specs:
        try:
            config_from_dict(spec["raw"], recipe=spec["recipe"], source=spec["name"])
        except UserError as e:
            for p in e.problems:
                where.setdefault(p, []).append(spec["name"])
    for p, names in where.items():
        probs.add(f"{p} (every run)" if len(names) == len(specs) > 1 else f"{', '.join(names)}: {p}")
    if sc.shared is not None:
        try:
            config_from_dict(shared_raw(sc), recipe="baseline", source="shared")
        except UserError as e:  # a problem of the suite's train section is already reported above
            probs.extend(f"shared: {p}" for p in e.problems if f"{p} (every run)" not in probs.items)
    elif any(_uses_shared(sc, t) for t in sc.enabled()):
        users = [t for t in sc.enabled() if _uses_shared(sc, t)]
        probs.add(
            f"shared: {', '.join(users)} need(s) a teacher/generator: add a `shared` section (a model and a "
            f"budget), or give distill.teacher / synthetic.generator in techniques.<name>.config"
        )
    probs.raise_if_any()
    return sc


# =============================================================================================
# the plan: which runs, with which configs
# =============================================================================================
def recipe_available(technique: str) -> str | None:
    """None when efflab.recipes.<technique> is importable with a main(); else why not."""
    name = f"efflab.recipes.{technique}"
    if importlib.util.find_spec(name) is None:
        return f"not available: the {technique} recipe ({name}) is not in this installation yet"
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # a recipe being written may not import: skip it, say why
        return f"not available: {name} does not import ({type(e).__name__}: {e})"
    if not callable(getattr(mod, "main", None)):
        return f"not available: {name} has no main()"
    return None


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


def _section_of(sc: SuiteConfig, technique: str) -> dict:
    return (sc.techniques.get(technique) or TechniqueSpec()).config.get(technique) or {}


def _uses_shared(sc: SuiteConfig, technique: str) -> bool:
    """Does this technique need the suite's shared model (given no path of its own)?"""
    key = SHARED_USERS.get(technique)
    if key is None:
        return False
    sec = _section_of(sc, technique)
    if technique == "curriculum":
        return sec.get("scorer") == "reference" and not sec.get("reference")
    if technique == "synthetic":
        return sec.get("generator", "train") == "train"
    return not sec.get("teacher") and not sec.get("teacher_train")


def _estimated_steps(model: ModelConfig, horizon: dict, sc: SuiteConfig) -> int | None:
    """Optimizer steps of a baseline run at this shape and horizon (accounting layer's FLOPs/token);
    None when the shared train settings are themselves invalid (their validation reports why)."""
    if "steps" in horizon:
        return int(horizon["steps"])
    from efflab.accounting.flops import train_flops_per_token
    from efflab.models import build_model_config

    try:
        B = int(sc.train.get("batch_size", 16))
        T = sc.data.seq_len
        if "budget_tokens" in horizon:
            return max(1, int(horizon["budget_tokens"] // (B * T)))
        probe = config_from_dict(
            {
                "model": model.model_dump(mode="json", exclude_unset=True),
                "data": sc.data.model_dump(mode="json"),
                "train": {"steps": 1, "batch_size": B},
            },
            recipe="baseline",
            source="scale",
        )
        fpt = train_flops_per_token(build_model_config(probe, sc.data.vocab_size), T)
    except (TypeError, ValueError, UserError):
        return None
    return max(1, int(horizon["budget_flops"] // (B * T * fpt)))


def _run_train(sc: SuiteConfig, horizon: dict, steps: int | None, seed: int) -> tuple[dict, dict]:
    train = {**copy.deepcopy(sc.train), **horizon, "seed": seed}
    if steps is None:
        return train, sc.eval.model_dump(mode="json")
    if "checkpoint_every" not in train:
        train["checkpoint_every"] = (
            max(1, steps // (sc.checkpoints_per_run + 1)) if sc.checkpoints_per_run else 0
        )
    ev = sc.eval.model_dump(mode="json")
    if "every" not in sc.eval.model_fields_set:
        ev["every"] = max(1, round(steps / sc.evals_per_run))
    return train, ev


def shared_dir(suite_dir) -> Path:
    return Path(suite_dir) / "shared" / "teacher"


def shared_raw(sc: SuiteConfig) -> dict:
    """The baseline-recipe config of the shared teacher / generator / reference."""
    sh = sc.shared
    horizon = sh.horizon()
    steps = _estimated_steps(sh.model, horizon, sc)
    train, ev = _run_train(sc, horizon, steps, sc.seeds[0])
    train.update(copy.deepcopy(sh.train))
    return {
        "recipe": "baseline",
        "name": f"{sc.name}-shared-teacher",
        "model": sh.model.model_dump(mode="json", exclude_unset=True),
        "data": sc.data.model_dump(mode="json"),
        "train": train,
        "eval": ev,
        "log": sc.log.model_dump(mode="json"),
    }


def plan(sc: SuiteConfig, suite_dir=None, *, validate_only: bool = False) -> list[dict]:
    """Every run of the suite: {name, scale, technique, seed, recipe, raw (config dict), unavailable}.

    validate_only: the shared model does not exist yet, so techniques that use it get a stand-in
    (distill: teacher_train with the shared spec; synthetic: generator 'train'; curriculum: its own
    reference) that validates every other field.
    """
    runs = []
    sdir = str(shared_dir(suite_dir).resolve()) if suite_dir is not None else None
    for scale in sc.scales:
        horizon = scale.horizon()
        steps = _estimated_steps(scale.model, horizon, sc)
        for tech in sc.enabled():
            why = None if tech == "baseline" else recipe_available(tech)
            for seed in sc.seeds:
                name = f"{scale.name}-{tech}-s{seed}"
                train, ev = _run_train(sc, horizon, steps, seed)
                raw = {
                    "recipe": tech,
                    "name": name,
                    "model": scale.model.model_dump(mode="json", exclude_unset=True),
                    "data": sc.data.model_dump(mode="json"),
                    "train": train,
                    "eval": ev,
                    "log": sc.log.model_dump(mode="json"),
                }
                if tech != "baseline":
                    _merge(raw, sc.techniques[tech].config)
                _merge(raw, scale.overrides.get("all", {}))
                _merge(raw, scale.overrides.get(tech, {}))
                raw["name"], raw["recipe"] = name, tech
                if _uses_shared(sc, tech):
                    sec = raw.setdefault(tech, {})
                    if validate_only:
                        if (
                            tech == "distill" and sc.shared is not None
                        ):  # the shared spec is checked on its own
                            sec["teacher_train"] = {
                                "model": sc.shared.model.model_dump(mode="json", exclude_unset=True),
                                "train": {"steps": 1},
                            }
                    else:
                        sec[SHARED_USERS[tech]] = sdir
                runs.append(
                    {
                        "name": name,
                        "scale": scale.name,
                        "technique": tech,
                        "seed": seed,
                        "recipe": tech,
                        "raw": raw,
                        "unavailable": why,
                    }
                )
    return runs


# =============================================================================================
# running it
# =============================================================================================
def suite_dir_for(sc: SuiteConfig, out=None) -> Path:
    return Path(out or sc.out or f"runs/suite-{sc.name}")


def _status(run_dir: Path) -> str | None:
    m = run_dir / "manifest.json"
    try:
        return read_json(m).get("status") if m.is_file() else None
    except (OSError, ValueError):
        return "unreadable"


def _config_drift(run_dir: Path, raw: dict, recipe: str) -> list[str]:
    """Keys where an existing run directory's config differs from the planned one."""
    import yaml

    p = run_dir / "config.yaml"
    if not p.is_file():
        return []
    old = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    try:
        new = config_from_dict(raw, recipe=recipe, source=run_dir.name).to_dict()
    except UserError:  # e.g. the shared teacher is not finished yet: start_run checks again at run time
        return []

    def diff(a, b, prefix=""):
        if isinstance(a, dict) and isinstance(b, dict):
            return [d for k in sorted(set(a) | set(b)) for d in diff(a.get(k), b.get(k), f"{prefix}{k}.")]
        return [] if a == b else [prefix.rstrip(".")]

    return [d for d in diff(old, new) if not d.startswith("log.")]


def run_suite(
    path,
    *,
    out=None,
    overrides: list[str] | None = None,
    progress: bool = True,
    analyse: bool = True,
    log=print,
) -> dict:
    """Run (or continue) a suite, then compare, extrapolate and report. Returns the suite summary.

    Complete runs are reused, incomplete ones resumed; techniques whose recipe is not available are
    skipped with a 'not available' line; a run that fails is recorded and the others go on.
    """
    import torch
    import yaml

    sc, raw_suite = load_suite(path, overrides)
    sdir = suite_dir_for(sc, out)
    sdir.mkdir(parents=True, exist_ok=True)
    runs = plan(sc, sdir)
    t_start = time.perf_counter()
    threads = torch.get_num_threads()

    # ---- refuse a directory holding runs of another config, before anything trains --------------
    drift = Problems(
        header=f"{sdir} holds runs made with another suite config (use another --out, or delete them)"
    )
    for spec in runs:
        if spec["unavailable"]:
            continue
        rdir = sdir / "runs" / spec["name"]
        d = _config_drift(rdir, spec["raw"], spec["recipe"])
        if d:
            drift.add(f"{spec['name']}: {', '.join(d[:6])}{' ...' if len(d) > 6 else ''}")
    if sc.shared is not None:
        d = _config_drift(shared_dir(sdir), shared_raw(sc), "baseline")
        if d:
            drift.add(f"shared teacher: {', '.join(d[:6])}{' ...' if len(d) > 6 else ''}")
    drift.raise_if_any()

    state_path = sdir / "suite.json"
    prev = read_json(state_path) if state_path.is_file() else {}
    prev_runs = {r["name"]: r for r in prev.get("runs", [])}
    state = {
        "name": sc.name,
        "config": str(Path(path).resolve()),
        "status": "running",
        "dir": str(sdir.resolve()),
        "started": prev.get("started") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "invocations": prev.get("invocations", []),
        "shared": prev.get("shared"),
        "not_available": {},
        "runs": [],
    }
    for spec in runs:
        old = prev_runs.get(spec["name"], {})
        entry = {k: spec[k] for k in ("name", "scale", "technique", "seed")}
        entry["dir"] = str(Path("runs") / spec["name"])
        entry["state"] = "not available" if spec["unavailable"] else old.get("state", "pending")
        entry["seconds"] = old.get("seconds")
        if spec["unavailable"]:
            entry["message"] = spec["unavailable"]
            state["not_available"][spec["technique"]] = spec["unavailable"]
        state["runs"].append(entry)
    atomic_write_text(
        sdir / "suite.yaml",
        f"# suite config as run (overrides applied): efflab suite {path}\n"
        + yaml.safe_dump(raw_suite, sort_keys=False),
    )
    atomic_write_json(state_path, state)
    for t, why in state["not_available"].items():
        log(f"[suite] {t}: {why}; the report says so")

    invocation = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": _load_average(),
        "trained": 0,
        "resumed": 0,
        "reused": 0,
        "failed": 0,
    }
    todo = [s for s in runs if not s["unavailable"]]
    need_shared = sc.shared is not None and any(_uses_shared(sc, s["technique"]) for s in todo)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(todo) + int(need_shared),
            desc=f"suite {sc.name}",
            unit="run",
            position=0,
            dynamic_ncols=True,
            disable=None,
        )

    def do_run(name, recipe, raw, run_dir, entry):
        from efflab.commands.run import run_recipe

        before = _status(run_dir)
        if before == "complete":
            entry["state"] = "complete"
            invocation["reused"] += 1
            log(f"[suite] {name}: complete, reused")
            return True
        cfg = config_from_dict(raw, recipe=recipe, source=name)
        if bar is not None:
            bar.set_postfix_str(name)
        kind = "resuming" if before else "training"
        log(f"[suite] {name}: {kind} -> {run_dir}")
        entry["state"] = "running"
        atomic_write_json(state_path, state)
        t0 = time.perf_counter()
        try:
            run_recipe(recipe, cfg, out=str(run_dir), resume=True)
        except (RunFailed, UserError) as e:
            entry.update(state="failed", message=getattr(e, "message", str(e)))
            invocation["failed"] += 1
            log(f"[suite] {name}: FAILED: {entry['message']}")
            return False
        finally:
            torch.set_num_threads(threads)  # a run may set train.threads: give the next one the default back
        entry["seconds"] = (entry.get("seconds") or 0.0) + (time.perf_counter() - t0)
        entry["state"] = "complete"
        invocation["resumed" if before else "trained"] += 1
        return True

    try:
        shared_ok = True
        if need_shared:
            sh_entry = state["shared"] or {}
            sh_entry.update(name="shared-teacher", dir=str(Path("shared") / "teacher"))
            state["shared"] = sh_entry
            shared_ok = do_run("shared-teacher", "baseline", shared_raw(sc), shared_dir(sdir), sh_entry)
            atomic_write_json(state_path, state)
            if bar is not None:
                bar.update(1)
        for spec, entry in zip(runs, state["runs"]):
            if spec["unavailable"]:
                continue
            if _uses_shared(sc, spec["technique"]) and not shared_ok:
                entry.update(state="failed", message="the shared teacher/generator failed to train")
            else:
                do_run(spec["name"], spec["recipe"], spec["raw"], sdir / "runs" / spec["name"], entry)
            atomic_write_json(state_path, state)
            if bar is not None:
                bar.update(1)
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
        torch.set_num_threads(threads)

    invocation["train_seconds"] = time.perf_counter() - t_start
    invocation["load_average_after_training"] = _load_average()
    failed = [e["name"] for e in state["runs"] if e["state"] == "failed"]
    state["status"] = "complete" if not failed else "complete with failures"
    state["failed"] = failed
    if analyse:
        t1 = time.perf_counter()
        analysis = analyse_suite(sdir, sc, state={**state, "current": invocation}, log=log)
        invocation["analysis_seconds"] = time.perf_counter() - t1
        state["report"] = analysis.get("report")
    invocation["seconds"] = time.perf_counter() - t_start
    state["invocations"].append(invocation)
    state["train_seconds_total"] = sum(e.get("seconds") or 0.0 for e in state["runs"]) + (
        (state.get("shared") or {}).get("seconds") or 0.0
    )
    atomic_write_json(state_path, state)
    log(
        f"[suite] {sc.name}: {invocation['trained']} trained, {invocation['resumed']} resumed, "
        f"{invocation['reused']} reused, {len(failed)} failed, {len(state['not_available'])} technique(s) not "
        f"available; {invocation['seconds']:.0f} s" + (f" -> {sdir / 'report.html'}" if analyse else "")
    )
    return state


def _load_average() -> float | None:
    """The 1-minute load average (wall times mean little without it on a shared machine)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def analyse_suite(
    sdir,
    sc: SuiteConfig | None = None,
    *,
    state: dict | None = None,
    log=print,
    serve_tokens=None,
    extrapolate_kw: dict | None = None,
) -> dict:
    """compare -> lifetime -> extrapolate -> report over the suite's complete runs; writes the files."""
    from efflab import compare as C
    from efflab import report

    sdir = Path(sdir)
    if sc is None:
        sc = load_suite_dir(sdir)
    state = state or read_json(sdir / "suite.json")
    complete = [
        e for e in state["runs"] if e["state"] == "complete" and _status(sdir / e["dir"]) == "complete"
    ]
    left_out = {e["name"]: probs for e in complete if (probs := check_run(sdir / e["dir"]))}  # damaged
    for name, probs in left_out.items():
        log(f"[suite] {name}: left out of the analysis: {'; '.join(probs)}")
    complete = [e for e in complete if e["name"] not in left_out]
    scales = {str(sdir / e["dir"]): e["scale"] for e in complete}
    if not any(e["technique"] == "baseline" for e in complete):
        raise UserError(f"{sdir}: no complete baseline run yet: nothing to compare against (run the suite)")
    records = C.load_runs([sdir / e["dir"] for e in complete], scales=scales)
    comparison = C.compare_runs(records, target=sc.target, level=sc.level)
    comparison["scale_order"] = [s.name for s in sc.scales]
    comparison["left_out"] = left_out
    order = {s.name: i for i, s in enumerate(sc.scales)}
    comparison["scales"].sort(key=lambda s: order.get(s["scale"], 99))
    life = C.lifetime(comparison, serve_tokens if serve_tokens is not None else sc.serve_tokens)
    ex = sc.extrapolate
    kw = {
        "to": ex.to,
        "gpu": ex.gpu,
        "mfu": ex.mfu,
        "price": ex.price,
        "pue": ex.pue,
        "level": sc.level,
        "n_bootstrap": sc.bootstrap,
    }
    kw.update(extrapolate_kw or {})
    extra = C.extrapolate(comparison, **kw)
    comparison["lifetime"] = life
    atomic_write_json(sdir / "compare.json", comparison)
    atomic_write_json(sdir / "extrapolate.json", extra)
    paths = report.write_report(sdir, comparison, extra, state, sc)
    log(f"[suite] report: {paths['md']} and {paths['html']}")
    return {"compare": comparison, "extrapolate": extra, "report": {k: str(v) for k, v in paths.items()}}


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
