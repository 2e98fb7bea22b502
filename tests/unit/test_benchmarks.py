"""The benchmark scripts run (so they cannot silently rot): gpu_check's CPU smoke mode, the throughput
benchmark on the reference shape, and the moe benchmark's auto choice. Tiny shapes; nothing downloaded.
The figures they print are measurements, not asserted here."""

import importlib.util
import json
from argparse import Namespace
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"test_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_cpu_smoke_writes_every_section(tmp_path):
    out = tmp_path / "check.json"
    assert _load("gpu_check").main(["--cpu-smoke", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["cpu_smoke"] is True and res["summary"]["errors"] == []
    s = res["sections"]
    assert set(s) == {"dense", "moe", "generation"}
    assert s["dense"]["variants"]["eager"]["tokens_per_s"] > 0 and s["dense"]["fused_adamw"]
    assert s["dense"]["matmul_flops_per_s"] > 0
    assert s["moe"]["efflab_choice"] in s["moe"]["ratio_vs_dense"]
    assert res["summary"]["moe_over_dense"] == s["moe"]["ratio_vs_dense"][s["moe"]["efflab_choice"]]
    for way in ("efflab_generate_batch", "hf_generate"):
        assert s["generation"][way]["tokens_per_s"] > 0
    assert all(v["section_seconds"] > 0 for v in s.values())


def test_gpu_check_rejects_bad_input(capsys):
    gc = _load("gpu_check")
    assert gc.main(["--cpu-smoke", "--only", "dense,nope"]) == 2
    assert "nope" in capsys.readouterr().out


def test_throughput_reference_shape_and_its_flops():
    """The reference shape is the main job's: 139,584 parameters; train FLOPs per token by hand:
    forward 2 x (2 layers x (4 x 64^2 attention + 3 x 64 x 192 MLP) + 64 x 512 LM head) + attention
    4 x 2 layers x 128 x 64 = 344,064; train = 3 x forward."""
    tp = _load("throughput")
    a = Namespace(
        config="reference",
        overrides=["train.batch_size=2", "data.seq_len=128"],
        device="cpu",
        threads=1,
        rounds=1,
        steps=1,
        warmup=1,
        matmul_n=64,
        compile=False,
        compile_cost=False,
        run_seconds=50.0,
    )
    res = tp.measure(a)
    assert res["params"] == 139_584
    fwd = 2 * (2 * (4 * 64 * 64 + 3 * 64 * 192) + 64 * 512) + 4 * 2 * 128 * 64
    assert res["train_flops_per_token"] == 3 * fwd == 1_032_192
    v = res["variants"]["eager"]
    assert set(res["variants"]) == {"eager"} and v["ratio_to_matmul"] > 0
    assert v["model_flops_per_s"] == pytest.approx(v["tokens_per_s"] * 3 * fwd)
