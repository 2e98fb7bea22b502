"""The dense baseline through the shared loop: learning, artifacts, resume, faults, precision, ranks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from efflab import loop
from efflab.accounting.flops import forward_flops_per_token, train_flops_per_token
from efflab.accounting.ledger import Ledger
from efflab.cli import main as cli
from efflab.config import load_config
from efflab.errors import RunFailed, UserError
from efflab.io import read_jsonl
from efflab.recipes import baseline

REPO = Path(__file__).resolve().parents[2]


def _manifest(d):
    return json.loads((Path(d) / "manifest.json").read_text())


def test_tiny_config_learns_far_below_unigram_entropy(tmp_path, cache_dir):
    cfg = load_config(
        REPO / "configs/baseline/tiny.yaml",
        ["log.progress=false", f"data.cache_dir={cache_dir}"],
        recipe="baseline",
    )
    res = baseline.main(cfg, out=tmp_path / "run")
    m = _manifest(tmp_path / "run")
    first = read_jsonl(tmp_path / "run/metrics.jsonl")[0]
    assert first["step"] == 0 and res["final_eval_loss"] < first["eval_loss"] - 2.0
    # a model that learned only token frequencies would sit at the unigram entropy
    assert res["final_eval_loss"] < m["data"]["unigram_entropy_nats"] - 1.0, (res, m["data"])


def test_artifacts_ledger_and_reload(tmp_path, tiny_cfg):
    cfg = tiny_cfg()
    res = baseline.main(cfg, out=tmp_path / "r")
    d = tmp_path / "r"
    names = {p.name for p in d.iterdir()}
    assert {"config.yaml", "manifest.json", "metrics.jsonl", "ledger.json", "model"} <= names
    assert "checkpoint" not in names  # removed on completion (train.keep_checkpoint keeps it)
    m = _manifest(d)
    assert m["status"] == "complete" and m["world_size"] == 1 and m["data"]["eval_set_hash"]
    rows = read_jsonl(d / "metrics.jsonl")
    evals = [r for r in rows if "eval_loss" in r]
    assert [r["step"] for r in evals] == [0, 10, 20, 30]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert all(r["flops"]["train"] <= s["flops"]["train"] for r, s in zip(rows, rows[1:]))  # cumulative
    led = Ledger.load(d / "ledger.json")
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(d / "model")
    tokens = 30 * 8 * 64
    assert led.tokens("train") == tokens
    assert led.flops("train") == pytest.approx(train_flops_per_token(model.config, 64) * tokens, rel=1e-9)
    assert led.marginal == led.flops("train") == res["flops_marginal"]
    assert led.flops("eval") == pytest.approx(
        forward_flops_per_token(model.config, 64) * 4 * 16 * 63, rel=1e-9
    )
    # the saved model reproduces the final eval loss
    run = loop.Run(cfg, d, __import__("accelerate").Accelerator(cpu=True), Ledger(), {})
    data = loop.prepare_data(run)
    assert loop.evaluate(run, model, data)["eval_loss"] == pytest.approx(res["final_eval_loss"], abs=1e-5)


class _Killed(Exception):
    pass


def test_resume_matches_uninterrupted_run_bitwise(tmp_path, tiny_cfg, monkeypatch):
    full = baseline.main(tiny_cfg(), out=tmp_path / "full")
    real_batch = loop.BlockSampler.batch

    def dying(self, step):
        if step == 24:  # killed between the checkpoints at steps 20 and 30
            raise _Killed
        return real_batch(self, step)

    monkeypatch.setattr(loop.BlockSampler, "batch", dying)
    with pytest.raises(_Killed):
        baseline.main(tiny_cfg(), out=tmp_path / "cut")
    assert _manifest(tmp_path / "cut")["status"] == "running"
    monkeypatch.setattr(loop.BlockSampler, "batch", real_batch)
    resumed = baseline.main(tiny_cfg(), out=tmp_path / "cut", resume=True)
    assert resumed["final_eval_loss"] == full["final_eval_loss"]  # bitwise on CPU fp32
    a, b = Ledger.load(tmp_path / "full/ledger.json"), Ledger.load(tmp_path / "cut/ledger.json")
    assert a.flops("train") == b.flops("train") and a.tokens("train") == b.tokens("train")  # no FLOP twice
    assert [r["step"] for r in read_jsonl(tmp_path / "cut/metrics.jsonl")] == [
        r["step"] for r in read_jsonl(tmp_path / "full/metrics.jsonl")
    ]
    # resuming a complete run does nothing
    assert (
        baseline.main(tiny_cfg(), out=tmp_path / "cut", resume=True)["final_eval_loss"]
        == full["final_eval_loss"]
    )


def test_existing_run_dir_is_never_overwritten(tmp_path, tiny_cfg, capsys):
    d = tmp_path / "r"
    d.mkdir()
    (d / "manifest.json").write_text('{"status": "complete", "precious": 1}')
    with pytest.raises(UserError, match="already exists"):
        baseline.main(tiny_cfg(), out=d)
    assert json.loads((d / "manifest.json").read_text())["precious"] == 1
    rc = cli(["run", "baseline", "--config", str(REPO / "configs/baseline/tiny.yaml"), "--out", str(d)])
    assert rc == 2 and "--resume" in capsys.readouterr().err


def test_cli_bad_config_one_message_exit_2(tmp_path, capsys):
    rc = cli(
        [
            "run",
            "baseline",
            "--config",
            str(REPO / "configs/baseline/tiny.yaml"),
            "--out",
            str(tmp_path / "x"),
            "model.n_head=5",
            "train.lr=-1",
            "eval.every=0",
            "data.bogus=1",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    for needle in ("n_head=5", "train.lr", "eval.every", "data.bogus: unknown key"):
        assert needle in err, err
    assert not (tmp_path / "x").exists()  # nothing started


def test_cli_unwritable_output(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root)")
        rc = cli(
            ["run", "baseline", "--config", str(REPO / "configs/baseline/tiny.yaml"), "--out", str(ro / "r")]
        )
        assert rc == 2 and "not writable" in capsys.readouterr().err
    finally:
        ro.chmod(0o700)


def test_unwritable_output_is_reported(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert any("not a directory" in p for p in loop.check_run_dir(f, resume=False, overwrite=False))
    rc = cli(
        ["run", "baseline", "--config", str(REPO / "configs/baseline/tiny.yaml"), "--out", str(f / "run")]
    )
    assert rc == 2 and "not writable" in capsys.readouterr().err and f.read_text() == "x"


def test_nan_loss_stops_with_failed_status(tmp_path, tiny_cfg):
    cfg = tiny_cfg()
    run = loop.start_run(cfg, out=tmp_path / "nan")
    data = loop.prepare_data(run)
    from efflab.models import build_model

    model = build_model(cfg, data.vocab_size)
    calls = {"n": 0}

    def bad_loss(model, batch):
        loss, logs = loop.default_loss(model, batch)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] == 5 else loss), logs

    with pytest.raises(RunFailed, match="became nan at step 5"):
        loop.train(run, model, data, loss_fn=bad_loss)
    m = _manifest(tmp_path / "nan")
    assert m["status"] == "failed" and "nan" in m["error"]
    assert Ledger.load(tmp_path / "nan/ledger.json").tokens("train") == 5 * 8 * 64


def test_gpu_settings_path_on_cpu_bf16_autocast(tmp_path, tiny_cfg):
    """The GPU code path (bf16 autocast through accelerate, fused-optimizer switch) kept from rotting."""
    cfg = tiny_cfg(
        overrides={
            "train": {"steps": 3, "precision": "bf16", "fused_optimizer": "off", "checkpoint_every": 0},
            "eval": {"every": 3, "max_blocks": 2},
        }
    )
    res = baseline.main(cfg, out=tmp_path / "bf16")
    assert _manifest(tmp_path / "bf16")["mixed_precision"] == "bf16"
    assert res["steps"] == 3 and torch.isfinite(torch.tensor(res["final_eval_loss"]))


def test_two_processes_charge_the_same_ledger_as_one(tmp_path, cache_dir):
    """torchrun starts two ranks that accelerate joins over gloo; the same global batch gives the same
    ledger tokens and FLOPs as one process (every FLOP counted once)."""
    args = [
        str(REPO / "recipes/baseline.py"),
        "--config",
        str(REPO / "configs/baseline/tiny.yaml"),
        "train.budget_tokens=null",
        "train.steps=6",
        "train.batch_size=8",
        "eval.every=6",
        "eval.max_blocks=4",
        "log.progress=false",
        "train.checkpoint_every=0",
        "model.depth=1",
        f"data.cache_dir={cache_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    one = subprocess.run(
        [sys.executable, *args, "--out", str(tmp_path / "one")], env=env, capture_output=True, text=True
    )
    assert one.returncode == 0, one.stderr[-2000:]
    import socket

    with socket.socket() as sock:  # a free port, so parallel test runs do not collide
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            port,
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert _manifest(tmp_path / "two")["world_size"] == 2
    a, b = Ledger.load(tmp_path / "one/ledger.json"), Ledger.load(tmp_path / "two/ledger.json")
    assert b.tokens("train") == a.tokens("train") == 6 * 8 * 128
    assert b.flops("train") == pytest.approx(a.flops("train"), rel=1e-12)
    assert b.flops("eval") == pytest.approx(a.flops("eval"), rel=1e-12)
    ea = read_jsonl(tmp_path / "one/metrics.jsonl")[-1]["eval_loss"]
    eb = read_jsonl(tmp_path / "two/metrics.jsonl")[-1]["eval_loss"]
    assert eb == pytest.approx(ea, abs=2e-3)  # same data order and global batch: nearly the same model


def test_checkpoint_every_zero_means_only_at_the_end_and_keep_checkpoint(tmp_path, tiny_cfg):
    """checkpoint_every: 0 writes one checkpoint, at the end of training; a completed run removes it
    unless train.keep_checkpoint (model/ holds the result). Files get the umask's mode, not 0600."""
    cfg = tiny_cfg(
        overrides={
            "train": {"steps": 4, "checkpoint_every": 0, "keep_checkpoint": True},
            "eval": {"every": 4},
        }
    )
    old = os.umask(0o022)
    try:
        baseline.main(cfg, out=tmp_path / "kept")
    finally:
        os.umask(old)
    assert json.loads((tmp_path / "kept" / "checkpoint" / "latest.json").read_text())["step"] == 4
    assert (tmp_path / "kept" / "manifest.json").stat().st_mode & 0o777 == 0o644
    led = Ledger.load(tmp_path / "kept" / "ledger.json")
    assert 0 < led.executed("train") < led.flops("train")  # causal attention as flash attention runs it
    rows = [r for r in read_jsonl(tmp_path / "kept" / "metrics.jsonl") if r.get("mfu") is not None]
    assert rows and all(r["mfu_executed"] < r["mfu"] for r in rows)
    cfg = tiny_cfg(overrides={"train": {"steps": 4, "checkpoint_every": 0}, "eval": {"every": 4}})
    baseline.main(cfg, out=tmp_path / "dropped")
    assert not (tmp_path / "dropped" / "checkpoint").exists()
