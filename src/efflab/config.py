"""Typed run configs: YAML + dotted `key=value` overrides, every problem reported at once.

A run config has the sections every recipe shares (`model`, `data`, `train`, `eval`, `lora`, `log`)
and one optional section per technique (`moe`, `distill`, `curriculum`, `synthetic`), whose schema
lives beside the technique in `efflab.techniques.<name>` and is a typed field of `RunConfig` (None for
the recipes that do not use it). The shared sections and their base class `Section` live in
`efflab.sections`. A recipe rejects the section of a technique it does not use, so a typo cannot
silently switch a technique off.

YAML is read with `yaml.safe_load` only; config values are data, never code.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError

from efflab import RECIPES, RecipeName, hub  # noqa: F401  (RECIPES re-exported)
from efflab.accounting import flops as F
from efflab.errors import Problems, UserError, suggest
from efflab.io import read_yaml_mapping
from efflab.model_files import check_pretrained_dir, loading_problems, pretrained_tokenizer_problems
from efflab.preflight import horizon_problems, memory_problems
from efflab.sections import (  # noqa: F401  (re-exported: the shared sections' home is efflab.sections)
    DataConfig,
    EvalConfig,
    LogConfig,
    LoraConfig,
    ModelConfig,
    Section,
    TrainConfig,
    _count,
)
from efflab.techniques.curriculum import CurriculumConfig
from efflab.techniques.distill import DistillConfig
from efflab.techniques.moe import MoEConfig
from efflab.techniques.synthetic import SyntheticConfig
from efflab.trackers import problems as tracker_problems

# the technique sections, by name (each defined beside its technique in efflab.techniques.<name>)
TECHNIQUE_SECTIONS = {
    "moe": MoEConfig,
    "distill": DistillConfig,
    "curriculum": CurriculumConfig,
    "synthetic": SyntheticConfig,
}
# which technique sections each recipe uses
RECIPE_SECTIONS = {
    "baseline": (),
    "moe": ("moe",),
    "distill": ("distill",),
    "curriculum": ("curriculum",),
    "synthetic": ("synthetic",),
}


class RunConfig(Section):
    recipe: RecipeName = "baseline"
    name: str | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=100))
    eval: EvalConfig = Field(default_factory=EvalConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    # technique sections: validated on their own by config_from_dict (with the recipe's rules: present
    # only for the recipe that uses it, filled with its defaults there), None for the other recipes
    moe: MoEConfig | None = None
    distill: DistillConfig | None = None
    curriculum: CurriculumConfig | None = None
    synthetic: SyntheticConfig | None = None

    def to_dict(self) -> dict:
        d = self.model_dump(mode="json")
        for sec in TECHNIQUE_SECTIONS:  # a technique's section appears only in its recipe's config
            if d[sec] is None:
                d.pop(sec)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _set_dotted(d: dict, key: str, value, problems: Problems) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            problems.add(f"override {key}: {p} is not a section")
            return
        cur = nxt
    cur[parts[-1]] = value


def _drop(d: dict, loc: list) -> None:
    """Remove the value at `loc` (a pydantic error location) from nested dicts, if present."""
    for k in loc[:-1]:
        if not isinstance(d, dict) or k not in d:
            return
        d = d[k]
    if isinstance(d, dict) and loc:
        d.pop(loc[-1], None)


def _fmt_loc(loc) -> str:
    return ".".join(str(x) for x in loc if not str(x).startswith("function-"))


def _known_keys(cls, loc) -> list[str]:
    """The keys a config section accepts at `loc` (the section holding the unknown key), for 'did you mean'."""
    for part in loc[:-1]:
        field = getattr(cls, "model_fields", {}).get(str(part))
        if field is None:
            return []
        ann = field.annotation
        cands = [
            a
            for a in (ann, *getattr(ann, "__args__", ()))
            if isinstance(a, type) and issubclass(a, BaseModel)
        ]
        if not cands:
            return []
        cls = cands[0]
    return list(getattr(cls, "model_fields", {}))


def _validation_messages(err: ValidationError, prefix: str = "", cls=None) -> list[str]:
    cls = cls or RunConfig
    out = []
    for e in err.errors():
        loc = _fmt_loc(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            keys = [str(x) for x in e["loc"] if not str(x).startswith("function-")]
            msg = "unknown key" + (suggest(keys[-1], _known_keys(cls, keys)) if keys else "")
        where = ".".join(x for x in (prefix, loc) if x)
        out.append(f"{where}: {msg}" if where else msg)
    return out


def parse_overrides(items: list[str]) -> tuple[list[tuple[str, Any]], list[str]]:
    """'a.b=3' -> [('a.b', 3)]; values are parsed as YAML scalars (safe loader)."""
    pairs, bad = [], []
    for it in items or []:
        if "=" not in it or not it.split("=", 1)[0].strip():
            bad.append(f"override {it!r}: expected key=value (e.g. train.lr=1e-3)")
            continue
        k, v = it.split("=", 1)
        try:
            val = yaml.safe_load(v) if v.strip() else None
        except yaml.YAMLError:
            val = v
        pairs.append((k.strip(), val))
    return pairs, bad


def config_from_dict(raw: dict, *, recipe: str | None = None, source: str = "config") -> RunConfig:
    """Validate a plain dict into a RunConfig; raise one UserError with every problem."""
    problems = Problems(header=f"invalid {source}")
    raw = copy.deepcopy(raw or {})
    if not isinstance(raw, dict):
        raise UserError(f"{source}: the top level must be a mapping of sections")
    if recipe is not None:
        if recipe not in RECIPES:
            raise UserError(
                f"unknown recipe {recipe!r}{suggest(recipe, RECIPES)}; recipes: {', '.join(RECIPES)}"
            )
        if raw.get("recipe") not in (None, recipe):
            problems.add(
                f"recipe: the config is for {raw['recipe']!r} but the {recipe!r} recipe was asked for"
            )
        raw["recipe"] = recipe
    rec = raw.get("recipe", "baseline")
    sections = {}
    for sec in TECHNIQUE_SECTIONS:
        val = raw.pop(sec, None)
        if val is None:
            continue
        if rec in RECIPE_SECTIONS and sec not in RECIPE_SECTIONS[rec]:
            problems.add(
                f"{sec}: section not used by the {rec!r} recipe (a typo here would silently switch a technique off)"
            )
            continue
        if not isinstance(val, dict):
            problems.add(f"{sec}: must be a mapping")
            continue
        try:
            sections[sec] = TECHNIQUE_SECTIONS[sec].model_validate(val)
        except ValidationError as e:
            problems.extend(_validation_messages(e, sec, TECHNIQUE_SECTIONS[sec]))
    cfg = None
    try:
        cfg = RunConfig.model_validate(raw)
    except ValidationError as e:
        problems.extend(_validation_messages(e))
        # a second pass without the offending keys, so that checks which only run on otherwise valid
        # sections (heads dividing the width, one budget) are reported in the same message
        # (only sections that lost nothing but unknown keys: a dropped bad value would invent errors)
        pruned = copy.deepcopy(raw)
        tainted = {
            str(err["loc"][0]) for err in e.errors() if err["type"] != "extra_forbidden" and err["loc"]
        }
        for err in e.errors():
            _drop(pruned, [x for x in err["loc"] if not str(x).startswith("function-")])
        try:
            RunConfig.model_validate(pruned)
        except ValidationError as e2:
            # (a message naming no section comes from the default of a dropped section: not a problem)
            problems.extend(
                m
                for m in _validation_messages(e2)
                if m not in problems.items
                and m.split(".")[0].split(":")[0] not in tainted
                and m.split(".")[0].split(":")[0] in RunConfig.model_fields
            )
    if cfg is not None:
        for sec in RECIPE_SECTIONS.get(cfg.recipe, ()):
            if sec not in sections and sec not in [p.split(":")[0].split(".")[0] for p in problems.items]:
                try:
                    sections[sec] = TECHNIQUE_SECTIONS[sec]()
                except ValidationError as e:
                    problems.extend(_validation_messages(e, sec))
        problems.extend(_cross_checks(cfg, sections))
    problems.raise_if_any()
    for sec, val in sections.items():
        setattr(cfg, sec, val)
    return cfg


def section_problems(raw: dict, prefix: str = "") -> list[str]:
    """Each run-level section in `raw` (model, data, train, eval, lora, log, technique sections) checked
    on its own, so a file whose outer schema failed (a suite file) still reports every section's
    problems in the same message. A train section without a horizon is checked as if it had one."""
    out = []
    classes = {
        k: RunConfig.model_fields[k].annotation for k in ("model", "data", "train", "eval", "lora", "log")
    }
    for name, val in (raw or {}).items():
        if not isinstance(val, dict) or name not in (*classes, *TECHNIQUE_SECTIONS):
            continue
        cls = classes.get(name) or TECHNIQUE_SECTIONS[name]
        if name == "train" and not any(k in val for k in ("budget_flops", "budget_tokens", "steps")):
            val = {**val, "steps": 1}
        try:
            cls.model_validate(val)
        except ValidationError as e:
            out += _validation_messages(e, f"{prefix}{name}")
    return out


def _cross_checks(cfg: RunConfig, sections: dict) -> list[str]:
    out = []
    if (
        cfg.model.pretrained
    ):  # a local directory: weights, config and (unless given) tokenizer, checked up front
        out += [f"model.pretrained: {p}" for p in check_pretrained_dir(cfg.model.pretrained)]
        if not out:  # the FLOP ledger can count it (before any data or weights are touched)
            out += ledger_problems(cfg)
        if cfg.data.tokenizer == "train" and not out:
            out += pretrained_tokenizer_problems(cfg.model.pretrained)
    if cfg.model.load_in_4bit:
        out += loading_problems(cfg)
    out += tracker_problems(cfg)
    for val in sections.values():
        check = getattr(val, "cross_check", None)
        if check:
            out.extend(check(cfg) or [])
    syn = sections.get("synthetic")
    if (
        syn is not None
        and syn.generator == "train"
        and not any(k.split(".")[0] in ("data", "synthetic", "recipe") for k in syn.generator_overrides)
    ):
        try:  # the generator's own config, as the recipe will build it
            generator_run_config(cfg, syn)
        except UserError as e:
            out.extend(f"synthetic.generator_overrides: {p}" for p in e.problems)
    out += memory_problems(cfg, sections) + horizon_problems(cfg)
    return out


def ledger_problems(cfg) -> list[str]:
    """The FLOP ledger must count the pretrained model of `cfg` (a RunConfig): checked at config time,
    before data or weights are touched. Analytic families cost nothing; any other transformers causal
    LM is measured once on the meta device (no weights allocated); anything else is refused."""
    path = hub.local_dir(cfg.model.pretrained, weights=False)
    if cfg.recipe == "moe":  # the MoE recipe counts the sparse model it builds; the type must still be known
        try:
            mt = F._read_config_file(Path(path).expanduser() / "config.json").get("model_type")
        except UserError:
            return []  # reported by check_pretrained_dir
        return [] if F.counting_method(mt) else [f"pretrained model {path}: {F._unknown_type_msg(mt)}"]
    try:
        F.count_flops(str(Path(path).expanduser()), cfg.data.seq_len, lora=cfg.lora if cfg.lora.r else None)
    except UserError as e:
        return [f"pretrained model {path}: {p}" for p in e.problems]
    return []


HORIZON_KEYS = ("budget_flops", "budget_tokens", "steps")


def _cli_horizon_replaces_file(raw: dict, pairs: list[tuple[str, object]]) -> None:
    """A horizon given on the command line (train.steps=10) replaces the file's (budget_tokens: ...):
    the file's other horizon keys are dropped, so exactly one horizon remains (`train.steps=null`
    removes a horizon and gives none: the file's others stay)."""
    given = {
        k.split(".", 1)[1]
        for k, v in pairs
        if v is not None and k.startswith("train.") and k.split(".", 1)[1] in HORIZON_KEYS
    }
    train = raw.get("train")
    if given and isinstance(train, dict):
        for k in HORIZON_KEYS:
            if k not in given:
                train.pop(k, None)


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, *, recipe: str | None = None
) -> RunConfig:
    """Read a YAML config (safe loader), apply dotted overrides, validate; UserError lists all problems."""
    raw: dict = {}
    problems = Problems(header="invalid configuration")
    if path is not None:
        raw = read_yaml_mapping(path, "config")
    pairs, bad = parse_overrides(overrides or [])
    problems.extend(bad)
    _cli_horizon_replaces_file(raw, pairs)
    for k, v in pairs:
        _set_dotted(raw, k, v, problems)
    try:
        cfg = config_from_dict(raw, recipe=recipe, source=str(path) if path else "config")
    except UserError as e:  # override problems and config problems in one message
        if problems:
            raise UserError(problems.items + e.problems, header=e.header or problems.header) from None
        raise
    problems.raise_if_any()
    return cfg


