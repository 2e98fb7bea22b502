"""`efflab laws list | eval | optimal` through efflab.cli.main, in-process."""

from __future__ import annotations

import json

import pytest

from efflab.cli import main


def _run(capsys, *argv):
    rc = main(["laws", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_optimal_json_besiroglu_at_chinchilla_budget(capsys):
    rc, out, err = _run(capsys, "optimal", "besiroglu2024", "--flops", "5.76e23", "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert d["params"] == pytest.approx(70e9, rel=0.1)
    assert d["tokens"] == pytest.approx(1.4e12, rel=0.1)
    assert d["loss"] == pytest.approx(1.974, abs=0.001)
    assert d["in_range"] is False  # 72B is beyond the 16B the law was fitted on


def test_eval_json_has_loss(capsys):
    rc, out, err = _run(capsys, "eval", "besiroglu2024", "--params", "70e9", "--tokens", "1.4e12", "--json")
    assert rc == 0, err
    d = json.loads(out)
    expected = 1.8172 + 482.01 / 70e9**0.3478 + 2085.43 / 1.4e12**0.3658
    assert d["loss"] == pytest.approx(expected, rel=1e-12)


def test_eval_with_granularity_and_unique_tokens(capsys):
    rc, out, _ = _run(
        capsys, "eval", "krajewski2024", "--params", "1e9", "--tokens", "20e9", "--granularity", 8, "--json"
    )
    assert rc == 0
    d = json.loads(out)
    assert d["granularity"] == 8 and d["in_range"] is True and d["notes"] == []
    c = {"a": 18.1, "alpha": 0.115, "b": 30.8, "beta": 0.147, "g": 2.1, "gamma": 0.58, "c": 0.47}
    expected = c["c"] + (c["g"] / 8 ** c["gamma"] + c["a"]) / 1e9 ** c["alpha"] + c["b"] / 20e9 ** c["beta"]
    assert d["loss"] == pytest.approx(expected, rel=1e-12)
    rc, out, _ = _run(
        capsys,
        "eval",
        "muennighoff2023",
        "--params",
        "1e9",
        "--tokens",
        "4e11",
        "--unique-tokens",
        "1e11",
        "--json",
    )
    assert rc == 0 and json.loads(out)["unique_tokens"] == 1e11


def test_list_human_and_json(capsys):
    rc, out, _ = _run(capsys, "list")
    assert rc == 0 and "besiroglu2024" in out and "C = 6ND" in out
    rc, out, _ = _run(capsys, "list", "--json")
    names = [x["name"] for x in json.loads(out)["laws"]]
    assert {
        "hoffmann2022",
        "besiroglu2024",
        "krajewski2024",
        "clark2022",
        "busbridge2025",
        "muennighoff2023",
    } <= set(names)


def test_bad_input_names_every_problem(capsys):
    rc, _, err = _run(
        capsys, "eval", "besiroglu2025", "--params", "x", "--tokens", "-1", "--granularity", "2"
    )
    assert rc == 2
    assert "unknown law" in err and "did you mean" in err and "--params" in err and "--tokens" in err
    assert "Traceback" not in err
    rc, _, err = _run(
        capsys, "eval", "besiroglu2024", "--params", "1e9", "--tokens", "1e10", "--granularity", "2"
    )
    assert rc == 2 and "--granularity does not apply" in err
    rc, _, err = _run(capsys, "optimal", "clark2022", "--flops", "1e20")
    assert rc == 2 and "does not evaluate" in err
    rc, _, err = _run(
        capsys, "eval", "busbridge2025", "--params", "1e9", "--tokens", "2e10", "--teacher-loss", "x"
    )
    assert rc == 2 and "--teacher-loss" in err and "Traceback" not in err


def test_optimal_krajewski_uses_the_papers_flop_count(capsys):
    # Krajewski et al. 2024, Table 2, first row: 64 x 100M, 4.37B tokens, G = 8 at 2.95e18 FLOPs (Eq. 10)
    rc, out, err = _run(
        capsys, "optimal", "krajewski2024", "--flops", "2.95e18", "--granularity", 8, "--json"
    )
    assert rc == 0, err
    d = json.loads(out)
    assert d["active_params"] == pytest.approx(100e6, rel=0.05)
    assert d["tokens"] == pytest.approx(4.37e9, rel=0.05)
    assert "Eq. 10" in d["convention"] and "6ND" not in d["convention"]
    rc, out, _ = _run(capsys, "optimal", "krajewski2024", "--flops", "2.95e18", "--granularity", 8)
    assert rc == 0 and "active parameters" in out and "Eq. 10" in out


def test_eval_busbridge_with_a_teacher_loss(capsys):
    # Eq. 8 at a 1.82B student on 36.4B tokens from a teacher of cross-entropy 2.0 (C4 nats)
    rc, out, err = _run(
        capsys,
        "eval",
        "busbridge2025",
        "--params",
        "1.82e9",
        "--tokens",
        "36.4e9",
        "--teacher-loss",
        "2.0",
        "--json",
    )
    assert rc == 0, err
    d = json.loads(out)
    assert d["teacher_loss"] == 2.0 and d["notes"] == []
    sup = 1.220 + (3355 / 1.82e9**0.408 + 18186 / 36.4e9**0.431) ** 0.452
    gap = (1 + (2.0 / (sup * 1.315)) ** (1 / 0.090)) ** (-522.6 * 0.090)
    mimic = (2243 / 1.82e9**0.321 + 24181 / 36.4e9**0.637) ** 0.764
    assert d["loss"] == pytest.approx(2.0 + gap * mimic / 2.0**2.549, rel=1e-12)
    assert 2.0 < d["loss"] < sup  # between the teacher and the supervised student
