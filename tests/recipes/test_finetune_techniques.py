"""Every technique recipe from local pretrained directories, full fine-tuning and LoRA.

The directories are tiny random models saved with `save_pretrained` (tests/conftest.py); the runs
check the plumbing and the ledger, not learning: the model trained, the teacher, the generator and
the reference scorer all come from a directory, the data uses that model's tokenizer, the technique
charges its phase, and LoRA costs measurably fewer train FLOPs per token than full fine-tuning.
"""

import json

import pytest

from efflab.accounting.ledger import SUNK_PHASES, Ledger
from efflab.config import config_from_dict

STEPS, BATCH, SEQ = 8, 8, 64
LORA = {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]}


def _cfg(recipe, cache_dir, *, lora=False, **sections):
    # data.vocab_size as the tiny configs set it: a pretrained model brings its own tokenizer instead
    raw = {
        "data": {"max_chars": 2e5, "seq_len": SEQ, "vocab_size": 512, "cache_dir": str(cache_dir)},
        "train": {"steps": STEPS, "batch_size": BATCH, "lr": 2e-3, "warmup_steps": 2, "checkpoint_every": 0},
        "eval": {"every": 4, "max_blocks": 8},
        "log": {"progress": False},
    }
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    if lora:
        raw["lora"] = dict(LORA)
    return config_from_dict(raw, recipe=recipe)


def _technique(recipe, dirs):
    """The sections that point each recipe's models at the local directories."""
    llama, small = str(dirs["llama"]), str(dirs["llama-small"])
    return {
        # upcycle the dense Llama into 4 experts of its own MLP; the MoE shape is the dense model's
        "moe": {
            "model": {"width": 64, "n_layer": 2, "n_head": 2, "n_kv_head": 1, "head_dim": 32},
            "moe": {"upcycle_from": llama, "n_experts": 4, "top_k": 2, "expert_width": 160},
        },
        # the 2-layer model teaches the 1-layer one of the same tokenizer
        "distill": {"model": {"pretrained": small}, "distill": {"teacher": llama}},
        # the 2-layer model writes the fine-tuning text of the 1-layer one
        "synthetic": {
            "model": {"pretrained": small},
            "synthetic": {
                "generator": llama,
                "prompt_len": 8,
                "max_new_tokens": 56,
                "batch_size": 16,
                "token_budget": 3000,
                "min_tokens": 8,
                "nll_quantiles": [0.0, 1.0],
                "mix_ratio": 0.5,
            },
        },
        # the 2-layer model scores difficulty for fine-tuning the 1-layer one
        "curriculum": {
            "model": {"pretrained": small},
            "curriculum": {"scorer": "reference", "reference": llama, "ramp": 4},
        },
    }[recipe]


def _run(module, cfg, out):
    import importlib

    return importlib.import_module(f"efflab.recipes.{module}").main(cfg, out=out)


@pytest.mark.parametrize("recipe", ["moe", "distill", "synthetic", "curriculum"])
def test_every_technique_fine_tunes_from_local_directories_full_and_lora(
    recipe, tmp_path, cache_dir, pretrained_dirs
):
    tech = _technique(recipe, pretrained_dirs)
    runs = {}
    for mode in ("full", "lora"):
        cfg = _cfg(recipe, cache_dir, lora=mode == "lora", **tech)
        result = _run(recipe, cfg, tmp_path / mode)
        led = Ledger.load(tmp_path / mode / "ledger.json")
        man = json.loads((tmp_path / mode / "manifest.json").read_text())
        assert man["status"] == "complete" and result["steps"] == STEPS
        # the data pipeline used the directories' tokenizer (384 tokens), not a freshly trained one
        assert man["data"]["vocab_size"] == 384
        assert led.tokens("train") > 0
        runs[mode] = led
    full, lora = runs["full"], runs["lora"]
    # the technique's own phase is on the ledger, charged from the directory's model
    phase = {"moe": None, "distill": "teacher_forward", "synthetic": "generation", "curriculum": "scoring"}[
        recipe
    ]
    if phase in ("generation", "scoring"):  # the second run reuses the corpus / scores the first one paid for
        assert full.flops(phase) > 0 and lora.flops(phase) == 0
    elif phase:
        assert full.flops(phase) > 0 and lora.flops(phase) == pytest.approx(full.flops(phase), rel=1e-9)
    # a model from a directory with no efflab ledger has no known training cost: nothing sunk is invented
    assert all(full.flops(p) == 0 for p in SUNK_PHASES)
    # frozen base weights skip their weight gradients: LoRA trains for measurably fewer FLOPs per token
    per_tok = {m: led.flops("train") / led.tokens("train") for m, led in runs.items()}
    assert per_tok["lora"] < 0.9 * per_tok["full"], per_tok


def test_a_pretrained_moe_directory_fine_tunes_full_and_lora(tmp_path, cache_dir, pretrained_dirs):
    moe_dir = pretrained_dirs["qwen-moe"]
    per_tok = {}
    for mode in ("full", "lora"):
        cfg = _cfg("baseline", cache_dir, lora=mode == "lora", model={"pretrained": str(moe_dir)})
        result = _run("baseline", cfg, tmp_path / mode)
        assert result["steps"] == STEPS
        led = Ledger.load(tmp_path / mode / "ledger.json")
        per_tok[mode] = led.flops("train") / led.tokens("train")
    # LoRA on the attention projections of an MoE model: the experts are frozen, so cheaper per token
    assert per_tok["lora"] < 0.9 * per_tok["full"], per_tok
    from transformers import AutoConfig

    from efflab.accounting.flops import train_flops_per_token

    # the full run is charged the accounting layer's MoE count (active experts only) per token
    expect = train_flops_per_token(AutoConfig.from_pretrained(moe_dir), SEQ)
    assert per_tok["full"] == pytest.approx(expect, rel=1e-6)
