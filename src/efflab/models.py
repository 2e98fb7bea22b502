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
from efflab.errors import UserError
from efflab.runs import weights_problems

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
)


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
    """Problems with a local model directory or hub id (missing, no config, no weights). A hub id is
    fetched without its weights here (config and tokenizer); the weights come when the model loads."""
    if hub.is_hub_id(path):
        try:
            local = hub.local_dir(path, weights=False)
        except UserError as e:
            return [f"pretrained model {p}" for p in e.problems]
        return [] if (Path(local) / "config.json").is_file() else [f"pretrained model {path}: no config.json"]
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


def ledger_problems(cfg) -> list[str]:
    """The FLOP ledger must count the pretrained model of `cfg` (a RunConfig): checked at config time,
    before data or weights are touched. Analytic families cost nothing; any other transformers causal
    LM is measured once on the meta device (no weights allocated); anything else is refused."""
    from efflab.accounting import flops as F

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


def pretrained_tokenizer_problems(path: str) -> list[str]:
    """A pretrained directory must carry its tokenizer when the data pipeline is to use it."""
    p = Path(hub.local_dir(path, weights=False)).expanduser()
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if p.is_dir() and not any((p / n).is_file() for n in names):
        return [
            f"pretrained model {path}: no tokenizer files ({', '.join(names)}); save the tokenizer "
            f"with the model, or set data.tokenizer to a tokenizer directory"
        ]
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


def loading_problems(cfg) -> list[str]:
    """Config-time problems with how the pretrained model loads (4-bit QLoRA needs LoRA, CUDA and
    bitsandbytes)."""
    m = cfg.model
    if not getattr(m, "load_in_4bit", False):
        return []
    import importlib.util

    import torch

    out = []
    if not m.pretrained:
        out.append("model.load_in_4bit (QLoRA) quantizes a pretrained model: set model.pretrained")
    if not cfg.lora.r:
        out.append("model.load_in_4bit (QLoRA) trains LoRA adapters on a frozen 4-bit base: set lora.r > 0")
    if not torch.cuda.is_available():
        out.append(
            "model.load_in_4bit (QLoRA) runs on a CUDA GPU only (bitsandbytes 4-bit kernels); this "
            "machine has none: drop it, or use plain LoRA (lora.r) with model.dtype"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        out.append("model.load_in_4bit (QLoRA) needs bitsandbytes: pip install 'efflab[qlora]'")
    return out


def load_pretrained(
    path: str,
    *,
    dtype=None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    load_in_4bit: bool = False,
    lora=None,
    gradient_checkpointing: bool = False,
):
    """AutoModelForCausalLM.from_pretrained on a local directory or hub id, with clear errors for bad input.

    dtype: a torch dtype or "auto" | "bf16" | "fp16" | "fp32" (default fp32). load_in_4bit: QLoRA's
    NF4 base with double quantization and bf16 compute (bitsandbytes, CUDA), placed on the current GPU,
    prepared for k-bit training (`gradient_checkpointing` passed on to peft). lora: a LoRA config
    (`lora` section); when its r > 0 the model comes back wrapped in trainable adapters (`apply_lora`).
    Only the trained model asks for it: a teacher, generator or reference scorer loads without.
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
        model = AutoModelForCausalLM.from_pretrained(str(Path(path).expanduser()), **kw)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"pretrained model {path}: could not load ({type(e).__name__}: {e})") from None
    if load_in_4bit:  # norms to fp32, input grads on, as peft prescribes for k-bit training
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return apply_lora(model, lora) if lora is not None and lora.r else model


def build_model(cfg, vocab_size: int, *, config=None, lora: bool = True):
    """The trained model: from `model.pretrained`, or freshly initialised (seeded by the caller), wrapped
    in LoRA adapters when `lora.r` > 0 (base weights frozen). lora=False: the bare model, for a caller
    that copies weights in first (upcycling) and applies `apply_lora` after."""
    from transformers import AutoModelForCausalLM

    with_lora = cfg.lora if lora and cfg.lora.r else None
    if cfg.recipe == "moe":  # efflab's sparse blocks, fresh or on a pretrained MoE model
        from efflab.moe_model import build_moe_model

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
            lora=with_lora,
            gradient_checkpointing=cfg.train.gradient_checkpointing,
        )
        if model.config.vocab_size < vocab_size:
            raise UserError(
                f"pretrained model {cfg.model.pretrained}: vocabulary {model.config.vocab_size} is "
                f"smaller than its tokenizer's {vocab_size}"
            )
        return model
    config = config or build_model_config(cfg, vocab_size)
    config._attn_implementation = cfg.model.attn_implementation
    model = AutoModelForCausalLM.from_config(config, attn_implementation=cfg.model.attn_implementation)
    return apply_lora(model, with_lora) if with_lora else model


def param_counts(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"params": total, "trainable_params": trainable}
