"""efflab.estimate: a run's ledger, steps, memory and wall time before it starts (`efflab run --dry-run`)."""

from __future__ import annotations

import json

import pytest

from efflab.accounting import flops as F
from efflab.cli import main
from efflab.commands.run import configs_root
from efflab.estimate import estimate_run, infer_recipe, load_run_config


def test_baseline_estimate_is_the_ledger_the_loop_writes():
    cfg = load_run_config(configs_root() / "baseline" / "tiny.yaml")
    e = estimate_run(cfg)
    t = cfg.train
    assert e["steps"] == int(t.budget_tokens // (t.batch_size * cfg.data.seq_len))
    assert e["tokens"] == e["steps"] * t.batch_size * cfg.data.seq_len
    from efflab.models import build_model_config

    fpt = F.train_flops_per_token(build_model_config(cfg), cfg.data.seq_len)
    assert e["phases"]["train"]["flops"] == pytest.approx(fpt * e["tokens"])
    assert e["marginal_flops"] == e["total_flops"] == e["phases"]["train"]["flops"]  # eval never summed
    assert e["phases"]["eval"]["flops"] > 0
    assert e["phases"]["train"]["executed_flops"] < e["phases"]["train"]["flops"]
    assert e["peak_memory_bytes"]["total"] > e["peak_memory_bytes"]["weights_optimizer"] > 0
    assert e["gpu"]["seconds_total"] == pytest.approx(e["total_flops"] / (989e12 * 0.4))


def test_technique_phases():
    d = estimate_run(("distill", configs_root() / "distill" / "tiny.yaml"))
    assert {"train", "teacher_forward", "sunk.teacher_pretrain"} <= set(d["phases"])
    assert d["total_flops"] == pytest.approx(
        d["marginal_flops"] + d["phases"]["sunk.teacher_pretrain"]["flops"]
    )
    assert d["parts"]["teacher"]["recipe"] == "baseline"
    s = estimate_run(configs_root() / "synthetic" / "small.yaml")  # budget_includes: marginal
    assert s["marginal_flops"] == pytest.approx(s["config"]["train"]["budget_flops"], rel=0.01)
    assert s["phases"]["generation"]["flops"] > 0 and s["phases"]["sunk.teacher_pretrain"]["flops"] > 0


def test_recipe_inferred_from_the_section_or_folder(tmp_path):
    assert infer_recipe({"distill": {}}) == "distill"
    assert infer_recipe({}, tmp_path / "curriculum" / "x.yaml") == "curriculum"
    assert infer_recipe({"recipe": "moe"}) == "moe" and infer_recipe({}) == "baseline"


def test_dry_run_cli_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "run",
            "curriculum",
            "--config",
            "configs/curriculum/tiny.yaml",
            "--dry-run",
            "--no-time",
            "--json",
            "--out",
            str(out),
            "train.steps=7",
        ]
    )
    o = json.loads(capsys.readouterr().out)
    assert rc == 0 and not out.exists()
    assert o["steps"] == 7 and o["recipe"] == "curriculum" and o["model_shape"]["width"] > 0
    assert "executed" in o["convention"]


def test_dry_run_times_a_few_steps_here(capsys):
    rc = main(
        [
            "run",
            "baseline",
            "--config",
            "configs/baseline/tiny.yaml",
            "--dry-run",
            "train.threads=1",
            "--gpu",
            "a100",
            "--mfu",
            "0.5",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0 and "resolved config" in text and "wall time here" in text and "a100 at MFU 0.50" in text
    assert "peak memory" in text


def test_sum_estimates_counts_a_shared_teacher_once():
    d = estimate_run(configs_root() / "distill" / "tiny.yaml")
    b = estimate_run(configs_root() / "baseline" / "tiny.yaml")
    from efflab.estimate import sum_estimates

    s = sum_estimates([d, b, d], sunk_once=[b])
    assert s["marginal_flops"] == pytest.approx(2 * d["marginal_flops"] + b["marginal_flops"])
    assert s["total_flops"] == pytest.approx(s["marginal_flops"] + b["total_flops"])
    assert s["runs"] == 4 and "sunk.teacher_pretrain" not in s["phases"]


def test_reference_scoring_unknown_before_the_data_is_prepared(tmp_path):
    over = ["curriculum.scorer=reference", f"data.cache_dir={tmp_path}"]
    blind = estimate_run(("curriculum", configs_root() / "curriculum" / "tiny.yaml"), overrides=over)
    assert blind["phases"]["scoring"]["flops"] == 0 and "not estimated" in blind["phases"]["scoring"]["note"]
    assert blind["phases"]["sunk.teacher_pretrain"]["flops"] > 0  # the reference the recipe trains first


@pytest.mark.slow  # prepares the corpus (BPE) and times steps: ~10 s idle, 45 s on a loaded 2-core machine
def test_reference_scoring_is_priced_once_the_data_is_prepared(tmp_path):
    over = ["curriculum.scorer=reference", f"data.cache_dir={tmp_path}", "train.threads=1"]
    e = estimate_run(
        ("curriculum", configs_root() / "curriculum" / "tiny.yaml"), overrides=over, measure=True
    )
    sc = e["phases"]["scoring"]
    assert sc["tokens"] > 0 and sc["flops"] > 0 and sc["executed_flops"] < sc["flops"]
    assert e["phases"]["sunk.teacher_pretrain"]["flops"] > 0  # the reference the recipe trains first
    assert e["wall_seconds_here"]["total"] > e["wall_seconds_here"]["marginal"] > 0


def test_every_shipped_run_config_answers_dry_run(capsys):
    paths = sorted(
        p for p in configs_root().glob("*/*.yaml") if p.parent.name not in ("suite", "accelerate", "validate")
    )
    assert len(paths) >= 15
    for path in paths:
        rc = main(["run", path.parent.name, "--config", str(path), "--dry-run", "--no-time", "--json"])
        o = json.loads(capsys.readouterr().out)
        assert rc == 0 and o["steps"] >= 1 and o["marginal_flops"] > 0 and o["recipe"] == path.parent.name, (
            path
        )
