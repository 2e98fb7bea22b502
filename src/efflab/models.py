"""Build Hugging Face causal LMs: a Llama-style dense decoder from the size ladder or explicit fields,
or a local pretrained directory (weights + config, as `save_pretrained` writes them).

Every model is a transformers `PreTrainedModel`: saved with `save_pretrained`, loaded back with
`AutoModelForCausalLM`. Weights from users are read through safetensors (or `torch.load` with
`weights_only=True` inside transformers); `trust_remote_code` is off unless the config turns it on.
"""

from __future__ import annotations

import warnings

from efflab.accounting.flops import train_flops_per_token
from efflab.config import config_from_dict, ledger_problems  # noqa: F401  (ledger_problems re-exported)
from efflab.errors import UserError
from efflab.model_files import (  # noqa: F401  (re-exported: a model directory, checked and loaded)
    DTYPES,
    WEIGHT_FILES,
    check_pretrained_dir,
    check_pretrained_tokenizer,
    load_pretrained,
    load_pretrained_config,
    loading_problems,
    pretrained_tokenizer_problems,
    torch_dtype,
)
from efflab.moe_model import build_moe_config, build_moe_model
from efflab.techniques.moe import moe_shape


def build_model_config(cfg, vocab_size: int | None = None):
    """The transformers config of the trained model described by `cfg` (a RunConfig).

    `vocab_size` defaults to `cfg.data.vocab_size` (the tokenizer's real size is passed by recipes).
    """
    if cfg.model.pretrained:
        return load_pretrained_config(cfg.model.pretrained, cfg.model.trust_remote_code)
    if cfg.recipe == "moe":  # Mixtral / Qwen2-MoE config from the moe section
        return build_moe_config(cfg, vocab_size)
    from transformers import LlamaConfig

    r = cfg.model.resolved()
    vocab = int(vocab_size or cfg.data.vocab_size)
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=r["width"],
        intermediate_size=r["ffn_width"],
        num_hidden_layers=r["n_layer"],
        num_attention_heads=r["n_head"],
        num_key_value_heads=r["n_kv_head"],
        head_dim=r["head_dim"],
        max_position_embeddings=max(cfg.data.seq_len, 128),
        rope_theta=cfg.model.rope_theta,
        initializer_range=cfg.model.init_std,
        tie_word_embeddings=cfg.model.tie_embeddings,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        use_cache=False,
    )


def apply_lora(model, lora_cfg):
    """Wrap `model` with peft LoRA adapters (rank, alpha, dropout, target modules); base weights freeze.

    Target modules that match nothing are bad input: the error names the model's linear layers.
    """
    import torch
    from peft import LoraConfig, get_peft_model

    targets = lora_cfg.target_modules
    spec = "all-linear" if targets == ["all-linear"] else list(targets)
    names = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    try:
        peft_cfg = LoraConfig(
            r=lora_cfg.r,
            lora_alpha=lora_cfg.alpha,
            lora_dropout=lora_cfg.dropout,
            target_modules=spec,
            bias="none",
            task_type="CAUSAL_LM",
        )
        with warnings.catch_warnings():  # peft calls a transformers attribute deprecated in v5
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, peft_cfg)
    except ValueError as e:
        raise UserError(
            f"lora.target_modules {targets} match no module of this model "
            f"(its linear layers: {', '.join(names)}) [{e}]"
        ) from None


