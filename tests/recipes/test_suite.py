"""The smoke suite end to end, in-process: interrupted after a few runs, continued, then rerun with no
new training; one shared teacher; compare / extrapolate / report written from the runs.

Slow (about 2-4 minutes on 2 busy cores): the whole main job on models of a few thousand parameters.
"""

import json
from pathlib import Path

import pytest

from efflab.accounting.ledger import Ledger
from efflab.io import read_json

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "src/efflab/configs/suite/smoke.yaml"
OVERRIDES = ["log.progress=false"]


@pytest.mark.slow
def test_smoke_suite_interrupted_continued_and_rerun_without_training(tmp_path, cache_dir, monkeypatch):
    import efflab.commands.run as run_cmd
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

    # ---- 1. interrupted: the shared teacher and two runs are finished -------------------------
    monkeypatch.setattr(run_cmd, "run_recipe", interrupted_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_suite(SMOKE, out=out, overrides=OVERRIDES, progress=False, log=lines.append)
    st = read_json(out / "suite.json")
    assert st["status"] == "interrupted"
    done = [e["name"] for e in st["runs"] if e["state"] == "complete"]
    assert st["shared"]["state"] == "complete" and len(done) == 2
    assert any("again to continue" in x for x in lines)

    # ---- 2. continued: the finished runs are reused, the rest trained, then the report ---------
    monkeypatch.setattr(run_cmd, "run_recipe", real)
    st = run_suite(SMOKE, out=out, overrides=OVERRIDES, progress=False, log=lines.append)
    sc, _ = load_suite(SMOKE, OVERRIDES)
    planned = plan(sc, out)
    available = [p for p in planned if not p["unavailable"]]
    assert len(sc.scales) >= 3 and {p["technique"] for p in planned} == {
        "baseline",
        "moe",
        "distill",
        "curriculum",
        "synthetic",
    }
    inv = st["invocations"][-1]
    assert inv["reused"] == 3 and inv["trained"] + inv["resumed"] == len(available) - 2, inv
    assert st["status"] == "complete" and not st["failed"]
    by_name = {e["name"]: e for e in st["runs"]}
    for p in planned:  # every run is finished, or its technique is reported as not available
        assert by_name[p["name"]]["state"] == ("not available" if p["unavailable"] else "complete")

    # one teacher, trained once, charged in full to every run that used it
    teacher = Ledger.load(out / "shared/teacher/ledger.json").total
    users = [p for p in available if p["technique"] in ("distill", "synthetic")]
    assert users
    for p in users:
        led = Ledger.load(out / "runs" / p["name"] / "ledger.json")
        assert led.flops("sunk.teacher_pretrain") == pytest.approx(teacher, rel=1e-9)
    assert not [
        d for d in out.rglob("*") if d.is_dir() and ("generator" in d.name or d.name.endswith("-teacher"))
    ]

    comp = json.loads((out / "compare.json").read_text())
    assert [s["scale"] for s in comp["scales"]] == [s.name for s in sc.scales]
    for s in comp["scales"]:
        assert set(s["techniques"]) == {p["technique"] for p in available if p["scale"] == s["scale"]}
        assert s["target"] == pytest.approx(s["baseline"]["final"])
    ex = json.loads((out / "extrapolate.json").read_text())
    assert ex["backtest"]["held_out_scale"] == sc.scales[-1].name
    assert {b["name"] for b in ex["budgets"]} == {
        "gpt3-175b",
        "gpt4-estimate",
        "llama-3.1-405b",
        "frontier-2026",
    }
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "## Headline" in md and "src='data:image/png;base64," in html
    for tech, why in st["not_available"].items():
        assert f"**{tech}: {why}.**" in md

    # ---- 3. rerun: nothing is trained again, no metrics are rewritten ---------------------------
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.jsonl")}
    assert len(stamps) == len(available) + 1
    st = run_suite(SMOKE, out=out, overrides=OVERRIDES, progress=False, log=lines.append)
    inv = st["invocations"][-1]
    assert inv["trained"] == 0 and inv["resumed"] == 0 and inv["reused"] == len(available) + 1
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.jsonl")} == stamps
