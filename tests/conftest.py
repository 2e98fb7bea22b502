"""Shared fixtures: a tiny run config on a small slice of the embedded corpus, and a shared cache.

Everything is built locally; nothing is downloaded.
"""

from __future__ import annotations

import os

import pytest
import torch

# Two cores: keep every test process on them without oversubscription.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One tokenizer/tokenization cache for the whole session (the tokenizer is trained once)."""
    d = tmp_path_factory.mktemp("efflab-cache")
    os.environ["EFFLAB_CACHE"] = str(d)
    return d


TINY = {
    "model": {"depth": 2, "aspect": 32, "head_dim": 32},  # width 64, 2 heads
    "data": {"corpus": "stdlib", "max_chars": 4.0e5, "vocab_size": 512, "seq_len": 64},
    "train": {"steps": 30, "batch_size": 8, "lr": 3.0e-3, "warmup_steps": 3, "checkpoint_every": 10},
    "eval": {"every": 10, "max_blocks": 16, "batch_size": 16},
    "log": {"every": 5, "progress": False},
}


def _merge(base: dict, over: dict) -> dict:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


@pytest.fixture
def tiny_cfg(cache_dir):
    """`tiny_cfg(recipe="baseline", **{"train": {...}})` -> a validated RunConfig for a seconds-long run."""
    from efflab.config import config_from_dict

    def make(recipe: str = "baseline", overrides: dict | None = None):
        raw = _merge(TINY, overrides or {})
        raw["data"]["cache_dir"] = str(cache_dir)
        return config_from_dict(raw, recipe=recipe)

    return make


def _save_tiny_pretrained(root, cache_dir):
    """A tiny random Llama (2 layers, 64 wide), a smaller Llama of the same tokenizer (1 layer, 32 wide)
    and a tiny Qwen2-MoE, each saved with `save_pretrained` beside a trained BPE tokenizer with a chat
    template: what a user's local open-weight directory holds, built without a download."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM

    from efflab.config import DataConfig
    from efflab.data import load_corpus, train_tokenizer

    corpus = load_corpus(DataConfig(max_chars=2e5))
    tok = train_tokenizer(corpus.texts, 384, root / "tok")
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    torch.manual_seed(0)
    dirs = {}
    for name, layers, width in (("llama", 2, 64), ("llama-small", 1, 32)):
        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=width,
            intermediate_size=160,
            num_hidden_layers=layers,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=32,
            max_position_embeddings=256,
        )
        dirs[name] = root / name
        LlamaForCausalLM(cfg).save_pretrained(dirs[name])
    cfg = Qwen2MoeConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=160,
        moe_intermediate_size=64,
        shared_expert_intermediate_size=64,
        num_experts=4,
        num_experts_per_tok=2,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=256,
    )
    dirs["qwen-moe"] = root / "qwen-moe"
    Qwen2MoeForCausalLM(cfg).save_pretrained(dirs["qwen-moe"])
    for d in dirs.values():
        tok.save_pretrained(d)
    return dirs


@pytest.fixture(scope="session")
def pretrained_dirs(tmp_path_factory, cache_dir):
    """{"llama", "llama-small", "qwen-moe"} -> local pretrained directories (weights, config, tokenizer)."""
    return _save_tiny_pretrained(tmp_path_factory.mktemp("pretrained"), cache_dir)


@pytest.fixture
def pretrained_dir(pretrained_dirs):
    return pretrained_dirs["llama"]
