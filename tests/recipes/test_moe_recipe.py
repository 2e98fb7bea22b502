"""The MoE recipe in-process on tiny models: learning, routing diagnostics in the run directory, the
ledger (active experts only; sunk dense pretraining when upcycling, charged once), reload as a stock
Mixtral, upcycling at step 0, capacity routing, and bad input through the CLI (exit status 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from efflab import loop
from efflab.accounting.flops import train_flops_per_token
from efflab.accounting.ledger import Ledger
from efflab.cli import main as cli
from efflab.config import config_from_dict, load_config
from efflab.io import read_jsonl
from efflab.moe_model import decide_implementation
from efflab.recipes import baseline, moe

REPO = Path(__file__).resolve().parents[2]
TINY = {  # the conftest TINY run, shortened: 12 steps of 8 x 64 tokens
    "model": {"depth": 2, "aspect": 32, "head_dim": 32},  # width 64, dense FFN 192
    "data": {"corpus": "stdlib", "max_chars": 4.0e5, "vocab_size": 512, "seq_len": 64},
    "train": {"steps": 12, "batch_size": 8, "lr": 3.0e-3, "warmup_steps": 2, "checkpoint_every": 6},
    "eval": {"every": 6, "max_blocks": 16, "batch_size": 16},
    "log": {"every": 4, "progress": False},
}


def _raw(cache_dir, recipe, **sections) -> dict:
    raw = json.loads(json.dumps(TINY))
    raw["data"]["cache_dir"] = str(cache_dir)
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    raw["recipe"] = recipe
    return raw


def _cfg(cache_dir, **sections):
    return config_from_dict(_raw(cache_dir, "moe", **sections), recipe="moe")


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory, cache_dir):
    """A finished dense baseline run of the tiny shape (the upcycling source)."""
    d = tmp_path_factory.mktemp("dense") / "run"
    baseline.main(
        config_from_dict(_raw(cache_dir, "baseline", train={"checkpoint_every": 0}), recipe="baseline"), out=d
    )
    return d


def test_tiny_moe_learns_and_the_run_dir_carries_routing_diagnostics(tmp_path, cache_dir):
    d = tmp_path / "r"
    cfg = _cfg(cache_dir, moe={"n_experts": 4, "top_k": 2})
    res = moe.main(cfg, out=d)
    rows = read_jsonl(d / "metrics.jsonl")
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 6, 12]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.5
    for r in evals[1:]:  # training-window routing statistics at every later eval
        assert r["moe_layers"] == [0, 1] and len(r["moe_expert_fraction"]) == 2
        assert all(len(f) == 4 and sum(f) == pytest.approx(1, abs=1e-3) for f in r["moe_expert_fraction"])
        assert all(1 <= e <= 4 + 1e-6 for e in r["moe_effective_experts"])
        assert all(b >= 1 - 1e-6 for b in r["moe_balance"]) and r["moe_dropped_fraction"] == [0.0, 0.0]
        assert all(h > 0 for h in r["moe_router_entropy"])
    logged = [r for r in rows if "train_loss" in r]
    assert logged and all({"lm_loss", "moe_balance_loss", "moe_z_loss"} <= set(r) for r in logged)
    assert all(r["train_loss"] > r["lm_loss"] for r in logged)  # the router losses are added in training

    # ledger: the accounting layer's count on the Mixtral config (router + top-2 of 4 experts only)
    from transformers import AutoModelForCausalLM, MixtralForCausalLM

    model = AutoModelForCausalLM.from_pretrained(d / "model")  # no efflab blocks needed to load it
    assert type(model) is MixtralForCausalLM
    led = Ledger.load(d / "ledger.json")
    tokens = 12 * 8 * 64
    assert led.tokens("train") == tokens
    assert led.flops("train") == pytest.approx(train_flops_per_token(model.config, 64) * tokens, rel=1e-9)
    assert led.marginal == led.total == res["flops_marginal"]
    m = json.loads((d / "manifest.json").read_text())
    assert m["status"] == "complete"
    # auto chose by measurement, logged: the choice is the decision rule applied to the logged times
    choice = m["moe"]["experts_choice"]
    assert choice["by"] == "measurement" and set(choice["step_s"]) == set(choice["preference"])
    assert (
        m["moe"]["experts_implementation"]
        == choice["chosen"]
        == decide_implementation(choice["step_s"], tuple(choice["preference"]), choice["margin"])
    )
    assert 1.0 < m["moe"]["active_flops_ratio_vs_dense"] < 1.01
    # the stock model (dropless, transformers' default experts) reproduces the run's final eval loss
    run = loop.Run(cfg, d, __import__("accelerate").Accelerator(cpu=True), Ledger(), {})
    data = loop.prepare_data(run)
    assert loop.evaluate(run, model, data)["eval_loss"] == pytest.approx(res["final_eval_loss"], abs=1e-4)


def _check_upcycled(d, dense_run, res):
    dense = json.loads((dense_run / "manifest.json").read_text())["result"]
    dense_led = Ledger.load(dense_run / "ledger.json")
    first = read_jsonl(d / "metrics.jsonl")[0]
    assert first["step"] == 0
    assert first["eval_loss"] == pytest.approx(dense["final_eval_loss"], abs=1e-5)  # copies = the dense model
    led = Ledger.load(d / "ledger.json")
    assert led.flops("sunk.dense_pretrain") == pytest.approx(dense_led.total)  # once
    assert led.tokens("sunk.dense_pretrain") == dense_led.tokens("train")
    assert led.total == pytest.approx(led.marginal + dense_led.total) and led.marginal == led.flops("train")
    assert res["flops_total"] == pytest.approx(led.total) and res["flops_marginal"] == pytest.approx(
        led.marginal
    )
    cfgjson = json.loads((d / "model/config.json").read_text())
    assert cfgjson["intermediate_size"] == 192 and cfgjson["efflab_moe"]["upcycled_from"] == str(dense_run)


def test_upcycling_starts_at_the_dense_loss_and_charges_its_bill(tmp_path, cache_dir, dense_run):
    cfg = _cfg(
        cache_dir,
        train={"steps": 4, "checkpoint_every": 0},
        eval={"every": 4},
        moe={"n_experts": 4, "top_k": 2, "upcycle_from": str(dense_run)},
    )
    res = moe.main(cfg, out=tmp_path / "u")
    _check_upcycled(tmp_path / "u", dense_run, res)


@pytest.mark.slow
def test_an_upcycled_run_resumed_charges_the_dense_bill_once(tmp_path, cache_dir, dense_run, monkeypatch):
    cfg = _cfg(cache_dir, moe={"n_experts": 4, "top_k": 2, "upcycle_from": str(dense_run)})

    class Killed(Exception):
        pass

    real = loop.BlockSampler.batch

    def dying(self, step):
        if step == 9:  # after the checkpoint at step 6
            raise Killed
        return real(self, step)

    monkeypatch.setattr(loop.BlockSampler, "batch", dying)
    with pytest.raises(Killed):
        moe.main(cfg, out=tmp_path / "u")
    monkeypatch.setattr(loop.BlockSampler, "batch", real)
    res = moe.main(cfg, out=tmp_path / "u", resume=True)
    _check_upcycled(tmp_path / "u", dense_run, res)


def test_upcycling_from_a_plain_hf_directory_charges_nothing(tmp_path, cache_dir, dense_run, capsys):
    cfg = _cfg(
        cache_dir,
        train={"steps": 2, "checkpoint_every": 0},
        eval={"every": 2},
        moe={"n_experts": 2, "top_k": 1, "upcycle_from": str(dense_run / "model")},
    )
    res = moe.main(cfg, out=tmp_path / "h")
    led = Ledger.load(tmp_path / "h/ledger.json")
    assert led.flops("sunk.dense_pretrain") == 0 and res["flops_total"] == res["flops_marginal"]
    assert "its pretraining cost is unknown and not charged" in capsys.readouterr().out
    dense = json.loads((dense_run / "manifest.json").read_text())["result"]
    first = read_jsonl(tmp_path / "h/metrics.jsonl")[0]
    assert first["eval_loss"] == pytest.approx(dense["final_eval_loss"], abs=1e-5)  # top-1 of 2 copies


def test_capacity_routing_drops_and_logs_it(tmp_path, cache_dir):
    cfg = _cfg(
        cache_dir,
        train={"steps": 4, "checkpoint_every": 0},
        eval={"every": 4},
        moe={
            "n_experts": 4,
            "top_k": 2,
            "routing": "capacity",
            "capacity_factor": 0.75,
            "shared_expert_width": 32,
        },
    )
    moe.main(cfg, out=tmp_path / "c")
    last = [r for r in read_jsonl(tmp_path / "c/metrics.jsonl") if "eval_loss" in r][-1]
    assert all(f >= 0.25 - 1e-9 for f in last["moe_dropped_fraction"])  # at least 1 - 0.75 of assignments
    from transformers import AutoModelForCausalLM, Qwen2MoeForCausalLM

    assert (
        type(AutoModelForCausalLM.from_pretrained(tmp_path / "c/model")) is Qwen2MoeForCausalLM
    )  # shared expert


@pytest.mark.parametrize(
    "overrides,needles",
    [
        (["moe.top_k=9"], ["moe.top_k=9 is larger than moe.n_experts=8"]),
        (["moe.n_experts=0"], ["at least one expert"]),
        (["moe.capacity_factor=0.5"], ["capacity_factor=0.5 < 1", "dropless"]),
        (["moe.upcycle_from=WRONG", "model.depth=3"], ["layers (num_hidden_layers) 2", "does not match 3"]),
    ],
)
def test_bad_input_exits_2_with_a_message(capsys, cache_dir, dense_run, overrides, needles):
    overrides = [o.replace("WRONG", str(dense_run)) for o in overrides]
    rc = cli(["run", "moe", "--config", str(REPO / "configs/moe/tiny.yaml"), *overrides])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    for n in needles:
        assert n in err, err


def test_every_moe_yaml_loads_and_pairs_with_its_baseline():
    from efflab import models as MD

    seen = 0
    for name in ("tiny", "small", "gpu"):
        cfg = load_config(REPO / f"configs/moe/{name}.yaml", recipe="moe")
        dense = load_config(REPO / f"configs/baseline/{name}.yaml", recipe="baseline")
        assert cfg.model == dense.model and cfg.data == dense.data  # same attention, same data
        assert cfg.train.budget_flops == pytest.approx(MD.flop_budget(dense), rel=1e-6)  # same compute
        assert MD.dense_config_for(cfg).model.resolved()["ffn_width"] == dense.model.resolved()["ffn_width"]
        seen += 1
    assert seen == 3
