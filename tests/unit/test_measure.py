"""Analytic FLOPs vs torch's FlopCounterMode on real forward+backward passes of tiny models.

docs/conventions.md section 2: they must agree within 2% for dense and MoE models (eager attention). Every
case also checks that no weight-holding module was silently counted as zero.
"""

from __future__ import annotations

import pytest
import torch
import transformers

from efflab.accounting import flops as F  # noqa: E402
from efflab.accounting import measure as M  # noqa: E402

TOL = 0.02


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny models on a shared 2-core machine: intra-op threads only add waiting (10x slower here)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


BASE = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    max_position_embeddings=128,
    bos_token_id=None,
    eos_token_id=None,
    pad_token_id=None,
)


def _cfg(cls, **kw):
    return getattr(transformers, cls)(**{**BASE, "vocab_size": 256, **kw})


MOE = dict(num_key_value_heads=2)
CASES = [
    # (kind, label, config, seq_len)
    ("llama-mha", "llama MHA untied", _cfg("LlamaConfig", num_key_value_heads=4), 32),
    ("llama-gqa", "llama GQA untied", _cfg("LlamaConfig", num_key_value_heads=2), 32),
    ("tied", "llama GQA tied", _cfg("LlamaConfig", num_key_value_heads=1, tie_word_embeddings=True), 32),
    ("seq-len", "llama GQA T=8", _cfg("LlamaConfig", num_key_value_heads=2), 8),
    ("vocab", "llama vocab 1000", _cfg("LlamaConfig", num_key_value_heads=2, vocab_size=1000), 16),
    (
        "mistral",
        "mistral GQA head_dim 16",
        _cfg("MistralConfig", num_key_value_heads=2, head_dim=16, sliding_window=8),
        16,
    ),
    ("qwen2", "qwen2 GQA (qkv biases)", _cfg("Qwen2Config", num_key_value_heads=2), 16),
    (
        "gpt2",
        "gpt2 (Conv1D biases, tied)",
        transformers.GPT2Config(
            vocab_size=300,
            n_embd=64,
            n_layer=2,
            n_head=4,
            n_positions=64,
            bos_token_id=None,
            eos_token_id=None,
        ),
        16,
    ),
    (
        "mixtral-top1",
        "mixtral 4 experts top-1",
        _cfg("MixtralConfig", **MOE, num_local_experts=4, num_experts_per_tok=1),
        16,
    ),
    (
        "mixtral-top2",
        "mixtral 4 experts top-2",
        _cfg("MixtralConfig", **MOE, num_local_experts=4, num_experts_per_tok=2),
        16,
    ),
    (
        "qwen2-moe",
        "qwen2-moe shared expert + sparse step 2",
        _cfg(
            "Qwen2MoeConfig",
            **MOE,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=48,
            shared_expert_intermediate_size=80,
            decoder_sparse_step=2,
        ),
        16,
    ),
    (
        "olmoe",
        "olmoe q/k norm top-2",
        _cfg("OlmoeConfig", num_key_value_heads=4, num_experts=4, num_experts_per_tok=2),
        16,
    ),
    (
        "deepseek-v3",
        "deepseek-v3 MLA + shared expert",
        transformers.DeepseekV3Config(
            vocab_size=256,
            hidden_size=64,
            intermediate_size=96,
            moe_intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            n_routed_experts=4,
            n_group=2,
            topk_group=1,
            num_experts_per_tok=2,
            first_k_dense_replace=1,
            q_lora_rank=24,
            kv_lora_rank=16,
            qk_rope_head_dim=8,
            qk_nope_head_dim=16,
            v_head_dim=12,
            max_position_embeddings=128,
            bos_token_id=None,
            eos_token_id=None,
        ),
        16,
    ),
]
REQUIRED_KINDS = {
    "llama-mha",
    "llama-gqa",
    "tied",
    "seq-len",
    "vocab",
    "mistral",
    "qwen2",
    "gpt2",
    "mixtral-top1",
    "mixtral-top2",
    "qwen2-moe",
    "olmoe",
}
_seen: set[str] = set()


def _build(config):
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("kind,label,config,T", CASES, ids=[c[0] for c in CASES])
def test_train_flops_match_flopcounter(kind, label, config, T):
    model = _build(config)
    ids = torch.randint(0, config.vocab_size, (2, T))
    measured = M.measure_train_flops(model, ids)
    analytic = F.count_flops(config, T)
    assert measured["uncounted"] == [], f"{label}: modules counted as zero: {measured['uncounted']}"
    assert measured["forward_per_token"] == pytest.approx(analytic.forward_flops_per_token, rel=TOL), label
    assert measured["per_token"] == pytest.approx(analytic.train_flops_per_token, rel=TOL), label
    assert sum(p.numel() for p in model.parameters()) == analytic.params_total, label
    if "experts" in analytic.breakdown:  # the MoE part really was measured, not silently zero
        experts = {k: v for k, v in measured["by_module"].items() if k.endswith("mlp.experts")}
        assert experts and all(v > 0 for v in experts.values()), label
    _seen.add(kind)


