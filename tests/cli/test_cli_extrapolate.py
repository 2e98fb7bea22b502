"""`efflab extrapolate SUITE_DIR` on a compare.json fixture, in-process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from efflab.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "compare_quick.json"


def _suite(tmp_path) -> Path:
    d = tmp_path / "suite"
    d.mkdir()
    shutil.copy(FIXTURE, d / "compare.json")
    return d


def test_json_and_file(tmp_path, capsys):
    d = _suite(tmp_path)
    assert (
        main(["extrapolate", str(d), "--to", "gpt4-estimate", "--mfu", "0.45", "--no-report", "--json"]) == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads((d / "extrapolate.json").read_text())
    assert out["hardware"]["mfu"] == 0.45 and list(out["budgets"]) == ["gpt4-estimate"]
    assert out["techniques"]["distill"]["scenarios"]["constant_M"]["gpt4-estimate"] == 1.22


def test_human_output(tmp_path, capsys):
    d = _suite(tmp_path)
    assert main(["extrapolate", str(d), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "distill" in out and "scenario constant_M" in out and "what-if" in out and "no backtest" in out


def test_bad_input_exit_2(tmp_path, capsys):
    assert main(["extrapolate", str(tmp_path / "missing")]) == 2
    assert "no such suite directory" in capsys.readouterr().err
    assert main(["extrapolate", str(tmp_path), "--no-report"]) == 2
    assert "no compare.json" in capsys.readouterr().err
    d = _suite(tmp_path)
    assert main(["extrapolate", str(d), "--gpu", "h900", "--to", "gpt9", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "h900" in err and "gpt9" in err and "Traceback" not in err


def test_rewrites_the_report_by_default(tmp_path, capsys):
    d = _suite(tmp_path)
    assert main(["extrapolate", str(d), "--to", "gpt4-estimate"]) == 0
    html = (d / "report.html").read_text()
    assert "data:image/png;base64," in html and "GPT-4 (est.)" in html


def test_what_if_equals_efflab_cost_at_c_over_m(tmp_path, capsys):
    d = _suite(tmp_path)
    assert (
        main(
            [
                "extrapolate",
                str(d),
                "--gpu",
                "b200",
                "--mfu",
                "0.45",
                "--price",
                "3.5",
                "--no-report",
                "--json",
            ]
        )
        == 0
    )
    res = json.loads(capsys.readouterr().out)
    seen = 0
    for M, row in res["what_if"].items():
        for b, w in row.items():
            C = res["budgets"][b]["flops"]
            assert (
                main(
                    [
                        "cost",
                        "--flops",
                        repr(C / float(M)),
                        "--gpu",
                        "b200",
                        "--mfu",
                        "0.45",
                        "--price",
                        "3.5",
                        "--json",
                    ]
                )
                == 0
            )
            cost = json.loads(capsys.readouterr().out)
            for k in ("gpu_hours", "cost_usd", "energy_mwh"):
                assert w["needed"][k] == cost[k]
            seen += 1
    assert seen == 16
