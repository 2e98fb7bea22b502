"""Build Hugging Face causal LMs: a Llama-style dense decoder from the size ladder or explicit fields,
or a local pretrained directory (weights + config, as `save_pretrained` writes them).

Every model is a transformers `PreTrainedModel`: saved with `save_pretrained`, loaded back with
`AutoModelForCausalLM`. Weights from users are read through safetensors (or `torch.load` with
`weights_only=True` inside transformers); `trust_remote_code` is off unless the config turns it on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from efflab import hub
from efflab.accounting.flops import train_flops_per_token
from efflab.config import config_from_dict, ledger_problems  # noqa: F401  (ledger_problems re-exported)
from efflab.errors import UserError
from efflab.model_files import (  # noqa: F401  (re-exported: config-time checks of a model directory)
    WEIGHT_FILES,
    check_pretrained_dir,
    check_pretrained_tokenizer,
    loading_problems,
    pretrained_tokenizer_problems,
)
from efflab.techniques.moe import moe_shape


def build_model_config(cfg, vocab_size: int | None = None):
    """The transformers config of the trained model described by `cfg` (a RunConfig).

    `vocab_size` defaults to `cfg.data.vocab_size` (the tokenizer's real size is passed by recipes).
    """
    if cfg.model.pretrained:
        return load_pretrained_config(cfg.model.pretrained, cfg.model.trust_remote_code)
    if cfg.recipe == "moe":  # Mixtral / Qwen2-MoE config from the moe section
        from efflab.moe_model import build_moe_config

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


def load_pretrained_config(path: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    p = Path(hub.local_dir(path, weights=False)).expanduser()
    if not (p / "config.json").is_file():
        raise UserError(f"pretrained model {path}: no config.json")
    try:
        return AutoConfig.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except Exception as e:
        raise UserError(f"pretrained model {path}: unreadable config ({type(e).__name__}: {e})") from None


DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def torch_dtype(choice: str = "auto", *, trained: bool = False):
    """The torch dtype a pretrained model loads in, for `model.dtype` = auto | bf16 | fp16 | fp32.

    auto: bf16 on a CUDA GPU that supports it (an 8B teacher takes 16 GB, not 32), fp32 on a CPU. A
    fully fine-tuned model (`trained=True`) keeps fp32 weights under auto: AdamW updates smaller than
    bf16's resolution (~0.4% of a weight) would vanish; its matmuls still run in bf16 through
    accelerate's autocast. Frozen weights (teacher, generator, reference, a LoRA base) take bf16.
    """
    import torch

    if choice == "auto":
        gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 and not trained else torch.float32
    return getattr(torch, DTYPES[choice])


def load_pretrained(
    path: str,
    *,
    dtype=None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    load_in_4bit: bool = False,
):
    """AutoModelForCausalLM.from_pretrained on a local directory or hub id, with clear errors for bad input.

    dtype: a torch dtype or "auto" | "bf16" | "fp16" | "fp32" (default fp32). load_in_4bit: QLoRA's
    NF4 base with double quantization and bf16 compute (bitsandbytes, CUDA), placed on the current GPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = hub.local_dir(path)
    probs = check_pretrained_dir(path)
    if probs:
        raise UserError(probs)
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype)
    kw = {"trust_remote_code": trust_remote_code, "dtype": dtype or torch.float32}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if load_in_4bit:  # Dettmers et al. 2023 (QLoRA), section 3: NF4, double quantization, bf16 compute
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kw["dtype"] = torch.bfloat16
        kw["device_map"] = {"": torch.cuda.current_device()}
    try:
        return AutoModelForCausalLM.from_pretrained(str(Path(path).expanduser()), **kw)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"pretrained model {path}: could not load ({type(e).__name__}: {e})") from None


def build_model(cfg, vocab_size: int, *, config=None):
    """The trained model: from `model.pretrained`, or freshly initialised (seeded by the caller)."""
    from transformers import AutoModelForCausalLM

    if cfg.recipe == "moe":  # efflab's sparse blocks, fresh or on a pretrained MoE model
        from efflab.moe_model import build_moe_model

        return build_moe_model(cfg, vocab_size, config=config)
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
        return model
    config = config or build_model_config(cfg, vocab_size)
    config._attn_implementation = cfg.model.attn_implementation
    return AutoModelForCausalLM.from_config(config, attn_implementation=cfg.model.attn_implementation)


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