def test_cross_check_saw_every_kind():
    """The cross-check compared at least one case of each kind (cases not yet run in this session,
    e.g. under -k or another order, are run here)."""
    for kind, label, config, T in CASES:
        if kind not in _seen:
            test_train_flops_match_flopcounter(kind, label, config, T)
    missing = REQUIRED_KINDS - _seen
    assert not missing, f"cross-check never compared: {sorted(missing)}"


def test_measurement_restores_implementations_and_grads():
    config = CASES[9][2]  # mixtral top-2
    model = _build(config)
    before_e, before_a = model.get_experts_implementation(), model.config._attn_implementation
    p0 = next(model.parameters())
    p0.grad = torch.ones_like(p0)
    M.measure_train_flops(model, torch.randint(0, 256, (1, 8)))
    assert model.get_experts_implementation() == before_e
    assert model.config._attn_implementation == before_a
    assert torch.equal(p0.grad, torch.ones_like(p0))


def test_default_moe_path_is_undercounted_without_the_switch():
    """Why measure.py switches implementations: transformers' default grouped_mm experts (and SDPA on
    CPU) are invisible to FlopCounterMode, so a naive count falls short of the analytic one."""
    from torch.utils.flop_counter import FlopCounterMode

    config = CASES[9][2]
    model = _build(config)
    ids = torch.randint(0, 256, (2, 16))
    if model.get_experts_implementation().get("") == "eager" and model.config._attn_implementation == "eager":
        pytest.skip("this transformers build defaults to eager: nothing to demonstrate")
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(input_ids=ids)
    naive = fc.get_total_flops()
    guarded = M.measure_forward_flops(model, ids)
    analytic = F.forward_flops_per_token(config, 16) * ids.numel()
    assert guarded == pytest.approx(analytic, rel=TOL)
    if naive >= 0.98 * analytic:
        pytest.skip("FlopCounterMode now counts the default kernels")
    assert naive < guarded


def test_cpu_sdpa_formula_counts_full_attention():
    """With SDPA on CPU (not in FlopCounterMode's table) measure.py's registered formula is used."""
    from torch.utils.flop_counter import FlopCounterMode

    config = CASES[1][2]
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    ids = torch.randint(0, 256, (2, 16))
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=M._custom_mapping()) as fc:
        model(input_ids=ids)
    assert fc.get_total_flops() == pytest.approx(F.forward_flops_per_token(config, 16) * ids.numel(), rel=TOL)


LORA_CASES = [
    ("llama", ["q_proj", "v_proj"]),
    ("llama", "all-linear"),
    ("gpt2", ["c_attn"]),
    ("gpt2", "all-linear"),
    ("mixtral", ["q_proj", "v_proj"]),
    ("mixtral", ["q_proj", "k_proj", "v_proj", "o_proj"]),
]


@pytest.mark.parametrize(
    "family,targets",
    LORA_CASES,
    ids=[f"{f}-{t if isinstance(t, str) else '+'.join(t)}" for f, t in LORA_CASES],
)
def test_lora_train_flops_match_and_undercut_full(family, targets):
    import peft

    config = {"llama": CASES[1][2], "mixtral": CASES[9][2], "gpt2": CASES[7][2]}[family]
    model = peft.get_peft_model(
        _build(config), peft.LoraConfig(r=4, target_modules=targets, lora_dropout=0.0)
    )
    T = 16
    ids = torch.randint(0, config.vocab_size, (2, T))
    measured = M.measure_train_flops(model, ids)
    spec = F.LoraSpec(4, targets)
    analytic = F.train_flops_per_token(config, T, lora=spec)
    assert measured["uncounted"] == []
    assert measured["per_token"] == pytest.approx(analytic, rel=TOL)
    assert analytic < F.train_flops_per_token(config, T)


@pytest.mark.parametrize("case", [1, 9], ids=["llama", "mixtral"])
def test_generation_flops_match_flopcounter(case):
    config = CASES[case][2]
    model = _build(config).eval()
    prompt = torch.randint(0, config.vocab_size, (2, 8))
    measured = M.measure_generation_flops(model, prompt, new_tokens=16)
    analytic = F.generation_flops(config, prompt_len=8, new_tokens=16, n_seqs=2)
    assert measured == pytest.approx(analytic, rel=TOL)


def test_lora_on_moe_experts_is_refused_not_miscounted():
    config = CASES[9][2]  # mixtral: peft maps all-linear / w1 onto the 3-D expert tensors
    from efflab.errors import UserError

    for targets in ("all-linear", ["q_proj", "w1"]):
        with pytest.raises(UserError, match="attention projections only"):
            F.count_flops(config, 16, lora=F.LoraSpec(4, targets))
