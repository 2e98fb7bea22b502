"""Analytic counter: published parameter counts, hand computations, conventions, bad input.

The FlopCounterMode cross-checks are in test_measure.py.
"""

from __future__ import annotations

import json

import pytest

from efflab.accounting import flops as F
from efflab.accounting import presets as P
from efflab.errors import UserError

TINY_LLAMA = {
    "model_type": "llama",
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
    "attention_bias": False,
    "mlp_bias": False,
    "head_dim": None,
}


def rel(a, b):
    return abs(a - b) / abs(b)


# ---- published figures ----------------------------------------------------------------------------


def test_llama2_7b_exact_param_count():
    c = F.count_flops("llama-2-7b")
    assert c.params_total == 6_738_415_616  # as transformers builds meta-llama/Llama-2-7b-hf
    assert c.params_active == c.params_total
    assert rel(c.params_total, 6.74e9) < 0.001


def test_mixtral_total_and_active():
    c = F.count_flops("mixtral-8x7b")
    assert c.params_total == 46_702_792_704
    assert rel(c.params_total, 46.7e9) < 0.001  # Mixtral paper: 46.7B total
    assert rel(c.params_active, 12.9e9) < 0.002  # 12.9B active (top-2 of 8 experts)


@pytest.mark.parametrize("name", [n for n, p in P.PRESETS.items() if p.config is not None])
def test_preset_configs_reproduce_published_params(name):
    p = P.PRESETS[name]
    c = F.count_flops(name)
    if p.params is None:  # only a rounded size class is published (OLMo 2 "7B"): the notes must say so
        assert "parameter count" in p.notes, name
        return
    # published counts are rounded ("7B", "540.35B", "0.49B"); the exact count must round to them
    assert rel(c.params_total, p.params) < 0.01, (c.params_total, p.params)
    if p.params_active:
        assert rel(c.params_active, p.params_active) < 0.02, (c.params_active, p.params_active)
    else:
        assert c.params_active == c.params_total


def test_gpt3_6nd_matches_table_d1():
    # Brown et al. 2020, Table D.1: 174.6e9 params x 300e9 tokens -> 3.14e23 FLOPs
    assert rel(F.flops_6nd(174.6e9, 300e9), 3.14e23) < 0.005
    c = F.count_flops("gpt3-175b")
    assert rel(c.params_total, 174.6e9) < 0.001  # the GPT-2-shaped config reproduces 174.6e9
    assert rel(F.flops_6nd(c.params_active, 300e9), 3.14e23) < 0.005


def test_llama31_405b_6nd():
    assert rel(F.flops_6nd(405e9, 15.6e12), 3.8e25) < 0.01
    c = F.count_flops("llama-3.1-405b")
    assert rel(F.flops_6nd(c.params_active, 15.6e12), 3.8e25) < 0.01


def test_palm_detailed_count_matches_appendix_b():
    # PaLM App. B counts 6N + 12 L H Q T per token (attention in full) -> 2.56e24 for 780e9 tokens
    c = F.count_flops("palm-540b", 2048)
    assert rel(c.train_flops_per_token * 780e9, 2.56e24) < 0.01


# ---- conventions by hand --------------------------------------------------------------------------


def _hand_matmul_params(cfg):
    d, L, H, kv, V, inter = (
        cfg[k]
        for k in (
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "vocab_size",
            "intermediate_size",
        )
    )
    hd = d // H
    attn = d * H * hd + 2 * d * kv * hd + H * hd * d
    mlp = 3 * d * inter
    return L * (attn + mlp) + d * V  # + LM head


def test_forward_train_and_causal_by_hand():
    T = 32
    c = F.count_flops(TINY_LLAMA, T)
    N = _hand_matmul_params(TINY_LLAMA)
    attn = 4 * TINY_LLAMA["num_hidden_layers"] * T * TINY_LLAMA["hidden_size"]
    assert c.forward_flops_per_token == 2 * N + attn
    assert c.train_flops_per_token == 3 * c.forward_flops_per_token
    assert c.breakdown["attn_scores"] == attn
    assert sum(c.breakdown.values()) == c.forward_flops_per_token
    cc = F.count_flops(TINY_LLAMA, T, causal=True)
    assert cc.forward_flops_per_token == 2 * N + attn / 2
    assert cc.train_flops_per_token == 3 * cc.forward_flops_per_token
    assert "causal" in cc.convention and "multiply-add = 2" in c.convention


