"""Kill-and-resume, bitwise on the CPU, for every technique recipe (issue 18): a run stopped after a
checkpoint and continued with --resume writes the same metrics (every loss, every FLOP count) and the
same ledger as the uninterrupted run, and one-time charges (the distillation logit cache, synthetic
generation, sunk pretraining) are not repeated.

The "kill" raises inside the loop while step 9's metrics row is written (after the step-8 checkpoint);
the lock this process held is released as a killed process's would be.
"""

from __future__ import annotations

import json
import shutil

import pytest

from efflab import loop, runs
from efflab.accounting.ledger import Ledger
from efflab.config import config_from_dict

TINY = {
    "model": {"depth": 2, "aspect": 32, "head_dim": 32},
    "data": {"corpus": "stdlib", "max_chars": 4.0e5, "vocab_size": 512, "seq_len": 64},
    "train": {
        "steps": 12,
        "batch_size": 8,
        "lr": 3.0e-3,
        "warmup_steps": 2,
        "checkpoint_every": 4,
        "threads": 1,
    },
    "eval": {"every": 6, "max_blocks": 8, "batch_size": 8},
    "log": {"every": 1, "progress": False},
}
TIMING = (
    "tokens_per_s",
    "model_flops_per_s",
    "mfu",
    "mfu_executed",
)  # wall-clock figures: the only fields allowed to differ


def _cfg(cache_dir, recipe, **sections):
    raw = json.loads(json.dumps(TINY))
    raw["data"]["cache_dir"] = str(cache_dir)
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    return config_from_dict(raw, recipe=recipe)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, cache_dir):
    """A finished 6-step baseline run: the distillation teacher and the synthetic-data generator."""
    from efflab.recipes import baseline

    d = tmp_path_factory.mktemp("kr-teacher") / "run"
    baseline.main(_cfg(cache_dir, "baseline", train={"steps": 6, "checkpoint_every": 0}), out=d)
    return d


def _sections(recipe, teacher, tmp_path):
    return {
        "moe": {"moe": {"n_experts": 4, "top_k": 2}},
        "curriculum": {
            "curriculum": {
                "scorer": "length",
                "pacing": "root",
                "start_fraction": 0.3,
                "ramp": 0.5,
                "seq_len_warmup": True,
                "seq_len_start": 16,
                "seq_len_ramp": 0.4,
            }
        },
        "synthetic": {
            "synthetic": {
                "generator": str(teacher),
                "token_budget": 1500,
                "max_new_tokens": 32,
                "prompt_len": 8,
                "batch_size": 16,
                "min_tokens": 8,
                "mix_ratio": 0.5,
                "seed": 18,  # a generation key of this test's own
            }
        },
        "distill": {
            "distill": {
                "teacher": str(teacher),
                "logits": "cache",
                "top_k": 16,
                "cache_dir": str(tmp_path / "logits"),
            }
        },
    }[recipe]


class _Killed(Exception):
    pass


def _rows(run):
    return [
        {k: v for k, v in json.loads(x).items() if k not in TIMING}
        for x in (run / "metrics.jsonl").read_text().splitlines()
    ]


def _phases(run):
    led = Ledger.load(run / "ledger.json")
    return {k: (v.flops, v.tokens) for k, v in led.phases().items()}, led.reuse


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["moe", "curriculum", "synthetic", "distill"])
def test_kill_and_resume_is_bitwise(recipe, teacher, cache_dir, tmp_path, monkeypatch):
    import importlib

    main = importlib.import_module(f"efflab.recipes.{recipe}").main
    cfg = _cfg(cache_dir, recipe, **_sections(recipe, teacher, tmp_path))
    synthetic_cache = cache_dir / "synthetic"
    before = set(synthetic_cache.iterdir()) if synthetic_cache.is_dir() else set()
    full = main(cfg, out=tmp_path / "full")
    # the cut run pays its one-time costs itself: drop what the full run cached (logits, generated corpus)
    shutil.rmtree(tmp_path / "logits", ignore_errors=True)
    for d in (set(synthetic_cache.iterdir()) if synthetic_cache.is_dir() else set()) - before:
        shutil.rmtree(d)

    real = loop.append_jsonl

    def dying(path, obj):
        if obj.get("step") == 9:
            raise _Killed
        return real(path, obj)

    monkeypatch.setattr(loop, "append_jsonl", dying)
    with pytest.raises(_Killed):
        main(cfg, out=tmp_path / "cut")
    runs.release_held()
    assert json.loads((tmp_path / "cut" / "checkpoint" / "latest.json").read_text())["step"] == 8
    assert runs.RunDir(tmp_path / "cut").status() == "running"
    monkeypatch.setattr(loop, "append_jsonl", real)
    resumed = main(cfg, out=tmp_path / "cut", resume=True)

    assert resumed["final_eval_loss"] == full["final_eval_loss"]  # bitwise on CPU fp32
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "full")  # every loss, lr and FLOP count
    if recipe == "moe":  # routing diagnostics of the window the kill cut are among what is compared
        assert any("moe_balance" in r for r in _rows(tmp_path / "full") if r["step"] > 8)
    assert _phases(tmp_path / "cut") == _phases(tmp_path / "full")  # one-time charges not repeated
    assert runs.check_run(tmp_path / "cut") == [] and runs.check_run(tmp_path / "full") == []
    if recipe == "distill":  # the logit cache was built once, by the first run, and reused
        assert len([p for p in (tmp_path / "logits").iterdir() if not p.name.startswith(".")]) == 1
