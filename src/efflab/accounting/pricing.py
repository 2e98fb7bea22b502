"""The one pricing rule: which FLOP count `efflab flops` and `efflab cost` price, for any model.

    architecture known (a preset with a config, a config.json, an efflab YAML):
        efflab's detailed count (docs/conventions.md section 2) x tokens, stage by stage over the preset's
        context schedule, plus any multi-token-prediction modules trained beside the model;
    a published run with a shape but no transformers architecture (Chinchilla, Gopher):
        the same count, from the shape;
    a published run with parameters only: 6 x N_active x D;
    a published run with FLOPs only (GPT-4 estimate, the 2026 frontier run): those FLOPs.

The same rule applies with or without `--tokens` (tokens default to the published ones); published
FLOPs are shown beside the count, never silently swapped in. Every answer carries two figures:

    model_flops     attention counted in full (PaLM App. B, Chinchilla App. F, FlopCounterMode on eager
                    attention) -- or halved with causal=True;
    executed_flops  causal attention as flash attention executes it (masked blocks skipped): the
                    half of the score and value matmuls above the diagonal is not computed.

Also here: `LightConfig`, a transformers-free reader of config.json for the analytic families (the
defaults transformers would fill in, copied from its config classes and checked by a test against
them), so `efflab flops config.json` answers without importing torch or transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

from efflab.accounting import flops as F
from efflab.accounting import hardware
from efflab.accounting import presets as P
from efflab.errors import UserError

# ---- a transformers-free config.json reader ---------------------------------------------------------

# The defaults transformers' config classes fill in for the fields the analytic counter reads
# (transformers 5.x; tests/unit/test_pricing.py compares them with the installed transformers).
_LLAMA = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": None,
    "head_dim": None,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
}
TRANSFORMERS_DEFAULTS: dict[str, dict] = {
    "llama": _LLAMA,
    "mistral": {
        **{k: v for k, v in _LLAMA.items() if k not in ("attention_bias", "mlp_bias")},
        "intermediate_size": 14336,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "sliding_window": 4096,
    },
    "qwen2": {
        **{k: v for k, v in _LLAMA.items() if k not in ("attention_bias", "mlp_bias", "head_dim")},
        "vocab_size": 151936,
        "intermediate_size": 22016,
        "num_key_value_heads": 32,
        "max_position_embeddings": 32768,
    },
    "mixtral": {
        **{k: v for k, v in _LLAMA.items() if k not in ("attention_bias", "mlp_bias")},
        "intermediate_size": 14336,
        "num_key_value_heads": 8,
        "max_position_embeddings": 131072,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
    },
    "gpt2": {
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "tie_word_embeddings": True,
    },
}
_INT_FIELDS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "n_embd",
    "n_layer",
    "n_head",
    "n_positions",
    "num_local_experts",
    "num_experts_per_tok",
)


class LightConfig:
    """A config.json as attributes, with transformers' defaults for the fields the counter reads; quacks
    like a PretrainedConfig for `efflab.accounting.flops` (model_type, to_dict, attribute access)."""

    def __init__(self, data: dict):
        self._data = dict(data)
        for k, v in self._data.items():
            setattr(self, k, v)

    def to_dict(self) -> dict:
        return dict(self._data)


def light_config(data: dict, where: str = "config") -> LightConfig | None:
    """A LightConfig for an analytic family whose defaults are known here; None for other model types
    (the caller then asks transformers). UserError for a field of the wrong type."""
    mt = data.get("model_type")
    if mt not in TRANSFORMERS_DEFAULTS or "quantization_config" in data:
        return None
    merged = {**TRANSFORMERS_DEFAULTS[mt], **data}
    bad = [
        k
        for k in _INT_FIELDS
        if k in merged
        and merged[k] is not None
        and (isinstance(merged[k], bool) or not isinstance(merged[k], int) or merged[k] < 1)
    ]
    if bad:
        raise UserError(
            f"{where}: " + "; ".join(f"{k} must be a whole number >= 1, got {merged[k]!r}" for k in bad)
        )
    return LightConfig(merged)


def read_config_json(path: str | Path):
    """The counter's input for a config.json or model directory: a LightConfig when the family is known
    here (no transformers import), else the path itself (resolved through transformers)."""
    p = Path(path).expanduser()
    f = p / "config.json" if p.is_dir() else p
    if not f.is_file():
        return path
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return path  # the counter's own reader reports it
    if not isinstance(data, dict):
        return path
    return light_config(data, str(f)) or path


# ---- published shapes (Chinchilla, Gopher) -----------------------------------------------------------


def shape_params(shape: dict) -> float:
    """Parameters of a Gopher-family shape: per layer Q, K, V, O (d x H*kv each), the relative-position
    projection (d x H*kv, Transformer-XL), a two-matrix MLP (2 x d x ffw); plus the 32k embedding
    (shared with the output). Norms omitted (O(d)). Reproduces 70B (Chinchilla) and 280B (Gopher)."""
    d, L, H, kv, ffw, V = (
        shape[k] for k in ("d_model", "n_layer", "n_head", "kv_size", "ffw_size", "vocab_size")
    )
    return float(L * (5 * d * H * kv + 2 * d * ffw) + V * d)


def appendix_f_flops_per_token(shape: dict, seq_len: int | None = None) -> float:
    """Training FLOPs per token as Hoffmann et al. 2022 Appendix F counts them: embeddings
    (2 T V d), per layer Q/K/V projections, K@Q logits, softmax (3 H T^2), softmax@V, output projection,
    the dense block (2 T x 2 d ffw), final logits (2 T d V); backward = 2 x forward. Per token = / T."""
    d, L, H, kv, ffw, V = (
        shape[k] for k in ("d_model", "n_layer", "n_head", "kv_size", "ffw_size", "vocab_size")
    )
    T = seq_len or shape["seq_len"]
    attn = (
        2 * 3 * T * d * (kv * H)
        + 2 * T * T * (kv * H)
        + 3 * H * T * T
        + 2 * T * T * (kv * H)
        + 2 * T * (kv * H) * d
    )
    dense = 2 * T * (d * ffw + d * ffw)
    forward = 2 * T * V * d + L * (attn + dense) + 2 * T * d * V
    return 3.0 * forward / T


def shape_train_flops_per_token(shape: dict, seq_len: int | None = None, causal: bool = False) -> float:
    """efflab's convention (docs/conventions.md section 2) on a published shape: 3 x [2 x matmul params (LM head
    included, embedding lookup excluded) + 4 x L x T x H*kv attention (halved when causal)]."""
    d, L, H, kv, ffw, V = (
        shape[k] for k in ("d_model", "n_layer", "n_head", "kv_size", "ffw_size", "vocab_size")
    )
    T = seq_len or shape["seq_len"]
    matmul = L * (4 * d * H * kv + 2 * d * ffw) + d * V
    attn = 4 * L * T * H * kv * (0.5 if causal else 1.0)
    return 3.0 * (2 * matmul + attn)


# ---- multi-token prediction (DeepSeek-V3 section 2.2) ------------------------------------------------


def mtp_train_flops_per_token(config: dict, seq_len: int, depth: int = 1, causal: bool = False) -> float:
    """Training FLOPs per token of `depth` DeepSeek-V3 MTP modules: each is a projection of the
    concatenated [hidden; embedding] (2d -> d), one MoE Transformer block, and the shared output head
    (shared weights still cost their matmul). Counted as efflab counts the main model (3 x forward)."""
    one_block = dict(config, num_hidden_layers=1, first_k_dense_replace=0)
    c = F.count_flops(LightConfig(one_block), seq_len, causal=causal)  # one MoE layer + LM head
    d = int(config["hidden_size"])
    return depth * (c.train_flops_per_token + 3.0 * 2.0 * (2 * d) * d)


# ---- the rule ----------------------------------------------------------------------------------------

CONVENTION = (
    "model FLOPs: multiply-add = 2; forward = 2 x active matmul params (LM head incl., embedding lookup "
    "excl.) + attention scores/values {attn}; train = 3 x forward. executed FLOPs: the same with causal "
    "attention halved, as flash attention runs it"
)


def _stages(p, tokens, seq_len):
    """(T, tokens, note) stages: a preset's context schedule (scaled to `tokens` when they differ from the
    published ones) unless a single context length `seq_len` is asked for."""
    if seq_len is None and p is not None and p.context_schedule and tokens is not None:
        scale = tokens / sum(n for _, n, _ in p.context_schedule)
        return [(int(T), float(n) * scale, note) for T, n, note in p.context_schedule]
    return [(seq_len, tokens, "")]


def price(
    spec, tokens: float | None = None, seq_len: int | None = None, causal: bool = False, lora=None
) -> dict:
    """The FLOPs efflab prices for training `spec` on `tokens` tokens (None: the published tokens).

    spec: a preset name, a config object, or a config.json / model directory path (an efflab YAML run
    config is priced by efflab.estimate, which knows its recipe's phases).
    Returns {basis, flops (the count priced: full attention, or causal when causal=True),
    model_flops_full, executed_flops, tokens, stages [{seq_len, tokens, flops, note}], mtp_flops,
    train_flops_6nd, published_flops, published_ratio, convention}. UserError when nothing can be priced.
    """
    p = P.get_preset(spec) if P.is_preset(spec) else None
    out: dict = {"preset": p.name if p else None}
    if tokens is None and p is not None:
        tokens = p.tokens
    if p is not None and p.config is None:
        return _price_run_preset(p, tokens, seq_len, causal, out)
    src = spec if p is None else p.name
    if isinstance(src, (str, Path)) and p is None and not str(src).endswith((".yaml", ".yml")):
        src = read_config_json(src)
    stages, full, executed, mtp = [], 0.0, 0.0, 0.0
    count = None
    for T, n, note in _stages(p, tokens, seq_len):
        c_full = F.count_flops(src, T, causal=False, lora=lora)
        c_exec = F.count_flops(src, c_full.seq_len, causal=True, lora=lora)
        count = count or (c_exec if causal else c_full)
        if n is None:
            break
        m_full = m_exec = 0.0
        if p is not None and p.mtp_depth:
            m_full = mtp_train_flops_per_token(p.config, c_full.seq_len, p.mtp_depth) * n
            m_exec = mtp_train_flops_per_token(p.config, c_full.seq_len, p.mtp_depth, causal=True) * n
        f_full = c_full.train_flops_per_token * n + m_full
        f_exec = c_exec.train_flops_per_token * n + m_exec
        stages.append(
            {
                "seq_len": c_full.seq_len,
                "tokens": n,
                "flops": f_exec if causal else f_full,
                "executed_flops": f_exec,
                "note": note,
            }
        )
        full, executed, mtp = full + f_full, executed + f_exec, mtp + (m_exec if causal else m_full)
    out.update(count=count, basis="detailed count", tokens=tokens, stages=stages)
    if tokens is None:
        out.update(
            flops=None, model_flops_full=None, executed_flops=None, mtp_flops=None, train_flops_6nd=None
        )
    else:
        out.update(
            flops=executed if causal else full,
            model_flops_full=full,
            executed_flops=executed,
            mtp_flops=mtp or None,
            train_flops_6nd=F.flops_6nd(count.params_active, tokens),
        )
    out["convention"] = CONVENTION.format(attn="halved (causal)" if causal else "counted in full")
    return _with_published(out, p, tokens)


def _price_run_preset(p, tokens, seq_len, causal, out) -> dict:
    if p.shape is not None and tokens is not None:
        T = seq_len or p.shape["seq_len"]
        full = shape_train_flops_per_token(p.shape, T) * tokens
        executed = shape_train_flops_per_token(p.shape, T, causal=True) * tokens
        out.update(
            basis=f"detailed count from the published shape ({p.sources.get('shape', '')})",
            flops=executed if causal else full,
            model_flops_full=full,
            executed_flops=executed,
            appendix_f_flops=appendix_f_flops_per_token(p.shape, T) * tokens,
        )
        out["convention"] = CONVENTION.format(attn="halved (causal)" if causal else "counted in full")
    elif p.params is not None and tokens is not None:
        out.update(
            basis="6ND with the published parameter count (no architecture)",
            flops=F.flops_6nd(p.params_active or p.params, tokens),
            model_flops_full=None,
            executed_flops=None,
        )
        out["convention"] = (
            "6 x active params x tokens (Kaplan et al. 2020): no attention, embeddings counted"
        )
    elif p.train_flops is not None:
        if tokens is not None:
            raise UserError(
                f"{p.name}: no published parameter count, so --tokens cannot be priced; drop it to "
                f"price its {'estimated' if p.estimate else 'published'} {p.train_flops:.3g} FLOPs"
            )
        out.update(
            basis=("ESTIMATE: " if p.estimate else "published: ") + p.sources.get("train_flops", ""),
            flops=p.train_flops,
            model_flops_full=None,
            executed_flops=None,
        )
        out["convention"] = "the published figure's own"
    else:
        raise UserError(
            f"{p.name}: nothing to price (no tokens, parameters or FLOPs published); give --tokens N"
        )
    out.update(
        tokens=tokens,
        stages=[],
        mtp_flops=None,
        train_flops_6nd=F.flops_6nd(p.params_active or p.params, tokens) if p.params and tokens else None,
    )
    return _with_published(out, p, tokens)


def _with_published(out: dict, p, tokens) -> dict:
    pub = p.train_flops if p is not None and tokens == p.tokens else None
    out["published_flops"] = pub
    out["published_ratio"] = out["flops"] / pub if pub and out.get("flops") else None
    return out


def preset_gpu_hours(p) -> dict:
    """What a preset's published GPU-hours imply: the MFU (against the dense peak of the run's precision)
    of the priced FLOPs over the tokens those hours cover. Empty without GPU-hours or tokens."""
    if not (p.gpu and p.gpu_hours and (p.tokens or p.train_flops)):
        return {}
    priced = price(p.name)
    flops = priced["flops"] or p.train_flops
    return {
        "gpu": p.gpu,
        "gpu_hours": p.gpu_hours,
        "gpu_hours_scope": p.gpu_hours_scope,
        "gpu_hours_total": p.gpu_hours_total,
        "precision": p.precision,
        "flops": flops,
        "implied_mfu": hardware.implied_mfu(flops, p.gpu, p.gpu_hours, p.precision),
        "implied_executed_mfu": (
            hardware.implied_mfu(priced["executed_flops"], p.gpu, p.gpu_hours, p.precision)
            if priced.get("executed_flops")
            else None
        ),
    }
