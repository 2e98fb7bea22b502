"""The ledger on the open-weight families people fine-tune now (Qwen3, Qwen3-MoE, Gemma 2 and 3, Phi-3,
OLMo 2), and the measured count for any other transformers causal LM.

The config.json files in tests/data/hf_configs/ are written from the published model cards'
config.json (Qwen/Qwen3-0.6B, Qwen/Qwen3-30B-A3B, google/gemma-2-2b, google/gemma-3-1b-pt,
microsoft/Phi-3-mini-4k-instruct, allenai/OLMo-2-1124-7B). Full-size models are built on the meta
device (no weights allocated); tiny versions of the same configs run on the CPU with real weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from efflab.accounting import flops as F
from efflab.errors import UserError

CONFIGS = Path(__file__).parent.parent / "data" / "hf_configs"
FAMILIES = {
    "qwen3-0.6b.json": "qwen3",
    "qwen3-30b-a3b.json": "qwen3_moe",
    "gemma-2-2b.json": "gemma2",
    "gemma-3-1b.json": "gemma3_text",
    "phi-3-mini-4k.json": "phi3",
    "olmo-2-7b.json": "olmo2",
}


def _hf_config(data: dict):
    from transformers import AutoConfig

    data = dict(data)
    return AutoConfig.for_model(data.pop("model_type"), **data)


def _meta_model(config):
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config, attn_implementation="eager")


def _meta_train_flops(model, T: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from efflab.accounting.measure import _custom_mapping

    ids = torch.zeros((1, T), dtype=torch.long, device="meta")
    with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as fc:
        model(input_ids=ids, labels=ids).loss.backward()
    return fc.get_total_flops() / T


def test_fixtures_are_the_families():
    seen = {p.name: json.loads(p.read_text())["model_type"] for p in CONFIGS.glob("*.json")}
    assert seen == FAMILIES


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_full_size_params_exact_and_flops_match_flopcountermode(name):
    # T = 600 is longer than Gemma 3's 512-token window: its sliding layers are counted over all T keys,
    # as eager attention computes them (the window is a mask), and FlopCounterMode sees the same.
    T = 600
    data = json.loads((CONFIGS / name).read_text())
    count = F.count_flops(CONFIGS / name, T)
    assert count.model_type == FAMILIES[name]
    model = _meta_model(_hf_config(data))
    assert count.params_total == sum(p.numel() for p in model.parameters())
    measured = _meta_train_flops(model, T)
    assert count.train_flops_per_token == pytest.approx(measured, rel=0.02)
    assert count.train_flops_per_token == pytest.approx(measured, rel=1e-9)  # in fact exact


def test_published_parameter_counts():
    # Model cards: Qwen3-30B-A3B "30.5B in total and 3.3B activated"; Qwen3-0.6B "0.6B, 0.44B non-embedding";
    # OLMo-2-1124-7B 7.3B; Gemma-2-2b 2.6B; Phi-3-mini 3.8B; Gemma-3-1b 1B.
    moe = F.count_flops(CONFIGS / "qwen3-30b-a3b.json", 4096)
    assert round(moe.params_total / 1e9, 1) == 30.5 and round(moe.params_active / 1e9, 1) in (3.3, 3.4)
    q = F.count_flops(CONFIGS / "qwen3-0.6b.json", 4096)
    assert round((q.params_total - q.params_embedding) / 1e9, 2) == 0.44
    for name, published in (
        ("olmo-2-7b.json", 7.3),
        ("gemma-2-2b.json", 2.6),
        ("phi-3-mini-4k.json", 3.8),
        ("gemma-3-1b.json", 1.0),
    ):
        assert round(F.count_flops(CONFIGS / name, 4096).params_total / 1e9, 1) == published


def test_raw_json_dict_reads_like_the_transformers_config():
    # A config.json omits fields transformers fills in (layer_types, tie_word_embeddings for Gemma):
    # the count from the raw dict and from the config object must agree.
    for name in FAMILIES:
        data = json.loads((CONFIGS / name).read_text())
        arch_raw = F._arch(dict(data))
        arch_obj = F._arch(_hf_config(data))
        assert F._params(arch_raw) == F._params(arch_obj), name
        windows = lambda a: [op.window for layer in a.layers for op in layer if isinstance(op, F._Attn)]  # noqa: E731
        assert windows(arch_raw) == windows(arch_obj), name


def test_gemma3_sliding_window_layers_causal_convention():
    # causal=True: global layers see T/2 keys on average, sliding layers the mean of min(i, w), i = 1..T,
    # w - w^2 / (2T). Gemma-3-1B: 26 layers, every 6th global (4 global, 22 sliding), window 512,
    # 4 query heads of dim 256: attention FLOPs per token per key = 2 x 2 x 4 x 256 = 4096.
    T, w = 8192, 512
    c = F.count_flops(CONFIGS / "gemma-3-1b.json", T, causal=True)
    per_key = 4 * 4 * 256
    expected = per_key * (4 * T / 2 + 22 * (w - w * w / (2 * T)))
    assert c.breakdown["attn_scores"] == pytest.approx(expected, rel=1e-12)
    full = F.count_flops(CONFIGS / "gemma-3-1b.json", T)
    assert full.breakdown["attn_scores"] == pytest.approx(per_key * 26 * T, rel=1e-12)
    assert "sliding-window layers (window 512)" in c.convention and "min(position, window)" in c.convention


TINY = dict(
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    vocab_size=256,
    moe_intermediate_size=32,
    num_experts=8,
    num_experts_per_tok=2,
    sliding_window=8,
    sliding_window_pattern=3,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def tiny_config(name: str):
    """The family's published config shrunk (and a window of 8 tokens where the family slides)."""
    data = json.loads((CONFIGS / name).read_text())
    data.update({k: v for k, v in TINY.items() if k in data or k in ("num_key_value_heads", "pad_token_id")})
    if data["model_type"] == "phi3":
        data.pop("head_dim", None)
    return _hf_config(data)


