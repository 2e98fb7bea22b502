from pathlib import Path

import pytest
import yaml

from efflab.config import RECIPES, config_from_dict, load_config, parse_overrides
from efflab.errors import UserError

CONFIGS = Path(__file__).resolve().parents[2] / "src" / "efflab" / "configs"


def test_every_shipped_yaml_validates():
    seen = {}
    for path in sorted(CONFIGS.rglob("*.yaml")):
        kind = path.parent.name
        text = path.read_text()
        assert text.lstrip().startswith("#"), (
            f"{path} must open with a comment (what, command, hardware, time)"
        )
        if kind in RECIPES:
            cfg = load_config(path, recipe=kind)
            assert cfg.recipe == kind
            seen[kind] = seen.get(kind, 0) + 1
        else:
            assert isinstance(yaml.safe_load(text), dict), path
    assert seen.get("baseline", 0) >= 3, f"baseline needs tiny, small and gpu configs; saw {seen}"


def test_all_problems_reported_at_once():
    raw = {
        "model": {"depth": 2, "n_head": 3, "colour": "red"},
        "train": {"budget_flops": 0, "lr": "fast"},
        "moe": {"n_experts": 4},
    }
    with pytest.raises(UserError) as e:
        config_from_dict(raw, recipe="baseline")
    msg = e.value.message
    for needle in (
        "n_head=3 does not divide width=128",
        "budget",
        "train.lr",
        "model.colour: unknown key",
        "moe: section not used by the 'baseline' recipe",
    ):
        assert needle in msg, (needle, msg)
    assert len(e.value.problems) >= 5


def test_horizon_needs_exactly_one_budget():
    with pytest.raises(UserError, match="exactly one of budget_flops, budget_tokens, steps"):
        config_from_dict({"model": {"depth": 2}, "train": {"steps": 3, "budget_tokens": 100}})


def test_overrides_and_counts():
    pairs, bad = parse_overrides(
        ["train.lr=1e-3", "train.budget_flops=2.1e25", "model.tie_embeddings=true", "oops"]
    )
    assert dict(pairs)["model.tie_embeddings"] is True
    assert bad and "oops" in bad[0]
    cfg = load_config(None, ["model.depth=3", "train.budget_flops=15.6e12", "train.steps=null"])
    assert cfg.train.budget_flops == pytest.approx(15.6e12)
    assert cfg.model.resolved()["width"] == 192


def test_saved_config_reruns_exactly(tmp_path):
    cfg = load_config(None, ["model.depth=2", "train.steps=7", "data.seq_len=64", "lora.r=4"])
    p = tmp_path / "config.yaml"
    p.write_text(cfg.to_yaml())
    again = load_config(p, recipe="baseline")
    assert again.to_dict() == cfg.to_dict()


def test_yaml_is_data_not_code(tmp_path):
    p = tmp_path / "evil.yaml"
    p.write_text("model: !!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(p)


def test_unknown_keys_suggest_close_names():
    with pytest.raises(UserError) as e:
        load_config(CONFIGS / "baseline" / "tiny.yaml", ["train.lrr=1e-3", "model.dept=3", "trian.steps=3"])
    msg = e.value.message
    for needle in (
        "train.lrr: unknown key (did you mean: lr?)",
        "model.dept: unknown key (did you mean: depth?)",
        "trian: unknown key (did you mean: train?)",
    ):
        assert needle in msg, (needle, msg)
    with pytest.raises(UserError, match=r"distill.temprature: unknown key \(did you mean: temperature\?\)"):
        load_config(CONFIGS / "distill" / "tiny.yaml", ["distill.temprature=2"], recipe="distill")


def test_a_cli_horizon_replaces_the_files():
    path = CONFIGS / "baseline" / "tiny.yaml"
    assert load_config(path).train.budget_tokens is not None  # the file sets budget_tokens
    cfg = load_config(path, ["train.steps=10"])
    assert (cfg.train.steps, cfg.train.budget_tokens, cfg.train.budget_flops) == (10, None, None)
    cfg = load_config(path, ["train.budget_flops=1e12"])
    assert (cfg.train.steps, cfg.train.budget_tokens, cfg.train.budget_flops) == (None, None, 1e12)
    with pytest.raises(UserError, match="exactly one"):  # two horizons on the command line stay an error
        load_config(path, ["train.steps=10", "train.budget_flops=1e12"])


def test_si_suffixes_in_config_counts():
    cfg = load_config(
        None, ["model.depth=2", "train.budget_tokens=2M", "train.steps=null", "data.max_chars=1.5M"]
    )
    assert cfg.train.budget_tokens == 2e6 and cfg.data.max_chars == 1.5e6
    assert load_config(None, ["model.depth=2", "train.steps=2K"]).train.steps == 2000
