"""The config sections every recipe shares (`model`, `data`, `train`, `eval`, `lora`, `log`) and `Section`,
the base class of every section, technique sections included (`efflab.techniques.<name>`).

This module knows no other efflab module but `efflab.errors`, so that the technique modules can define
their sections on it and `efflab.config` can hold them as typed fields of the run config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from efflab.errors import UserError, parse_count


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