# two families in the default run (sliding windows; MoE experts), the other four marked slow
TINY_CASES = [
    n if n in ("gemma-3-1b.json", "qwen3-30b-a3b.json") else pytest.param(n, marks=pytest.mark.slow)
    for n in sorted(FAMILIES)
]


@pytest.mark.parametrize("name", TINY_CASES)
def test_tiny_real_weights_train_and_generation_match(name):
    # Real CPU execution, T = 24 > window 8: what runs (eager experts, masked windows) is what we count;
    # generation with a sliding-window KV cache (decode sees min(P + i, w) keys) too.
    import torch
    from transformers import AutoModelForCausalLM

    from efflab.accounting import measure

    cfg = tiny_config(name)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    ids = torch.randint(3, 256, (2, 24))
    res = measure.measure_train_flops(model, ids)
    count = F.count_flops(cfg, 24)
    assert res["uncounted"] == []
    assert count.params_total == sum(p.numel() for p in model.parameters())
    assert res["per_token"] == pytest.approx(count.train_flops_per_token, rel=1e-9)
    gen = measure.measure_generation_flops(model, ids[:, :12], 10)
    assert gen == pytest.approx(F.generation_flops(cfg, 12, 10, n_seqs=2), rel=1e-9)


def test_lora_on_fused_phi3_and_qwen3():
    import torch
    from transformers import AutoModelForCausalLM

    from efflab.accounting import measure
    from efflab.models import apply_lora

    for name, targets in (
        ("phi-3-mini-4k.json", ["qkv_proj", "gate_up_proj"]),
        ("qwen3-0.6b.json", ["all-linear"]),
    ):
        cfg = tiny_config(name)
        torch.manual_seed(0)
        lora = type("L", (), {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": targets})()
        model = apply_lora(AutoModelForCausalLM.from_config(cfg), lora)
        ids = torch.randint(3, 256, (2, 16))
        res = measure.measure_train_flops(model, ids)
        spec = "all-linear" if targets == ["all-linear"] else targets
        count = F.count_flops(cfg, 16, lora=F.LoraSpec(4, spec))
        assert res["per_token"] == pytest.approx(count.train_flops_per_token, rel=1e-9), name


# ---- any other causal LM: measured on the meta device ------------------------------------------------

NEOX = {
    "model_type": "gpt_neox",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "vocab_size": 300,
    "max_position_embeddings": 128,
}


def test_other_causal_lm_is_measured_and_labelled():
    import torch
    from transformers import AutoModelForCausalLM

    from efflab.accounting import measure

    assert F.counting_method("gpt_neox") == "measured" and F.counting_method("qwen3") == "analytic"
    c = F.count_flops(dict(NEOX), 32)
    assert c.convention.startswith("measured with FlopCounterMode on the meta device")
    assert any("no analytic count; measured" in n for n in c.notes)
    cfg = _hf_config(NEOX)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
    assert c.params_total == sum(p.numel() for p in model.parameters())
    real = measure.measure_train_flops(model, torch.randint(0, 300, (1, 32)))
    assert c.train_flops_per_token == pytest.approx(real["per_token"], rel=0.02)
    with pytest.raises(UserError, match="causal=True .* analytic families only"):
        F.count_flops(dict(NEOX), 32, causal=True)


def test_measured_path_agrees_with_analytic_on_llama():
    # The measurement machinery itself, on a family both paths count: full, LoRA, frozen.
    from efflab.accounting import measure

    cfg = _hf_config(
        {
            "model_type": "llama",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "intermediate_size": 128,
            "vocab_size": 300,
            "tie_word_embeddings": False,
        }
    )
    for kw in ({}, {"lora": F.LoraSpec(4, ("q_proj", "v_proj"))}, {"frozen": True}):
        m = measure.count_on_meta(cfg, 64, **kw)
        a = F.count_flops(cfg, 64, **kw)
        assert m["params_total"] == a.params_total
        assert m["forward_per_token"] + m["backward_per_token"] == pytest.approx(
            a.train_flops_per_token, rel=1e-9
        )


def test_model_the_ledger_cannot_count_is_refused():
    with pytest.raises(UserError, match="'vit' cannot be counted by the FLOP ledger"):
        F.count_flops({"model_type": "vit", "hidden_size": 768}, 16)
    assert F.counting_method("vit") is None
