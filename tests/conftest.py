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
