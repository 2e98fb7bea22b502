"""Typed run configs: YAML + dotted `key=value` overrides, every problem reported at once.

A run config has the sections every recipe shares (`model`, `data`, `train`, `eval`, `lora`, `log`)
and one optional section per technique (`moe`, `distill`, `curriculum`, `synthetic`), whose schema
lives beside the technique in `efflab.techniques.<name>`. A recipe rejects the section of a technique
it does not use, so a typo cannot silently switch a technique off.

YAML is read with `yaml.safe_load` only; config values are data, never code.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from efflab import RECIPES  # noqa: E402  (re-exported)
from efflab.errors import Problems, UserError, parse_count
from efflab.preflight import horizon_problems, memory_problems

TECHNIQUE_SECTIONS = {
    "moe": "efflab.techniques.moe:MoEConfig",
    "distill": "efflab.techniques.distill:DistillConfig",
    "curriculum": "efflab.techniques.curriculum:CurriculumConfig",
    "synthetic": "efflab.techniques.synthetic:SyntheticConfig",
}
# which technique sections each recipe uses
RECIPE_SECTIONS = {
    "baseline": (),
    "moe": ("moe",),
    "distill": ("distill",),
    "curriculum": ("curriculum",),
    "synthetic": ("synthetic",),
}


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def _count(v):
    """Accept 1e12, '15.6e12', 2_000 for counts and budgets."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, str):
        try:
            return parse_count(v)
        except UserError as e:  # a ValueError, so pydantic names the key beside every other problem
            raise ValueError(e.message.removeprefix("value: ")) from None
    return v


