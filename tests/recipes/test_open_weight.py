"""Fine-tuning the open-weight families of today from local directories (built here, random weights)."""

from __future__ import annotations

import json

import pytest

from efflab.config import config_from_dict
from efflab.errors import UserError


def test_model_the_ledger_cannot_count_is_refused_at_config_time(tmp_path, pretrained_dir):
    d = tmp_path / "vit"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 64}))
    (d / "model.safetensors").write_bytes((pretrained_dir / "model.safetensors").read_bytes())
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (d / f).write_bytes((pretrained_dir / f).read_bytes())
    raw = {"model": {"pretrained": str(d)}, "data": {"cache_dir": str(tmp_path / "cache")}}
    with pytest.raises(UserError) as e:
        config_from_dict(raw, recipe="baseline")  # no data prepared, no weights read
    assert len(e.value.problems) == 1
    assert "'vit' cannot be counted by the FLOP ledger" in e.value.problems[0]
    assert not (tmp_path / "cache").exists()