# =============================================================================================
# the config of a helper model a technique trains first (teacher, generator, curriculum reference)
# =============================================================================================
def helper_run_config(cfg, *, drop: str, name: str | None = None, source: str, edit=None):
    """The baseline-recipe config of a helper model trained from run config `cfg`: `cfg` without its
    technique section `drop`, recipe baseline, named `name`; `edit(raw)` changes the raw dict first
    (a technique's own overrides)."""
    raw = cfg.to_dict()
    raw.pop(drop, None)
    raw.update(recipe="baseline", name=name)
    if edit is not None:
        edit(raw)
    return config_from_dict(raw, recipe="baseline", source=source)


def teacher_run_config(cfg, name: str):
    """The baseline-recipe config that trains the teacher: teacher_train's model and train sections,
    the student's data, eval and log sections (same corpus and tokenizer, same held-out set)."""
    tt = cfg.distill.teacher_train

    def edit(raw: dict) -> None:
        for k in [k for k in raw if k not in ("recipe", "name", "data", "eval", "log")]:
            del raw[k]
        raw["model"] = tt.model.model_dump(mode="json")
        raw["train"] = tt.train.model_dump(mode="json")

    return helper_run_config(cfg, drop="distill", name=name, source="distill.teacher_train", edit=edit)


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def generator_run_config(cfg, syn: SyntheticConfig | None = None):
    """The baseline RunConfig that trains the generator when `synthetic.generator` is 'train': this
    run's config without its synthetic section, plus `synthetic.generator_overrides`."""
    syn = syn or cfg.synthetic
    overrides = _flatten(syn.generator_overrides)  # {train: {steps: 5}} (a CLI override) = {train.steps: 5}

    def edit(raw: dict) -> None:
        probs = Problems()
        horizons = ("train.budget_flops", "train.budget_tokens", "train.steps")
        if any(k in overrides for k in horizons):  # overriding the horizon replaces it
            for k in horizons:
                raw.get("train", {}).pop(k.split(".")[1], None)
        for k, v in overrides.items():
            _set_dotted(raw, k, v, probs)
        probs.raise_if_any()

    return helper_run_config(cfg, drop="synthetic", source="generator config", edit=edit)


def reference_run_config(cfg):
    """The config of a reference model the recipe trains for scoring: the baseline recipe on the same
    data, with `reference_depth` layers (default: half the model's) and `reference_budget` x the budget."""
    cc = cfg.curriculum
    layers = cfg.model.resolved()["n_layer"]
    depth = cc.reference_depth or max(1, layers // 2)

    def edit(raw: dict) -> None:
        model = raw["model"]
        if model.get("depth"):
            model.update(depth=depth, n_layer=None)  # on the ladder: width shrinks with depth
        else:
            model["n_layer"] = depth
        t = raw["train"]
        for k in ("budget_flops", "budget_tokens"):
            if t.get(k) is not None:
                t[k] = t[k] * cc.reference_budget
        if t.get("steps") is not None:
            t["steps"] = max(1, int(round(t["steps"] * cc.reference_budget)))

    return helper_run_config(cfg, drop="curriculum", source="curriculum reference config", edit=edit)
