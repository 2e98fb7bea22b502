"""The curriculum recipe in-process on tiny configs: loss falls, the ledger charges the lengths trained
and the scoring, the reference's bill is sunk, cached scores are reused, and a resumed run continues
the same data order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from efflab.accounting import flops as F
from efflab.accounting.ledger import Ledger
from efflab.io import read_json, read_jsonl
from efflab.recipes.curriculum import main
from efflab.techniques import curriculum as C

# One torch thread: these models are tiny, and on a shared 2-core machine a second thread mostly waits
# (a tenfold slowdown of these tests under load). The loop sets it process-wide; restored after each test.
ONE_THREAD = {"threads": 1}


@pytest.fixture(autouse=True)
def _restore_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _model_config(run_dir):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(run_dir / "model"))


def test_tiny_curriculum_learns_and_charges_the_lengths_it_trained(tiny_cfg, tmp_path):
    budget = 30 * 8 * 64  # tokens: 30 full-length steps of the baseline
    cfg = tiny_cfg(
        "curriculum",
        {
            "train": {"steps": None, "budget_tokens": budget, **ONE_THREAD},
            "curriculum": {
                "scorer": "rarity",
                "ramp": 0.5,
                "seq_len_warmup": True,
                "seq_len_start": 16,
                "seq_len_ramp": 0.4,
            },
        },
    )
    res = main(cfg, out=tmp_path / "run")
    run = tmp_path / "run"
    man = read_json(run / "manifest.json")
    assert man["status"] == "complete"
    evals = [r["eval_loss"] for r in read_jsonl(run / "metrics.jsonl") if "eval_loss" in r]
    assert evals[-1] < evals[0] - 0.5, evals

    cur = man["curriculum"]
    steps = res["steps"]
    assert steps == cur["horizon_steps"] > 30  # short early steps buy more steps from the token budget
    assert cur["seq_len_warmup"]["ramp_steps"] == round(0.4 * steps) and cur["ramp_steps"] == round(
        0.5 * steps
    )

    # the ledger charged each step at its trained length, attention included, from the accounting layer
    conf = _model_config(run)
    lens = [C.warmup_seq_len(s, 16, 64, cur["seq_len_warmup"]["ramp_steps"]) for s in range(steps)]
    assert lens[0] == 16 and lens[-1] == 64
    led = Ledger.load(run / "ledger.json")
    assert led.tokens("train") == sum(8 * t for t in lens) <= budget < sum(8 * t for t in lens) + 8 * 64
    assert led.flops("train") == pytest.approx(
        sum(8 * t * F.train_flops_per_token(conf, t) for t in lens), rel=1e-12
    )
    n, T = man["data"]["train_blocks"], man["data"]["seq_len"]
    assert led.flops("scoring") == 0.0 and led.tokens("scoring") == n * T  # counting, not model FLOPs
    assert led.marginal == led.flops("train")


@pytest.mark.slow
def test_reference_scoring_is_charged_its_bill_is_sunk_and_cached_scores_are_reused(tiny_cfg, tmp_path):
    over = {
        "train": {"steps": 12, "checkpoint_every": 0, **ONE_THREAD},
        "eval": {"every": 6},
        "curriculum": {"scorer": "reference", "reference_budget": 0.5, "ramp": 8},
    }
    a = tmp_path / "a"
    res_a = main(tiny_cfg("curriculum", over), out=a)
    led, ref_led = Ledger.load(a / "ledger.json"), Ledger.load(a / "reference" / "ledger.json")
    man = read_json(a / "manifest.json")
    n, T = man["data"]["train_blocks"], man["data"]["seq_len"]
    ref_conf = _model_config(a / "reference")
    assert ref_conf.num_hidden_layers == 1  # half the model's 2 layers
    assert read_json(a / "reference" / "manifest.json")["result"]["steps"] == 6

    # scoring = the reference's forward FLOPs over every scored token, once
    assert led.flops("scoring") == F.forward_flops_per_token(ref_conf, T) * n * T
    assert led.tokens("scoring") == n * T
    # the reference's training bill is sunk: in total, not in marginal
    assert led.flops("sunk.teacher_pretrain") == ref_led.total > 0
    assert led.marginal == pytest.approx(led.flops("train") + led.flops("scoring"))
    assert led.total == pytest.approx(led.marginal + ref_led.total)
    assert man["curriculum"]["cached"] is False

    # the same reference again, given as a finished run: its scores come from the cache -> reuse, not a charge
    over_b = {**over, "curriculum": {"scorer": "reference", "reference": str(a / "reference"), "ramp": 8}}
    res_b = main(tiny_cfg("curriculum", over_b), out=tmp_path / "b")
    led_b = Ledger.load(tmp_path / "b" / "ledger.json")
    assert led_b.flops("scoring") == 0.0
    reuse = [r for r in led_b.reuse if r["phase"] == "scoring"]
    assert len(reuse) == 1 and reuse[0]["flops"] == led.flops("scoring") and reuse[0]["source"] == str(a)
    assert led_b.flops("sunk.teacher_pretrain") == ref_led.total
    # same scores, seed and initial weights: the same training
    assert res_b["final_eval_loss"] == pytest.approx(res_a["final_eval_loss"], rel=1e-5)


class _Stop(Exception):
    pass


def test_a_resumed_run_continues_the_same_data_order(tiny_cfg, tmp_path, monkeypatch):
    over = {
        "train": {"steps": 20, "checkpoint_every": 8, **ONE_THREAD},
        "eval": {"every": 10},
        "curriculum": {
            "scorer": "length",
            "pacing": "step",
            "ramp": 14,
            "seq_len_warmup": True,
            "seq_len_start": 16,
            "seq_len_ramp": 12,
        },
    }
    drawn: dict[str, list] = {"full": [], "cut": []}
    where = {"key": "full", "stop_at": None}
    original = C.CurriculumSampler.batch

    def recording_batch(self, step):
        if where["stop_at"] is not None and step == where["stop_at"]:
            raise _Stop(step)
        out = original(self, step)
        drawn[where["key"]].append((step, self.indices(step).tolist(), tuple(out["input_ids"].shape)))
        return out

    monkeypatch.setattr(C.CurriculumSampler, "batch", recording_batch)
    res_full = main(tiny_cfg("curriculum", over), out=tmp_path / "full")

    where.update(key="cut", stop_at=12)  # killed during step 13, after the checkpoint at step 8
    with pytest.raises(_Stop):
        main(tiny_cfg("curriculum", over), out=tmp_path / "cut")
    assert json.loads((tmp_path / "cut" / "checkpoint" / "latest.json").read_text())["step"] == 8
    where.update(stop_at=None)
    drawn["cut"].clear()
    res_cut = main(tiny_cfg("curriculum", over), out=tmp_path / "cut", resume=True)

    assert [s for s, *_ in drawn["cut"]] == list(range(8, 20))
    full = {s: rest for s, *rest in drawn["full"]}
    assert len(full) == 20 and all(full[s] == rest for s, *rest in drawn["cut"])
    assert res_cut["final_eval_loss"] == pytest.approx(res_full["final_eval_loss"], rel=1e-4)
    assert Ledger.load(tmp_path / "cut" / "ledger.json").flops("train") == pytest.approx(
        Ledger.load(tmp_path / "full" / "ledger.json").flops("train"), rel=1e-12
    )
    assert np.isfinite(res_cut["final_eval_loss"])
