"""The smoke suite end to end, in-process: interrupted after a few runs, continued, then rerun with no
new training; compare.json carries every key of its contract (the report and extrapolate read it).

About a minute on 2 cores: the whole main job (sweeps, teacher, frontier, paired arms, controls) on
models of a few thousand parameters.
"""

from pathlib import Path

import pytest

from efflab.io import read_json

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "src/efflab/configs/suite/smoke.yaml"

INTERVAL = {"value", "lo", "hi"}


def _check_contract(doc: dict, techniques: set[str]) -> None:
    assert {"flops", "params", "non_embedding_params", "tokens", "tokens_per_param"} <= set(doc["reference"])
    assert {"budgets", "seeds"} <= set(doc["frontier"]) and len(doc["frontier"]["budgets"]) >= 4
    assert max(doc["frontier"]["budgets"]) / min(doc["frontier"]["budgets"]) >= 8
    assert doc["noise"]["sigma_loss"] > 0
    for c in ("aa", "oversized"):
        row = doc["controls"][c]
        assert set(row["multiplier"]) == INTERVAL and set(row["delta_loss"]) == INTERVAL
    assert {"lo", "hi"} <= set(doc["controls"]["oversized"]["predicted"])
    assert set(doc["techniques"]) == techniques
    for t, row in doc["techniques"].items():
        for key in (
            "multiplier",
            "delta_loss",
            "n_pairs",
            "verdict",
            "detectable_multiplier",
            "p_holm",
            "wallclock_multiplier",
            "views",
        ):
            assert key in row, (t, key)
        assert set(row["multiplier"]) == INTERVAL and set(row["delta_loss"]) == INTERVAL
        assert set(row["views"]) == {"marginal", "total_k1", "total_kinf"}
        assert row["verdict"] in ("saves", "costs", "inconclusive")
        assert row["n_pairs"] == 2
        m = row["multiplier"]
        assert m["lo"] <= m["value"] <= m["hi"]
    # a teacher trained for one student costs that student: the total view can only be lower
    for t in ("distill", "synthetic"):
        v = doc["techniques"][t]["views"]
        assert v["total_k1"]["value"] < v["marginal"]["value"]


def test_smoke_suite_interrupted_continued_and_rerun_without_training(tmp_path, cache_dir, monkeypatch):
    import efflab.recipes as run_cmd  # the recipe registry the suite runs through
    from efflab.compare_suite import format_verdicts
    from efflab.suite import load_suite, plan, run_suite

    out = tmp_path / "suite"
    lines = []
    real = run_cmd.run_recipe
    calls = []

    def interrupted_on_the_fourth(recipe, cfg, **kw):  # Ctrl-C while the fourth run starts
        calls.append(cfg.name)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(recipe, cfg, **kw)

    # ---- 1. interrupted: three runs finished (the teacher first) ---------------------------------
    monkeypatch.setattr(run_cmd, "run_recipe", interrupted_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_suite(SMOKE, out=out, progress=False, log=lines.append)
    st = read_json(out / "suite.json")
    assert st["status"] == "interrupted"
    done = [e["name"] for e in st["runs"] if e["state"] == "complete"]
    assert len(done) == 3 and "ref-teacher" in done
    assert any("again to continue" in x for x in lines)

    # ---- 2. continued: the finished runs are reused, the rest trained, then the verdicts ---------
    monkeypatch.setattr(run_cmd, "run_recipe", real)
    st = run_suite(SMOKE, out=out, progress=False, log=lines.append)
    sc, _ = load_suite(SMOKE)
    tasks = plan(sc, out)
    inv = st["invocations"][-1]
    assert inv["reused"] == 3 and inv["trained"] == len(tasks) - 3 and not st["failed"], (inv, st["failed"])
    doc = read_json(out / "compare.json")
    _check_contract(doc, {"moe", "distill", "curriculum", "random_pacing", "seqlen_warmup", "synthetic"})
    assert doc["techniques"]["curriculum"]["vs_control"]["control"] == "random_pacing"
    # every arm trained at its sweep's learning rate, and the choice is on record
    assert set(st["lr"]) == {
        f"ref/{a}"
        for a in (
            "baseline",
            "moe",
            "distill",
            "curriculum",
            "random_pacing",
            "seqlen_warmup",
            "synthetic",
            "oversized",
        )
    }
    for t in tasks:
        if t.kind == "arm":
            cfg = read_json(out / t.dir / "manifest.json")
            assert cfg["status"] == "complete"
    text = format_verdicts(doc)
    assert "A/A control" in text and "Oversized control" in text and "C_ref" in text

    # ---- 3. rerun: nothing trained ----------------------------------------------------------------
    calls.clear()
    monkeypatch.setattr(run_cmd, "run_recipe", interrupted_on_the_fourth)  # would raise if anything trained
    st = run_suite(SMOKE, out=out, progress=False, log=lines.append)
    assert st["invocations"][-1]["trained"] == 0 and st["invocations"][-1]["reused"] == len(tasks)
    assert not calls
