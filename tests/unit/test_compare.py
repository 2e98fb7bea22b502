"""compare.py: FLOPs-to-target, multipliers in the marginal / total / amortised views, refusals,
lifetime break-even, and the integration with scaling.py (extrapolation, constant-M fallback,
backtest). Run directories are written by hand here, so every expected number is known."""

import json
import math

import pytest
import yaml

from efflab import compare as C
from efflab.accounting.ledger import Ledger
from efflab.errors import UserError

DATA = {"eval_set_hash": "e" * 32, "tokenizer_hash": "t" * 32, "eval_text_hash": "x" * 32, "seq_len": 64}


def make_run(
    root,
    name,
    technique,
    curve,
    *,
    sunk=0.0,
    reuse=0.0,
    upfront=0.0,
    seed=0,
    status="complete",
    data=None,
    model=None,
    bpb_scale=0.5,
):
    """A run directory as loop.train writes it: an eval at step 0, then one per (FLOPs, loss) of `curve`
    (FLOPs spent by the training steps). sunk: teacher pretraining; upfront: generation paid before
    step 0 by this run; reuse: generation paid by another run (recorded, not charged)."""
    d = root / name
    d.mkdir(parents=True)
    pts = [(0.0, curve[0][1] + 1.0)] + list(curve)
    rows = [
        {
            "step": 10 * i,
            "eval_loss": y,
            "eval_bpb": y * bpb_scale,
            "flops": {"train": f, "marginal": f + upfront, "total": f + upfront + sunk},
        }
        for i, (f, y) in enumerate(pts)
    ]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    led = Ledger()
    led.charge("train", curve[-1][0], tokens=1000 * len(curve))
    if upfront:
        led.charge("generation", upfront)
    led.charge("eval", 1e3)
    if sunk:
        led.charge("sunk.teacher_pretrain", sunk, shared=True)
    if reuse:
        led.record_reuse("generation", reuse, source="cache", note="paid by another run")
    led.save(d / "ledger.json")
    cfg = {"recipe": technique, "name": name, "model": model or {"depth": 1}, "train": {"seed": seed}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    man = {
        "status": status,
        "recipe": technique,
        "seed": seed,
        "data": dict(data or DATA),
        "result": {
            "final_eval_loss": curve[-1][1],
            "final_eval_bpb": curve[-1][1] * bpb_scale,
            "flops_marginal": led.marginal,
            "flops_total": led.total,
            "train_tokens": 1000 * len(curve),
            "steps": 10 * len(curve),  # the last metrics row (rows: step 0, then one per curve point)
        },
    }
    (d / "manifest.json").write_text(json.dumps(man))
    return d


K = 0.3  # nats per e-fold of compute within a run


def final_loss(budget):
    """The baseline's final loss on the ladder: L = 10 C^-0.1."""
    return 10.0 * budget**-0.1


def power_curve(budget, *, shift=1.0, n=6):
    """n eval points, log-spaced up to `budget` FLOPs, of a run whose loss at f equals the baseline's
    at f / shift (shift 0.5: the technique needs half the compute for every loss). The loss is linear
    in log FLOPs within a run, as compare_math interpolates, so every expected multiplier is exact."""
    pts = [budget * 10 ** (-2 + 2 * i / (n - 1)) for i in range(n)]
    return [(f, final_loss(budget) + K * math.log(budget * shift / f)) for f in pts]


def _load(paths):
    return C.load_runs(paths, with_serving=False)


def test_multiplier_marginal_is_the_flops_shift(tmp_path):
    # the technique reaches every loss with half the FLOPs: M = 2, saving 50%
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", power_curve(1e12))
    t = make_run(tmp_path, "s1-curriculum-s0", "curriculum", power_curve(1e12, shift=0.5))
    res = C.compare_runs(_load([b, t]))
    sc = res["scales"][0]
    assert sc["scale"] == "s1" and res["metric"] == "loss"
    assert sc["target"] == pytest.approx(power_curve(1e12)[-1][1])
    v = sc["techniques"]["curriculum"]["views"]["marginal"]
    assert v["status"] == "reached"
    assert v["M"] == pytest.approx(2.0, rel=1e-6) and v["saving"] == pytest.approx(0.5, rel=1e-6)
    assert v["lo"] is None  # one seed per arm: no spread to resample
    # at the baseline's budget the technique's loss is that of 2x the FLOPs on the baseline's curve
    assert v["loss_delta_at_baseline_budget"] == pytest.approx(K * math.log(0.5), rel=1e-6)
    assert sc["baseline"]["views"]["marginal"]["M"] == pytest.approx(1.0)


def test_total_and_amortised_views_charge_the_shared_teacher(tmp_path):
    sunk = 3e12
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", power_curve(1e12))
    d = make_run(tmp_path, "s1-distill-s0", "distill", power_curve(1e12, shift=0.5), sunk=sunk)
    s = make_run(tmp_path, "s1-synthetic-s0", "synthetic", power_curve(1e12, shift=0.5), sunk=sunk)
    res = C.compare_runs(_load([b, d, s]))
    e = res["scales"][0]["techniques"]["distill"]
    assert e["sunk_shared_by"] == 2 and e["flops_total"] == pytest.approx(1e12 + sunk)
    f_tech = 0.5e12  # FLOPs-to-target in the marginal view (half the baseline's 1e12)
    assert e["views"]["total"]["M"] == pytest.approx(1e12 / (f_tech + sunk), rel=1e-6)
    assert e["views"]["amortised"]["M"] == pytest.approx(1e12 / (f_tech + sunk / 2), rel=1e-6)
    assert e["views"]["total"]["M"] < 1 < e["views"]["marginal"]["M"]  # a loss is reported as a loss
    # the total curve starts past the baseline's whole budget: no iso-FLOP loss, and it says why
    assert e["views"]["total"]["loss_delta_at_baseline_budget"] is None
    assert "up-front" in e["views"]["total"]["loss_delta_note"]


def test_not_reached_is_bounded_never_invented(tmp_path):
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", power_curve(1e12))
    t = make_run(tmp_path, "s1-moe-s0", "moe", power_curve(1e12, shift=2.0))  # needs 2x: never gets there
    v = C.compare_runs(_load([b, t]))["scales"][0]["techniques"]["moe"]["views"]["marginal"]
    assert v["status"] == "not reached" and v["M"] is None and v["flops_to_target"] == [None]
    assert v["M_upper_bound"] == pytest.approx(1.0, rel=1e-6)  # base FLOPs-to-target / its last FLOPs
    assert C.multiplier_text(v).startswith("not reached (M < 1")


def test_seeds_give_an_interval(tmp_path):
    runs = []
    for seed, (sb, st) in enumerate([(1.0, 0.5), (1.1, 0.45), (0.9, 0.55)]):
        runs.append(
            make_run(tmp_path, f"s1-baseline-s{seed}", "baseline", power_curve(1e12, shift=sb), seed=seed)
        )
        runs.append(
            make_run(tmp_path, f"s1-curriculum-s{seed}", "curriculum", power_curve(1e12, shift=st), seed=seed)
        )
    res = C.compare_runs(_load(runs))
    sc = res["scales"][0]
    assert sc["target"] == pytest.approx(final_loss(1e12) + K * math.log(1.1))  # the worst baseline seed
    v = sc["techniques"]["curriculum"]["views"]["marginal"]
    assert v["reached"] == 3 and v["lo"] is not None and v["lo"] < v["M"] < v["hi"]
    assert v["M"] > 1.5


def test_variants_of_one_technique_are_separate_arms_never_pooled_as_seeds(tmp_path):
    """Two curriculum scorers are two arms (labelled by run name), each with its own M; two seeds of
    one variant stay one arm."""
    b = make_run(tmp_path, "baseline", "baseline", power_curve(1e12))
    runs = [b]
    for name, shift, model in (
        ("rarity", 0.5, {"depth": 1, "v": "rarity"}),
        ("length", 2.0, {"depth": 1, "v": "length"}),
    ):
        for seed in (0, 1):
            runs.append(
                make_run(
                    tmp_path,
                    f"{name}-s{seed}",
                    "curriculum",
                    power_curve(1e12, shift=shift),
                    seed=seed,
                    model=model,
                )
            )
    res = C.compare_runs(_load(runs))
    techs = res["scales"][0]["techniques"]
    assert set(techs) == {"baseline", "curriculum (rarity)", "curriculum (length)"}
    assert techs["curriculum (rarity)"]["seeds"] == [0, 1]
    assert techs["curriculum (rarity)"]["views"]["marginal"]["M"] == pytest.approx(2.0, rel=1e-6)
    assert techs["curriculum (length)"]["views"]["marginal"]["status"] == "not reached"
    assert {r["arm"] for r in res["runs"]} == set(techs)


def test_reused_artifacts_are_charged_to_the_run_that_used_them(tmp_path):
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", power_curve(1e12))
    t = make_run(tmp_path, "s1-synthetic-s0", "synthetic", power_curve(1e12, shift=0.5), reuse=2e11)
    paid = make_run(
        tmp_path / "other", "s1-synthetic-s0", "synthetic", power_curve(1e12, shift=0.5), upfront=2e11
    )
    rec = _load([b, t])[1]
    assert rec.reused_flops == 2e11 and rec.flops_final("marginal") == pytest.approx(1e12 + 2e11)
    assert rec.phase_flops()["generation"] == 2e11
    v = C.compare_runs(_load([b, t]))["scales"][0]["techniques"]["synthetic"]["views"]["marginal"]
    assert v["M"] == pytest.approx(1e12 / (0.5e12 + 2e11), rel=1e-6)
    # paying for the corpus itself, before step 0, gives the same answer
    v2 = C.compare_runs(_load([b, paid]))["scales"][0]["techniques"]["synthetic"]["views"]["marginal"]
    assert v2["M"] == pytest.approx(v["M"], rel=1e-9)


def test_refuses_another_eval_set_and_names_the_run(tmp_path):
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", power_curve(1e12))
    other_text = make_run(
        tmp_path, "s1-moe-s0", "moe", power_curve(1e12), data={**DATA, "eval_text_hash": "y" * 32}
    )
    other_blocks = make_run(
        tmp_path, "s1-distill-s0", "distill", power_curve(1e12), data={**DATA, "eval_set_hash": "f" * 32}
    )
    with pytest.raises(UserError) as ei:
        C.compare_runs(_load([b, other_text, other_blocks]))
    msg = ei.value.message
    assert "s1-moe-s0" in msg and "other held-out text" in msg
    assert "s1-distill-s0" in msg and "another eval set" in msg


def test_other_tokenizer_same_text_compares_on_bpb(tmp_path):
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", power_curve(1e12))
    t = make_run(
        tmp_path,
        "s1-distill-s0",
        "distill",
        power_curve(1e12, shift=0.5),
        data={**DATA, "tokenizer_hash": "u" * 32, "eval_set_hash": "g" * 32},
        bpb_scale=0.4,
    )
    res = C.compare_runs(_load([b, t]))
    assert res["metric"] == "bpb" and res["unit"] == "bits/byte"
    assert res["scales"][0]["target"] == pytest.approx(power_curve(1e12)[-1][1] * 0.5)
    assert any("bits per byte" in n for n in res["notes"])


def test_refuses_incomplete_runs_naming_each(tmp_path):
    b = make_run(tmp_path, "s1-baseline-s0", "baseline", power_curve(1e12))
    r1 = make_run(tmp_path, "s1-moe-s0", "moe", power_curve(1e12), status="running")
    r2 = make_run(tmp_path, "s1-distill-s0", "distill", power_curve(1e12), status="failed")
    with pytest.raises(UserError) as ei:
        _load([b, r1, r2, tmp_path / "missing"])
    msg = ei.value.message
    for part in ("s1-moe-s0", "status: running", "s1-distill-s0", "status: failed", "missing"):
        assert part in msg


def test_serving_cost_comes_from_the_accounting_layer(tmp_path):
    from efflab.accounting.flops import forward_flops_per_token

    b = make_run(tmp_path, "s1-baseline-s0", "baseline", power_curve(1e12))
    cfg = {
        "model_type": "llama",
        "vocab_size": 512,
        "hidden_size": 32,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
    }
    (b / "model").mkdir()
    (b / "model" / "config.json").write_text(json.dumps(cfg))
    rec = C.load_run(b)  # forward FLOPs per served token, at the run's context (64)
    assert rec.serve_flops_per_token == forward_flops_per_token(cfg, 64) > 0
    assert rec.params > 0


@pytest.mark.parametrize(
    "args,kind,tokens",
    [
        ((1.0, 1.0, 2.0, 2.0), "always", None),  # cheaper to train and to serve
        ((3.0, 3.0, 2.0, 2.0), "never", None),
        ((3.0, 1.0, 2.0, 2.0), "after", 1.0),  # trains dearer by 1, serves cheaper by 1 per token
        ((1.0, 3.0, 2.0, 2.0), "until", 1.0),  # trains cheaper by 1, serves dearer by 1 per token
        ((1.0, 2.0, 2.0, 2.0), "always", None),  # same serving cost, cheaper training
    ],
)
def test_break_even(args, kind, tokens):
    be = C.break_even(*args)
    assert be["kind"] == kind
    assert be["tokens"] == (pytest.approx(tokens) if tokens is not None else None)
    if tokens is not None:  # at S*, the two lifetimes are equal
        t_t, s_t, t_b, s_b = args
        assert t_t + tokens * s_t == pytest.approx(t_b + tokens * s_b)


def _ladder(tmp_path, budgets, m_of_scale, *, sunk=0.0):
    """Runs on a ladder: baseline L = 10 C^-0.1 and a distill technique with multiplier m_of_scale(i)."""
    paths = []
    for i, budget in enumerate(budgets):
        s = f"s{i + 1}"
        paths.append(make_run(tmp_path, f"{s}-baseline-s0", "baseline", power_curve(budget, n=8)))
        paths.append(
            make_run(
                tmp_path,
                f"{s}-distill-s0",
                "distill",
                power_curve(budget, n=8, shift=1 / m_of_scale(i)),
                sunk=sunk,
            )
        )
    return C.compare_runs(_load(paths))
