"""Checks of a validated config that the schema cannot make: will the model fit in memory at all.

Run at config time (`config_from_dict`), before any run directory, data or model exists, so a model
that cannot fit is refused in one message instead of failing after data preparation.

The estimate is a lower bound, so it never refuses a model that could fit: fp32 weights, their
gradients and AdamW's two moments, 16 bytes per trainable parameter (mixed precision keeps fp32 master
weights, so it needs no less); activations, the teacher or generator and framework overhead are
left out. The parameter count follows the ladder in `ModelConfig.resolved()` (embedding and LM head,
attention q/k/v/o, SwiGLU gate/up/down; an MoE layer holds n_experts routed experts plus the shared one).
"""

from __future__ import annotations

import os
from pathlib import Path

BYTES_PER_PARAM = 16  # fp32 weight + gradient + AdamW exp_avg + exp_avg_sq


def param_lower_bound(cfg, sections: dict | None = None) -> int | None:
    """Parameters of the model a (non-pretrained) config describes; None when it loads a pretrained one."""
    if cfg.model.pretrained:
        return None
    r = cfg.model.resolved()
    if not (r["width"] and r["n_layer"] and r["n_head"]):
        return None
    d, L, hd = r["width"], r["n_layer"], r["head_dim"]
    attn = d * r["n_head"] * hd * 2 + 2 * d * r["n_kv_head"] * hd
    mlp = 3 * d * r["ffn_width"]
    moe = (sections or {}).get("moe") or getattr(cfg, "moe", None)
    if moe is not None and getattr(moe, "n_experts", None):
        width = getattr(moe, "expert_width", None) or max(
            1, r["ffn_width"] // max(1, getattr(moe, "top_k", 1))
        )
        mlp = 3 * d * width * int(moe.n_experts) + 3 * d * int(getattr(moe, "shared_expert_width", 0) or 0)
    vocab = int(cfg.data.vocab_size)
    embed = vocab * d * (1 if cfg.model.tie_embeddings else 2)
    return int(embed + L * (attn + mlp))


def _device_memory() -> tuple[int, str] | None:
    """(bytes, what) of the memory training would use: the first GPU's, else this machine's RAM."""
    try:
        import torch

        if torch.cuda.is_available():
            return int(
                torch.cuda.get_device_properties(0).total_memory
            ), f"GPU memory ({torch.cuda.get_device_name(0)})"
    except Exception:  # noqa: BLE001  (no usable torch/CUDA: fall back to RAM)
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")), "RAM"
    except (AttributeError, ValueError, OSError):
        return None


def pretrained_bytes_lower_bound(cfg) -> int | None:
    """Bytes a `model.pretrained` directory needs at least in training: its weight files loaded in fp32
    (at least their size on disk; adapter files left out), times 4 when every weight trains (weights,
    gradients, AdamW's two moments) rather than LoRA adapters only."""
    d = Path(cfg.model.pretrained).expanduser()
    if not d.is_dir():
        return None
    size = sum(
        f.stat().st_size
        for f in d.iterdir()
        if f.is_file() and f.suffix in (".safetensors", ".bin") and not f.name.startswith("adapter_")
    )
    return size * (1 if cfg.lora.r else 4) if size else None


def memory_problems(cfg, sections: dict | None = None) -> list[str]:
    """A problem naming the model keys when the model cannot fit in this machine's memory, else []."""
    if cfg.model.pretrained:
        need = pretrained_bytes_lower_bound(cfg)
        mem = _device_memory() if need and need >= 2**30 else None
        if mem is None or need <= mem[0]:
            return []
        how = "its weights in fp32" if cfg.lora.r else "weights, gradients and AdamW state in fp32"
        return [
            f"model.pretrained {cfg.model.pretrained}: training it needs at least {need / 2**30:,.1f} GiB "
            f"({how}), more than this machine's {mem[0] / 2**30:,.1f} GiB of {mem[1]}; use LoRA (lora.r: 16) "
            f"or a smaller model"
        ]
    n = param_lower_bound(cfg, sections)
    if n is None:
        return []
    need = n * BYTES_PER_PARAM
    if need < 2**30:  # under 1 GiB: not worth asking the device
        return []
    mem = _device_memory()
    if mem is None or need <= mem[0]:
        return []
    r = cfg.model.resolved()
    return [
        f"model: {n:.3g} parameters (depth/n_layer={r['n_layer']}, width={r['width']}, "
        f"ffn_width={r['ffn_width']}, data.vocab_size={cfg.data.vocab_size}) need at least "
        f"{need / 2**30:,.1f} GiB for weights, gradients and AdamW state ({BYTES_PER_PARAM} bytes each), more "
        f"than this machine's {mem[0] / 2**30:,.1f} GiB of {mem[1]}; lower model.depth, model.aspect or model.width"
    ]


MAX_STEPS = 10_000_000


def horizon_problems(cfg) -> list[str]:
    """A token budget (or step count) meaning more than MAX_STEPS optimizer steps: a typo, refused before
    any work. (Steps >= budget_tokens / (batch_size x seq_len): no source uses more tokens per step.)"""
    t = cfg.train
    if t.steps is not None and t.steps > MAX_STEPS:
        return [f"train.steps={t.steps:,} is more than {MAX_STEPS:,} optimizer steps"]
    if t.budget_tokens is not None and t.budget_tokens / (t.batch_size * cfg.data.seq_len) > MAX_STEPS:
        return [
            f"train.budget_tokens={t.budget_tokens:.3g} means more than {MAX_STEPS:,} optimizer steps of "
            f"train.batch_size x data.seq_len = {t.batch_size * cfg.data.seq_len:,} tokens; lower it"
        ]
    return []
