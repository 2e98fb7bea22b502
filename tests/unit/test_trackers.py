"""Trackers through accelerate (the resolved config sent, every metrics row logged), a missing tracker
package named with its extra at config time, and progress lines when no terminal is attached."""

from __future__ import annotations

import pytest
from accelerate.tracking import GeneralTracker

from efflab import trackers
from efflab.config import config_from_dict
from efflab.errors import UserError


class RecordingTracker(GeneralTracker):
    """An accelerate tracker that keeps what it is sent (stands in for wandb/mlflow/trackio)."""

    name = "recording"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self):
        super().__init__()
        self.config, self.rows = None, []

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values: dict):
        self.config = dict(values)

    def log(self, values: dict, step: int | None = None, **kwargs):
        self.rows.append((step, dict(values)))


def test_missing_tracker_package_names_the_extra():
    import importlib.util

    missing = [n for n, (mod, _) in trackers.TRACKERS.items() if importlib.util.find_spec(mod) is None]
    assert missing  # this environment lacks at least one tracker package
    name = missing[0]
    with pytest.raises(UserError) as e:
        config_from_dict({"model": {"depth": 2}, "log": {"trackers": [name, "nosuch"]}})
    text = "\n".join(e.value.problems)
    assert f"pip install 'efflab[{trackers.TRACKERS[name][1]}]'" in text
    assert "unknown tracker 'nosuch'" in text


def test_tracker_gets_resolved_config_and_rows(tiny_cfg, tmp_path, monkeypatch, capsys):
    from efflab.recipes import baseline

    cfg = tiny_cfg("baseline", {"train": {"steps": 6, "checkpoint_every": 0}, "eval": {"every": 3},
                                "log": {"every": 2, "progress": True}})  # fmt: skip
    rec = RecordingTracker()
    monkeypatch.setattr(trackers, "names", lambda cfg: ["recording"])
    monkeypatch.setattr(
        trackers, "accelerator_kwargs", lambda cfg, d: {"log_with": [rec], "project_dir": str(d)}
    )
    baseline.main(cfg, out=tmp_path / "run")
    assert rec.config["train.lr"] == cfg.train.lr and rec.config["model.depth"] == cfg.model.depth
    steps = [s for s, _ in rec.rows]
    assert steps[0] == 0 and 6 in steps
    logged = dict(rec.rows)[6]
    assert {"train_loss", "eval_loss", "tokens_per_s", "flops/train"} <= set(logged)
    # pytest's captured stderr is not a terminal: one progress line per log step, with the budget share
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("[efflab] step ") and "% of budget" in ln]
    assert [ln.split()[2] for ln in lines] == ["2/6", "3/6", "4/6", "6/6"]  # log.every=2, and eval steps
    assert "(100.0% of budget)" in lines[-1] and "tok/s" in lines[-1] and "FLOPs" in lines[-1]


def test_budget_share_follows_the_budget_kind():
    cfg = config_from_dict({"model": {"depth": 2}, "train": {"budget_flops": 1e12}})
    assert trackers.budget_pct(cfg, 1, 10, 2.5e11, 0) == pytest.approx(25.0)
    cfg = config_from_dict({"model": {"depth": 2}, "train": {"budget_tokens": 1000}})
    assert trackers.budget_pct(cfg, 1, 10, 0, 500) == pytest.approx(50.0)
    assert "MFU 40.0%" in trackers.progress_line(3, 10, 2.5, 1000.0, 1e12, 30.0, 0.4)
