"""`efflab validate`: every case config validates; the pass/fail logic passes a case built to pass and fails
one built to fail, on synthetic compare.json documents and on synthetic run directories read by the suite's
own compare (efflab.compare_suite)."""

import json
import math
import zlib

import numpy as np
import pytest
import yaml

from efflab import validate as VA
from efflab.cli import main as cli
from efflab.suite import load_suite, plan


# =============================================================================================
# the shipped case configs
# =============================================================================================
@pytest.mark.parametrize("gpu", [False, True])
def test_every_case_config_validates_and_plans(gpu):
    res = VA.plan_cases(VA.CASES, gpu=gpu)  # load_suite validates every run config it implies
    assert {k for r in res["suites"] for k in r["cases"]} == set("ABCDEF")
    assert len(res["suites"]) == 5 and res["flops"] > 0
    for r in res["suites"]:
        text = open(r["config"], encoding="utf-8").read()
        assert text.startswith("# Validation case"), r["config"]
        assert "arXiv:" in text and "Run:" in text
    if not gpu:  # the CPU set stays within its budget (issue: all CPU cases <= 30 min on 2 idle cores)
        assert res["minutes_estimate"] <= 20


def _tpp(sc, scale):
    from efflab.accounting.flops import count_flops
    from efflab.config import config_from_dict
    from efflab.models import build_model_config

    t = next(t for t in plan(sc, "/tmp/x") if t.scale == scale.name and t.kind == "frontier")
    c = count_flops(
        build_model_config(config_from_dict(t.raw, recipe="baseline"), sc.data.vocab_size), sc.data.seq_len
    )
    return scale.budget_flops / c.train_flops_per_token / (c.params_active - c.params_embedding)


def test_case_designs_match_what_they_claim():
    sc, _ = load_suite(VA.config_path(VA.BY_KEY["B"]))
    long, short = sc.scales
    assert long.model == short.model and 19 <= _tpp(sc, long) <= 22 and 1.9 <= _tpp(sc, short) <= 2.2

    sc, _ = load_suite(VA.config_path(VA.BY_KEY["C"]))
    tasks = plan(sc, "/tmp/x")
    teachers = [t for t in tasks if t.kind == "shared"]
    assert len(teachers) == 1 and teachers[0].cost == 4 * sc.scales[0].budget_flops  # one teacher, shared
    large, small = sc.scales
    assert large.budget_flops / small.budget_flops == pytest.approx(8, rel=0.01)
    assert {t.deps[0] for t in tasks if t.arm == "distill" and t.kind == "arm"} == {teachers[0].name}

    sc, _ = load_suite(VA.config_path(VA.BY_KEY["D"]))
    lr = {t.arm: t.raw["train"]["lr"] for t in plan(sc, "/tmp/x") if t.kind in ("arm", "frontier")}
    assert lr["seqlen_warmup_4x"] == lr["baseline_4x"] == pytest.approx(4 * lr["baseline"])
    assert lr["seqlen_warmup"] == lr["baseline"] and not sc.lr_sweep.enabled

    sc, _ = load_suite(VA.config_path(VA.BY_KEY["E"]))
    assert sc.techniques["random_pacing"].control_of == "curriculum"
    assert sc.techniques["anti_curriculum"].config["curriculum"]["order"] == "hard_first"

    sc, _ = load_suite(VA.config_path(VA.BY_KEY["A"]))
    assert sc.controls.aa and sc.controls.oversized.enabled


def test_shared_scale_must_name_a_scale(tmp_path):
    from efflab.errors import UserError

    raw = yaml.safe_load(VA.config_path(VA.BY_KEY["C"]).read_text())
    raw["shared"]["scale"] = "nope"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="shared.scale: 'nope' is not a scale"):
        load_suite(f)


