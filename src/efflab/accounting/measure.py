"""Measured FLOPs with torch.utils.flop_counter.FlopCounterMode: the cross-check of `flops.py`.

FlopCounterMode counts FLOPs per aten op from a formula table (mm, addmm, bmm, baddbmm, the CUDA
SDPA kernels, convolutions). An op missing from the table counts as ZERO without a warning, so a
cross-check can pass or fail by accident. Two such gaps matter for transformers 5 on CPU:

- attention: SDPA on CPU runs `aten._scaled_dot_product_flash_attention_for_cpu`, not in the
  table. We run attention in eager mode (plain bmm's, counted), and also register a formula for
  the CPU kernel (full attention, like the table's CUDA formulas) in case eager is unavailable.
- MoE experts: the default `grouped_mm` experts path (`aten._grouped_mm`) is not in the table. We
  register a formula for it (counting only the rows the kernel computes), so the implementations
  efflab trains with (`efflab`, `efflab_grouped`, `grouped_mm`, `eager`) are measured as they run;
  any other (`batched_mm`) is switched to `eager` (a loop of F.linear over the experts that were
  hit; transformers selects it with `model.set_experts_implementation("eager")`, the
  `experts_implementation=` kwarg of from_config/from_pretrained, or `config._experts_implementation`).

Both switches are undone afterwards. Each result also lists `uncounted`: every module holding a
weight matrix that recorded zero FLOPs, which must be empty for a measurement to be trusted.

Per-module counts (`by_module`) attribute forward FLOPs exactly; FlopCounterMode attributes
backward FLOPs to modules only approximately (whichever module's backward hook is active), so use
`by_module` to see that a part was counted, and totals to compare.
"""

from __future__ import annotations

import contextlib


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    # query [B, Hq, Tq, d_qk], key [B, Hk, Tk, d_qk], value [B, Hk, Tk, d_v]; GQA repeats K/V to Hq heads
    b, h, tq, dqk = query
    tk, dv = key[-2], value[-1]
    return 2 * b * h * tq * tk * dqk + 2 * b * h * tq * tk * dv


