"""The synthetic recipe in-process on the tiny config: the generator is trained first, a corpus is
generated, filtered and trained on; a second run reuses the corpus without paying for it again; a
local Hugging Face directory works as a generator with no known training cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from efflab.accounting.ledger import Ledger
from efflab.io import read_json, read_jsonl


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models: one thread is as fast, and far faster when other processes share the two cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SYN = {"token_budget": 6000, "max_new_tokens": 48, "prompt_len": 8, "batch_size": 32, "min_tokens": 8}


def test_generate_filter_train_then_reuse_without_paying_twice(tiny_cfg, tmp_path):
    from efflab.recipes import synthetic

    gen_dir = tmp_path / "generator"
    over = {
        "train": {"threads": 1},
        "synthetic": {**SYN, "generator_dir": str(gen_dir), "generator_overrides": {"train.steps": 30}},
    }
    cfg = tiny_cfg("synthetic", over)
    res = synthetic.main(cfg, out=tmp_path / "a")
    a = tmp_path / "a"

    # the generator was trained first by the baseline recipe, and the student learned from its text
    gman = read_json(gen_dir / "manifest.json")
    assert gman["status"] == "complete" and gman["recipe"] == "baseline"
    rows = [r for r in read_jsonl(a / "metrics.jsonl") if "eval_loss" in r]
    assert rows[0]["step"] == 0 and res["final_eval_loss"] < rows[0]["eval_loss"] - 0.3

    # the eval set is the real held-out set: the same hash as the (baseline) generator run's
    man = read_json(a / "manifest.json")
    assert man["data"]["eval_set_hash"] == gman["data"]["eval_set_hash"]
    assert man["data"]["eval_text_hash"] == gman["data"]["eval_text_hash"]

    # the ledger: generation from the accounting layer, the generator's full bill as sunk cost
    led = Ledger.load(a / "ledger.json")
    prov = read_json(a / "synthetic.json")
    assert led.flops("generation") == pytest.approx(prov["flops"]) and prov["flops"] > 0
    assert led.tokens("generation") == prov["tokens_generated"] >= SYN["token_budget"]
    assert led.flops("sunk.teacher_pretrain") == pytest.approx(Ledger.load(gen_dir / "ledger.json").total)
    assert led.marginal == pytest.approx(led.flops("train") + led.flops("generation"))
    assert led.extra["synthetic"]["generator"] == str(gen_dir.resolve())

    # filters report what they removed; the corpus is a datasets dataset with its provenance
    syn = man["synthetic"]
    assert [f["filter"] for f in syn["filter_report"]] == ["length", "exact_dedup", "near_dedup", "nll_band"]
    assert syn["samples_kept"] + sum(f["removed"] for f in syn["filter_report"]) == syn["samples_generated"]
    assert syn["filter_report"][-1]["removed"] > 0  # the NLL band trims both tails
    import datasets

    corpus = datasets.load_from_disk(syn["corpus_dir"])
    assert len(corpus) == syn["samples_kept"] and set(corpus.column_names) >= {"text", "input_ids", "nll"}
    on_disk = read_json(Path(syn["corpus_dir"]) / "provenance.json")
    assert on_disk["flops_per_kept_token"] == pytest.approx(on_disk["flops"] / on_disk["tokens_kept"])
    assert on_disk["generator"]["path"] == str(gen_dir.resolve()) and on_disk["seed"] == cfg.train.seed

    # a second run, half real data, with the train budget covering generation too: same corpus,
    # recorded as reused (not charged), the generator not retrained but its bill still shown as sunk
    step_flops = led.flops("train") / 30
    budget = 10 * step_flops + prov["flops"]  # ten student steps after paying for the corpus
    over_b = {
        "train": {"threads": 1, "steps": None, "budget_flops": budget},
        "synthetic": {**over["synthetic"], "mix_ratio": 0.5, "budget_includes": "marginal"},
    }
    synthetic.main(tiny_cfg("synthetic", over_b), out=tmp_path / "b")
    b = tmp_path / "b"
    assert read_json(gen_dir / "manifest.json")["finished"] == gman["finished"]
    led_b = Ledger.load(b / "ledger.json")
    assert led_b.flops("generation") == 0
    reuse = [r for r in led_b.reuse if r["phase"] == "generation"]
    assert len(reuse) == 1 and reuse[0]["flops"] == pytest.approx(prov["flops"])
    assert led_b.flops("sunk.teacher_pretrain") == pytest.approx(led.flops("sunk.teacher_pretrain"))
    man_b = read_json(b / "manifest.json")
    assert man_b["synthetic"]["corpus_dir"] == syn["corpus_dir"] and man_b["synthetic"]["corpus_uses"] == 2
    assert man_b["synthetic"]["amortised_generation_flops_per_use"] == pytest.approx(prov["flops"] / 2)
    assert man_b["data"]["eval_set_hash"] == man["data"]["eval_set_hash"]
    assert budget - prov["flops"] - step_flops < led_b.flops("train") <= budget - prov["flops"] + 1


def test_local_hf_generator_with_seed_prompts_and_a_resume_that_charges_nothing_twice(tiny_cfg, tmp_path):
    from efflab.data import prepare
    from efflab.models import build_model
    from efflab.recipes import synthetic

    cfg = tiny_cfg("synthetic", {"train": {"threads": 1, "steps": 6}, "eval": {"every": 6}})
    data = prepare(cfg.data, 4, log=lambda *_: None)
    hf = tmp_path / "hf-model"
    build_model(cfg, data.vocab_size).save_pretrained(hf)  # an untrained model: only the plumbing counts here
    data.tokenizer.save_pretrained(hf)
    over = {
        "train": {"threads": 1, "steps": 12, "checkpoint_every": 5, "keep_checkpoint": True},
        "eval": {"every": 6},
        "synthetic": {
            **SYN,
            "token_budget": 1500,
            "generator": str(hf),
            "prompts": "seeds",
            "seeds": ["def ", "class Foo:\n    ", "import os\n"],
            "keep_prompt": True,
        },
    }
    run = tmp_path / "run"
    synthetic.main(tiny_cfg("synthetic", over), out=run)
    led = Ledger.load(run / "ledger.json")
    assert led.flops("generation") > 0 and led.flops("sunk.teacher_pretrain") == 0
    assert led.extra["synthetic"]["generator_kind"] == "hf-model"
    assert "unknown" in led.extra["synthetic"]["generator_training_cost"]
    prov = read_json(run / "synthetic.json")
    assert prov["settings"]["prompts"] == "seeds" and prov["prompt_tokens"] > 0

    # killed after the end-of-training checkpoint (kept: train.keep_checkpoint): the resumed run restores
    # the ledger and charges nothing again
    man = read_json(run / "manifest.json")
    (run / "manifest.json").write_text(json.dumps({**man, "status": "running", "result": None}))
    (run / "ledger.json").unlink()
    assert read_json(run / "checkpoint" / "latest.json")["step"] == 12
    synthetic.main(tiny_cfg("synthetic", over), out=run, resume=True)
    again = Ledger.load(run / "ledger.json")
    assert again.flops("generation") == pytest.approx(led.flops("generation"))
    assert again.flops("train") == pytest.approx(led.flops("train")) and not again.reuse
