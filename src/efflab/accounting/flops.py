"""Analytic parameter and FLOP counts from a Hugging Face config, with no weights allocated.

Conventions (docs/conventions.md section 2; every count states them in `FlopCount.convention`):

- One multiply-add is 2 FLOPs. Only matrix multiplications are counted: biases, norms,
  activations, softmax, RoPE and the loss are not (they are O(d) per token, not O(d^2)). Biases and
  norm weights are counted as parameters.
- Forward FLOPs per token = 2 x (active matmul parameters, LM head included even when tied,
  embedding lookup excluded) + attention scores and values, 2 x T x H x d_qk + 2 x T x H x d_v per
  layer (= 4 x n_layer x T x d_attn for ordinary attention), T the context length. Attention is
  counted in full, as PaLM (Chowdhery et al. 2022, App. B), Chinchilla (Hoffmann et al. 2022,
  App. F) and torch's FlopCounterMode on eager attention count it; `causal=True` halves it, as
  flash attention executes it. Grouped-query attention shares K/V *projections*, not score
  FLOPs: eager attention repeats K/V to every query head, so scores use H = query heads.
- Training = forward + backward. A matmul Y = X W costs 2 x its forward in backward when both X
  and W need gradients (dX and dW), 1 x when only one does, 0 when neither: the Kaplan/Chinchilla
  "6N" for a fully trained model, 4N when the weights are frozen but gradients flow through
  them. This module follows which tensors require grad through each layer, so it charges
  exactly what autograd computes: e.g. with LoRA on q_proj and v_proj, layer 0's frozen k_proj
  (input: the frozen embedding) has no backward at all, and its attention scores need dQ only.
- MoE: the router matmul (2 x d_model x n_experts per token) plus only the top-k routed experts
  (and shared experts) per token. Total and active parameters are both reported.
- Generation (docs/conventions.md section 2): prefill is a forward over the prompt with full attention over it,
  logits for the last prompt position only (transformers' `generate` passes logits_to_keep=1);
  each further new token is a forward over one token with attention over the KV cache so far.

Model families: the transformers implementations of Llama, Mistral, Qwen2, GPT-2, Mixtral,
Qwen2-MoE, OLMoE and DeepSeek-V3 (multi-head latent attention), Qwen3, Qwen3-MoE, Gemma 2, Gemma 3
(text), Phi-3 and OLMo 2, read from transformers 5.x source. Sliding-window layers (Gemma 2/3, and
Phi-3, Qwen3 when configured) are counted over all T keys by default, as eager and SDPA attention
compute them (the window is a mask), and over min(position, window) keys with `causal=True`, as flash
attention executes them. Any other transformers causal LM is measured with FlopCounterMode on the meta
device (`measure.count_on_meta`) and labelled "measured"; a model neither way can count is refused.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from efflab.accounting import measure, presets
from efflab.errors import UserError, suggest

KNOWN_MODEL_TYPES: tuple[str, ...] = (
    "llama",
    "mistral",
    "qwen2",
    "gpt2",
    "mixtral",
    "qwen2_moe",
    "olmoe",
    "deepseek_v3",
    "qwen3",
    "qwen3_moe",
    "gemma2",
    "gemma3_text",
    "phi3",
    "olmo2",
)
OPEN_WEIGHT_TYPES: tuple[str, ...] = ("qwen3", "qwen3_moe", "gemma2", "gemma3_text", "phi3", "olmo2")
DEFAULT_SEQ_LEN = 2048  # when a config states no context length
SEQ_LEN_CAP = 4096  # default T = min(max_position_embeddings, 4096): long-context limits are not training T
PARTS = ("attn_proj", "attn_scores", "mlp", "experts", "router", "shared_experts", "lm_head", "lora")


@dataclass(frozen=True)
class LoraSpec:
    """LoRA adapters of rank `r` on the linear layers named in `target_modules` (peft semantics:
    a name matches a module whose dotted path ends with it; "all-linear" = every nn.Linear but the
    LM head). Any object with `.r` and `.target_modules` (e.g. efflab's config section) works too."""

    r: int
    target_modules: tuple[str, ...] | list[str] | str = ("q_proj", "v_proj")


@dataclass(frozen=True)
class FlopCount:
    """Parameters (counts) and FLOPs per token (multiply-add = 2) of one model at context `seq_len`."""

    model_type: str
    params_total: int
    params_active: int
    params_embedding: int
    seq_len: int
    causal: bool
    forward_flops_per_token: float
    train_flops_per_token: float
    breakdown: dict[str, float]
    convention: str
    backward_flops_per_token: float = 0.0
    name: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "model_type": self.model_type,
            "params_total": self.params_total,
            "params_active": self.params_active,
            "params_embedding": self.params_embedding,
            "seq_len": self.seq_len,
            "causal": self.causal,
            "forward_flops_per_token": self.forward_flops_per_token,
            "backward_flops_per_token": self.backward_flops_per_token,
            "train_flops_per_token": self.train_flops_per_token,
            "breakdown": dict(self.breakdown),
            "convention": self.convention,
            "notes": list(self.notes),
        }


# ---- the per-layer dataflow ---------------------------------------------------------------------
# A layer is a list of ops over named tensors; "h" is the residual stream. Each op knows its FLOPs
# and parameters; the walk in `_walk` follows which tensors require grad.


@dataclass(frozen=True)
class _Lin:  # y = x W^T (+ b): one matmul per token and active copy
    name: str  # module path inside the layer (peft matches on it)
    part: str  # breakdown key
    src: str
    dst: str
    d_in: int
    d_out: int
    bias: bool = False
    copies: int = 1  # weight copies (routed experts)
    active: int = 1  # copies applied per token (top-k)
    lora_ok: bool = True  # an nn.Linear peft can wrap (3-D expert tensors and Parameter routers cannot)