def test_cli_plan_and_bad_input_in_one_message(capsys):
    assert cli(["validate", "--plan", "--only", "D"]) == 0
    out = capsys.readouterr().out
    assert "seqlen_warmup.yaml" in out and "14 runs" in out and "curriculum_null" not in out
    assert cli(["validate", "--only", "Z,b", "--workers", "0", "--controls-from", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "'Z': no such case" in err and "--workers must be >= 1" in err and "--controls-from" in err
    assert "Traceback" not in err


# =============================================================================================
# pass / fail on synthetic compare.json documents
# =============================================================================================
def iv(v, lo, hi):
    return {"value": v, "lo": lo, "hi": hi}


def scale_doc(techniques=None, controls=None, df=6.0):
    return {"techniques": techniques or {}, "controls": controls or {}, "noise": {"df": df}, "level": 0.9}


def two_scales(a: str, b: str, ra: dict, rb: dict, arm: str) -> dict:
    doc = {
        **scale_doc({arm: ra}),
        "reference_scale": a,
        "scales": {a: scale_doc({arm: ra}), b: scale_doc({arm: rb})},
    }
    return doc


def frontier_doc(c_ref=1e12, noise=(0.004, -0.006, 0.002)):
    """compare.json's reference and frontier for the baseline frontier_loss (three seeds at C_ref)."""
    pts = [
        {
            "flops": m * c_ref,
            "loss": frontier_loss(m * c_ref, c_ref) + (noise[s] if m == 1 else 0.0),
            "seed": s,
            "run": f"ref-baseline-f{m:g}-s{s}",
        }
        for m in (0.25, 1, 2)
        for s in (range(3) if m == 1 else [0])
    ]
    return {"reference": {"flops": c_ref}, "frontier": {"points": pts}}


def test_a_and_f_pass_and_fail():
    ok = {
        **frontier_doc(),
        "controls": {
            "aa": {"multiplier": iv(1.01, 0.95, 1.07)},
            "oversized": {
                "multiplier": iv(0.55, 0.5, 0.61),
                "predicted": {"lo": 0.53, "hi": 0.58},
                "size_ratio": 4.0,
            },
        },
    }
    assert VA.eval_aa(ok)["status"] == "pass" and VA.eval_oversized(ok)["status"] == "pass"
    bad = {
        **frontier_doc(),
        "controls": {
            "aa": {"multiplier": iv(1.2, 1.1, 1.3)},
            "oversized": {
                "multiplier": iv(0.9, 0.8, 1.02),
                "predicted": {"lo": 0.53, "hi": 0.58},
                "size_ratio": 4.0,
            },
        },
    }
    assert VA.eval_aa(bad)["status"] == "fail" and VA.eval_oversized(bad)["status"] == "fail"
    off = {
        "controls": {"oversized": {"multiplier": iv(0.85, 0.8, 0.9), "predicted": {"lo": 0.53, "hi": 0.58}}}
    }
    r = VA.eval_oversized(off)  # detected, but far from the prediction
    assert r["status"] == "fail" and [c["ok"] for c in r["checks"]] == [True, False]
    res = [{"key": "A", "if_fails": "x", **r}]
    VA.readings(res)
    assert res[0]["reading"].startswith("the regime")
    assert VA.eval_aa({})["status"] == "not measured"
    no_frontier = VA.eval_aa({"controls": ok["controls"]})  # the identity needs the frontier's points
    assert no_frontier["status"] == "not measured" and no_frontier["checks"][1]["ok"] is None


def test_the_ledger_identity_gives_k_exactly_and_catches_a_wrong_k(monkeypatch):
    doc = frontier_doc()
    assert VA.ledger_identity(doc, 2.0) == pytest.approx(2.0, rel=1e-12)
    assert VA.ledger_identity(doc, 3.0) == pytest.approx(3.0, rel=1e-12)
    real = VA.V.compare_arms

    def off_by_ten_percent(fr, base, arms, **kw):  # an M machinery that is wrong: the identity fails
        out = real(fr, base, arms, **kw)
        for row in out["arms"].values():
            row["multiplier"] = {k: v * 1.1 for k, v in row["multiplier"].items()}
        return out

    monkeypatch.setattr(VA.V, "compare_arms", off_by_ten_percent)
    ok = {**doc, "controls": {"aa": {"multiplier": iv(1.0, 0.95, 1.05)}}}
    r = VA.eval_aa(ok)
    assert r["status"] == "fail" and [c["ok"] for c in r["checks"]] == [True, False]


def test_b_moe_gap_narrowing_passes_and_widening_fails():
    narrows = two_scales(
        "long", "short", {"delta_loss": iv(0.01, -0.01, 0.03)}, {"delta_loss": iv(0.15, 0.13, 0.17)}, "moe"
    )
    r = VA.eval_moe_length(narrows)
    assert r["status"] == "pass" and r["interval"]["hi"] < 0
    assert r["interval"]["value"] == pytest.approx(-0.14)
    widens = two_scales(
        "long", "short", {"delta_loss": iv(0.15, 0.13, 0.17)}, {"delta_loss": iv(0.01, -0.01, 0.03)}, "moe"
    )
    assert VA.eval_moe_length(widens)["status"] == "fail"
    noisy = two_scales(
        "long", "short", {"delta_loss": iv(0.05, -0.1, 0.2)}, {"delta_loss": iv(0.1, -0.05, 0.25)}, "moe"
    )
    r = VA.eval_moe_length(noisy)
    assert r["status"] == "fail" and "power" in r["hint"]
    assert VA.eval_moe_length(scale_doc())["status"] == "not measured"


def test_diff_interval_against_a_hand_computation():
    from scipy.stats import t

    a = VA.estimate(iv(0.1, 0.1 - t.ppf(0.95, 4) * 0.02, 0.1 + t.ppf(0.95, 4) * 0.02), 4, 0.9)
    assert a == pytest.approx((0.1, 0.02, 4))
    d = VA.diff_interval((0.1, 0.02, 4), (0.3, 0.02, 4), 0.9)
    se = math.sqrt(2) * 0.02  # equal variances and df: Welch df = 8
    assert d["df"] == pytest.approx(8) and d["hi"] == pytest.approx(-0.2 + t.ppf(0.95, 8) * se)


def _distill_row(m, k1):
    return {"multiplier": m, "views": {"marginal": m, "total_k1": k1}}


def test_c_distillation_crossover_passes_and_fails():
    good = two_scales(
        "large",
        "small",
        _distill_row(iv(0.9, 0.85, 0.95), iv(0.2, 0.18, 0.22)),
        _distill_row(iv(1.6, 1.4, 1.8), iv(0.6, 0.5, 0.7)),
        "distill",
    )
    r = VA.eval_distill(good)
    assert r["status"] == "pass", r["checks"]
    assert r["interval"]["value"] == pytest.approx(0.9 / 1.6)
    flat = two_scales(
        "large",
        "small",
        _distill_row(iv(1.6, 1.4, 1.8), iv(0.3, 0.25, 0.35)),
        _distill_row(iv(1.6, 1.4, 1.8), iv(0.6, 0.5, 0.7)),
        "distill",
    )
    r = VA.eval_distill(flat)
    assert r["status"] == "fail" and [c["ok"] for c in r["checks"]] == [True, False, True, True]
    assert "power" in r["hint"]
    k1_above = two_scales(
        "large",
        "small",
        _distill_row(iv(0.9, 0.85, 0.95), iv(0.2, 0.18, 0.22)),
        _distill_row(iv(1.6, 1.4, 1.8), iv(1.2, 1.05, 1.3)),
        "distill",
    )
    assert VA.eval_distill(k1_above)["checks"][2]["ok"] is False


def test_d_seqlen_warmup_passes_and_fails():
    def doc(dlb, dl4, m1):
        return scale_doc(
            {
                "seqlen_warmup": {"multiplier": m1, "delta_loss": iv(0, -0.01, 0.01)},
                "seqlen_warmup_4x": {"delta_loss": dl4, "multiplier": iv(1, 0.9, 1.1)},
                "baseline_4x": {"delta_loss": dlb, "multiplier": iv(0.5, 0.4, 0.6)},
            }
        )

    assert VA.eval_seqlen(doc(iv(0.2, 0.1, 0.3), iv(0.0, -0.02, 0.02), iv(1.0, 0.9, 1.1)))["status"] == "pass"
    both_bad = VA.eval_seqlen(doc(iv(0.2, 0.1, 0.3), iv(0.2, 0.1, 0.3), iv(1.0, 0.9, 1.1)))
    assert both_bad["status"] == "fail" and [c["ok"] for c in both_bad["checks"]] == [True, False, True]
    stable = VA.eval_seqlen(doc(iv(0.0, -0.02, 0.02), iv(0.0, -0.02, 0.02), iv(1.0, 0.9, 1.1)))
    assert [c["ok"] for c in stable["checks"]] == [False, True, True]  # 4x not aggressive: regime
    costs = VA.eval_seqlen(doc(iv(0.2, 0.1, 0.3), iv(0.0, -0.02, 0.02), iv(0.7, 0.6, 0.8)))
    assert costs["status"] == "fail"


def test_e_curriculum_null_passes_when_ordering_equals_random_and_fails_otherwise():
    def doc(m):
        return scale_doc(
            {
                "curriculum": {
                    "multiplier": iv(1, 0.9, 1.1),
                    "vs_control": {"control": "random_pacing", "n_pairs": 3, "multiplier": m},
                    "log_ratios": [0.0, 0.1, -0.1],
                },
                "random_pacing": {"log_ratios": [0.0, 0.05, -0.05]},
                "anti_curriculum": {"log_ratios": [0.1, 0.2, 0.0]},
            }
        )

    r = VA.eval_curriculum(doc(iv(1.02, 0.9, 1.15)))
    assert r["status"] == "pass" and r["anti_vs_random"]["n_pairs"] == 3
    assert r["anti_vs_random"]["value"] == pytest.approx(math.exp(np.mean([0.1, 0.15, 0.05])))
    assert VA.eval_curriculum(doc(iv(1.5, 1.2, 1.8)))["status"] == "fail"
    assert VA.eval_curriculum(scale_doc())["status"] == "not measured"


def test_readings_follow_the_controls():
    res = [
        {"key": "A", "status": "pass", "if_fails": "x"},
        {"key": "F", "status": "pass", "if_fails": "x"},
        {"key": "B", "status": "fail", "if_fails": "the regime", "hint": None},
    ]
    VA.readings(res)
    assert "tool is cleared" in res[2]["reading"] and "regime or the published claim" in res[2]["reading"]
    res[0]["status"] = "fail"
    VA.readings(res)
    assert "not cleared" in res[2]["reading"] and res[0]["reading"].startswith("the tool")


# =============================================================================================
# pass / fail on synthetic run directories, read by the suite's own compare
# =============================================================================================
def write_runs(sdir, sc, loss_of):
    """Complete run directories for every frontier and arm run of `sc`, loss_of(task) -> final loss."""
    from efflab.accounting.ledger import Ledger
    from efflab.config import config_from_dict
    from efflab.models import build_model_config

    for t in plan(sc, sdir):
        if t.kind not in ("frontier", "arm"):
            continue
        d = sdir / t.dir
        (d / "model").mkdir(parents=True)
        cfg = config_from_dict({k: t.raw[k] for k in ("model", "data", "train")}, recipe="baseline")
        build_model_config(cfg, sc.data.vocab_size).to_json_file(str(d / "model" / "config.json"))
        (d / "config.yaml").write_text(yaml.safe_dump(t.raw))
        led = Ledger()
        led.charge("train", t.cost, t.cost / 1e6, t.cost / 1e10)
        led.save(d / "ledger.json")
        final = loss_of(t)  # a sound run: its last metrics row is the final eval, matching the ledger
        row = {
            "step": 10,
            "tokens": t.cost / 1e6,
            "eval_loss": final,
            "flops": {"train": t.cost, "marginal": t.cost, "total": t.cost},
        }
        (d / "metrics.jsonl").write_text(json.dumps(row) + "\n")
        (d / "manifest.json").write_text(
            json.dumps(
                {
                    "status": "complete",
                    "recipe": t.recipe,
                    "data": {
                        "eval_set_hash": "e" * 32,
                        "seq_len": sc.data.seq_len,
                        "vocab_size": sc.data.vocab_size,
                    },
                    "result": {"final_eval_loss": final, "steps": 10},
                }
            )
        )


def frontier_loss(c, c_ref):
    return 2.0 + 1.5 * (c / c_ref) ** -0.3


def test_curriculum_case_from_synthetic_run_directories(tmp_path):
    from efflab.compare_suite import compare_suite

    sc, _ = load_suite(VA.config_path(VA.BY_KEY["E"]))
    c_ref = sc.scales[0].budget_flops
    seed_noise = {0: 0.004, 1: -0.006, 2: 0.002}

    def world(m_order):
        def loss(t):  # an arm with multiplier M reaches the frontier's loss at M x its compute
            m = {"curriculum": m_order}.get(t.arm, 1.0)
            own = 0.001 * ((zlib.crc32(f"{t.arm}{t.seed}".encode()) % 7) - 3)
            return frontier_loss(m * t.cost, c_ref) + seed_noise[t.seed] + own

        return loss

    for name, m, want in (("null", 1.0, "pass"), ("ordering_matters", 1.6, "fail")):
        sdir = tmp_path / name
        write_runs(sdir, sc, world(m))
        doc = compare_suite(sdir, sc, tasks=plan(sc, sdir))
        assert doc["techniques"]["curriculum"]["vs_control"]["n_pairs"] == 3
        r = VA.eval_curriculum(doc)
        assert r["status"] == want, (name, r["measured"])


def test_validate_table_from_synthetic_run_directories(tmp_path, capsys):
    """F (built to pass: A/A identical in distribution) and A (built to fail: an 'oversized' arm that costs
    nothing) from run directories; the table says which, and the other cases are 'not run'."""
    from efflab.suite import analyse_suite

    sc, raw = load_suite(VA.config_path(VA.BY_KEY["A"]))
    c_ref = sc.scales[0].budget_flops
    noise = {0: 0.004, 1: -0.006, 2: 0.002}
    sdir = tmp_path / "out" / "controls"
    write_runs(
        sdir,
        sc,
        lambda t: (
            frontier_loss(t.cost, c_ref)
            + noise[t.seed]
            + {"aa": 0.001, "oversized": -0.001}.get(t.arm, 0.0) * (t.seed - 1)
        ),
    )
    (sdir / "suite.yaml").write_text(yaml.safe_dump(raw))
    (sdir / "suite.json").write_text(
        json.dumps({"runs": [], "invocations": [{"seconds": 61.0, "trained": 17}]})
    )
    (sdir / "compare.json").write_text(
        json.dumps(analyse_suite(sdir, sc, state={}, log=lambda *a: None)["compare"])
    )
    assert cli(["validate", "--table-only", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    doc = json.loads((tmp_path / "out" / "validation.json").read_text())
    st = {c["key"]: c["status"] for c in doc["cases"]}
    assert st == {"A": "fail", "F": "pass", "B": "not run", "C": "not run", "D": "not run", "E": "not run"}
    assert (
        doc["counts"] == {"pass": 1, "fail": 1, "not measured": 0, "not run": 4}
        and doc["seconds_total"] == 61
    )
    a = next(c for c in doc["cases"] if c["key"] == "A")
    assert a["reading"].startswith("the tool") and a["citation"].startswith("Hoffmann et al. 2022")
    f = next(c for c in doc["cases"] if c["key"] == "F")
    assert f["ledger_identity"] == pytest.approx(2.0, rel=1e-12)
    md = (tmp_path / "out" / "validation.md").read_text()
    assert (
        "| F A/A control and ledger identity |" in md and "**fail**" in md and "1.0 min" in md and md in out
    )


# =============================================================================================
# end to end at smoke size (slow: trains)
# =============================================================================================
def shrink(raw: dict) -> dict:
    """A case config at the smoke suite's size (configs/suite/smoke.yaml): plumbing only, no evidence."""
    raw = dict(raw, workers=1, evals_per_run=2, checkpoints_per_run=0)
    raw["data"] = {
        "corpus": "stdlib",
        "max_chars": 3.0e5,
        "vocab_size": 512,
        "seq_len": 32,
        "valid_fraction": 0.05,
    }
    raw["train"] = {**raw["train"], "batch_size": 8}
    raw["eval"] = {"max_blocks": 8, "batch_size": 8}
    small, big = (
        {"depth": 1, "aspect": 16, "head_dim": 8, "tie_embeddings": True},
        {"depth": 1, "aspect": 32, "head_dim": 8, "tie_embeddings": True},
    )
    c0 = float(raw["scales"][0]["budget_flops"])  # YAML reads 2.21e12 (no dot) as a string
    for s in raw["scales"]:
        s["model"], s["budget_flops"] = small, 1.2e9 * float(s["budget_flops"]) / c0
    if raw.get("shared"):
        raw["shared"]["model"] = big
    if raw.get("lr_sweep", {}).get("enabled", True):
        raw["lr_sweep"] = {"factors": [1, 2], "budget": 0.25}
    for t in (raw.get("techniques") or {}).values():
        cur = (t.get("config") or {}).get("curriculum") or {}
        if "seq_len_start" in cur:
            cur["seq_len_start"] = 8
    return raw


@pytest.mark.slow
@pytest.mark.parametrize("key", ["C", "D"])
def test_a_case_end_to_end_at_smoke_size(key, tmp_path, cache_dir, monkeypatch):
    case = VA.BY_KEY[key]
    cfg_dir = tmp_path / "cfg"
    cfg_dir.mkdir()
    raw = shrink(yaml.safe_load(VA.config_path(case).read_text()))
    (cfg_dir / f"{case.config}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(VA, "config_dir", lambda gpu=False: cfg_dir)
    out = tmp_path / "out"
    assert cli(["validate", "--only", key, "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "validation.json").read_text())
    row = next(c for c in doc["cases"] if c["key"] == key)
    assert row["status"] in ("pass", "fail"), row  # measured either way: the plumbing works
    assert all(c["ok"] is not None for c in row["checks"]) and row["timing"]["trained"] > 0
    state = json.loads((out / case.config / "suite.json").read_text())
    assert not state["failed"]
    if key == "C":  # one teacher, shared by both scales
        assert [p.name for p in (out / case.config / "shared").iterdir()] == ["large-teacher"]
