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


def memory_problems(cfg, sections: dict | None = None) -> list[str]:
    """A problem naming the model keys when the model cannot fit in this machine's memory, else []."""
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
