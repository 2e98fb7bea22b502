"""`efflab scaling fit CSV` through efflab.cli.main, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from efflab.cli import main

DATA = Path(__file__).resolve().parents[1] / "data" / "epoch_chinchilla_points.csv"


def _run(capsys, *argv):
    rc = main(["scaling", "fit", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_chinchilla_json_on_the_epoch_file(capsys):
    rc, out, err = _run(capsys, DATA, "--bootstrap", 20, "--json", "--exclude-highest-loss", 5)
    assert rc == 0, err
    d = json.loads(out)
    assert d["form"] == "chinchilla" and d["rows_used"] == 240
    for name in ("E", "A", "B", "alpha", "beta"):
        v = d["params"][name]
        assert v["lo"] <= v["value"] <= v["hi"], name
    assert d["params"]["E"]["value"] == pytest.approx(1.82, abs=0.01)
    assert any("D = C / (6N)" in n for n in d["notes"])
    assert any("5 highest-loss" in n for n in d["notes"])
    budgets = [c["budget_flops"] for c in d["compute_optimal"]]
    assert budgets[1] == 5.76e23  # Chinchilla's budget, for reference
    assert d["compute_optimal"][0]["label"] == "largest row"
    assert d["n_bootstrap"] == 20


def test_chinchilla_human_output(capsys):
    rc, out, _ = _run(capsys, DATA, "--bootstrap", 10, "--budget", "1e22")
    assert rc == 0
    assert "L(N, D) = E + A/N^alpha + B/D^beta" in out
    assert "90% bootstrap percentile (5th-95th)" in out
    for name in ("E", "A", "B", "alpha", "beta", "tokens/param", "1.000e+22"):
        assert name in out
    assert "Note: tokens derived as D = C / (6N)" in out


def _write(path: Path, header, rows):
    path.write_text(",".join(header) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_power_form_from_params_and_tokens(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = []
    for n in (1e6, 3e6, 1e7, 3e7, 1e8):
        d = 20 * n
        c = 6 * n * d
        rows.append((n, d, (1.8 + 2000 * c**-0.15) * np.exp(rng.normal(0, 0.003))))
    f = _write(tmp_path / "runs.csv", ["params", "tokens", "eval_loss"], rows)
    rc, out, err = _run(capsys, f, "--form", "power", "--bootstrap", 30, "--json")
    assert rc == 0, err
    d = json.loads(out)
    assert set(d["params"]) == {"E", "A", "alpha"}
    assert any("C = 6ND" in n for n in d["notes"])
    assert d["predictions"][1]["budget_flops"] == 5.76e23
    rc, out, _ = _run(capsys, f, "--form", "power", "--bootstrap", 10, "--e-zero")
    assert rc == 0 and "E fixed to 0" in out and "Predicted loss" in out


def test_missing_file_is_exit_2_without_traceback(tmp_path, capsys):
    rc, out, err = _run(capsys, tmp_path / "nope.csv")
    assert rc == 2 and out == ""
    assert "no such file" in err and "Traceback" not in err


def test_every_problem_named_at_once(tmp_path, capsys):
    f = _write(tmp_path / "bad.csv", ["params", "tokens"], [(1e8, 2e9), (-5, 2e9), (1e9, "abc")])
    rc, _, err = _run(capsys, f, "--budget", "lots", "--level", "2")
    assert rc == 2
    assert "no loss column" in err
    assert "'params' (params) needs numbers > 0; line 3 ('-5')" in err
    assert "'tokens' (tokens) needs numbers > 0; line 4 ('abc')" in err
    assert "--budget" in err and "'lots'" in err
    assert "--level" in err
    assert "Traceback" not in err


def test_missing_columns_and_too_few_rows(tmp_path, capsys):
    f = _write(tmp_path / "few.csv", ["params", "loss"], [(1e8, 3.0), (2e8, 2.9)])
    rc, _, err = _run(capsys, f)
    assert rc == 2
    assert "needs two of params" in err
    assert "2 rows for a chinchilla law with 5 parameters" in err
    f2 = _write(tmp_path / "pow.csv", ["flops", "loss"], [(1e18, 3.0), (1e18, 2.9), (1e18, 2.95)])
    rc, _, err = _run(capsys, f2, "--form", "power")
    assert rc == 2 and "distinct compute" in err


def test_unreadable_and_empty_csv(tmp_path, capsys):
    b = tmp_path / "bin.csv"
    b.write_bytes(b"\xff\xfe\x00\x81\x82garbage")
    rc, _, err = _run(capsys, b)
    assert rc == 2 and "not a text CSV" in err
    e = tmp_path / "empty.csv"
    e.write_text("")
    rc, _, err = _run(capsys, e)
    assert rc == 2 and "empty" in err


def test_scaling_without_subcommand_is_exit_2(capsys):
    assert main(["scaling"]) == 2
    # CSV is required: argparse's own error, same exit status (main may return it or exit with it)
    try:
        rc = main(["scaling", "fit"])
    except SystemExit as ex:
        rc = ex.code
    assert rc == 2
    assert "required: CSV" in capsys.readouterr().err