def test_tied_embeddings_counted_once_but_head_still_computes():
    tied = F.count_flops(dict(TINY_LLAMA, tie_word_embeddings=True), 16)
    untied = F.count_flops(TINY_LLAMA, 16)
    V, d = TINY_LLAMA["vocab_size"], TINY_LLAMA["hidden_size"]
    assert untied.params_total - tied.params_total == V * d
    assert tied.forward_flops_per_token == untied.forward_flops_per_token
    assert tied.breakdown["lm_head"] == 2 * V * d
    assert tied.params_embedding == untied.params_embedding == V * d


def test_gqa_shares_kv_projections_not_scores():
    mha = F.count_flops(dict(TINY_LLAMA, num_key_value_heads=4), 16)
    gqa = F.count_flops(TINY_LLAMA, 16)
    assert gqa.breakdown["attn_scores"] == mha.breakdown["attn_scores"]
    assert gqa.breakdown["attn_proj"] < mha.breakdown["attn_proj"]


def test_moe_router_and_topk():
    cfg = dict(TINY_LLAMA, model_type="mixtral", num_local_experts=8, num_experts_per_tok=2, head_dim=None)
    for k in ("attention_bias", "mlp_bias"):
        cfg.pop(k)
    c = F.count_flops(cfg, 16)
    d, inter, L = 64, 96, 2
    assert c.breakdown["router"] == L * 2 * d * 8
    assert c.breakdown["experts"] == L * 2 * 2 * (3 * d * inter)  # top-2 of 8, SwiGLU = 3 matmuls
    top1 = F.count_flops(dict(cfg, num_experts_per_tok=1), 16)
    assert top1.breakdown["experts"] == c.breakdown["experts"] / 2
    assert top1.params_total == c.params_total > c.params_active > top1.params_active


def test_frozen_weights_backward_is_input_grad_only():
    T = 16
    full = F.count_flops(TINY_LLAMA, T)
    frozen = F.count_flops(TINY_LLAMA, T, frozen=True)
    attn = full.breakdown["attn_scores"]
    mat = full.forward_flops_per_token - attn
    # every matmul: forward + dX only (2x, not 4x, per weight); attention bmm's still need both inputs' grads
    assert frozen.train_flops_per_token == full.forward_flops_per_token + mat + 2 * attn
    assert frozen.forward_flops_per_token == full.forward_flops_per_token
    assert "frozen" in frozen.convention


def test_lora_cheaper_than_full_and_adapter_flops():
    T, r = 32, 4
    full = F.count_flops(TINY_LLAMA, T)
    lora = F.count_flops(TINY_LLAMA, T, lora=F.LoraSpec(r, ["q_proj", "v_proj"]))
    d, kvd, L = 64, 32, 2
    assert lora.breakdown["lora"] == L * 2 * r * ((d + d) + (d + kvd))
    assert lora.train_flops_per_token < full.train_flops_per_token
    assert (
        F.train_flops_per_token(TINY_LLAMA, T, lora=F.LoraSpec(r, "all-linear")) < full.train_flops_per_token
    )
    # any object with .r and .target_modules works (efflab's config section); r = 0 means off
    off = type("Off", (), {"r": 0, "target_modules": ["q_proj"]})()
    assert F.train_flops_per_token(TINY_LLAMA, T, lora=off) == full.train_flops_per_token


def test_lora_unknown_target_is_user_error():
    with pytest.raises(UserError, match="match no linear layer"):
        F.count_flops(TINY_LLAMA, 16, lora=F.LoraSpec(4, ["query_key_value"]))