class ModelConfig(Section):
    """The trained model. Either a point on the depth ladder, explicit fields, or a local pretrained dir.

    Ladder (as nanochat sizes models by one dial): width = depth * aspect, heads = width / head_dim,
    FFN = ffn_mult * width rounded up to a multiple of 32 (SwiGLU keeps about 8/3 x width).
    """

    arch: Literal["llama"] = "llama"
    depth: int | None = Field(default=None, ge=1, le=128, description="layers; the one-dial ladder")
    aspect: int = Field(default=64, ge=8, description="width per layer of depth on the ladder")
    width: int | None = Field(default=None, ge=8, description="d_model")
    n_layer: int | None = Field(default=None, ge=1)
    n_head: int | None = Field(default=None, ge=1)
    n_kv_head: int | None = Field(default=None, ge=1, description="grouped-query attention; default = n_head")
    head_dim: int = Field(default=64, ge=4)
    ffn_mult: float = Field(default=8 / 3, gt=0)
    ffn_width: int | None = Field(default=None, ge=1)
    tie_embeddings: bool = False
    rope_theta: float = Field(default=10000.0, gt=0, description="rotary base; > 0")
    init_std: float = Field(
        default=0.02, gt=0, le=1, description="transformers accepts initializer_range in [0, 1]"
    )
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    pretrained: str | None = Field(
        default=None,
        description="local directory written by save_pretrained, "
        "or a hub id (owner/name, fetched through huggingface_hub)",
    )
    trust_remote_code: bool = False
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        default="auto",
        description="pretrained weights: auto = bf16 on a GPU (fp32 for fully trained weights), fp32 on CPU",
    )
    load_in_4bit: bool = Field(default=False, description="QLoRA: 4-bit NF4 base + LoRA (CUDA, bitsandbytes)")

    def resolved(self) -> dict:
        """Concrete shape {n_layer, width, n_head, n_kv_head, head_dim, ffn_width} (no pretrained)."""
        n_layer = self.n_layer or self.depth
        width = self.width or (self.depth * self.aspect if self.depth else None)
        n_head = self.n_head or (max(1, width // self.head_dim) if width else None)
        head_dim = width // n_head if (width and n_head) else self.head_dim
        ffn = self.ffn_width or (int(-(-(self.ffn_mult * width) // 32) * 32) if width else None)
        return {
            "n_layer": n_layer,
            "width": width,
            "n_head": n_head,
            "n_kv_head": self.n_kv_head or n_head,
            "head_dim": head_dim,
            "ffn_width": ffn,
        }

    @model_validator(mode="after")
    def _shape(self):
        if self.pretrained:
            return self
        r = self.resolved()
        errs = []
        if r["n_layer"] is None:
            errs.append("give depth (the ladder dial) or n_layer")
        if r["width"] is None:
            errs.append("give depth (the ladder dial) or width")
        if r["width"] and r["n_head"] and r["width"] % r["n_head"]:
            errs.append(f"n_head={r['n_head']} does not divide width={r['width']}")
        if r["n_head"] and r["n_kv_head"] and r["n_head"] % r["n_kv_head"]:
            errs.append(f"n_kv_head={r['n_kv_head']} does not divide n_head={r['n_head']}")
        if r["head_dim"] and r["head_dim"] % 2:
            errs.append(f"head_dim={r['head_dim']} must be even for rotary embeddings")
        if errs:
            raise ValueError("; ".join(errs))
        return self


class DataConfig(Section):
    """Corpus -> tokenizer -> packed blocks. `corpus` is `stdlib` (embedded, offline), a local path
    (.txt/.md/.jsonl/.json/.parquet file or folder of them, or a `datasets.save_to_disk` folder), or
    `hf:NAME[:CONFIG]` for a hub dataset (needs the network)."""

    corpus: str = "stdlib"
    text_field: str = "text"
    split: str = "train"
    max_chars: float | None = Field(
        default=None, description="cap on corpus characters (documents kept whole)"
    )
    tokenizer: str = Field(
        default="train", description="'train' (BPE on the train split) or a local tokenizer dir"
    )
    vocab_size: int = Field(default=4096, ge=260, le=1_000_000)
    seq_len: int = Field(default=256, ge=8, le=1_048_576)
    eval_fraction: float = Field(default=0.05, gt=0, lt=0.5)
    valid_fraction: float = Field(
        default=0.0,
        ge=0,
        lt=0.5,
        description="documents carved out of training "
        "for a validation split (eval.split=valid), never the eval set",
    )
    format: Literal["text", "chat"] = Field(
        default="text", description="chat: prompt/response or messages JSONL, loss on responses"
    )
    cache_dir: str | None = Field(default=None, description="default: $EFFLAB_CACHE or ~/.cache/efflab")

    _c = field_validator("max_chars", mode="before")(_count)


class TrainConfig(Section):
    """Optimization and the horizon. Exactly one of budget_flops / budget_tokens / steps."""

    budget_flops: float | None = Field(
        default=None, description="train-phase FLOPs (docs/conventions.md section 2)"
    )
    budget_tokens: float | None = None
    steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=16, ge=1, description="global sequences per optimizer step")
    micro_batch_size: int | None = Field(
        default=None, ge=1, description="per process per forward; default batch_size"
    )
    lr: float = Field(default=3e-3, gt=0, lt=1)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    warmup_steps: int | float = Field(
        default=0.05, ge=0, description="int steps, or a fraction of the horizon if < 1"
    )
    weight_decay: float = Field(default=0.1, ge=0)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.95, ge=0, lt=1)
    grad_clip: float = Field(default=1.0, ge=0)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    fused_optimizer: Literal["auto", "on", "off"] = "auto"
    compile: bool = False
    gradient_checkpointing: bool = False
    checkpoint_every: int = Field(
        default=0, ge=0, description="steps between checkpoints; 0 = only at the end"
    )
    keep_checkpoint: bool = Field(
        default=False,
        description="keep the last checkpoint when the run completes "
        "(default: removed; model/ holds the result)",
    )
    seed: int = 0
    init_seed: int | None = Field(
        default=None,
        description="seed of the initial weights; default train.seed (which also orders the data)",
    )
    threads: int | None = Field(default=None, ge=1, description="torch CPU threads; default: all cores")

    _c = field_validator("budget_flops", "budget_tokens", "steps", mode="before")(_count)

    @field_validator("budget_flops", "budget_tokens")
    @classmethod
    def _positive(cls, v):
        if v is not None and v <= 0:
            raise ValueError("a budget must be positive")
        return v

    @model_validator(mode="after")
    def _horizon(self):
        given = [k for k in ("budget_flops", "budget_tokens", "steps") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"give exactly one of budget_flops, budget_tokens, steps (got {given or 'none'})"
            )
        mb = self.micro_batch_size
        if mb is not None and self.batch_size % mb:
            raise ValueError(f"micro_batch_size={mb} does not divide batch_size={self.batch_size}")
        return self


class EvalConfig(Section):
    every: int = Field(default=50, ge=1, description="steps between evaluations (and at the end)")
    max_blocks: int = Field(default=64, ge=1, description="held-out blocks evaluated (fixed, hashed)")
    batch_size: int = Field(default=16, ge=1)
    split: Literal["eval", "valid"] = Field(
        default="eval",
        description="valid: score on data.valid_fraction's "
        "documents (hyperparameter sweeps), not the eval set",
    )


class LoraConfig(Section):
    r: int = Field(default=0, ge=0, description="0 = off")
    alpha: float = Field(default=16, gt=0)
    dropout: float = Field(default=0.0, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    merge_on_save: bool = True


class LogConfig(Section):
    tensorboard: bool = False
    trackers: list[str] = Field(
        default_factory=list,
        description="accelerate trackers: tensorboard, wandb, "
        "trackio, mlflow, comet_ml, aim, clearml, dvclive, swanlab",
    )
    progress: bool = True
    every: int = Field(default=10, ge=1, description="steps between metrics.jsonl rows")


class RunConfig(Section):
    recipe: Literal["baseline", "moe", "distill", "curriculum", "synthetic"] = "baseline"
    name: str | None = None
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(steps=100))
    eval: EvalConfig = Field(default_factory=EvalConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    moe: Any = None
    distill: Any = None
    curriculum: Any = None
    synthetic: Any = None

    def to_dict(self) -> dict:
        d = self.model_dump(mode="json")
        for sec in TECHNIQUE_SECTIONS:
            v = getattr(self, sec)
            d[sec] = v.model_dump(mode="json") if isinstance(v, BaseModel) else v
            if d[sec] is None:
                d.pop(sec)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _section_class(name: str):
    mod, cls = TECHNIQUE_SECTIONS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


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
    from efflab.errors import suggest

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
            from efflab.errors import suggest

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
            sections[sec] = _section_class(sec).model_validate(val)
        except ValidationError as e:
            problems.extend(_validation_messages(e, sec, _section_class(sec)))
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
                    sections[sec] = _section_class(sec)()
                except ValidationError as e:
                    problems.extend(_validation_messages(e, sec))
        problems.extend(_cross_checks(cfg, sections))
    problems.raise_if_any()
    for sec, val in sections.items():
        object.__setattr__(cfg, sec, val)
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
        cls = classes.get(name) or _section_class(name)
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
        from efflab.models import check_pretrained_dir, pretrained_tokenizer_problems

        out += [f"model.pretrained: {p}" for p in check_pretrained_dir(cfg.model.pretrained)]
        if not out:  # the FLOP ledger can count it (before any data or weights are touched)
            from efflab.models import ledger_problems

            out += ledger_problems(cfg)
        if cfg.data.tokenizer == "train" and not out:
            out += pretrained_tokenizer_problems(cfg.model.pretrained)
    if cfg.model.load_in_4bit:
        from efflab.models import loading_problems

        out += loading_problems(cfg)
    from efflab.trackers import problems as tracker_problems

    out += tracker_problems(cfg)
    for val in sections.values():
        check = getattr(val, "cross_check", None)
        if check:
            out.extend(check(cfg) or [])
    out += memory_problems(cfg, sections) + horizon_problems(cfg)
    return out


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
        p = Path(path)
        if not p.is_file():
            raise UserError(f"config file not found: {p}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise UserError(f"{p}: not a YAML config (binary or not UTF-8 text)") from None
        except yaml.YAMLError as e:
            raise UserError(f"{p}: not valid YAML ({e})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{p}: the top level must be a mapping of sections")
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
