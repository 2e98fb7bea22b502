"""efflab.extrapolate: extrapolate.json from a compare.json fixture (the efflab.compare/2 contract)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from efflab import extrapolate as X
from efflab.accounting import hardware
from efflab.errors import UserError
from efflab.laws import SCENARIOS

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "compare_quick.json"


@pytest.fixture(scope="module")
def cmp():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def res(cmp):
    return X.extrapolate(cmp)


def test_contract_keys(res, cmp):
    budgets = list(X.DEFAULT_BUDGETS)
    assert list(res["budgets"]) == budgets
    assert set(res["techniques"]) == set(cmp["techniques"])
    for t, e in res["techniques"].items():
        me = e["measured"]
        assert set(me["multiplier"]) == {"value", "lo", "hi"}
        assert me["verdict"] == cmp["techniques"][t]["verdict"]
        assert me["delta_loss"]["value"] == cmp["techniques"][t]["delta_loss"]["value"]
        for a in e["anchored"]:
            assert {"law", "source", "in_range", "multiplier"} <= set(a)
            assert isinstance(a["in_range"], bool)
            assert set(budgets) <= set(a["multiplier"])
        assert set(e["scenarios"]) == set(SCENARIOS)
        for row in e["scenarios"].values():
            assert set(row) == set(budgets)
    assert set(res["what_if"]) == {"1.1", "1.5", "2", "4"}
    for row in res["what_if"].values():
        for b in budgets:
            assert {"gpu_hours", "cost_usd", "energy_mwh"} <= set(row[b])
    json.dumps(res, allow_nan=False)  # no NaN or inf anywhere


def test_measured_decades_to_each_budget(res, cmp):
    d = res["techniques"]["distill"]["measured"]["decades"]
    assert d["gpt4-estimate"] == pytest.approx(math.log10(2.1e25 / cmp["reference"]["flops"]))
    assert 13 < d["gpt4-estimate"] < 14


def test_scenarios_carry_the_measured_value(res):
    e = res["techniques"]["distill"]
    s = e["scenarios"]
    assert all(v == 1.22 for v in s["constant_M"].values())
    # compute-optimal budgets (no published allocation): fraction / effective-N / effective-D ~ M
    for name in ("constant_fraction", "effective_params", "effective_data"):
        assert s[name]["gpt4-estimate"] == pytest.approx(1.22, rel=0.01)
    # GPT-3 was trained at 1.7 tokens per parameter: data, not parameters, was its scarce input
    assert s["effective_data"]["gpt3-175b"] > 1.22 > s["effective_params"]["gpt3-175b"]
    # a constant 0.11-nat gain grows as the frontier flattens, past the law's floor at GPT-4 scale
    assert s["constant_delta_L"]["gpt3-175b"] > 10
    assert s["constant_delta_L"]["gpt4-estimate"] is None
    iv = e["scenario_intervals"]["constant_M"]["gpt4-estimate"]
    assert (iv["lo"], iv["hi"]) == (1.10, 1.35)
    band = e["scenario_band"]["llama-3.1-405b"]
    assert band["lo"] <= 1.22 <= band["hi"]


def test_anchors_by_technique(res):
    t = res["techniques"]
    assert [a["law"] for a in t["moe"]["anchored"]] == ["krajewski2024", "clark2022", "fedus2021"]
    assert all(v is None for a in t["moe"]["anchored"] for v in a["multiplier"].values())
    assert "64 experts" in t["moe"]["anchored"][0]["note"] and "8" in t["moe"]["anchored"][0]["note"]
    assert [a["law"] for a in t["distill"]["anchored"]] == ["busbridge2025"]
    bb = t["distill"]["anchored"][0]
    assert bb["status"] == "verified" and bb["teacher_ratio"] == pytest.approx(400000 / 139584)  # total/total
    for b in X.DEFAULT_BUDGETS:  # the teacher exists: > 1; charging its training too: < 1 (Section 5.3)
        assert bb["multiplier"][b] > 1 > bb["multiplier_total"][b] > 0
    assert bb["in_range"] is False
    assert [a["law"] for a in t["seqlen_warmup"]["anchored"]] == ["li2022"]
    assert t["curriculum"]["anchored"][0]["multiplier"]["gpt4-estimate"] == 1.0  # Wu et al. prior
    syn = t["synthetic"]["anchored"][0]
    assert syn["law"] == "muennighoff2023" and syn["in_range"] is False
    # 50% synthetic seen twice: (0.5 + 0.5 * (1 + R*(1 - e^(-1/R*))) / 2), R* = 15.387
    r = 15.387
    k = 0.5 + 0.5 * (1 + r * (1 - math.exp(-1 / r))) / 2
    assert syn["effective_data_multiplier"] == pytest.approx(k)
    for b in X.DEFAULT_BUDGETS:
        assert syn["multiplier"][b] == pytest.approx(k, rel=0.01)  # ~k at compute-optimal allocation
        assert syn["multiplier"][b] < 1
    spread = t["synthetic"]["anchored_spread"]["gpt4-estimate"]
    assert spread["n_laws"] == 1 and spread["lo"] == spread["hi"]


def test_what_if_equals_efflab_cost_at_c_over_m(res):
    for M_key, row in res["what_if"].items():
        M = float(M_key)
        for b, w in row.items():
            C = res["budgets"][b]["flops"]
            need = hardware.cost(C / M, "h100", mfu=hardware.DEFAULT_MFU, pue=hardware.DEFAULT_PUE)
            full = hardware.cost(C, "h100", mfu=hardware.DEFAULT_MFU, pue=hardware.DEFAULT_PUE)
            assert w["needed"]["gpu_hours"] == need["gpu_hours"]
            assert w["needed"]["cost_usd"] == need["cost_usd"]
            assert w["gpu_hours"] == pytest.approx(full["gpu_hours"] - need["gpu_hours"])
            assert w["cost_usd"] == pytest.approx(full["cost_usd"] - need["cost_usd"])
            assert w["energy_mwh"] == pytest.approx(full["energy_mwh"] - need["energy_mwh"])
            assert w["flops_saved"] == pytest.approx(C * (1 - 1 / M))


def test_unidentifiable_measurement_gets_no_scenarios(cmp):
    c = copy.deepcopy(cmp)
    c["techniques"]["moe"]["multiplier"] = {"value": 1.99e13, "lo": 0.5, "hi": 4e14}
    c["techniques"]["distill"]["multiplier"] = {"value": 1.2, "lo": 0.01, "hi": 40.0}
    c["techniques"]["curriculum"]["multiplier"] = {"value": None, "lo": None, "hi": None}
    r = X.extrapolate(c, to=["gpt4-estimate"])
    for t in ("moe", "distill", "curriculum"):
        me = r["techniques"][t]["measured"]
        assert me["identifiable"] is False and "not identifiable" in me["note"]
        assert r["techniques"][t]["scenarios"] == {}


def test_backtest_only_on_a_long_frontier(cmp, res):
    assert res["backtest"]["available"] is False
    assert "5 budgets" in res["backtest"]["note"] and "1.5 decades" in res["backtest"]["note"]
    c = copy.deepcopy(cmp)
    budgets = [1e15 * 10 ** (i / 2) for i in range(6)]  # 6 budgets over 2.5 decades
    c["frontier"]["budgets"] = budgets
    c["frontier"]["points"] = [
        {"flops": b, "loss": 1.5 + 40 * b**-0.1 * (1 + 0.002 * s), "seed": s} for b in budgets for s in (0, 1)
    ]
    bt = X.extrapolate(c, to=["gpt3-175b"])["backtest"]
    assert bt["available"] is True and bt["loss"]["quantity"] == "loss"
    assert abs(bt["loss"]["rel_error"]) < 0.02


def test_no_path_evaluates_a_fitted_trend_outside_the_measured_range(monkeypatch, cmp):
    # extrapolate never calls the multiplier trend; and the trend itself refuses a frontier budget
    from efflab import scaling

    def boom(*a, **k):
        raise AssertionError("extrapolate must not fit a multiplier trend")

    monkeypatch.setattr(scaling, "fit_multiplier_trend", boom)
    X.extrapolate(cmp)
    monkeypatch.undo()
    trend = scaling.fit_multiplier_trend([1e12, 2e12, 4e12], [1.1, 1.2, 1.25])
    with pytest.raises(scaling.OutsideMeasuredRange, match="refusing"):
        trend.predict(2.1e25)


def test_bad_inputs_in_one_message(cmp):
    with pytest.raises(UserError) as e:
        X.extrapolate(cmp, to=["gpt5"], gpu="h900", mfu=1.5, law="krajewski2024")
    msg = str(e.value)
    for part in ("gpt5", "h900", "--mfu", "dense law"):
        assert part in msg
    with pytest.raises(UserError, match="reference.flops"):
        X.extrapolate({"techniques": {}})


def test_extrapolate_suite_writes_the_file(tmp_path, cmp):
    (tmp_path / "compare.json").write_text(json.dumps(cmp))
    r = X.extrapolate_suite(tmp_path, to=["gpt4-estimate"])
    assert json.loads((tmp_path / "extrapolate.json").read_text())["budgets"] == r["budgets"]
    with pytest.raises(UserError, match="no compare.json"):
        X.extrapolate_suite(tmp_path / "nothing")


def test_runs_on_the_producers_smoke_output(tmp_path):
    # compare.json as `efflab suite configs/suite/smoke.yaml` wrote it (a snapshot of the producer's
    # output): extrapolate and the report both run on it without run directories
    from efflab import report

    src = FIXTURE.parent / "compare_smoke_producer.json"
    (tmp_path / "compare.json").write_text(src.read_text())
    res = X.extrapolate_suite(tmp_path)
    cmp = json.loads(src.read_text())
    assert set(res["techniques"]) == set(cmp["techniques"])
    for t, e in res["techniques"].items():
        assert e["measured"]["multiplier"]["value"] == cmp["techniques"][t]["multiplier"]["value"]
    paths = report.write_report(tmp_path)
    assert "**distill**" in paths["md"].read_text()


def test_suite_file_settings_are_the_defaults(tmp_path, cmp):
    (tmp_path / "compare.json").write_text(json.dumps(cmp))
    (tmp_path / "suite.yaml").write_text(
        "name: q\nextrapolate:\n  to: [gpt3-175b]\n  gpu: b200\n  mfu: 0.5\n"
    )
    r = X.extrapolate_suite(tmp_path)
    assert (
        list(r["budgets"]) == ["gpt3-175b"] and r["hardware"]["gpu"] == "b200" and r["hardware"]["mfu"] == 0.5
    )
    r = X.extrapolate_suite(tmp_path, mfu=0.3)  # an explicit setting wins
    assert r["hardware"]["mfu"] == 0.3 and r["hardware"]["gpu"] == "b200"


def test_krajewski_anchors_a_64_expert_configuration(cmp):
    # at E = 64 with the law's routing (top-k = G) the verified law gives M at every budget: the
    # compute-optimal MoE over the same paper's dense law, > 1 and growing with compute
    c = copy.deepcopy(cmp)
    c["techniques"]["moe"]["config"] = {"experts": 512, "top_k": 8, "granularity": 8}  # E = 512 / 8
    a = X.extrapolate(c, to=["gpt3-175b", "gpt4-estimate"])["techniques"]["moe"]["anchored"][0]
    assert a["law"] == "krajewski2024" and a["status"] == "verified" and a["granularity"] == 8
    m = a["multiplier"]
    assert 1 < m["reference"] < m["gpt3-175b"] < m["gpt4-estimate"] < 100
    assert a["in_range"] is False and not any(a["in_range_by_budget"].values())  # fitted below 4B params
    c["techniques"]["moe"]["config"] = {"experts": 512, "top_k": 2, "granularity": 8}
    a = X.extrapolate(c, to=["gpt3-175b"])["techniques"]["moe"]["anchored"][0]
    assert a["multiplier"]["gpt3-175b"] is None and "top-2" in a["note"]
    c["techniques"]["moe"]["config"] = {"experts": 64, "top_k": 8, "granularity": 8}  # E = 8
    a = X.extrapolate(c, to=["gpt3-175b"])["techniques"]["moe"]["anchored"][0]
    assert a["multiplier"]["gpt3-175b"] is None and "E = 64" in a["note"] and "has 8" in a["note"]
    # the paper's non-embedding counts when the suite has them (compare_suite writes both)
    c["techniques"]["distill"]["config"] = {"teacher_params": 400000, "teacher_non_embedding_params": 393216}
    a = X.extrapolate(c, to=["gpt3-175b"])["techniques"]["distill"]["anchored"][0]
    assert a["teacher_ratio"] == pytest.approx(393216 / 98304)
