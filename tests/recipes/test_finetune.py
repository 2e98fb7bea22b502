"""Fine-tuning an open-weight-style model from a local directory: full, LoRA, chat data, bad input."""

import json
from pathlib import Path

import pytest

from efflab.accounting.ledger import Ledger
from efflab.cli import main as cli
from efflab.config import config_from_dict
from efflab.errors import UserError
from efflab.recipes import baseline


def _cfg(cache_dir, pretrained, **over):
    raw = {
        "model": {"pretrained": str(pretrained)},
        "data": {"max_chars": 2e5, "seq_len": 64, "cache_dir": str(cache_dir)},
        "train": {"steps": 12, "batch_size": 8, "lr": 2e-3, "warmup_steps": 2, "checkpoint_every": 0},
        "eval": {"every": 6, "max_blocks": 8},
        "log": {"progress": False},
    }
    for k, v in over.items():
        raw.setdefault(k, {}).update(v)
    return config_from_dict(raw, recipe="baseline")


def test_full_and_lora_finetune_from_local_dir(tmp_path, cache_dir, pretrained_dir):
    full = baseline.main(_cfg(cache_dir, pretrained_dir), out=tmp_path / "full")
    lora = baseline.main(
        _cfg(cache_dir, pretrained_dir, lora={"r": 8, "target_modules": ["q_proj", "v_proj"]}),
        out=tmp_path / "lora",
    )
    for r in (full, lora):
        assert (
            r["final_eval_loss"]
            < json.loads((tmp_path / "full/metrics.jsonl").read_text().splitlines()[0])["eval_loss"]
        )
    a, b = Ledger.load(tmp_path / "full/ledger.json"), Ledger.load(tmp_path / "lora/ledger.json")
    assert a.tokens("train") == b.tokens("train")
    # frozen base matmuls skip their weight gradients: measurably fewer FLOPs per token
    assert b.flops("train") < 0.9 * a.flops("train")
    # the pipeline used the model's own tokenizer, and the merged LoRA result loads as a plain model
    m = json.loads((tmp_path / "lora/manifest.json").read_text())
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert m["data"]["vocab_size"] == len(AutoTokenizer.from_pretrained(pretrained_dir))
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "lora/model")
    assert not any("lora" in n for n, _ in merged.named_parameters())


def test_chat_data_masks_prompts_and_counts_all_tokens(tmp_path, cache_dir, pretrained_dir):
    chat = tmp_path / "chat.jsonl"
    with chat.open("w") as f:
        for i in range(400):
            f.write(
                json.dumps({"prompt": f"def add_{i}(a, b):", "response": f"    return a + b + {i}"}) + "\n"
            )
    cfg = _cfg(cache_dir, pretrained_dir, data={"corpus": str(chat), "format": "chat", "seq_len": 32})
    baseline.main(cfg, out=tmp_path / "chat")
    led = Ledger.load(tmp_path / "chat/ledger.json")
    processed, trained = led.tokens("train"), led.extra["trained_tokens"]
    assert processed == 12 * 8 * 32  # every processed token is charged ...
    assert 0 < trained < 0.8 * processed  # ... and the trained (response) tokens are reported apart


def test_bad_pretrained_inputs_exit_2(tmp_path, cache_dir, pretrained_dir, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no config.json"):
        baseline.main(_cfg(cache_dir, empty), out=tmp_path / "a")
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        (no_tok / f).write_bytes((Path(pretrained_dir) / f).read_bytes())
    with pytest.raises(UserError, match="no tokenizer files"):
        baseline.main(_cfg(cache_dir, no_tok), out=tmp_path / "b")
    rc = cli(
        [
            "run",
            "baseline",
            "--out",
            str(tmp_path / "c"),
            f"model.pretrained={pretrained_dir}",
            "lora.r=4",
            "lora.target_modules=[nonexistent_proj]",
            "train.steps=2",
            f"data.cache_dir={cache_dir}",
            "data.max_chars=2e5",
            "data.seq_len=64",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "match no" in err and "q_proj" in err, err