def _cpu_sdpa_backward_flops(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return 2 * _cpu_sdpa_flops(query, key, value)  # dQ, dK (scores) and dP, dV (values)


def _grouped_mm_flops(a, b, offs=None, *args, out_val=None, **kwargs) -> int:
    """aten._grouped_mm (torch's grouped GEMM, the `grouped_mm`/`efflab_grouped` MoE experts): 2 FLOPs
    per multiply-add on the rows the kernel computes. With `offs` (cumulative group ends along the
    grouped dimension) only the first offs[-1] of those rows are computed: assignments sorted past it
    (dropped, an id of n_experts) cost nothing. Layouts: [S, K] x [E, K, N] -> [S, N] (forward, input
    gradient); [K, S] x [S, N] -> [E, K, N] (weight gradient, S split among the groups); [E, M, K] x
    [K, S] -> [M, S]; [E, M, K] x [E, K, N] -> [E, M, N] (batched, no offs). Reads offs (a host sync):
    registered raw, as FlopCounterMode lets a formula see values, for measurement only."""
    # on the meta device (counting a model without weights) there are no values: every row counts
    used = int(offs[-1]) if offs is not None and offs.numel() and offs.device.type != "meta" else None
    if a.dim() == 2 and b.dim() == 3:
        return 2 * (a.shape[0] if used is None else used) * a.shape[1] * b.shape[-1]
    if a.dim() == 2 and b.dim() == 2:
        return 2 * a.shape[0] * (a.shape[1] if used is None else used) * b.shape[1]
    if a.dim() == 3 and b.dim() == 2:
        return 2 * a.shape[1] * a.shape[2] * (b.shape[1] if used is None else used)
    return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[-1]


_grouped_mm_flops._get_raw = True  # FlopCounterMode passes tensors (not shapes) to a raw formula


def _custom_mapping() -> dict:
    import torch

    mapping = {}
    ops = torch.ops.aten
    if hasattr(ops, "_grouped_mm"):
        mapping[ops._grouped_mm] = _grouped_mm_flops
    if hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu"):
        mapping[ops._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
    if hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu_backward"):
        mapping[ops._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flops
    return mapping


def _hf_model(model):
    """The transformers PreTrainedModel inside `model` (a peft wrapper, or itself)."""
    inner = model
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    return inner if hasattr(inner, "config") else None


# experts implementations whose every matmul FlopCounterMode counts (grouped GEMMs by
# `_grouped_mm_flops`), so the cross-check runs the kernel that trains; others are measured as eager
COUNTED_EXPERTS = ("eager", "efflab", "efflab_grouped", "grouped_mm")


@contextlib.contextmanager
def counted_implementations(model):
    """Run `model` with eager attention and counted MoE experts (every matmul counted), then restore."""
    hf = _hf_model(model)
    restore = []
    if hf is not None and hasattr(hf, "set_attn_implementation"):
        old = getattr(hf.config, "_attn_implementation", None)
        if old != "eager":
            hf.set_attn_implementation("eager")
            restore.append(lambda: hf.set_attn_implementation(old))
    if hf is not None and hasattr(hf, "get_experts_implementation") and hf._can_set_experts_implementation():
        old_e = hf.get_experts_implementation()
        if any(v not in COUNTED_EXPERTS for v in old_e.values()):
            hf.set_experts_implementation("eager")
            restore.append(lambda: hf.set_experts_implementation(old_e))
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()


def _uncounted(model, by_module: dict) -> list[str]:
    """Modules owning a weight matrix (2-D or 3-D parameter; embeddings excluded) with zero FLOPs."""
    import torch

    root = type(model).__name__
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Embedding) or not name:
            continue
        if any(p.dim() >= 2 for p in mod.parameters(recurse=False)) and not by_module.get(
            f"{root}.{name}", 0
        ):
            out.append(name)
    return out


def _by_module(counter) -> dict[str, float]:
    return {name: float(sum(v.values())) for name, v in counter.get_flop_counts().items() if name != "Global"}


def measure_train_flops(model, input_ids, labels=None) -> dict:
    """FLOPs of one forward + backward of `model` on `input_ids` [B, T] (LM loss, labels = input_ids).

    Returns {"total", "forward", "backward", "per_token" (total / B*T), "forward_per_token", "tokens",
    "by_module" (module path -> FLOPs), "uncounted" (weight-holding modules with zero FLOPs)}.
    Gradients already in `.grad` are restored afterwards (the measurement does not change training state).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    params = [p for p in model.parameters()]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    labels = input_ids if labels is None else labels
    try:
        with (
            counted_implementations(model),
            FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as fc,
        ):
            with torch.enable_grad():
                out = model(input_ids=input_ids, labels=labels)
                forward = fc.get_total_flops()
                out.loss.backward()
        total = fc.get_total_flops()
    finally:
        for p, g in zip(params, saved):
            p.grad = g
    by_module = _by_module(fc)
    tokens = int(input_ids.numel())
    return {
        "total": float(total),
        "forward": float(forward),
        "backward": float(total - forward),
        "per_token": total / tokens,
        "forward_per_token": forward / tokens,
        "tokens": tokens,
        "by_module": by_module,
        "uncounted": _uncounted(model, by_module),
    }


def measure_forward_flops(model, input_ids) -> float:
    """FLOPs of one forward of `model` on `input_ids` [B, T] (no grad), eager attention and experts."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with counted_implementations(model), torch.no_grad():
        with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as fc:
            model(input_ids=input_ids)
    return float(fc.get_total_flops())


def measure_generation_flops(model, input_ids, new_tokens: int) -> float:
    """FLOPs of greedy `generate` with a KV cache: exactly `new_tokens` new tokens after `input_ids` [B, P].

    Compare with `flops.generation_flops(config, P, new_tokens, n_seqs=B)`.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    pad = getattr(model.config, "pad_token_id", None)
    if pad is None:
        eos = getattr(model.config, "eos_token_id", None)
        pad = (eos[0] if isinstance(eos, list) else eos) if eos is not None else 0
    with counted_implementations(model), torch.no_grad():
        with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as fc:
            out = model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                pad_token_id=pad,
            )
    if out.shape[1] != input_ids.shape[1] + new_tokens:
        raise RuntimeError(f"generate produced {out.shape[1] - input_ids.shape[1]} tokens, not {new_tokens}")
    return float(fc.get_total_flops())


# ---- a count measured on the meta device (model types without an analytic count) ------------------


def count_on_meta(config, seq_len: int, *, lora=None, frozen: bool = False) -> dict:
    """Parameters and FLOPs per token of the transformers causal LM `config` (a PretrainedConfig),
    measured with FlopCounterMode on the meta device: the model is built with no weights allocated and
    run once forward + backward on a batch 1 x `seq_len` (the pattern of Lightning's `measure_flops`).

    Eager attention (full T x T scores); MoE experts through transformers' default grouped_mm, whose
    FLOPs follow from shapes alone (each token meets its top-k experts). lora: an object with .r and
    .target_modules (peft adapters added, base frozen); frozen: every weight frozen, gradients flowing
    from the embedding output. Returns {"params_total", "params_embedding", "forward_per_token",
    "backward_per_token", "uncounted"}; raises RuntimeError (with the reason) when the model cannot run
    on the meta device.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):  # bf16: grouped_mm requires it on some paths; FLOPs do not depend on dtype
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings()
    params_embedding = sum(p.numel() for p in emb.parameters()) if emb is not None else 0
    if lora is not None and getattr(lora, "r", 0):
        from peft import LoraConfig, get_peft_model

        tm = lora.target_modules
        tm = "all-linear" if tm in ("all-linear", ["all-linear"]) else list(tm)
        model = get_peft_model(model, LoraConfig(r=int(lora.r), target_modules=tm, task_type="CAUSAL_LM"))
    elif frozen:
        for p in model.parameters():
            p.requires_grad_(False)
    ids = torch.zeros((1, int(seq_len)), dtype=torch.long, device="meta")
    with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as fc, torch.enable_grad():
        if frozen and lora is None:
            x = model.get_input_embeddings()(ids).detach().requires_grad_()
            out = model(inputs_embeds=x, labels=ids)
        else:
            out = model(input_ids=ids, labels=ids)
        forward = fc.get_total_flops()
        out.loss.backward()
    total = fc.get_total_flops()
    by_module = _by_module(fc)
    T = float(seq_len)
    return {
        "params_total": int(params),
        "params_embedding": int(params_embedding),
        "forward_per_token": forward / T,
        "backward_per_token": (total - forward) / T,
        "uncounted": [n for n in _uncounted(model, by_module) if "lora_dropout" not in n],
    }
