import pytest

from efflab.accounting.ledger import MARGINAL_PHASES, PHASES, SUNK_PHASES, Ledger


def test_views_marginal_total_and_eval_never_summed():
    led = Ledger(conventions={"multiply_add": "2 FLOPs"})
    led.charge("train", 100.0, tokens=10, seconds=1.0)
    led.charge("teacher_forward", 30.0, tokens=10)
    led.charge("generation", 5.0)
    led.charge("scoring", 2.0)
    led.charge("sunk.teacher_pretrain", 1000.0, shared=True)
    led.charge("sunk.dense_pretrain", 400.0, shared=True)
    led.charge("eval", 77.0, tokens=3)
    assert led.marginal == 137.0
    assert led.total == 137.0 + 1400.0
    assert led.flops("eval") == 77.0  # shown ...
    assert led.total - led.marginal == 1400.0  # ... but in neither sum
    assert set(MARGINAL_PHASES) | set(SUNK_PHASES) | {"eval"} == set(PHASES)


def test_reuse_is_shown_not_summed():
    led = Ledger()
    led.charge("train", 10.0)
    led.record_reuse("teacher_forward", 500.0, source="/cache/x", tokens=100)
    assert led.marginal == 10.0 and led.total == 10.0
    assert led.to_dict()["reuse"][0]["flops"] == 500.0


def test_json_round_trip(tmp_path):
    led = Ledger(conventions={"a": "b"})
    led.charge("train", 1.5e12, tokens=1e6, seconds=3.0)
    led.charge("sunk.teacher_pretrain", 7e12, tokens=2e6, shared=True)
    led.extra["trained_tokens"] = 5
    led.save(tmp_path / "ledger.json")
    back = Ledger.load(tmp_path / "ledger.json")
    assert back.to_dict() == led.to_dict()
    assert back.shared["sunk.teacher_pretrain"].flops == 7e12


def test_bad_charges_raise():
    led = Ledger()
    with pytest.raises(ValueError, match="unknown ledger phase"):
        led.charge("training", 1.0)
    with pytest.raises(ValueError, match="negative"):
        led.charge("train", -1.0)


def test_reduced_single_process_is_a_copy():
    led = Ledger()
    led.charge("train", 3.0, 1)
    r = led.reduced(None)
    r.charge("train", 1.0)
    assert led.flops("train") == 3.0 and r.flops("train") == 4.0


def test_executed_flops_beside_model_flops(tmp_path):
    led = Ledger()
    led.charge("train", 100.0, 10, 1.0, executed_flops=90.0)
    led.charge("generation", 50.0, 5)  # no executed figure: executes what it models
    led.charge("sunk.teacher_pretrain", 30.0, shared=True, executed_flops=28.0)
    assert led.executed("train") == 90.0 and led.executed("generation") == 50.0
    assert led.marginal_executed == 140.0 and led.total_executed == 168.0
    d = led.to_dict()
    assert d["phases"]["train"]["executed_flops"] == 90.0 and d["total_executed_flops"] == 168.0
    led.save(tmp_path / "l.json")
    assert Ledger.load(tmp_path / "l.json").total_executed == 168.0
    old = Ledger.from_dict({"phases": {"train": {"flops": 7.0, "tokens": 1.0}}})  # written before the field
    assert old.executed("train") == 7.0
    with pytest.raises(ValueError):
        led.charge("train", 1.0, executed_flops=-1.0)
