"""One recipe registry (efflab.RECIPES names, efflab.recipes maps and runs), the technique sections as
typed fields of the run config, and FLOP counting that takes a model config, never a YAML run config."""

from __future__ import annotations

import typing

import pytest
from pydantic import ValidationError

import efflab
from efflab import recipes
from efflab.errors import UserError


def test_the_recipe_names_are_one_list():
    from efflab.config import RECIPE_SECTIONS, RunConfig
    from efflab.suite import ArmSpec

    assert tuple(recipes.RECIPE_MODULES) == efflab.RECIPES
    assert set(RECIPE_SECTIONS) == set(efflab.RECIPES)
    for field in (RunConfig.model_fields["recipe"], ArmSpec.model_fields["recipe"]):
        assert typing.get_args(field.annotation) == efflab.RECIPES


def test_every_recipe_module_has_a_main():
    for name in efflab.RECIPES:
        assert callable(recipes.recipe_main(name))


def test_unknown_recipe_is_bad_input_and_a_broken_recipe_module_raises(monkeypatch):
    with pytest.raises(UserError, match="unknown recipe 'basline'.*baseline"):
        recipes.recipe_main("basline")
    # an import error of a recipe module is a bug: it surfaces, never "not available"
    monkeypatch.setitem(recipes.RECIPE_MODULES, "moe", "efflab.recipes.no_such_module")
    with pytest.raises(ModuleNotFoundError):
        recipes.recipe_main("moe")


def test_technique_sections_are_typed_fields():
    from efflab.config import TECHNIQUE_SECTIONS, RunConfig, config_from_dict

    for name, cls in TECHNIQUE_SECTIONS.items():
        assert typing.get_args(RunConfig.model_fields[name].annotation) == (cls, type(None))
    base = {"model": {"depth": 2}, "train": {"steps": 1}}
    moe = config_from_dict({**base, "moe": {"n_experts": 4}}, recipe="moe")
    assert isinstance(moe.moe, TECHNIQUE_SECTIONS["moe"]) and moe.moe.n_experts == 4
    assert moe.distill is None and "distill" not in moe.to_dict() and moe.to_dict()["moe"]["n_experts"] == 4
    assert config_from_dict(base, recipe="baseline").moe is None
    assert isinstance(config_from_dict(base, recipe="moe").moe, TECHNIQUE_SECTIONS["moe"])  # its defaults
    with pytest.raises(ValidationError):  # assignments are validated like every section's
        moe.moe = {"n_experts": "many"}


def test_count_flops_refuses_an_efflab_yaml_run_config():
    from efflab.accounting import flops as F
    from efflab.estimate import load_run_config
    from efflab.models import build_model_config
    from efflab.paths import configs_root

    path = configs_root() / "baseline" / "tiny.yaml"
    with pytest.raises(UserError, match="efflab YAML run config.*efflab.estimate.load_run_config"):
        F.count_flops(str(path))
    cfg = load_run_config(path)
    c = F.count_flops(build_model_config(cfg), cfg.data.seq_len)  # the caller builds the model config
    assert c.model_type == "llama" and c.train_flops_per_token > 0
