"""ModelSource (a model from somewhere, with its bill), train_helper, and the run's one-time charges."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from efflab.accounting.ledger import Ledger
from efflab.errors import UserError
from efflab.loop import Run
from efflab.runs import ModelSource, train_helper, weights_identity


def _save_model(path, seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def _finished_run(root, seed=0, status="complete"):
    """A run directory as efflab leaves it: manifest, ledger, config.yaml and model/."""
    _save_model(root / "model", seed)
    led = Ledger()
    led.charge("train", 6e12, tokens=2e6, seconds=30.0)
    led.charge("eval", 1e11, tokens=1e5, seconds=4.0)  # shown, not in the total, nor in the seconds
    led.charge("scoring", 1e12, tokens=2e6, seconds=5.0)
    led.save(root / "ledger.json")
    (root / "manifest.json").write_text(json.dumps({"status": status, "data": {"tokenizer_hash": "abc"}}))
    (root / "config.yaml").write_text("recipe: baseline\ndata:\n  vocab_size: 64\n")
    return root


def test_an_efflab_run_brings_its_bill(tmp_path):
    run = _finished_run(tmp_path / "run")
    src = ModelSource.resolve(run, "distill.teacher")
    assert src.kind == "efflab-run" and src.model_dir == (run / "model").resolve()
    assert src.config["hidden_size"] == 32 and src.tokenizer_dir is None
    assert (src.bill.flops, src.bill.tokens, src.bill.seconds) == (7e12, 2e6, 35.0)
    assert src.requested_vocab == 64 and src.tokenizer_hash == "abc"
    assert src.describe()["pretrain"] == {"flops": 7e12, "tokens": 2e6, "seconds": 35.0}
    assert src.identity == weights_identity(run / "model") and len(src.identity) == 64


def test_a_model_directory_has_an_unknown_bill_and_says_so(tmp_path):
    src = ModelSource.resolve(_save_model(tmp_path / "hf"), "synthetic.generator")
    assert src.kind == "hf-model" and src.bill is None and src.pretrain_flops is None
    assert src.describe()["pretrain"] == "unknown (external model)" == src.bill_text()


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p, "no such directory"),
        (lambda p: p.mkdir() or p, "neither a finished efflab run"),
        (lambda p: _finished_run(p, status="running"), "not complete (status: running)"),
        (lambda p: (_finished_run(p), (p / "ledger.json").unlink())[0], "no ledger.json"),
        (lambda p: (_finished_run(p), shutil.rmtree(p / "model"))[0], "without a model/ directory"),
    ],
)
def test_a_bad_path_is_one_message_naming_the_key(tmp_path, make, needle):
    path = make(tmp_path / "x")
    probs = ModelSource.problems(path, "curriculum.reference")
    assert len(probs) == 1 and probs[0].startswith(f"curriculum.reference {path}") and needle in probs[0]
    with pytest.raises(UserError, match="curriculum.reference"):
        ModelSource.resolve(path, "curriculum.reference")


def test_a_model_without_its_tokenizer_is_refused_where_one_is_needed(tmp_path):
    hf = _save_model(tmp_path / "hf")
    assert ModelSource.problems(hf, "synthetic.generator") == []
    (probs,) = ModelSource.problems(hf, "synthetic.generator", tokenizer=True)
    assert probs.startswith(f"synthetic.generator {hf}: no tokenizer files")


def test_identity_is_the_weights_not_the_place(tmp_path):
    a = _save_model(tmp_path / "a", seed=0)
    b = shutil.copytree(a, tmp_path / "b")
    c = _save_model(tmp_path / "c", seed=1)
    assert weights_identity(a) == weights_identity(b) != weights_identity(c)
    assert ModelSource.resolve(b, "x").identity == ModelSource.resolve(a, "x").identity


def _run(tmp_path, *, resume: bool, checkpoint: bool) -> Run:
    if checkpoint:
        (tmp_path / "checkpoint").mkdir(parents=True)
        (tmp_path / "checkpoint" / "latest.json").write_text('{"step": 2, "dir": "step-2"}')
    return Run(None, tmp_path, None, Ledger(), {}, resume=resume)


def test_charge_once_skips_a_run_resumed_from_a_checkpoint(tmp_path):
    src = ModelSource.resolve(_finished_run(tmp_path / "teacher"), "distill.teacher")
    fresh = _run(tmp_path / "fresh", resume=True, checkpoint=False)  # --resume on nothing: a fresh start
    resumed = _run(tmp_path / "resumed", resume=True, checkpoint=True)
    for run in (fresh, resumed):
        run.charge_once("eval", 10.0, 5, 1.0)
        run.charge_sunk(src, "sunk.teacher_pretrain")
    assert not fresh.resumed and resumed.resumed
    assert fresh.ledger.flops("eval") == 10.0 and fresh.ledger.shared["sunk.teacher_pretrain"].flops == 7e12
    assert fresh.ledger.tokens("sunk.teacher_pretrain") == 2e6
    assert resumed.ledger.phases() == {}


def test_charge_sunk_of_an_external_model_records_that_its_cost_is_unknown(tmp_path):
    run = _run(tmp_path / "r", resume=False, checkpoint=False)
    run.charge_sunk(
        ModelSource.resolve(_save_model(tmp_path / "hf"), "moe.upcycle_from"), "sunk.dense_pretrain"
    )
    assert run.ledger.flops("sunk.dense_pretrain") == 0
    assert run.ledger.extra["sunk"]["sunk.dense_pretrain"]["cost"] == "unknown (external model)"


class _Acc:
    waits = 0

    def wait_for_everyone(self):
        self.waits += 1


def test_train_helper_reuses_a_complete_run_and_always_waits(tmp_path):
    calls = []

    def main(cfg, *, out, resume):
        calls.append((cfg, out, resume))
        _finished_run(out)

    acc = _Acc()
    done = _finished_run(tmp_path / "done")
    src = train_helper(main, "cfg", done, role="distill.teacher", accelerator=acc, log=lambda m: None)
    assert calls == [] and acc.waits == 1 and src.kind == "efflab-run" and src.bill.flops == 7e12
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "manifest.json").write_text('{"status": "running"}')
    src = train_helper(main, "cfg", partial, role="distill.teacher", accelerator=acc, log=lambda m: None)
    assert calls == [("cfg", partial, True)] and acc.waits == 2 and src.path == partial.resolve()