@dataclass(frozen=True)
class _Attn:  # scores = q k^T, out = softmax(scores) v, over `ctx` keys per query
    q: str
    k: str
    v: str
    dst: str
    heads: int
    d_qk: int
    d_v: int
    window: int | None = None  # sliding-window attention: each query sees its `window` latest keys


@dataclass(frozen=True)
class _Elem:  # norms, activations, residual adds: no FLOPs counted; may own weights
    srcs: tuple[str, ...]
    dst: str
    params: int = 0


@dataclass
class _Arch:
    model_type: str
    vocab: int
    d_model: int
    tied: bool
    embedding_params: int  # input embedding (+ learned positions)
    final_params: int  # final norm
    layers: list[list]
    max_pos: int | None
    notes: list[str]

    @property
    def head(self) -> _Lin:
        return _Lin("lm_head", "lm_head", "h", "logits", self.d_model, self.vocab)


class _Get:
    """Reads a config field from a transformers config object, or strictly from a dict (a preset)."""

    _MISSING = object()

    def __init__(self, cfg):
        self.cfg = cfg
        self.is_dict = isinstance(cfg, dict)

    def __call__(self, key, default=_MISSING):
        if self.is_dict:
            if key in self.cfg:
                return self.cfg[key]
        elif hasattr(self.cfg, key):
            return getattr(self.cfg, key)
        if default is _Get._MISSING:
            raise UserError(f"{self('model_type', '?')} config has no {key!r}: cannot count it")
        return default


def _std_attention(
    d, heads, kv_heads, hd, *, qkv_bias=False, o_bias=False, q_norm=0, k_norm=0, window=None
) -> list:
    ops = [
        _Elem(("h",), "x", d),  # input_layernorm (RMSNorm: d weights)
        _Lin("self_attn.q_proj", "attn_proj", "x", "q", d, heads * hd, qkv_bias),
        _Lin("self_attn.k_proj", "attn_proj", "x", "k", d, kv_heads * hd, qkv_bias),
        _Lin("self_attn.v_proj", "attn_proj", "x", "v", d, kv_heads * hd, qkv_bias),
    ]
    if q_norm:  # OLMoE: RMSNorm over the whole q and k projections
        ops += [_Elem(("q",), "q", q_norm), _Elem(("k",), "k", k_norm)]
    ops += [
        _Attn("q", "k", "v", "a", heads, hd, hd, window),
        _Lin("self_attn.o_proj", "attn_proj", "a", "o", heads * hd, d, o_bias),
        _Elem(("h", "o"), "h"),
    ]
    return ops


def _gated_mlp(d, inter, *, prefix="mlp", part="mlp", src="x2", dst="m", bias=False) -> list:
    # SwiGLU: down(act(gate(x)) * up(x)): three matmuls (Llama, Mistral, Qwen2, experts' shared MLPs)
    return [
        _Lin(f"{prefix}.gate_proj", part, src, dst + ".g", d, inter, bias),
        _Lin(f"{prefix}.up_proj", part, src, dst + ".u", d, inter, bias),
        _Elem((dst + ".g", dst + ".u"), dst + ".a"),
        _Lin(f"{prefix}.down_proj", part, dst + ".a", dst, inter, d, bias),
    ]


def _routed_experts(d, n_experts, top_k, inter) -> list:
    # transformers 5 MoE blocks: router `mlp.gate` (a Parameter, F.linear), experts as 3-D tensors
    # gate_up_proj [E, 2I, d] and down_proj [E, d, I]: per routed token 2 matmuls = SwiGLU's 3.
    return [
        _Lin("mlp.gate", "router", "x2", "rl", d, n_experts, lora_ok=False),
        _Elem(("rl",), "rw"),  # softmax / sigmoid, top-k, renormalise
        _Lin(
            "mlp.experts.gate_up_proj",
            "experts",
            "x2",
            "eg",
            d,
            2 * inter,
            copies=n_experts,
            active=top_k,
            lora_ok=False,
        ),
        _Elem(("eg",), "ea"),
        _Lin(
            "mlp.experts.down_proj",
            "experts",
            "ea",
            "ed",
            inter,
            d,
            copies=n_experts,
            active=top_k,
            lora_ok=False,
        ),
        _Elem(("ed", "rw"), "m"),  # weighted sum of the k expert outputs
    ]


def _block(d, mlp_ops) -> list:
    return [_Elem(("h",), "x2", d), *mlp_ops, _Elem(("h", "m"), "h")]  # post_attention_layernorm, residual