def test_generation_flops_by_hand():
    P_, new, n = 8, 5, 3
    c0 = F.count_flops(TINY_LLAMA, 1)
    head = c0.breakdown["lm_head"]
    body = c0.forward_flops_per_token - head - c0.breakdown["attn_scores"]
    per_ctx = c0.breakdown["attn_scores"]  # attention FLOPs per key at T = 1
    expect = P_ * body + head + per_ctx * P_ * P_
    expect += sum(body + head + per_ctx * (P_ + i) for i in range(1, new))
    assert F.generation_flops(TINY_LLAMA, P_, new, n_seqs=n) == pytest.approx(n * expect)
    assert F.generation_flops(TINY_LLAMA, P_, 0) == 0.0
    with pytest.raises(UserError):
        F.generation_flops(TINY_LLAMA, 0, 4)


def test_default_seq_len_is_stated():
    c = F.count_flops("llama-3.1-405b")
    assert c.seq_len == 8192 and any("pre-training context" in n for n in c.notes)
    c = F.count_flops(dict(TINY_LLAMA, max_position_embeddings=100_000))
    assert c.seq_len == F.SEQ_LEN_CAP and any("max_position_embeddings" in n for n in c.notes)
    assert F.forward_flops_per_token("gpt2-124m", 1024) == F.count_flops("gpt2-124m").forward_flops_per_token


def test_gpt2_biases_are_params_not_flops():
    c = F.count_flops("gpt2-124m", 1024)
    assert c.params_total == 124_439_808
    d, L, V = 768, 12, 50257
    assert c.forward_flops_per_token == 2 * (L * 12 * d * d + d * V) + 4 * L * 1024 * d
    assert any("biases" in n for n in c.notes)


# ---- resolving configs ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n, p in P.PRESETS.items() if p.config is not None])
def test_preset_fast_path_equals_transformers_config(name):
    """The preset dicts are read directly (fast, no transformers); they must count exactly like the
    transformers config built from them, defaults included."""
    fast = F.count_flops(name, 512)
    slow = F.count_flops(F.resolve_config(name), 512)
    assert fast.params_total == slow.params_total
    assert fast.params_active == slow.params_active
    assert fast.forward_flops_per_token == slow.forward_flops_per_token
    assert fast.breakdown == slow.breakdown


def test_config_json_and_model_dir(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA))
    a = F.count_flops(tmp_path / "config.json", 16)
    b = F.count_flops(str(tmp_path), 16)
    c = F.count_flops(TINY_LLAMA, 16)
    assert a.params_total == b.params_total == c.params_total
    assert F.resolve_config(str(tmp_path)).model_type == "llama"


def test_unknown_preset_suggests_close_names():
    with pytest.raises(UserError, match="llama-3.1-405b"):
        F.count_flops("llama-3.1-450b")


def test_non_lm_and_unreadable_configs(tmp_path):
    vit = tmp_path / "vit.json"  # an image model: no analytic count, and no causal LM to measure
    vit.write_text(json.dumps({"model_type": "vit", "hidden_size": 768}))
    with pytest.raises(UserError, match="cannot be counted by the FLOP ledger.*known model types: llama"):
        F.resolve_config(vit)
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        F.resolve_config(junk)
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(UserError, match="without config.json"):
        F.resolve_config(empty_dir)
    with pytest.raises(UserError, match="no model_type"):
        F.resolve_config({"hidden_size": 4})
    with pytest.raises(UserError, match="published figures only"):
        F.count_flops("chinchilla-70b")


def test_flopcount_to_dict_roundtrips_json():
    d = F.count_flops("olmoe-1b-7b").to_dict()
    assert json.loads(json.dumps(d))["params_active"] == d["params_active"]
    assert set(d["breakdown"]) == {"attn_proj", "attn_scores", "experts", "router", "lm_head"}


@pytest.mark.parametrize("name", [n for n, p in P.PRESETS.items() if p.config is not None])
def test_preset_param_counts_on_meta_device(name):
    """Build each preset with transformers on the meta device (no memory) and count its parameters."""
    import torch
    from transformers import AutoModelForCausalLM

    config = F.resolve_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n = sum(p.numel() for p in model.parameters())  # tied weights are yielded once
    c = F.count_flops(name)
    assert n == c.params_total
    if name == "llama-2-7b":
        assert n == 6_738_415_616
