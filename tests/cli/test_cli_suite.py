"""`efflab compare`, `efflab extrapolate` and `efflab suite` at the command line: output, --json,
refusals (exit 2, one message, no traceback). Run directories are written by hand here."""

import json
import math

import pytest
import yaml

from efflab.accounting.ledger import Ledger
from efflab.cli import main as cli

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


def test_suite_file_problems_are_reported_together(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "colour": "red",
                "seeds": 1,
                "scales": [{"name": "s1", "model": {"depth": 1}}],  # no budget
                "frontier": {"budgets": [0.5, 1, 2]},  # spans 4x, not 8x
                "techniques": {"moe": {}, "quantum": {"recipe": "quantum"}},
            }
        )
    )
    assert cli(["suite", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    for part in (
        "colour",
        "scales.0.budget_flops",
        "frontier.budgets",
        "at least 8x",
        "techniques.moe.recipe",
        "techniques.quantum.recipe",
    ):
        assert part in err, part
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_suite_run_configs_are_validated_before_anything_trains(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text(
        yaml.safe_dump(
            {
                "name": "bad",
                "shared": {"model": {"depth": 2}, "budget": 4},
                "train": {"lr_typo": 0.1},
                "scales": [{"name": "s1", "model": {"depth": 1}, "budget_flops": 1e9}],
                "techniques": {
                    "curriculum": {"recipe": "curriculum", "config": {"curriculum": {"scorer": "vibes"}}},
                    "distill": {"recipe": "distill", "config": {"distill": {"temprature": 2}}},
                },
            }
        )
    )
    assert cli(["suite", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "s1-curriculum-s0" in err and "scorer" in err
    assert "s1-distill-s0" in err and "temprature" in err
    line = next(x for x in err.splitlines() if "lr_typo" in x)
    assert "train.lr_typo: unknown key" in line and "(every run)" in line and err.count("lr_typo") == 1
    assert not (tmp_path / "out").exists()


def test_every_shipped_suite_file_validates_and_has_the_design():
    from efflab.commands.run import configs_root
    from efflab.suite import load_suite, plan

    seen = 0
    for path in sorted((configs_root() / "suite").glob("*.yaml")):
        sc, _ = load_suite(path)  # every run config it implies is validated too
        assert path.read_text().startswith("#"), path
        tasks = plan(sc, "/tmp/x")
        kinds = {t.kind for t in tasks}
        assert {"sweep", "frontier", "arm", "shared"} <= kinds, path
        arms = {t.arm for t in tasks if t.kind == "arm"}
        assert {"moe", "distill", "curriculum", "synthetic", "aa", "oversized"} <= arms, path
        assert sc.seeds >= 2 and max(sc.frontier.budgets) / min(sc.frontier.budgets) >= 8
        for scale in sc.scales:  # paired seeds: every arm has the baseline's seeds at C_ref
            base = {
                t.seed for t in tasks if t.scale == scale.name and t.kind == "frontier" and t.budget_mult == 1
            }
            for arm in arms:
                assert {
                    t.seed for t in tasks if t.scale == scale.name and t.arm == arm and t.kind == "arm"
                } <= base
        seen += 1
    assert seen >= 3


def test_quick_suite_reference_is_trained_as_the_methodology_asks():
    from efflab.accounting.flops import count_flops
    from efflab.commands.run import configs_root
    from efflab.config import config_from_dict
    from efflab.models import build_model_config
    from efflab.suite import load_suite, plan

    sc, _ = load_suite(configs_root() / "suite" / "quick.yaml")
    ref = next(t for t in plan(sc, "/tmp/x") if t.name == "ref-baseline-f1-s0")
    cfg = config_from_dict(ref.raw, recipe="baseline")
    c = count_flops(build_model_config(cfg, sc.data.vocab_size), sc.data.seq_len)
    non_emb = c.params_active - c.params_embedding
    tokens = sc.scales[0].budget_flops / c.train_flops_per_token
    assert 8e4 <= non_emb <= 1.5e5 and cfg.model.tie_embeddings and cfg.data.seq_len == 128
    assert tokens / non_emb >= 20  # compute-optimal tokens per parameter (Hoffmann et al. 2022)
    assert cfg.train.min_lr_ratio == 0.0  # a completed, fully decayed schedule
    teacher = next(t for t in plan(sc, "/tmp/x") if t.kind == "shared")
    tc = count_flops(build_model_config(config_from_dict(teacher.raw, recipe="baseline"), 512), 128)
    assert 3.5 <= (tc.params_active - tc.params_embedding) / non_emb <= 4.5  # a teacher about 4x the student


def test_help_for_every_command(capsys):
    for cmd in ("suite", "compare", "extrapolate"):
        assert cli([cmd, "--help"]) == 0
        assert "usage: efflab " + cmd in capsys.readouterr().out


def _tiny_suite(tmp_path, **extra):
    f = tmp_path / "tiny.yaml"
    raw = {
        "name": "tiny",
        "seeds": 2,
        "workers": 1,
        "data": {"vocab_size": 512, "seq_len": 64, "max_chars": 3e5},
        "train": {"batch_size": 8, "lr": 3e-3},
        "scales": [{"name": "s1", "model": {"depth": 1}, "budget_flops": 1e8}],
        "lr_sweep": {"enabled": False},
        "controls": {"aa": False, "oversized": {"enabled": False}},
        "techniques": {},
        **extra,
    }
    f.write_text(yaml.safe_dump(raw))
    return f


def test_suite_refuses_a_directory_of_runs_made_with_another_config(tmp_path, capsys):
    from efflab.config import config_from_dict
    from efflab.suite import load_suite, plan

    f = _tiny_suite(tmp_path)
    task = next(t for t in plan(load_suite(f)[0], tmp_path / "out") if t.kind == "frontier")
    old = config_from_dict(task.raw, recipe="baseline").to_dict()
    old["train"]["weight_decay"] = 0.0  # the run directory was made with another setting
    run = tmp_path / "out" / task.dir
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(old))
    assert cli(["suite", str(f), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "another suite config" in err and f"{task.name}: train.weight_decay" in err
    assert not (run / "manifest.json").exists()  # nothing was trained


def test_adaptive_seeds_add_pairs_for_the_arm_and_its_baseline(tmp_path):
    from efflab.suite import load_suite, plan

    f = _tiny_suite(tmp_path, techniques={"curriculum": {"recipe": "curriculum"}})
    sc, _ = load_suite(f)
    base = plan(sc, tmp_path / "out")
    more = plan(sc, tmp_path / "out", extra_seeds={"curriculum": 4})
    seeds = lambda ts, arm, kind: sorted(t.seed for t in ts if t.arm == arm and t.kind == kind)  # noqa: E731
    assert seeds(base, "curriculum", "arm") == [0, 1] and seeds(more, "curriculum", "arm") == [0, 1, 2, 3]
    ref = lambda ts: sorted(t.seed for t in ts if t.kind == "frontier" and t.budget_mult == 1)  # noqa: E731
    assert ref(more) == [0, 1, 2, 3]  # every new pair has its baseline seed
    assert {t.name for t in base} < {t.name for t in more}  # earlier runs keep their names: reused
