"""Published models and frontier training runs: facts, each with its source (README, 'Counting FLOPs and pricing runs').

A preset is either a *model* (an HF config.json-style dict from which `efflab.accounting.flops`
counts parameters and FLOPs exactly as transformers would build the model) or a *run* known only by
its published figures (parameters, tokens, training FLOPs). Both may carry published figures; the
tests check that every model config reproduces its published parameter count.

No torch or transformers is imported here: `efflab flops llama-3.1-405b` answers in well under two
seconds because the preset configs are complete dicts that the analytic counter reads directly.

Sources (abbreviations used below):
  [GPT-2]      Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"; HF `gpt2` config.
  [GPT-3]      Brown et al. 2020, "Language Models are Few-Shot Learners", arXiv:2005.14165, Table 2.1 and
               Table D.1 (174.6e9 params, 300e9 tokens, 3.14e23 training FLOPs).
  [Chinchilla] Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", arXiv:2203.15556:
               Table 1 (Chinchilla 70B on 1.4e12 tokens), Table 4 (architectures: Chinchilla 80 layers, 64
               heads, key/value size 128, d_model 8192; Gopher 80 / 128 / 128 / 16384), section 3 and
               Figure 1 (Gopher's compute budget, 5.76e23 FLOPs; Chinchilla "uses the same compute budget"),
               Appendix F (their FLOP count: embeddings, attention incl. softmax, dense blocks, logits;
               backward = 2 x forward). Table 3's 5.76e23 row is the approach-1 optimum for that budget
               (67B on 1.5e12 tokens), not Chinchilla.
  [Gopher]     Rae et al. 2021, "Scaling Language Models: Methods, Analysis & Insights from Training Gopher",
               arXiv:2112.11446: Table 1 (280B: 80 layers, 128 heads, key/value size 128, d_model 16384,
               2048 context), section 3 (300e9 training tokens, SentencePiece vocabulary of 32,000),
               Appendix F compute table (6.31e8 PFLOPs = 6.31e23 FLOPs for the 280B run, counting the
               rematerialisation that "increases compute by 33%").
  [PaLM]       Chowdhery et al. 2022, "PaLM: Scaling Language Modeling with Pathways", arXiv:2204.02311,
               Table 1 (118 layers, d_model 18432, 48 heads x 256, 540.35e9 params), App. B (780e9 tokens,
               2.56e24 FLOPs counted with attention).
  [Llama 2]    Touvron et al. 2023, arXiv:2307.09288, Table 1 (2.0e12 tokens, 4096 context) and Table 2
               (A100-80GB GPU-hours: 7B 184,320; 13B 368,640; 34B 1,038,336; 70B 1,720,320; 3,311,616 in all).
  [Llama 3]    Llama Team, Meta 2024, "The Llama 3 Herd of Models", arXiv:2407.21783: section 3.2.1 (405B:
               3.8e25 FLOPs, 15.6e12 tokens), section 3.4 (pre-training at 8K context; long-context
               pre-training in six stages from 8K to 128K on about 800e9 tokens), Table 4 (BF16 MFU 38-43%).
               Llama-3 8B model card (15e12+ tokens, 1.3M H100-80GB GPU-hours); Llama-3.1 model card
               ("~15T" tokens; 1.46M / 7.0M / 30.84M H100-80GB GPU-hours for 8B / 70B / 405B, 39.3M in all).
  [OLMo 2]     OLMo Team 2024, "2 OLMo 2 Furious", arXiv:2501.00656, and the OLMo-2-1124 model cards
               (7B: 4e12 tokens, 32 layers, d_model 4096; 13B: 5e12 tokens, 40 layers, d_model 5120).
  [Qwen3]      Qwen Team 2025, "Qwen3 Technical Report", arXiv:2505.09388: Table 1 (Qwen3-8B: 36 layers,
               32 query / 8 KV heads, untied embeddings), section 3 (about 36e12 pre-training tokens).
  [Gemma]      Gemma Team 2024, "Gemma: Open Models Based on Gemini Research and Technology", arXiv:2403.08295:
               Table 1 (7B: d_model 3072, 28 layers, 16 heads of 256, FFN 49152 = 2 x 24576 GeGLU, vocab
               256,128... stored as 256,000 in the HF config), Table 2 (8.54B params), 6e12 tokens.
  [Mistral]    Jiang et al. 2023, "Mistral 7B", arXiv:2310.06825 (7.24e9 params, 8192 context, window 4096).
  [Mixtral]    Jiang et al. 2024, "Mixtral of Experts", arXiv:2401.04088 (46.7e9 total / 12.9e9 active).
  [Qwen2.5]    Qwen Team 2024, "Qwen2.5 Technical Report", arXiv:2412.15115 (0.49e9 params, 18e12 tokens).
  [OLMoE]      Muennighoff et al. 2024, "OLMoE: Open Mixture-of-Experts Language Models", arXiv:2409.02060
               (6.9e9 total / 1.3e9 active, 5.1e12 tokens); HF `allenai/OLMoE-1B-7B-0924` config.
  [DeepSeek-V3] DeepSeek-AI 2024, "DeepSeek-V3 Technical Report", arXiv:2412.19437: section 1 and Table 1
               (671e9 total / 37e9 active; 14.8e12 tokens; H800 GPU-hours: pre-training 2,664K = 180K per
               trillion tokens, context extension 119K, post-training 5K, 2,788K in all, $2 per GPU-hour:
               $5.576M), section 2.2 (one multi-token-prediction module, D = 1: a projection 2d -> d, one
               Transformer block, the shared embedding and output head), section 3.3 (FP8 mixed-precision
               training: the GEMMs run in FP8), section 4.2-4.3 (pre-training at 4K context).
  [Epoch]      Epoch AI, "Notable AI Models" database: GPT-4 training compute estimate 2.1e25 FLOPs.
  [BACKGROUND] efflab's starting claims (the report's claims table): GPT-4 "an estimated 2.15e25
               FLOPs"; a hypothetical 2026 frontier run on 32,000 B200 GPUs for three to four months.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from efflab.accounting import hardware
from efflab.errors import UserError, suggest

DAYS_PER_MONTH = 365.25 / 12  # 30.44 days: a calendar-average month


@dataclass(frozen=True)
class Preset:
    """One published model or training run. Every figure has an entry in `sources`.

    params / params_active: parameters (count); tokens: training tokens; train_flops: published
    training FLOPs (multiply-add = 2); seq_len: pre-training context length (tokens); gpu_hours:
    published accelerator-hours on `gpu` of the scope `gpu_hours_scope` names (the scope `tokens`
    covers); gpu_hours_total: the whole run's, where the developer published both; precision: the
    matmul precision MFU is stated against ("bf16", or "fp8" for an FP8-trained run).
    context_schedule: ((seq_len, tokens, note), ...) for runs trained in stages of context length;
    mtp_depth: multi-token-prediction modules trained beside the model (DeepSeek-V3: 1);
    shape: the published architecture of a run preset that transformers cannot build (Chinchilla,
    Gopher); hardware_flops: a published figure that counts recomputation too (not model FLOPs).
    """

    name: str
    kind: str  # "model": has an HF-style config; "run": published figures only
    description: str
    config: dict | None = None
    params: float | None = None
    params_active: float | None = None
    tokens: float | None = None
    train_flops: float | None = None
    seq_len: int | None = None
    gpu: str | None = None
    gpu_hours: float | None = None
    estimate: bool = False  # True: the FLOPs are an outside estimate, not the developer's figure
    sources: dict = field(default_factory=dict)
    notes: str = ""
    gpu_hours_scope: str = ""
    gpu_hours_total: float | None = None
    precision: str = "bf16"
    context_schedule: tuple = ()
    mtp_depth: int = 0
    shape: dict | None = None
    hardware_flops: float | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "params": self.params,
            "params_active": self.params_active,
            "tokens": self.tokens,
            "train_flops": self.train_flops,
            "seq_len": self.seq_len,
            "gpu": self.gpu,
            "gpu_hours": self.gpu_hours,
            "estimate": self.estimate,
            "gpu_hours_scope": self.gpu_hours_scope or None,
            "gpu_hours_total": self.gpu_hours_total,
            "precision": self.precision,
            "context_schedule": [list(x) for x in self.context_schedule] or None,
            "mtp_depth": self.mtp_depth,
            "shape": dict(self.shape) if self.shape else None,
            "hardware_flops": self.hardware_flops,
            "sources": dict(self.sources),
            "notes": self.notes,
            "config": dict(self.config) if self.config else None,
        }


# ---- config builders: every key the analytic counter reads is spelled out ----------------------


def _llama_like(model_type: str, **kw) -> dict:
    cfg = {
        "model_type": model_type,
        "vocab_size": kw.pop("vocab_size"),
        "hidden_size": kw.pop("hidden_size"),
        "intermediate_size": kw.pop("intermediate_size"),
        "num_hidden_layers": kw.pop("num_hidden_layers"),
        "num_attention_heads": kw.pop("num_attention_heads"),
        "num_key_value_heads": kw.pop("num_key_value_heads"),
        "max_position_embeddings": kw.pop("max_position_embeddings"),
        "tie_word_embeddings": kw.pop("tie_word_embeddings", False),
    }
    if kw.get("head_dim") is None:  # absent = hidden_size // heads (OLMoE/Qwen2 configs have no such field)
        kw.pop("head_dim", None)
    if model_type in ("llama",):
        cfg["attention_bias"] = kw.pop("attention_bias", False)
        cfg["mlp_bias"] = kw.pop("mlp_bias", False)
    cfg.update(kw)
    return cfg


GPT2_124M = {
    "model_type": "gpt2",
    "vocab_size": 50257,
    "n_positions": 1024,
    "n_embd": 768,
    "n_layer": 12,
    "n_head": 12,
    "n_inner": None,
    "tie_word_embeddings": True,
}

# GPT-3 175B in the GPT-2 architecture it shares (Brown et al. 2020, section 2.1: "the same model and
# architecture as GPT-2"), with Table 2.1's shape: 96 layers, d_model 12288, 96 heads, context 2048.
# GPT-3 alternated dense and locally banded sparse attention layers; that changes attention FLOPs
# only (a few percent at 2048 tokens), and this config counts every layer dense.
GPT3_175B = dict(GPT2_124M, n_positions=2048, n_embd=12288, n_layer=96, n_head=96)

PRESETS: dict[str, Preset] = {}


def _add(p: Preset) -> None:
    PRESETS[p.name] = p


_add(
    Preset(
        "gpt2-124m",
        "model",
        "GPT-2 small (OpenAI 2019)",
        config=GPT2_124M,
        params=124e6,
        seq_len=1024,
        sources={
            "params": "[GPT-2] 117M in the paper; 124,439,808 as the HF `gpt2` checkpoint builds it",
            "config": "HF `gpt2` config.json",
            "seq_len": "[GPT-2] context 1024",
        },
        notes="Biases and LayerNorms count as parameters but not as FLOPs. Training tokens were not published.",
    )
)
_add(
    Preset(
        "gpt3-175b",
        "model",
        "GPT-3 175B (OpenAI 2020)",
        config=GPT3_175B,
        params=174.6e9,
        tokens=300e9,
        train_flops=3.14e23,
        seq_len=2048,
        sources={
            "params": "[GPT-3] Table D.1: 174.6e9",
            "tokens": "[GPT-3] Table D.1: 300e9",
            "train_flops": "[GPT-3] Table D.1: 3.14e23 (= 6ND)",
            "config": "[GPT-3] Table 2.1 shape",
            "seq_len": "[GPT-3] section 2.1: n_ctx = 2048",
        },
        notes="Described in the GPT-2 architecture with Table 2.1's shape; GPT-3's alternating sparse "
        "attention layers are counted dense.",
    )
)
# Chinchilla and Gopher (Hoffmann et al. Table 4; Rae et al. Table 1): Transformer-XL style relative
# position encodings (a d_model x d_model position projection per layer), RMSNorm, a 4 x d_model ReLU/GeLU
# MLP, 32,000-token vocabulary, 2048 context. transformers has no such model, so these are `run` presets
# whose shape the Appendix F count (efflab.accounting.pricing.appendix_f_flops_per_token) reads.
CHINCHILLA_SHAPE = {
    "n_layer": 80,
    "n_head": 64,
    "kv_size": 128,
    "d_model": 8192,
    "ffw_size": 32768,
    "vocab_size": 32000,
    "seq_len": 2048,
}
GOPHER_SHAPE = {
    "n_layer": 80,
    "n_head": 128,
    "kv_size": 128,
    "d_model": 16384,
    "ffw_size": 65536,
    "vocab_size": 32000,
    "seq_len": 2048,
}

_add(
    Preset(
        "chinchilla-70b",
        "run",
        "Chinchilla 70B (DeepMind 2022), compute-optimal, Gopher's budget",
        params=70e9,
        tokens=1.4e12,
        train_flops=5.76e23,
        seq_len=2048,
        shape=CHINCHILLA_SHAPE,
        sources={
            "params": "[Chinchilla] Table 1: 70B",
            "tokens": "[Chinchilla] Table 1: 1.4 trillion",
            "train_flops": "[Chinchilla] section 3 / Figure 1: Gopher's budget 5.76e23, which Chinchilla "
            "'uses the same compute budget as' (not a count of Chinchilla's own run)",
            "shape": "[Chinchilla] Table 4: 80 layers, 64 heads, kv size 128, d_model 8192; ffw 4 x d_model",
            "seq_len": "[Gopher] 2048 context (Chinchilla keeps Gopher's setup)",
        },
        notes="5.76e23 is a budget label: Chinchilla's own Appendix F count over 1.4e12 tokens is 5.68e23 "
        "(-1.3%) and 6ND is 5.88e23 (+2.1%). No transformers architecture (relative position encodings).",
    )
)
_add(
    Preset(
        "gopher-280b",
        "run",
        "Gopher 280B (DeepMind 2021), the budget Chinchilla matched",
        params=280e9,
        tokens=300e9,
        train_flops=5.76e23,
        seq_len=2048,
        shape=GOPHER_SHAPE,
        hardware_flops=6.31e23,
        sources={
            "params": "[Gopher] Table 1: 280B",
            "tokens": "[Gopher] section 3: 300B training tokens",
            "train_flops": "[Chinchilla] section 3 / Figure 1: Gopher's budget 5.76e23",
            "hardware_flops": "[Gopher] Appendix F compute table: 6.31e8 PFLOPs, rematerialisation included (+33%)",
            "shape": "[Gopher] Table 1 / [Chinchilla] Table 4: 80 layers, 128 heads, kv size 128, d_model 16384",
            "seq_len": "[Gopher] Table 1: 2048 context",
        },
        notes="5.76e23 cannot be rebuilt from Gopher's shape and tokens (Appendix F count 4.75e23, 6ND 5.04e23). "
        "Rae et al.'s own 6.31e23 counts rematerialisation: the Appendix F count x 4/3 (one more forward) "
        "reproduces it to 0.5%.",
    )
)
_add(
    Preset(
        "palm-540b",
        "model",
        "PaLM 540B (Google 2022)",
        # PaLM: SwiGLU MLP of 4*d_model, multi-query attention (one K/V head of 256), shared input/output
        # embedding, no biases: a Llama-shaped config with one KV head reproduces 540.35e9 exactly.
        # Parallel attention+MLP blocks and RoPE do not change the matmul count.
        config=_llama_like(
            "llama",
            vocab_size=256000,
            hidden_size=18432,
            intermediate_size=73728,
            num_hidden_layers=118,
            num_attention_heads=48,
            num_key_value_heads=1,
            head_dim=256,
            max_position_embeddings=2048,
            tie_word_embeddings=True,
        ),
        params=540.35e9,
        tokens=780e9,
        train_flops=2.56e24,
        seq_len=2048,
        sources={
            "params": "[PaLM] Table 1: 540.35B",
            "tokens": "[PaLM] 780 billion tokens",
            "train_flops": "[PaLM] App. B: 2.56e24 (6N + attention)",
            "config": "[PaLM] Table 1 shape",
        },
    )
)
_add(
    Preset(
        "llama-2-7b",
        "model",
        "Llama 2 7B (Meta 2023)",
        config=_llama_like(
            "llama",
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
        ),
        params=6.74e9,
        tokens=2e12,
        seq_len=4096,
        gpu="a100",
        gpu_hours=184_320,
        gpu_hours_scope="pre-training",
        sources={
            "params": "[Llama 2] 6,738,415,616 as transformers builds meta-llama/Llama-2-7b-hf",
            "tokens": "[Llama 2] Table 1: 2.0T tokens",
            "gpu_hours": "[Llama 2] Table 2: 184,320 A100-80GB hours (pre-training)",
            "seq_len": "[Llama 2] Table 1: 4096 context",
        },
    )
)
_add(
    Preset(
        "llama-2-13b",
        "model",
        "Llama 2 13B (Meta 2023)",
        config=_llama_like(
            "llama",
            vocab_size=32000,
            hidden_size=5120,
            intermediate_size=13824,
            num_hidden_layers=40,
            num_attention_heads=40,
            num_key_value_heads=40,
            max_position_embeddings=4096,
        ),
        params=13.02e9,
        tokens=2e12,
        seq_len=4096,
        gpu="a100",
        gpu_hours=368_640,
        gpu_hours_scope="pre-training",
        sources={
            "params": "[Llama 2] '13B'; 13,015,864,320 as transformers builds meta-llama/Llama-2-13b-hf",
            "tokens": "[Llama 2] Table 1: 2.0T tokens",
            "gpu_hours": "[Llama 2] Table 2: 368,640 A100-80GB hours (pre-training)",
            "seq_len": "[Llama 2] Table 1: 4096 context",
        },
    )
)
_add(
    Preset(
        "llama-2-70b",
        "model",
        "Llama 2 70B (Meta 2023), grouped-query attention",
        config=_llama_like(
            "llama",
            vocab_size=32000,
            hidden_size=8192,
            intermediate_size=28672,
            num_hidden_layers=80,
            num_attention_heads=64,
            num_key_value_heads=8,
            max_position_embeddings=4096,
        ),
        params=68.98e9,
        tokens=2e12,
        seq_len=4096,
        gpu="a100",
        gpu_hours=1_720_320,
        gpu_hours_scope="pre-training",
        sources={
            "params": "68,976,648,192 as transformers builds meta-llama/Llama-2-70b-hf ('70B')",
            "tokens": "[Llama 2] Table 1: 2.0T tokens",
            "gpu_hours": "[Llama 2] Table 2: 1,720,320 A100-80GB hours (pre-training)",
            "seq_len": "[Llama 2] Table 1: 4096 context",
        },
    )
)
_add(
    Preset(
        "llama-3-8b",
        "model",
        "Llama 3 8B (Meta 2024)",
        config=_llama_like(
            "llama",
            vocab_size=128256,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=8192,
        ),
        params=8.03e9,
        tokens=15e12,
        seq_len=8192,
        gpu="h100",
        gpu_hours=1.3e6,
        gpu_hours_scope="whole run (the model card's training time)",
        sources={
            "params": "8,030,261,248 as transformers builds meta-llama/Meta-Llama-3-8B",
            "tokens": "[Llama 3] Llama-3 8B model card: 15T+ tokens",
            "gpu_hours": "[Llama 3] Llama-3 8B model card: 1.3M H100-80GB hours",
            "seq_len": "[Llama 3] Llama-3 8B model card: 8K context",
        },
    )
)


def _llama31(hidden, inter, layers, heads) -> dict:
    # Llama 3.1: Llama 3's shapes with 128K positions (rope scaling changes no matmul)
    return _llama_like(
        "llama",
        vocab_size=128256,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=8,
        max_position_embeddings=131072,
    )


# Llama 3 pre-training context schedule (Llama 3 paper section 3.4): 8K for the bulk of the tokens, then
# long-context pre-training in six stages up to 128K on about 800e9 tokens. The stage lengths are not
# published; efflab counts that phase at 128K, an upper bound on its attention FLOPs.
LLAMA3_LONG_CONTEXT_TOKENS = 0.8e12


def _llama3_schedule(tokens: float) -> tuple:
    return (
        (8192, tokens - LLAMA3_LONG_CONTEXT_TOKENS, "pre-training at 8K"),
        (
            131072,
            LLAMA3_LONG_CONTEXT_TOKENS,
            "long-context pre-training, 8K -> 128K in six stages, counted at 128K (upper bound)",
        ),
    )


_add(
    Preset(
        "llama-3.1-8b",
        "model",
        "Llama 3.1 8B (Meta 2024), 8K then 128K context",
        config=_llama31(4096, 14336, 32, 32),
        params=8.03e9,
        tokens=15e12,
        seq_len=8192,
        gpu="h100",
        gpu_hours=1.46e6,
        gpu_hours_scope="whole run (the model card's training time)",
        context_schedule=_llama3_schedule(15e12),
        sources={
            "params": "8,030,261,248 as transformers builds meta-llama/Llama-3.1-8B",
            "tokens": "[Llama 3] Llama-3.1 model card: ~15T tokens",
            "gpu_hours": "[Llama 3] Llama-3.1 model card: 1.46M H100-80GB hours",
            "seq_len": "[Llama 3] section 3.4: pre-training at 8K",
            "context_schedule": "[Llama 3] section 3.4.2: six stages to 128K on ~800B tokens (stage lengths "
            "not published; counted at 128K)",
        },
    )
)
_add(
    Preset(
        "llama-3.1-70b",
        "model",
        "Llama 3.1 70B (Meta 2024), 8K then 128K context",
        config=_llama31(8192, 28672, 80, 64),
        params=70.55e9,
        tokens=15e12,
        seq_len=8192,
        gpu="h100",
        gpu_hours=7.0e6,
        gpu_hours_scope="whole run (the model card's training time)",
        context_schedule=_llama3_schedule(15e12),
        sources={
            "params": "70,553,706,496 as transformers builds meta-llama/Llama-3.1-70B",
            "tokens": "[Llama 3] Llama-3.1 model card: ~15T tokens",
            "gpu_hours": "[Llama 3] Llama-3.1 model card: 7.0M H100-80GB hours",
            "seq_len": "[Llama 3] section 3.4: pre-training at 8K",
            "context_schedule": "[Llama 3] section 3.4.2: six stages to 128K on ~800B tokens (stage lengths "
            "not published; counted at 128K)",
        },
    )
)
_add(
    Preset(
        "llama-3.1-405b",
        "model",
        "Llama 3.1 405B (Meta 2024)",
        config=_llama_like(
            "llama",
            vocab_size=128256,
            hidden_size=16384,
            intermediate_size=53248,
            num_hidden_layers=126,
            num_attention_heads=128,
            num_key_value_heads=8,
            max_position_embeddings=131072,
        ),
        params=405e9,
        tokens=15.6e12,
        train_flops=3.8e25,
        seq_len=8192,
        gpu="h100",
        gpu_hours=30.84e6,
        gpu_hours_scope="whole run (the model card's training time)",
        context_schedule=_llama3_schedule(15.6e12),
        sources={
            "params": "[Llama 3] 405B (405.85e9 as transformers builds it)",
            "tokens": "[Llama 3] section 3: 15.6T tokens",
            "train_flops": "[Llama 3] section 3.2.1: 3.8e25 (= 6ND with 405B and 15.6T)",
            "seq_len": "[Llama 3] section 3.4: pre-training context 8192",
            "context_schedule": "[Llama 3] section 3.4.2: six stages to 128K on ~800B tokens (stage lengths "
            "not published; counted at 128K)",
            "gpu_hours": "[Llama 3] Llama-3.1 model card: 30.84M H100-80GB hours",
        },
    )
)
_add(
    Preset(
        "mistral-7b",
        "model",
        "Mistral 7B v0.1 (Mistral AI 2023), sliding-window attention",
        config=_llama_like(
            "mistral",
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=32768,
            sliding_window=4096,
        ),
        params=7.24e9,
        seq_len=8192,
        sources={
            "params": "[Mistral] 7,241,732,096 as transformers builds mistralai/Mistral-7B-v0.1",
            "seq_len": "[Mistral] 8192 context, window 4096",
        },
        notes="Training tokens not published. Attention is counted over the full context (as eager "
        "attention computes it), not over the 4096-token window.",
    )
)
_add(
    Preset(
        "mixtral-8x7b",
        "model",
        "Mixtral 8x7B (Mistral AI 2024): 8 experts, top-2",
        config=_llama_like(
            "mixtral",
            vocab_size=32000,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=32768,
            num_local_experts=8,
            num_experts_per_tok=2,
        ),
        params=46.7e9,
        params_active=12.9e9,
        seq_len=32768,
        sources={
            "params": "[Mixtral] 46.7B total",
            "params_active": "[Mixtral] 12.9B active per token",
            "seq_len": "[Mixtral] 32k-token context",
        },
        notes="Training tokens not published.",
    )
)
_add(
    Preset(
        "qwen2.5-0.5b",
        "model",
        "Qwen2.5 0.5B (Alibaba 2024), tied embeddings, qkv biases",
        config=_llama_like(
            "qwen2",
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
        ),
        params=0.49e9,
        tokens=18e12,
        sources={
            "params": "[Qwen2.5] Table 1: 0.49B (0.36B non-embedding)",
            "tokens": "[Qwen2.5] 18T tokens",
        },
    )
)
# OLMo 2, Qwen3 and Gemma in the Llama form: the same matmuls (OLMo 2's and Qwen3's q/k RMSNorms and
# Gemma's GeGLU change no matmul; GeGLU has SwiGLU's three projections). The norms' few weights are
# not in the Llama form: the notes say how many.
_add(
    Preset(
        "olmo-2-7b",
        "model",
        "OLMo 2 7B (AI2 2024), fully open",
        config=_llama_like(
            "llama",
            vocab_size=100352,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
        ),
        tokens=4e12,
        seq_len=4096,
        sources={
            "tokens": "[OLMo 2] OLMo-2-1124-7B model card: 4 trillion tokens",
            "config": "[OLMo 2] model card: 32 layers, d_model 4096, 32 heads, 4096 context; HF config",
            "seq_len": "[OLMo 2] model card: 4096 context",
        },
        notes="No exact parameter count is published (the card says 7B; this Llama form counts 7.298B). q/k "
        "RMSNorm weights (2 x 4096 per layer, 262,144 in all) are not in the Llama form; FLOPs are unaffected. "
        "GPU-hours not published in this form.",
    )
)
_add(
    Preset(
        "olmo-2-13b",
        "model",
        "OLMo 2 13B (AI2 2024), fully open",
        config=_llama_like(
            "llama",
            vocab_size=100352,
            hidden_size=5120,
            intermediate_size=13824,
            num_hidden_layers=40,
            num_attention_heads=40,
            num_key_value_heads=40,
            max_position_embeddings=4096,
        ),
        tokens=5e12,
        seq_len=4096,
        sources={
            "tokens": "[OLMo 2] OLMo-2-1124-13B model card: 5 trillion tokens",
            "config": "[OLMo 2] model card: 40 layers, d_model 5120, 40 heads, 4096 context; HF config",
            "seq_len": "[OLMo 2] model card: 4096 context",
        },
        notes="No exact parameter count is published (the card says 13B; this Llama form counts 13.72B). q/k "
        "RMSNorm weights (2 x 5120 per layer, 409,600 in all) are not in the Llama form; FLOPs are unaffected. "
        "GPU-hours not published in this form.",
    )
)
_add(
    Preset(
        "qwen3-8b",
        "model",
        "Qwen3 8B (Alibaba 2025), GQA, per-head q/k norm",
        config=_llama_like(
            "llama",
            vocab_size=151936,
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=36,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=40960,
        ),
        params=8.2e9,
        tokens=36e12,
        seq_len=4096,
        sources={
            "params": "[Qwen3] Qwen3-8B model card: 8.2B (6.95B non-embedding)",
            "tokens": "[Qwen3] section 3: about 36 trillion tokens",
            "config": "[Qwen3] Table 1: 36 layers, 32 / 8 heads, untied; HF Qwen/Qwen3-8B config",
            "seq_len": "[Qwen3] section 3.2: general stage at 4,096 tokens (then 32K in the long-context stage)",
        },
        notes="Per-head q/k RMSNorm weights (2 x 128 per layer) are not in the Llama form. The final "
        "long-context stage (hundreds of billions of tokens at 32K) is not in the schedule: its size is "
        "stated only approximately. GPU-hours not published.",
    )
)
_add(
    Preset(
        "gemma-7b",
        "model",
        "Gemma 7B (Google 2024), 16 heads of 256, GeGLU, tied embeddings",
        config=_llama_like(
            "llama",
            vocab_size=256000,
            hidden_size=3072,
            intermediate_size=24576,
            num_hidden_layers=28,
            num_attention_heads=16,
            num_key_value_heads=16,
            head_dim=256,
            max_position_embeddings=8192,
            tie_word_embeddings=True,
        ),
        params=8.54e9,
        tokens=6e12,
        seq_len=8192,
        sources={
            "params": "[Gemma] Table 2: 7,751,248,896 non-embedding + 786,825,216 embedding (vocab 256,128)",
            "tokens": "[Gemma] section 3: 6T tokens",
            "config": "[Gemma] Table 1 shape; HF google/gemma-7b config (vocab 256,000)",
            "seq_len": "[Gemma] Table 1: context 8192",
        },
        notes="The paper's vocabulary is 256,128 tokens, the HF config's 256,000: 393,216 fewer embedding "
        "parameters here. GPU-hours not published (trained on TPU v5e).",
    )
)
_add(
    Preset(
        "olmoe-1b-7b",
        "model",
        "OLMoE 1B-7B (AI2 2024): 64 experts, top-8, q/k norm",
        config=_llama_like(
            "olmoe",
            vocab_size=50304,
            hidden_size=2048,
            intermediate_size=1024,
            num_hidden_layers=16,
            num_attention_heads=16,
            num_key_value_heads=16,
            max_position_embeddings=4096,
            num_experts=64,
            num_experts_per_tok=8,
            attention_bias=False,
        ),
        params=6.9e9,
        params_active=1.3e9,
        tokens=5.1e12,
        seq_len=4096,
        sources={
            "params": "[OLMoE] 6.9B total",
            "params_active": "[OLMoE] 1.3B active",
            "tokens": "[OLMoE] 5.1T tokens",
            "config": "HF allenai/OLMoE-1B-7B-0924 config.json",
        },
    )
)
_add(
    Preset(
        "deepseek-v3",
        "model",
        "DeepSeek-V3 (2024): MLA, 256 routed + 1 shared expert, top-8; trained on H800s",
        config={
            "model_type": "deepseek_v3",
            "vocab_size": 129280,
            "hidden_size": 7168,
            "intermediate_size": 18432,
            "moe_intermediate_size": 2048,
            "num_hidden_layers": 61,
            "num_attention_heads": 128,
            "num_key_value_heads": 128,
            "n_shared_experts": 1,
            "n_routed_experts": 256,
            "num_experts_per_tok": 8,
            "first_k_dense_replace": 3,
            "q_lora_rank": 1536,
            "kv_lora_rank": 512,
            "qk_rope_head_dim": 64,
            "qk_nope_head_dim": 128,
            "v_head_dim": 128,
            "attention_bias": False,
            "tie_word_embeddings": False,
            "max_position_embeddings": 163840,
            "n_group": 8,
            "topk_group": 4,
        },
        params=671e9,
        params_active=37e9,
        tokens=14.8e12,
        seq_len=4096,
        gpu="h800",
        gpu_hours=2.664e6,
        gpu_hours_scope="pre-training (the 14.8T tokens at 4K)",
        gpu_hours_total=2.788e6,
        precision="fp8",
        mtp_depth=1,
        sources={
            "params": "[DeepSeek-V3] 671B total",
            "params_active": "[DeepSeek-V3] 37B activated per token",
            "tokens": "[DeepSeek-V3] 14.8T tokens",
            "gpu_hours": "[DeepSeek-V3] Table 1: pre-training 2,664K H800 hours (180K per trillion tokens)",
            "gpu_hours_total": "[DeepSeek-V3] Table 1: 2,788K H800 hours = 2,664K pre-training + 119K "
            "context extension + 5K post-training",
            "precision": "[DeepSeek-V3] section 3.3: FP8 mixed-precision training (GEMMs in FP8)",
            "mtp_depth": "[DeepSeek-V3] section 2.2: one MTP module (D = 1), trained with the model",
            "seq_len": "[DeepSeek-V3] section 4.2: pre-training at 4K context",
            "config": "HF deepseek-ai/DeepSeek-V3 config",
        },
        notes="The multi-token-prediction module (14B more on the Hub: its block and projection; embedding and "
        "head shared) is not part of the 671B and not built by transformers; efflab adds its FLOPs to the "
        "run's. DeepSeek priced the whole run at $2 per H800 GPU-hour ($5.576M). MFU is stated against the "
        "H800's dense FP8 peak, the precision the run's matmuls used.",
    )
)
_add(
    Preset(
        "gpt4-estimate",
        "run",
        "GPT-4 (OpenAI 2023): training compute ESTIMATE, not a published figure",
        train_flops=2.1e25,
        estimate=True,
        sources={"train_flops": "[Epoch] estimate 2.1e25 FLOPs; [BACKGROUND] also quotes 2.15e25"},
        notes="An outside estimate; OpenAI has published neither parameters nor compute.",
    )
)


def _frontier_2026() -> Preset:
    # Derived, not published: efflab's starting claims sketch 32,000 B200 GPUs for three to four months (we take
    # 3.5). FLOPs = GPUs x dense BF16 peak x default MFU x seconds.

    gpus, months = 32_000, 3.5
    b200 = hardware.gpu("b200")
    seconds = months * DAYS_PER_MONTH * 86400
    flops = gpus * b200.peak_flops * hardware.DEFAULT_MFU * seconds
    return Preset(
        "frontier-2026",
        "run",
        "A 2026 frontier run: 32,000 B200 GPUs for ~3.5 months (derived budget)",
        train_flops=flops,
        gpu="b200",
        gpu_hours=gpus * seconds / 3600,
        estimate=True,
        sources={
            "shape": "[BACKGROUND] 32,000 B200 GPUs, three to four months, a ~$200M run",
            "gpu_hours": f"derived: {gpus:,} GPUs x {months} months of {DAYS_PER_MONTH:.2f} days x 24 h",
            "train_flops": f"derived: {gpus:,} GPUs x {b200.peak_flops:.3g} FLOP/s (B200 dense BF16) x "
            f"MFU {hardware.DEFAULT_MFU} (efflab default) x {months} months of {DAYS_PER_MONTH:.2f} days",
        },
        notes="Hypothetical; its FLOP budget is derived from the hardware with efflab's default MFU.",
    )


_add(_frontier_2026())


@dataclass(frozen=True)
class Budget:
    """A training FLOP budget (FLOPs, multiply-add = 2) and where the figure comes from."""

    name: str
    flops: float
    source: str
    estimate: bool = False

    def __float__(self) -> float:
        return float(self.flops)


# The frontier budgets the extrapolation layer turns savings into (name -> Budget).
FRONTIER_BUDGETS: dict[str, Budget] = {
    name: Budget(
        name, PRESETS[name].train_flops, PRESETS[name].sources["train_flops"], PRESETS[name].estimate
    )
    for name in (
        "gpt3-175b",
        "chinchilla-70b",
        "palm-540b",
        "gpt4-estimate",
        "llama-3.1-405b",
        "frontier-2026",
    )
}


def preset_names() -> list[str]:
    return list(PRESETS)


def is_preset(name) -> bool:
    return isinstance(name, str) and name.lower() in PRESETS


def get_preset(name: str) -> Preset:
    """The preset called `name` (case-insensitive); UserError naming close matches if unknown."""
    key = str(name).lower()
    if key not in PRESETS:
        raise UserError(f"unknown preset {name!r}{suggest(key, PRESETS)}; presets: {', '.join(PRESETS)}")
    return PRESETS[key]


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(x) >= div:
            return f"{x / div:.4g}{suf}{unit}"
    return f"{x:.4g}{unit}"


def describe_presets() -> list[str]:
    """One aligned line per preset for `efflab list`: name, params (active), tokens, FLOPs, description."""
    rows = []
    for p in PRESETS.values():
        params = _fmt(p.params) + (f" ({_fmt(p.params_active)} active)" if p.params_active else "")
        tokens = f"{_fmt(p.tokens)} tok" if p.tokens else "-"
        flops = (f"{p.train_flops:.3g} FLOPs" + (" est." if p.estimate else "")) if p.train_flops else "-"
        rows.append(f"{p.name:<16} {params:<22} {tokens:<11} {flops:<19} {p.description}")
    return rows