def build_model(cfg, vocab_size: int, *, config=None, lora: bool = True):
    """The trained model: from `model.pretrained`, or freshly initialised (seeded by the caller), wrapped
    in LoRA adapters when `lora.r` > 0 (base weights frozen). lora=False: the bare model, for a caller
    that copies weights in first (upcycling) and applies `apply_lora` after."""
    from transformers import AutoModelForCausalLM

    with_lora = cfg.lora if lora and cfg.lora.r else None
    if cfg.recipe == "moe":  # efflab's sparse blocks, fresh or on a pretrained MoE model
        model = build_moe_model(cfg, vocab_size, config=config)
        return apply_lora(model, with_lora) if with_lora else model
    if cfg.model.pretrained:
        q4 = bool(getattr(cfg.model, "load_in_4bit", False))
        model = load_pretrained(
            cfg.model.pretrained,
            trust_remote_code=cfg.model.trust_remote_code,
            attn_implementation=cfg.model.attn_implementation,
            load_in_4bit=q4,
            dtype=torch_dtype(cfg.model.dtype, trained=not cfg.lora.r),
        )
        if q4:  # norms to fp32, input grads on, as peft prescribes for k-bit training
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.train.gradient_checkpointing
            )
        if model.config.vocab_size < vocab_size:
            raise UserError(
                f"pretrained model {cfg.model.pretrained}: vocabulary {model.config.vocab_size} is "
                f"smaller than its tokenizer's {vocab_size}"
            )
        return apply_lora(model, with_lora) if with_lora else model
    config = config or build_model_config(cfg, vocab_size)
    config._attn_implementation = cfg.model.attn_implementation
    model = AutoModelForCausalLM.from_config(config, attn_implementation=cfg.model.attn_implementation)
    return apply_lora(model, with_lora) if with_lora else model


def param_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "trainable_params": trainable}


# =============================================================================================
# the MoE run and its dense partner on the ladder (techniques/moe.py's docstring; equal active FLOPs)
# =============================================================================================
def flop_budget(cfg, vocab_size: int | None = None) -> float:
    """A run config's train-phase FLOP budget: budget_flops, or budget_tokens / steps converted with the
    accounting layer's train FLOPs per token for its model (tokenizer size assumed = data.vocab_size)."""
    t = cfg.train
    if t.budget_flops is not None:
        return float(t.budget_flops)
    T = cfg.data.seq_len
    tokens = t.budget_tokens if t.budget_tokens is not None else t.steps * t.batch_size * T
    return float(tokens) * train_flops_per_token(build_model_config(cfg, vocab_size), T)


def moe_config_for(dense_cfg, *, name: str | None = None, **moe_fields):
    """The MoE run paired with a dense baseline RunConfig on the ladder (see the module docstring):
    same model/data/eval sections, experts sized for equal active FLOPs per token (unless `moe_fields`
    say otherwise, e.g. expert_width), and the dense run's FLOP budget."""
    raw = dense_cfg.to_dict()
    raw["recipe"] = "moe"
    raw["name"] = name or (f"{dense_cfg.name}-moe" if dense_cfg.name else None)
    budget = flop_budget(dense_cfg)
    raw["train"].update(budget_flops=budget, budget_tokens=None, steps=None)
    raw["moe"] = dict(moe_fields)
    return config_from_dict(raw, recipe="moe", source="moe_config_for")


def dense_config_for(moe_cfg, *, name: str | None = None):
    """The dense baseline RunConfig paired with a moe RunConfig: the same attention and sections, the
    FFN as wide as the active experts together (shared + top_k x expert_width), the same budget."""
    if moe_cfg.model.pretrained:
        raise UserError("dense_config_for: a pretrained MoE model has no dense partner on the ladder")
    s = moe_shape(moe_cfg)
    raw = moe_cfg.to_dict()
    raw.pop("moe", None)
    raw["recipe"] = "baseline"
    raw["name"] = name or (f"{moe_cfg.name}-dense" if moe_cfg.name else None)
    raw["model"]["ffn_width"] = s.active_ffn
    return config_from_dict(raw, recipe="baseline", source="dense_config_for")


def active_flops_ratio(moe_cfg, dense_cfg=None, vocab_size: int | None = None) -> float:
    """Train FLOPs per token of the MoE model over its dense partner's (accounting layer; >1 by the router)."""
    dense_cfg = dense_cfg or dense_config_for(moe_cfg)
    T = moe_cfg.data.seq_len
    return train_flops_per_token(build_model_config(moe_cfg, vocab_size), T) / train_flops_per_token(
        build_model_config(dense_cfg, vocab_size), T
    )
