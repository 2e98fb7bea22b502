"""configs/accelerate/fsdp.yaml serves every model family: the wrap class comes from the model.

accelerate runs FSDP on CUDA only (on a CPU, `accelerate launch` with this file falls back to
DistributedDataParallel over gloo), so the end-to-end FSDP run is a `gpu`-marked test; on a CPU the
wrap policy accelerate builds from this file is checked on meta-device models of several families.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
FSDP_YAML = ROOT / "src" / "efflab" / "configs" / "accelerate" / "fsdp.yaml"
FAMILIES = {"llama": {}, "mixtral": {"num_local_experts": 4}, "qwen2": {}, "qwen3": {}, "gemma3_text": {}}


def _plugin(**kw):
    from accelerate import FullyShardedDataParallelPlugin

    fc = yaml.safe_load(FSDP_YAML.read_text())["fsdp_config"]
    kw.setdefault("transformer_cls_names_to_wrap", fc.get("fsdp_transformer_layer_cls_to_wrap"))
    return FullyShardedDataParallelPlugin(
        fsdp_version=fc["fsdp_version"], auto_wrap_policy=fc["fsdp_auto_wrap_policy"].lower(), **kw
    )


def _meta_model(mt: str, extra: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(
        mt, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, vocab_size=64, **extra,
    )  # fmt: skip
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg)


def test_fsdp_yaml_wraps_each_familys_decoder_layer():
    from accelerate.utils.fsdp_utils import fsdp2_prepare_auto_wrap_policy

    fc = yaml.safe_load(FSDP_YAML.read_text())["fsdp_config"]
    assert "fsdp_transformer_layer_cls_to_wrap" not in fc
    assert fc["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    for mt, extra in FAMILIES.items():
        model = _meta_model(mt, extra)
        policy = fsdp2_prepare_auto_wrap_policy(_plugin(), model)
        wrapped = {type(m).__name__ for m in model.modules() if policy(m)}
        assert wrapped == set(model._no_split_modules), mt
        assert len([m for m in model.modules() if policy(m)]) == 2  # one unit per decoder layer
    # the class the old file named breaks every other family (what the issue reported)
    with pytest.raises(ValueError, match="LlamaDecoderLayer"):
        fsdp2_prepare_auto_wrap_policy(
            _plugin(transformer_cls_names_to_wrap=["LlamaDecoderLayer"]),
            _meta_model("mixtral", FAMILIES["mixtral"]),
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP through accelerate needs CUDA")
def test_fsdp_run_saves_the_full_model(tmp_path):
    """A Qwen3-style model fine-tuned under configs/accelerate/fsdp.yaml saves full (gathered) weights."""
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from efflab.data import train_tokenizer

    n = torch.cuda.device_count()
    texts = [f"def f_{i}(x):\n    return x * {i} + {i % 7}\n" for i in range(2000)]
    tok = train_tokenizer(texts, 512, tmp_path / "tok")
    cfg = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=256,
    )
    base = tmp_path / "qwen3"
    Qwen3ForCausalLM(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_YAML),
           "--num_processes", os.environ.get("EFFLAB_FSDP_PROCS", str(n)), str(ROOT / "recipes" / "baseline.py"), "--config",
           str(ROOT / "configs" / "baseline" / "tiny.yaml"), "--out", str(tmp_path / "run"),
           f"model.pretrained={base}", "train.budget_tokens=null", "train.steps=4", "eval.every=2",
           "log.progress=false", "data.max_chars=2e5"]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "model")
    assert sum(p.numel() for p in saved.parameters()) == sum(
        p.numel() for p in Qwen3ForCausalLM(cfg).parameters()
    )
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "complete"