def _arch(cfg) -> _Arch:
    g = _Get(cfg)
    mt = g("model_type", None)
    if mt not in KNOWN_MODEL_TYPES and is_measurable(mt):
        raise UserError(
            f"model type {mt!r} has no analytic count (its training FLOPs are measured on the meta device); "
            f"this figure (generation FLOPs) needs one of: {', '.join(KNOWN_MODEL_TYPES)}"
        )
    if mt not in KNOWN_MODEL_TYPES:
        raise UserError(_unknown_type_msg(mt))
    notes: list[str] = []
    if mt in OPEN_WEIGHT_TYPES:
        return _open_weight_arch(g, mt, notes)
    if mt == "gpt2":
        d, L, H = g("n_embd"), g("n_layer"), g("n_head")
        inner = g("n_inner") or 4 * d
        hd = d // H
        layer = [
            _Elem(("h",), "x", 2 * d),  # ln_1 (LayerNorm: weight + bias)
            _Lin("attn.c_attn", "attn_proj", "x", "qkv", d, 3 * d, True),
            _Attn("qkv", "qkv", "qkv", "a", H, hd, hd),
            _Lin("attn.c_proj", "attn_proj", "a", "o", d, d, True),
            _Elem(("h", "o"), "h"),
            _Elem(("h",), "x2", 2 * d),  # ln_2
            _Lin("mlp.c_fc", "mlp", "x2", "f", d, inner, True),
            _Elem(("f",), "fa"),
            _Lin("mlp.c_proj", "mlp", "fa", "m", inner, d, True),
            _Elem(("h", "m"), "h"),
        ]
        V, n_pos = g("vocab_size"), g("n_positions")
        notes.append("GPT-2 Conv1D layers have biases: counted as parameters, not as FLOPs")
        return _Arch(
            mt, V, d, bool(g("tie_word_embeddings")), V * d + n_pos * d, 2 * d, [layer] * L, n_pos, notes
        )

    d, L, H, V = g("hidden_size"), g("num_hidden_layers"), g("num_attention_heads"), g("vocab_size")
    kv = g("num_key_value_heads", None) or H
    hd = g("head_dim", None) or d // H
    tied = bool(g("tie_word_embeddings"))
    max_pos = g("max_position_embeddings", None)
    inter = g("intermediate_size")
    layers: list[list] = []
    if mt in ("llama", "mistral", "qwen2", "mixtral", "qwen2_moe", "olmoe"):
        if mt == "llama":
            qkv_b = o_b = bool(g("attention_bias"))
        elif mt == "olmoe":
            qkv_b = o_b = bool(g("attention_bias"))
        elif mt == "qwen2":
            qkv_b, o_b = True, False
            notes.append("Qwen2 q/k/v biases: counted as parameters, not as FLOPs")
        elif mt == "qwen2_moe":
            qkv_b, o_b = bool(g("qkv_bias")), False
        else:
            qkv_b = o_b = False
        qn = (d, (d // H) * kv) if mt == "olmoe" else (0, 0)
        attn = _std_attention(d, H, kv, hd, qkv_bias=qkv_b, o_bias=o_b, q_norm=qn[0], k_norm=qn[1])
        mlp_bias = bool(g("mlp_bias", False)) if mt == "llama" else False
        dense = _block(d, _gated_mlp(d, inter, bias=mlp_bias))
        if mt == "mixtral":
            moe = _block(d, _routed_experts(d, g("num_local_experts"), g("num_experts_per_tok"), inter))
            layers = [attn + moe] * L
        elif mt == "olmoe":
            moe = _block(d, _routed_experts(d, g("num_experts"), g("num_experts_per_tok"), inter))
            layers = [attn + moe] * L
        elif mt == "qwen2_moe":
            E, k = g("num_experts"), g("num_experts_per_tok")
            shared = g("shared_expert_intermediate_size")
            moe_ops = _routed_experts(d, E, k, g("moe_intermediate_size"))
            if shared:
                moe_ops += _gated_mlp(d, shared, prefix="mlp.shared_expert", part="shared_experts", dst="se")
                moe_ops += [
                    # sigmoid gate on the shared expert: an nn.Linear(d, 1), a d x 1 matmul
                    _Lin("mlp.shared_expert_gate", "shared_experts", "x2", "sg", d, 1),
                    _Elem(("se", "sg"), "so"),
                    _Elem(("m", "so"), "m"),
                ]
            moe = _block(d, moe_ops)
            only = set(g("mlp_only_layers", None) or [])
            step = g("decoder_sparse_step")
            for i in range(L):
                sparse = i not in only and E > 0 and (i + 1) % step == 0
                layers.append(attn + (moe if sparse else dense))
        else:
            layers = [attn + dense] * L
    elif mt == "deepseek_v3":
        layers = _deepseek_v3_layers(g, d, H, L, inter, notes)
    return _Arch(mt, V, d, tied, V * d, d, layers, max_pos, notes)


# ---- open-weight families of 2024-2025 (transformers 5.x source: models/<family>/modeling_<family>.py) --
# Defaults below are transformers' own config defaults, so a raw config.json (which omits them) reads
# the same as the config object transformers builds from it.
_TIED_DEFAULT = {"gemma2": True, "gemma3_text": True}


def _layer_windows(g, mt: str, L: int) -> list[int | None]:
    """Sliding window (keys per query) of each layer, None for global attention, as transformers builds
    `config.layer_types`: Gemma 2 alternates sliding/global (sliding first); Gemma 3 makes every
    `sliding_window_pattern`-th layer global (default 6); Qwen3 slides layers >= max_window_layers when
    use_sliding_window is on; Phi-3 and Qwen3-MoE apply `sliding_window` (if set) to every layer."""
    sw = g("sliding_window", None)
    if mt in ("qwen3", "qwen3_moe") and not g("use_sliding_window", False):
        sw = None
    types = g("layer_types", None)
    if types is None:
        if mt == "gemma2":
            types = ["sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(L)]
        elif mt == "gemma3_text":
            pat = g("sliding_window_pattern", None) or g("_sliding_window_pattern", 6)
            types = ["sliding_attention" if (i + 1) % pat else "full_attention" for i in range(L)]
        elif mt == "qwen3":
            mw = g("max_window_layers", 28)
            types = [
                "sliding_attention" if sw is not None and i >= mw else "full_attention" for i in range(L)
            ]
        else:
            types = ["sliding_attention" if sw is not None else "full_attention"] * L
    if mt in ("phi3", "qwen3_moe"):  # these models mask every layer with config.sliding_window
        return [sw] * L
    return [sw if t == "sliding_attention" and sw is not None else None for t in types]


def _open_weight_arch(g, mt: str, notes: list[str]) -> _Arch:
    d, L, H, V = g("hidden_size"), g("num_hidden_layers"), g("num_attention_heads"), g("vocab_size")
    kv = g("num_key_value_heads", None) or H
    hd = g("head_dim", None) or d // H
    inter = g("intermediate_size")
    tied = bool(g("tie_word_embeddings", _TIED_DEFAULT.get(mt, False)))
    bias = bool(g("attention_bias", False))
    windows = _layer_windows(g, mt, L)
    if any(w is not None for w in windows):
        n = sum(w is not None for w in windows)
        notes.append(
            f"{mt}: {n} of {L} layers use sliding-window attention (window {max(w or 0 for w in windows)}): "
            "counted over all T keys by default (eager and SDPA compute the full score matrix and mask it), "
            "over min(position, window) keys with causal=True (flash attention skips masked blocks)"
        )
    layers: list[list] = []
    for i, w in enumerate(windows):
        if mt in ("qwen3", "qwen3_moe"):  # Llama + RMSNorm on each head of q and k (head_dim weights each)
            attn = _std_attention(d, H, kv, hd, qkv_bias=bias, o_bias=bias, q_norm=hd, k_norm=hd, window=w)
            if mt == "qwen3_moe" and _qwen3_moe_sparse(g, i):
                mlp = _routed_experts(
                    d, g("num_experts"), g("num_experts_per_tok"), g("moe_intermediate_size")
                )
            else:
                mlp = _gated_mlp(d, inter)
            layers.append(attn + _block(d, mlp))
        elif mt in ("gemma2", "gemma3_text"):  # sandwich norms: pre and post each sub-block (4 x d weights)
            qk_norm = hd if mt == "gemma3_text" else 0
            attn = _std_attention(
                d, H, kv, hd, qkv_bias=bias, o_bias=bias, q_norm=qk_norm, k_norm=qk_norm, window=w
            )
            attn.insert(-1, _Elem(("o",), "o", d))  # post_attention_layernorm, before the residual add
            mlp = [
                *_gated_mlp(d, inter),
                _Elem(("m",), "m", d),
            ]  # GeGLU (tanh GELU), post_feedforward_layernorm
            layers.append(attn + _block(d, mlp))
        elif mt == "phi3":  # fused qkv_proj and gate_up_proj
            layers.append(
                [
                    _Elem(("h",), "x", d),
                    _Lin("self_attn.qkv_proj", "attn_proj", "x", "qkv", d, (H + 2 * kv) * hd),
                    _Attn("qkv", "qkv", "qkv", "a", H, hd, hd, w),
                    _Lin("self_attn.o_proj", "attn_proj", "a", "o", H * hd, d),
                    _Elem(("h", "o"), "h"),
                    _Elem(("h",), "x2", d),
                    _Lin("mlp.gate_up_proj", "mlp", "x2", "gu", d, 2 * inter),
                    _Elem(("gu",), "ga"),
                    _Lin("mlp.down_proj", "mlp", "ga", "m", inter, d),
                    _Elem(("h", "m"), "h"),
                ]
            )
        else:  # olmo2: no pre-norms; RMSNorm over the whole q and k projections; norms after each sub-block
            attn = _std_attention(
                d, H, kv, hd, qkv_bias=bias, o_bias=bias, q_norm=H * hd, k_norm=kv * hd, window=w
            )[1:]  # drop the input_layernorm: q/k/v read the residual stream
            attn = [_replace_src(op, "x", "h") for op in attn]
            attn.insert(-1, _Elem(("o",), "o", d))  # post_attention_layernorm
            mlp = [*_gated_mlp(d, inter, src="h"), _Elem(("m",), "m", d), _Elem(("h", "m"), "h")]
            layers.append(attn + mlp)
    if mt in ("gemma2", "gemma3_text"):
        notes.append(
            f"{mt}: embedding scaled by sqrt(d_model), attention/logit soft-capping: elementwise, not counted"
        )
    return _Arch(mt, V, d, tied, V * d, d, layers, g("max_position_embeddings", None), notes)


def _qwen3_moe_sparse(g, i: int) -> bool:
    only = set(g("mlp_only_layers", None) or [])
    E, step = g("num_experts"), g("decoder_sparse_step", 1)
    return i not in only and E > 0 and (i + 1) % step == 0


def _replace_src(op, old: str, new: str):
    if isinstance(op, _Lin) and op.src == old:
        return _Lin(
            op.name, op.part, new, op.dst, op.d_in, op.d_out, op.bias, op.copies, op.active, op.lora_ok
        )
    return op


def _deepseek_v3_layers(g, d, H, L, inter, notes) -> list[list]:
    # Multi-head latent attention (DeepSeek-V2/V3) as transformers' DeepseekV3Attention computes it in
    # eager mode: q through a low-rank bottleneck, K/V from a shared latent expanded by kv_b_proj.
    qr, kvr = g("q_lora_rank"), g("kv_lora_rank")
    rope, nope, vd = g("qk_rope_head_dim"), g("qk_nope_head_dim"), g("v_head_dim")
    qk = rope + nope
    bias = bool(g("attention_bias"))
    attn = [_Elem(("h",), "x", d)]
    if qr:
        attn += [
            _Lin("self_attn.q_a_proj", "attn_proj", "x", "qa", d, qr, bias),
            _Elem(("qa",), "qa", qr),  # q_a_layernorm
            _Lin("self_attn.q_b_proj", "attn_proj", "qa", "q", qr, H * qk),
        ]
    else:
        attn.append(_Lin("self_attn.q_proj", "attn_proj", "x", "q", d, H * qk))
    attn += [
        _Lin("self_attn.kv_a_proj_with_mqa", "attn_proj", "x", "kva", d, kvr + rope, bias),
        _Elem(("kva",), "kvn", kvr),  # kv_a_layernorm
        _Lin("self_attn.kv_b_proj", "attn_proj", "kvn", "kv", kvr, H * (nope + vd)),
        _Elem(("kv", "kva"), "k"),
        _Elem(("kv",), "v"),
        _Attn("q", "k", "v", "a", H, qk, vd),
        _Lin("self_attn.o_proj", "attn_proj", "a", "o", H * vd, d, bias),
        _Elem(("h", "o"), "h"),
    ]
    E, k, mi = g("n_routed_experts"), g("num_experts_per_tok"), g("moe_intermediate_size")
    shared = g("n_shared_experts")
    moe_ops = _routed_experts(d, E, k, mi)
    if shared:
        moe_ops += _gated_mlp(d, mi * shared, prefix="mlp.shared_experts", part="shared_experts", dst="se")
        moe_ops.append(_Elem(("m", "se"), "m"))
    dense = _block(d, _gated_mlp(d, inter))
    moe = _block(d, moe_ops)
    first_dense = g("first_k_dense_replace")
    notes.append("DeepSeek-V3: the multi-token-prediction module is not part of the transformers model")
    return [attn + (dense if i < first_dense else moe) for i in range(L)]


def _unknown_type_msg(mt) -> str:
    if mt is None:
        return "config has no model_type: not a transformers config.json"
    return (
        f"model type {mt!r} cannot be counted by the FLOP ledger: it has no analytic count "
        f"(known model types: {', '.join(KNOWN_MODEL_TYPES)}) and is not a causal LM of the installed "
        f"transformers, so it cannot be measured on the meta device either"
    )


def is_measurable(model_type) -> bool:
    """True for a model type transformers builds as a causal LM (AutoModelForCausalLM), which the ledger
    counts by measurement on the meta device when it has no analytic count."""
    if not isinstance(model_type, str):
        return False
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def counting_method(model_type) -> str | None:
    """How the ledger counts `model_type`: "analytic", "measured" (FlopCounterMode on the meta device),
    or None when it cannot count it."""
    if model_type in KNOWN_MODEL_TYPES:
        return "analytic"
    return "measured" if is_measurable(model_type) else None


def _countable(mt) -> bool:
    return mt in KNOWN_MODEL_TYPES or is_measurable(mt)


# ---- counting -------------------------------------------------------------------------------------


def _params(arch: _Arch) -> tuple[int, int]:
    total = active = arch.embedding_params + arch.final_params
    if not arch.tied:
        total += arch.vocab * arch.d_model
        active += arch.vocab * arch.d_model
    for layer in arch.layers:
        for op in layer:
            if isinstance(op, _Lin):
                per = op.d_in * op.d_out + (op.d_out if op.bias else 0)
                total += per * op.copies
                active += per * op.active
            elif isinstance(op, _Elem):
                total += op.params
                active += op.params
    return total, active


def _lora_r_targets(lora):
    if lora is None:
        return 0, None
    r = int(getattr(lora, "r", 0) or 0)
    if r <= 0:
        return 0, None
    tm = getattr(lora, "target_modules", None) or ("q_proj", "v_proj")
    if not isinstance(tm, str) and list(tm) == ["all-linear"]:  # efflab's config holds a list
        tm = "all-linear"
    if isinstance(tm, str) and tm != "all-linear":
        tm = (tm,)
    return r, tm


def _targeted(op: _Lin, full_name: str, targets) -> bool:
    if targets is None or not op.lora_ok:
        return False
    if targets == "all-linear":  # peft: every linear layer except the output layer
        return op.name != "lm_head"
    return any(full_name == t or full_name.endswith("." + t) for t in targets)


def _walk(
    arch: _Arch, ctx: float, *, trainable: bool, input_grad: bool, lora=None, head: bool = True
) -> tuple[dict, dict, bool]:
    """Forward and backward FLOPs per token by part, at attention context `ctx` keys per query (a number,
    or a function of a layer's sliding window, None for global attention, giving its keys per query).

    trainable: every weight trains (full fine-tuning); input_grad: the embedding output requires
    grad (it does when the embedding trains, or for `frozen` counting). With `lora`, base weights
    are frozen and adapters train. Returns (forward, backward, any LoRA target matched).
    """
    r, targets = _lora_r_targets(lora)
    fwd: dict[str, float] = defaultdict(float)
    bwd: dict[str, float] = defaultdict(float)
    matched = False
    ops = [(i, op) for i, layer in enumerate(arch.layers) for op in layer]
    ops += [(None, _Elem(("h",), "h", arch.final_params))] + ([(None, arch.head)] if head else [])
    req = {"h": input_grad}
    for i, op in ops:
        if isinstance(op, _Elem):
            req[op.dst] = any(req[s] for s in op.srcs) or (trainable and op.params > 0)
        elif isinstance(op, _Lin):
            f = 2.0 * op.d_in * op.d_out * op.active
            x = req[op.src]
            fwd[op.part] += f
            bwd[op.part] += f * x + f * trainable  # dX needs dY W; dW needs X^T dY
            full = op.name if i is None else f"model.layers.{i}.{op.name}"
            hit = bool(r) and _targeted(op, full, targets)
            if hit:  # y += B(A(x)) * scale: A is [r, d_in], B is [d_out, r], both train
                matched = True
                fa, fb = 2.0 * r * op.d_in * op.active, 2.0 * r * op.d_out * op.active
                fwd["lora"] += fa + fb
                bwd["lora"] += fa + fa * x + 2 * fb  # dA, dx through A (if x needs it), dB, d(Ax)
            req[op.dst] = x or trainable or hit
        else:  # _Attn: two batched matmuls per head, over c keys per query
            c = ctx(op.window) if callable(ctx) else ctx
            s_qk = 2.0 * c * op.heads * op.d_qk
            s_v = 2.0 * c * op.heads * op.d_v
            qr, kr, vr = req[op.q], req[op.k], req[op.v]
            p = qr or kr
            fwd["attn_scores"] += s_qk + s_v
            bwd["attn_scores"] += s_qk * (qr + kr) + s_v * (p + vr)
            req[op.dst] = p or vr
    return dict(fwd), dict(bwd), matched


def _check_lora_targets(arch: _Arch, targets, matched: bool) -> None:
    """LoRA targets the analytic count can honour; UserError otherwise.

    MoE models: transformers 5 stores routed experts as 3-D tensors and routers as Parameters, which
    `nn.Linear`-based LoRA cannot wrap; peft (0.18+) instead maps "all-linear" and MLP names such as
    w1/w2/w3, gate_proj/up_proj/down_proj or gate onto those tensors (`target_parameters`), version by
    version. That path is not modelled: with experts, LoRA is counted on attention projections only.
    """
    linears = [op for layer in arch.layers for op in layer if isinstance(op, _Lin) and op.lora_ok]
    names = sorted({op.name.split(".")[-1] for op in linears})
    if not matched:
        raise UserError(
            f"LoRA target_modules {targets!r} match no linear layer of this {arch.model_type} model "
            f"(linear layers: {', '.join(names)}, or 'all-linear')"
        )
    has_experts = any(isinstance(op, _Lin) and op.part == "experts" for layer in arch.layers for op in layer)
    if not has_experts:
        return
    attn = sorted({op.name.split(".")[-1] for op in linears if op.part == "attn_proj"})
    bad = ["all-linear"] if targets == "all-linear" else [t for t in targets if t.split(".")[-1] not in attn]
    if bad:
        raise UserError(
            f"LoRA on {arch.model_type}: target(s) {', '.join(bad)} are not counted analytically: on MoE models "
            f"peft may put LoRA onto the 3-D expert tensors and the router (target_parameters), which this "
            f"count does not model; target attention projections only ({', '.join(attn)})"
        )


def _fmt_si(x: float) -> str:
    return f"{x:.4g}"


def _convention(seq_len: int, causal: bool, frozen: bool, lora) -> str:
    r, targets = _lora_r_targets(lora)
    attn = "causal: halved" if causal else "counted in full"
    s = (
        f"multiply-add = 2 FLOPs; forward = 2 x active matmul params (LM head incl., embedding lookup, "
        f"biases and norms excl.) + attention scores/values at T={seq_len} ({attn}); "
    )
    if r:
        tm = targets if isinstance(targets, str) else ",".join(targets)
        s += (
            f"train = forward + backward with LoRA r={r} on {tm}: base weights frozen (input-grad only, "
            f"2x), adapters trained (4x), no backward where nothing upstream trains"
        )
    elif frozen:
        s += "train = forward + input-grad-only backward (every weight frozen: 2x per matmul, not 4x)"
    else:
        s += "train = forward + backward = 3 x forward"
    return s


# ---- resolving a config ---------------------------------------------------------------------------


def _preset(spec):
    if isinstance(spec, str) and presets.is_preset(spec):
        return presets.get_preset(spec)
    return None


def _read_config_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: unreadable ({e.__class__.__name__}: {e})") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a transformers config.json (expected a JSON object)")
    return data


def _config_from_dict(data: dict, where: str):
    mt = data.get("model_type")
    if mt not in KNOWN_MODEL_TYPES and not _countable(mt):
        raise UserError(f"{where}: {_unknown_type_msg(mt)}")
    from transformers import AutoConfig

    kw = {k: v for k, v in data.items() if k != "model_type"}
    try:
        return AutoConfig.for_model(mt, **kw)
    except Exception as e:  # transformers validates fields: report, don't crash
        raise UserError(f"{where}: invalid {mt} config ({e.__class__.__name__}: {e})") from None


def _is_hf_config(obj) -> bool:
    return hasattr(obj, "model_type") and hasattr(obj, "to_dict") and not isinstance(obj, (dict, str, Path))


def resolve_config(spec):
    """A transformers PretrainedConfig from a preset name, a config.json, a model directory, a dict
    (config.json content) or a PretrainedConfig (an efflab YAML run config is refused: see `count_flops`).
    UserError for an unknown preset, an unreadable file or a model type the counter does not know (the
    message lists the known ones)."""
    if _is_hf_config(spec):
        if not _countable(spec.model_type):
            raise UserError(_unknown_type_msg(spec.model_type))
        return spec
    if isinstance(spec, dict):
        return _config_from_dict(spec, "config")
    p = _preset(spec)
    if p is not None:
        if p.config is None:
            raise UserError(_no_arch_msg(p))
        return _config_from_dict(dict(p.config), f"preset {p.name}")
    path = Path(str(spec)).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(
                f"{path}: a directory without config.json (expected a transformers model directory)"
            )
        path = path / "config.json"
    if path.is_file():
        if path.suffix in (".yaml", ".yml"):
            _refuse_yaml(path)
        return _config_from_dict(_read_config_file(path), str(path))
    raise UserError(
        f"{spec!r} is neither a preset nor a config.json / model directory"
        f"{suggest(str(spec).lower(), presets.PRESETS)}; presets: {', '.join(presets.PRESETS)}"
    )


def _refuse_yaml(path: Path):
    """An efflab YAML run config is read above the accounting layer (it names a recipe, a data pipeline
    and a model to build): the caller passes the model config it describes."""
    raise UserError(
        f"{path}: an efflab YAML run config; count the model it describes "
        "(efflab.estimate.load_run_config, then efflab.models.build_model_config), "
        "or run `efflab flops FILE` / `efflab cost FILE`"
    )


def _yaml_path(spec) -> Path | None:
    if isinstance(spec, (str, Path)):
        p = Path(str(spec)).expanduser()
        if p.is_file() and p.suffix in (".yaml", ".yml"):
            return p
    return None


def _no_arch_msg(p) -> str:
    return (
        f"preset {p.name} has no architecture config (published figures only: params={p.params}, "
        f"tokens={p.tokens}, train FLOPs={p.train_flops}); use 6ND or its published FLOPs"
    )


def _source(spec):
    """(config object or complete preset dict, preset or None, (T, why) or None), without importing
    transformers for presets. The last item is a context length the spec itself states."""
    p = _preset(spec)
    if p is not None:
        if p.config is None:
            raise UserError(_no_arch_msg(p))
        hint = (
            (p.seq_len, f"seq_len {p.seq_len}: the published pre-training context of {p.name}")
            if p.seq_len
            else None
        )
        return p.config, p, hint
    y = _yaml_path(spec)
    if y is not None:
        _refuse_yaml(y)
    return resolve_config(spec), None, None


def _arch_of(spec):
    src, p, hint = _source(spec)
    return _arch(src), p, hint


def _default_seq_len(arch: _Arch, hint) -> tuple[int, str]:
    if hint is not None:
        return hint
    if arch.max_pos:
        T = min(int(arch.max_pos), SEQ_LEN_CAP)
        return T, f"seq_len {T}: min(max_position_embeddings={arch.max_pos}, {SEQ_LEN_CAP})"
    return DEFAULT_SEQ_LEN, f"seq_len {DEFAULT_SEQ_LEN}: default (config states no context length)"


def _check_seq_len(seq_len) -> int:
    if (
        isinstance(seq_len, bool)
        or not isinstance(seq_len, (int, float))
        or seq_len < 1
        or seq_len != int(seq_len)
    ):
        raise UserError(f"sequence length must be a whole number >= 1, got {seq_len!r}")
    return int(seq_len)


def _window_convention(arch: _Arch, T: int, causal: bool) -> str:
    ws = sorted({op.window for layer in arch.layers for op in layer if isinstance(op, _Attn) and op.window})
    if not ws:
        return ""
    w = ", ".join(map(str, ws))
    if causal:
        return (
            f"; sliding-window layers (window {w}): min(position, window) keys per query, mean w - w^2/(2T)"
        )
    return f"; sliding-window layers (window {w}): all T keys, as eager/SDPA attention computes the masked matrix"


def _keys_per_query(T: int, causal: bool):
    """Keys per query at context T, as a function of a layer's sliding window (None: global).

    causal=False: T for every layer (eager and SDPA attention compute the full T x T score matrix;
    a sliding window or the causal mask is a mask over it). causal=True: as flash attention executes
    it, masked blocks skipped: T/2 on average for global layers, and for a window w < T the mean of
    min(i, w) over positions i = 1..T, w - w^2 / (2T) (= T/2 at w = T, the same convention).
    """

    def keys(window):
        if not causal:
            return float(T)
        if window is None or T <= window:
            return T / 2
        return window - window * window / (2 * T)

    return keys


# ---- public API -------------------------------------------------------------------------------------


def count_flops(
    config, seq_len: int | None = None, *, causal: bool = False, lora=None, frozen: bool = False
) -> FlopCount:
    """Parameters and FLOPs per token of `config` at context length `seq_len` (tokens).

    config: a PretrainedConfig, a dict (config.json content), a path to config.json or a model
    directory, or a preset name; never an efflab YAML run config (this layer knows no recipes: its
    callers build the model config, e.g. efflab.estimate). seq_len default: a preset's published
    pre-training context, else min(max_position_embeddings, 4096), else 2048 (stated in `notes`).
    causal: halve attention FLOPs (flash-attention execution). frozen: every weight frozen while
    gradients flow through (train = forward + input-grad backward; for documentation: a frozen teacher
    used for logits only is charged its forward by callers). lora: LoraSpec(r, target_modules) or any
    object with .r and .target_modules (r = 0 means off).
    """
    src, preset, hint = _source(config)
    mt = src.get("model_type") if isinstance(src, dict) else getattr(src, "model_type", None)
    if mt not in KNOWN_MODEL_TYPES:
        return _measured_count(src, seq_len, hint, causal=causal, lora=lora, frozen=frozen)
    arch = _arch(src)
    notes = list(arch.notes)
    if seq_len is None:
        seq_len, note = _default_seq_len(arch, hint)
        notes.append(note)
    seq_len = _check_seq_len(seq_len)
    r, targets = _lora_r_targets(lora)
    ctx = _keys_per_query(seq_len, causal)
    trainable = not frozen and not r
    input_grad = not r  # LoRA: frozen embedding, no input grad; full or frozen: gradients flow in
    fwd, bwd, matched = _walk(arch, ctx, trainable=trainable, input_grad=input_grad, lora=lora)
    if r:
        _check_lora_targets(arch, targets, matched)
    total, active = _params(arch)
    forward = sum(fwd.values())
    backward = sum(bwd.values())
    return FlopCount(
        model_type=arch.model_type,
        params_total=int(total),
        params_active=int(active),
        params_embedding=int(arch.embedding_params),
        seq_len=seq_len,
        causal=causal,
        forward_flops_per_token=forward,
        train_flops_per_token=forward + backward,
        breakdown={k: fwd[k] for k in PARTS if fwd.get(k)},
        convention=_convention(seq_len, causal, frozen, lora) + _window_convention(arch, seq_len, causal),
        backward_flops_per_token=backward,
        name=preset.name if preset is not None else None,
        notes=tuple(notes),
    )


_MEASURED: dict = {}  # (config JSON, T, LoRA, frozen) -> measurement; one meta-device run per process


def _measured_count(src, seq_len, hint, *, causal: bool, lora, frozen: bool) -> FlopCount:
    """FlopCount of a model type without an analytic count: FlopCounterMode on the meta device."""
    cfg = src if _is_hf_config(src) else resolve_config(src)
    mt = cfg.model_type
    if not is_measurable(mt):
        raise UserError(_unknown_type_msg(mt))
    notes = []
    if seq_len is None:
        mp = getattr(cfg, "max_position_embeddings", None)
        seq_len, note = _default_seq_len(_Arch(mt, 0, 0, False, 0, 0, [], mp, []), hint)
        notes.append(note)
    seq_len = _check_seq_len(seq_len)
    if causal:
        raise UserError(
            f"model type {mt!r} is counted by measurement (eager attention, full T x T scores); "
            "causal=True (flash-attention execution) is available for the analytic families only: "
            + ", ".join(KNOWN_MODEL_TYPES)
        )
    r, targets = _lora_r_targets(lora)
    key = (cfg.to_json_string(use_diff=False), seq_len, r, str(targets), bool(frozen))
    if key not in _MEASURED:
        try:
            _MEASURED[key] = measure.count_on_meta(cfg, seq_len, lora=lora if r else None, frozen=frozen)
        except Exception as e:  # a model that cannot run on the meta device cannot be counted
            raise UserError(
                f"model type {mt!r} has no analytic count and could not be measured on the meta device "
                f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
            ) from None
    m = _MEASURED[key]
    if m["uncounted"]:
        raise UserError(
            f"model type {mt!r}: FlopCounterMode recorded no FLOPs for {', '.join(m['uncounted'][:5])} "
            f"(an operation outside its table): the ledger cannot count this model"
        )
    notes.append(
        f"{mt}: no analytic count; measured with FlopCounterMode on the meta device (one forward + backward "
        f"of 1 x {seq_len} tokens, eager attention). Active parameters are not measured: shown = total"
    )
    fwd, bwd = m["forward_per_token"], m["backward_per_token"]
    conv = (
        f"measured with FlopCounterMode on the meta device: multiply-add = 2 FLOPs; every matmul the model "
        f"executes (LM head incl., embedding lookup excl.), eager attention over all T={seq_len} keys; "
        + _convention(seq_len, False, frozen, lora).split("; ")[-1]
    )
    return FlopCount(
        model_type=mt,
        params_total=m["params_total"],
        params_active=m["params_total"],
        params_embedding=m["params_embedding"],
        seq_len=seq_len,
        causal=False,
        forward_flops_per_token=fwd,
        train_flops_per_token=fwd + bwd,
        breakdown={"measured": fwd},
        convention=conv,
        backward_flops_per_token=bwd,
        name=None,
        notes=tuple(notes),
    )


def forward_flops_per_token(config, seq_len: int | None = None, *, causal: bool = False) -> float:
    """Forward FLOPs per token at context `seq_len` (see `count_flops`)."""
    return count_flops(config, seq_len, causal=causal).forward_flops_per_token


def train_flops_per_token(config, seq_len: int | None = None, *, causal: bool = False, lora=None) -> float:
    """Forward + backward FLOPs per trained token at context `seq_len`; LoRA-aware (see `count_flops`)."""
    return count_flops(config, seq_len, causal=causal, lora=lora).train_flops_per_token


def generation_flops(
    config, prompt_len: int, new_tokens: int, n_seqs: int = 1, *, full_prefill_logits: bool = False
) -> float:
    """Total FLOPs to generate `new_tokens` tokens after a `prompt_len`-token prompt, for `n_seqs` sequences.

    As transformers' `generate` computes it with a KV cache: the prefill is a forward over the
    prompt (attention over the whole prompt, counted in full) whose LM head runs on the last
    position only (logits_to_keep=1; `full_prefill_logits=True` charges every position); it yields
    the first new token. Each of the other new_tokens - 1 tokens is a forward over one token with
    attention over the cache so far (prompt_len + i keys for the i-th of them).
    """
    for what, v, lo in (("prompt_len", prompt_len, 1), ("new_tokens", new_tokens, 0), ("n_seqs", n_seqs, 0)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < lo or v != int(v):
            raise UserError(f"{what} must be a whole number >= {lo}, got {v!r}")
    if new_tokens == 0 or n_seqs == 0:
        return 0.0
    arch = _arch_of(config)[0]
    kw = dict(trainable=False, input_grad=False)
    body = sum(_walk(arch, 0.0, head=False, **kw)[0].values())  # matmuls per token, no LM head
    head = 2.0 * arch.d_model * arch.vocab
    windows = {op.window for layer in arch.layers for op in layer if isinstance(op, _Attn)}
    P = int(prompt_len)
    steps = int(new_tokens) - 1
    prefill = P * body + (P if full_prefill_logits else 1) * head
    decode = steps * (body + head)
    for w in windows:  # attention FLOPs per key of the layers with window w (None: global attention)
        per_key = sum(_walk(arch, lambda x, w=w: float(x == w), head=False, **kw)[0].values()) - body
        prefill += per_key * P * P  # the prompt attends over itself in full (a window is a mask there)
        decode += per_key * _sum_min(P + 1, P + steps, w)  # the i-th decode step sees min(P + i, w) keys
    return float(n_seqs) * (prefill + decode)


def _sum_min(a: int, b: int, w: int | None) -> float:
    """Sum over n = a..b of min(n, w) (w None: of n): keys seen by decode steps with a sliding-window cache."""
    if b < a:
        return 0.0
    cap = b if w is None else min(b, w)
    s = (cap * (cap + 1) - (a - 1) * a) / 2 if cap >= a else 0.0
    return s + (0 if w is None else max(0, b - max(a - 1, w)) * w)


def flops_6nd(params_active: float, tokens: float) -> float:
    """The quick estimate 6 x N x D (training FLOPs), N = ACTIVE parameters, D = training tokens.

    Kaplan et al. 2020 (C ~ 6ND); what published frontier figures (GPT-3 Table D.1, Llama 3) use.
    It counts every parameter (embeddings too) and no attention; the detailed count is the default.
    """
    return 6.0 * float(params_active) * float(tokens)


def train_flops_fn(config, *, lora=None):
    """`seq_len -> train FLOPs per trained token` for `config`, counted once per length.

    The count is `train_flops_per_token(config, seq_len, lora=lora)`: model FLOPs, forward + backward,
    attention over the full T x T score matrix (docs/conventions.md section 2), frozen base matmuls
    without weight gradients under LoRA. It is what the training loop charges to the ledger's `train`
    phase for every token it trains; recipes pass it to `loop.train(..., flops_per_token=...)`.
    """
    counted: dict[int, float] = {}

    def per_token(seq_len: int) -> float:
        if seq_len not in counted:
            counted[seq_len] = train_flops_per_token(config, seq_len, lora=lora)
        return counted[seq_len]

    return per_token


def forward_flops_fn(config):
    """`seq_len -> forward FLOPs per token` for `config` (`forward_flops_per_token`: model FLOPs, full
    T x T attention, docs/conventions.md section 2), counted once per length: what a frozen model
    (a teacher) costs per token it reads."""
    counted: dict[int, float] = {}

    def per_token(seq_len: int) -> float:
        if seq_len not in counted:
            counted[seq_len] = forward_flops_per_token(config, seq_len)
        return counted[seq_len]

    return per_token
