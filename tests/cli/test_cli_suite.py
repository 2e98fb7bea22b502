"""`efflab compare`, `efflab extrapolate` and `efflab suite` at the command line: output, --json,
refusals (exit 2, one message, no traceback). Run directories are written by hand here."""

import json
import math

import pytest
import yaml

from efflab.accounting.ledger import Ledger
from efflab.cli import main as cli
from efflab.scaling import CONSTANT_MULTIPLIER_ASSUMPTION

DATA = {"eval_set_hash": "e" * 32, "tokenizer_hash": "t" * 32, "eval_text_hash": "x" * 32, "seq_len": 64}


def make_run(root, name, technique, budget, shift=1.0, *, data=None, status="complete"):
    """A finished run whose loss at f FLOPs is the baseline's at f / shift (loss linear in log FLOPs)."""
    d = root / name
    d.mkdir(parents=True)
    final = 10 * budget**-0.1
    pts = [(0.0, final + 3.0)] + [
        (budget * 10 ** (-2 + i / 2), final + 0.3 * math.log(100 ** (1 - i / 4) * shift)) for i in range(5)
    ]
    rows = [
        {"step": 10 * i, "eval_loss": y, "eval_bpb": y / 2, "flops": {"train": f, "marginal": f, "total": f}}
        for i, (f, y) in enumerate(pts)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    led = Ledger()
    led.charge("train", budget, 1e4)
    led.save(d / "ledger.json")
    (d / "config.yaml").write_text(yaml.safe_dump({"recipe": technique, "name": name, "train": {"seed": 0}}))
    (d / "manifest.json").write_text(
        json.dumps(
            {
                "status": status,
                "recipe": technique,
                "seed": 0,
                "data": dict(data or DATA),
                "result": {
                    "final_eval_loss": pts[-1][1],
                    "final_eval_bpb": pts[-1][1] / 2,
                    "flops_marginal": budget,
                    "flops_total": budget,
                    "train_tokens": 1e4,
                    "steps": 50,  # the last metrics row
                },
            }
        )
    )
    return d


def test_compare_prints_the_table_and_json(tmp_path, capsys):
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", 1e12)
    t = make_run(tmp_path, "s1-curriculum-s0", "curriculum", 1e12, shift=0.5)
    assert cli(["compare", str(b), str(t)]) == 0
    out = capsys.readouterr().out
    assert "curriculum" in out and "2x" in out and "nats/token" in out
    assert cli(["compare", str(b), str(t), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    v = res["scales"][0]["techniques"]["curriculum"]["views"]["marginal"]
    assert v["M"] == pytest.approx(2.0, rel=1e-6) and v["saving"] == pytest.approx(0.5, rel=1e-6)
    assert res["lifetime"]["scales"][0]["scale"] == "s1"


def test_compare_refuses_another_eval_set(tmp_path, capsys):
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", 1e12)
    t = make_run(tmp_path, "s1-moe-s0", "moe", 1e12, data={**DATA, "eval_set_hash": "0" * 32})
    assert cli(["compare", str(b), str(t)]) == 2
    err = capsys.readouterr().err
    assert "s1-moe-s0" in err and "another eval set" in err and "Traceback" not in err


def test_compare_refuses_incomplete_runs_and_bad_flags_in_one_message(tmp_path, capsys):
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", 1e12)
    r = make_run(tmp_path, "s1-distill-s0", "distill", 1e12, status="running")
    assert cli(["compare", str(b), str(r), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "s1-distill-s0" in err and "incomplete" in err and "nope" in err
    assert cli(["compare", str(b), "--serve-tokens", "lots"]) == 2
    assert "lots" in capsys.readouterr().err


def _suite_dir(tmp_path, n_scales):
    """A suite directory as `efflab suite` leaves it (suite.yaml, suite.json, runs/), with M = 2."""
    sdir = tmp_path / "suite"
    entries, scales = [], []
    for i in range(n_scales):
        s, budget = f"s{i + 1}", 1e12 * 4**i
        scales.append({"name": s, "model": {"depth": i + 1}, "budget_flops": budget})
        for tech, shift in (("baseline", 1.0), ("curriculum", 0.5)):
            name = f"{s}-{tech}-s0"
            make_run(sdir / "runs", name, tech, budget, shift)
            entries.append(
                {
                    "name": name,
                    "scale": s,
                    "technique": tech,
                    "seed": 0,
                    "dir": f"runs/{name}",
                    "state": "complete",
                    "seconds": 1.0,
                }
            )
    (sdir / "suite.yaml").write_text(
        yaml.safe_dump({"name": "t", "scales": scales, "bootstrap": 20, "techniques": {"curriculum": {}}})
    )
    (sdir / "suite.json").write_text(json.dumps({"name": "t", "runs": entries, "not_available": {}}))
    return sdir


def test_extrapolate_two_scales_states_the_constant_multiplier(tmp_path, capsys):
    sdir = _suite_dir(tmp_path, 2)
    assert cli(["extrapolate", str(sdir), "--to", "gpt4-estimate", "--mfu", "0.45", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert CONSTANT_MULTIPLIER_ASSUMPTION in res["assumptions"][0] and res["mfu"] == 0.45
    row = res["techniques"][0]["views"]["marginal"]["frontier"][0]
    assert row["preset"] == "gpt4-estimate" and row["M"]["value"] == pytest.approx(2.0, rel=1e-6)
    assert row["saved"]["value"]["cost_usd"] > 0
    assert (sdir / "report.md").is_file() and (sdir / "report.html").is_file()
    assert cli(["extrapolate", str(sdir), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert CONSTANT_MULTIPLIER_ASSUMPTION in out and "GPT-4" in out


def test_extrapolate_refuses_what_is_not_a_suite_and_bad_settings(tmp_path, capsys):
    assert cli(["extrapolate", str(tmp_path)]) == 2
    assert "not a suite directory" in capsys.readouterr().err
    sdir = _suite_dir(tmp_path, 2)
    assert cli(["extrapolate", str(sdir), "--gpu", "h900", "--to", "gpt9", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "h900" in err and "gpt9" in err and "Traceback" not in err


def test_suite_file_problems_are_reported_together(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "colour": "red",
                "scales": [
                    {"name": "s1", "model": {"depth": 1}},  # no budget
                    {"name": "s2", "model": {"depth": 1}, "budget_flops": 1e9, "budget_tokens": 1e5},
                ],
                "techniques": {"moe": {}, "quantum": {}},
            }
        )
    )
    assert cli(["suite", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    for part in ("colour", "scales.0", "scales.1", "exactly one of budget_flops"):
        assert part in err, part
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_suite_run_configs_are_validated_before_anything_trains(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "shared": {"model": {"depth": 2}, "budget_flops": 1e10},
                "train": {"lr_typo": 0.1},
                "scales": [{"name": "s1", "model": {"depth": 1}, "budget_flops": 1e9}],
                "techniques": {
                    "curriculum": {"config": {"curriculum": {"scorer": "vibes"}}},
                    "distill": {"config": {"distill": {"temprature": 2}}},
                },
            }
        )
    )
    assert cli(["suite", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "s1-curriculum-s0" in err and "scorer" in err
    assert "s1-distill-s0" in err and "temprature" in err
    assert "train.lr_typo: unknown key (every run)" in err and err.count("lr_typo") == 1
    assert not (tmp_path / "out").exists()


def test_every_shipped_suite_file_validates():
    from efflab.commands.run import configs_root
    from efflab.suite import load_suite, plan

    seen = 0
    for path in sorted((configs_root() / "suite").glob("*.yaml")):
        sc, _ = load_suite(path)  # every run config it implies is validated too
        assert path.read_text().startswith("#") and len(sc.scales) >= 3, path
        assert {p["technique"] for p in plan(sc, "/tmp/x")} == {
            "baseline",
            "moe",
            "distill",
            "curriculum",
            "synthetic",
        }
        seen += 1
    assert seen >= 3


def test_help_for_every_command(capsys):
    for cmd in ("suite", "compare", "extrapolate"):
        assert cli([cmd, "--help"]) == 0
        assert "usage: efflab " + cmd in capsys.readouterr().out


def _tiny_suite(tmp_path, **extra):
    f = tmp_path / "tiny.yaml"
    raw = {
        "name": "tiny",
        "data": {"vocab_size": 512, "seq_len": 64, "max_chars": 3e5},
        "train": {"batch_size": 8, "lr": 3e-3},
        "scales": [{"name": "s1", "model": {"depth": 1}, "steps": 5}],
        "techniques": {},
        **extra,
    }
    f.write_text(yaml.safe_dump(raw))
    return f


def test_suite_refuses_a_directory_of_runs_made_with_another_config(tmp_path, capsys):
    from efflab.config import config_from_dict
    from efflab.suite import load_suite, plan

    f = _tiny_suite(tmp_path)
    spec = plan(load_suite(f)[0], tmp_path / "out")[0]
    old = config_from_dict(spec["raw"], recipe="baseline").to_dict()
    old["train"]["lr"] = 1e-3  # the run directory was made with another learning rate
    run = tmp_path / "out" / "runs" / spec["name"]
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    assert cli(["suite", str(f), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "another suite config" in err and "s1-baseline-s0: train.lr" in err
    assert not (run / "manifest.json").exists()  # nothing was trained


def test_a_technique_whose_recipe_is_missing_is_skipped_and_said(tmp_path, monkeypatch):
    import efflab.suite as S

    real = S.recipe_available
    monkeypatch.setattr(
        S,
        "recipe_available",
        lambda t: "not available: the moe recipe is not in this installation yet" if t == "moe" else real(t),
    )
    # an invalid moe section is not reported: the technique is skipped, not validated
    f = _tiny_suite(
        tmp_path, techniques={"moe": {"config": {"moe": {"n_experts": "many"}}}, "curriculum": {}}
    )
    sc, _ = S.load_suite(f)
    runs = {r["name"]: r for r in S.plan(sc, tmp_path / "out")}
    assert runs["s1-moe-s0"]["unavailable"].startswith("not available")
    assert runs["s1-curriculum-s0"]["unavailable"] is None and runs["s1-baseline-s0"]["unavailable"] is None
