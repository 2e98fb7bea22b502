"""Build Hugging Face causal LMs: a Llama-style dense decoder from the size ladder or explicit fields,
or a local pretrained directory (weights + config, as `save_pretrained` writes them).

Every model is a transformers `PreTrainedModel`: saved with `save_pretrained`, loaded back with
`AutoModelForCausalLM`. Weights from users are read through safetensors (or `torch.load` with
`weights_only=True` inside transformers); `trust_remote_code` is off unless the config turns it on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from efflab.errors import UserError
from efflab.runs import weights_problems

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
                "adapter_model.safetensors")


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


def check_pretrained_dir(path: str) -> list[str]:
    """Problems with a local model directory (missing, no config, no weights)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        return [f"pretrained model {path}: no such directory (a local directory written by save_pretrained)"]
    probs = []
    if not (p / "config.json").is_file():
        probs.append(f"pretrained model {path}: no config.json")
    if not any((p / w).is_file() for w in WEIGHT_FILES) and not list(p.glob("model-*.safetensors")):
        probs.append(f"pretrained model {path}: no weights (expected one of {', '.join(WEIGHT_FILES[:3])})")
    # truncated or corrupt weights are named before any work (never loaded to find out)
    return probs + [f"pretrained model {path}: {w}" for w in weights_problems(p)]


def pretrained_tokenizer_problems(path: str) -> list[str]:
    """A pretrained directory must carry its tokenizer when the data pipeline is to use it."""
    p = Path(path).expanduser()
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if p.is_dir() and not any((p / n).is_file() for n in names):
        return [f"pretrained model {path}: no tokenizer files ({', '.join(names)}); save the tokenizer "
                f"with the model, or set data.tokenizer to a tokenizer directory"]
    return []


def check_pretrained_tokenizer(path: str) -> None:
    probs = pretrained_tokenizer_problems(path)
    if probs:
        raise UserError(probs)


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
        peft_cfg = LoraConfig(r=lora_cfg.r, lora_alpha=lora_cfg.alpha, lora_dropout=lora_cfg.dropout,
                              target_modules=spec, bias="none", task_type="CAUSAL_LM")
        with warnings.catch_warnings():  # peft calls a transformers attribute deprecated in v5
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, peft_cfg)
    except ValueError as e:
        raise UserError(f"lora.target_modules {targets} match no module of this model "
                        f"(its linear layers: {', '.join(names)}) [{e}]") from None


def load_pretrained_config(path: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    p = Path(path).expanduser()
    if not (p / "config.json").is_file():
        raise UserError(f"pretrained model {path}: no config.json")
    try:
        return AutoConfig.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except Exception as e:
        raise UserError(f"pretrained model {path}: unreadable config ({type(e).__name__}: {e})") from None


def load_pretrained(path: str, *, dtype=None, trust_remote_code: bool = False, attn_implementation: str | None = None):
    """AutoModelForCausalLM.from_pretrained on a local directory, with clear errors for bad input."""
    import torch
    from transformers import AutoModelForCausalLM

    probs = check_pretrained_dir(path)
    if probs:
        raise UserError(probs)
    kw = {"trust_remote_code": trust_remote_code, "dtype": dtype or torch.float32}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
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
        model = load_pretrained(cfg.model.pretrained, trust_remote_code=cfg.model.trust_remote_code,
                                attn_implementation=cfg.model.attn_implementation)
        if model.config.vocab_size < vocab_size:
            raise UserError(f"pretrained model {cfg.model.pretrained}: vocabulary {model.config.vocab_size} is "
                            f"smaller than its tokenizer's {vocab_size}")
        return model
    config = config or build_model_config(cfg, vocab_size)
    config._attn_implementation = cfg.model.attn_implementation
    return AutoModelForCausalLM.from_config(config, attn_implementation=cfg.model.attn_implementation)


def param_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "trainable_params": trainable}
