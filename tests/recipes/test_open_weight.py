"""Fine-tuning the open-weight families of today from local directories (built here, random weights)."""

from __future__ import annotations

import json
from pathlib import Path

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


# ---- tiny Qwen3 and Gemma 3 directories: the published configs shrunk, random weights, a BPE tokenizer
# trained here with the family's special tokens and its real chat template ----------------------------

HF_CONFIGS = Path(__file__).parent.parent / "data" / "hf_configs"
TEMPLATES = Path(__file__).parent.parent / "data" / "chat_templates"
FAMILY = {  # name -> (config.json, template, special tokens, bos, eos)
    "qwen3": (
        "qwen3-0.6b.json",
        "qwen3.jinja",
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"],
        None,
        "<|im_end|>",
    ),
    "gemma3": (
        "gemma-3-1b.json",
        "gemma.jinja",
        ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"],
        "<bos>",
        "<end_of_turn>",
    ),
}
SHRINK = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_position_embeddings": 256,
    "sliding_window": 16,
}


def save_tiny_family(root: Path, family: str, texts: list[str]) -> Path:
    """A directory as `hf download` leaves it: config.json, model.safetensors, tokenizer files."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

    cfg_file, template, specials, bos, eos = FAMILY[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=specials[0])
    fast.chat_template = (TEMPLATES / template).read_text()
    data = json.loads((HF_CONFIGS / cfg_file).read_text())
    data.update({k: v for k, v in SHRINK.items() if k in data or k == "head_dim"})
    data.update(
        vocab_size=len(fast),
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
    )
    mt = data.pop("model_type")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(mt, **data))
    out = root / family
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def chat_records(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} plus {i % 7}?"},
                {"role": "assistant", "content": f"{i} plus {i % 7} is {i + i % 7}."},
                {"role": "user", "content": "And doubled?"},
                {"role": "assistant", "content": f"Doubled, it is {2 * (i + i % 7)}."},
            ]
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("open-weight")
    texts = [r["messages"][k]["content"] for r in chat_records(200) for k in range(4)]
    return {f: save_tiny_family(root, f, texts) for f in FAMILY}


def _chat_cfg(tmp_path, cache_dir, pretrained, **over):
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps(r) + "\n" for r in chat_records(300)))
    raw = {
        "model": {"pretrained": str(pretrained)},
        "data": {"corpus": str(chat), "format": "chat", "seq_len": 64, "cache_dir": str(cache_dir)},
        "train": {"steps": 8, "batch_size": 8, "lr": 3e-3, "warmup_steps": 1, "checkpoint_every": 0},
        "lora": {"r": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "eval": {"every": 4, "max_blocks": 8},
        "log": {"progress": False},
    }
    for k, v in over.items():
        raw.setdefault(k, {}).update(v)
    return config_from_dict(raw, recipe="baseline")


@pytest.mark.parametrize("family", sorted(FAMILY))
def test_lora_chat_finetune_of_a_tiny_family_model(tmp_path, cache_dir, family_dirs, family):
    from efflab.accounting import flops as F
    from efflab.accounting.ledger import Ledger
    from efflab.recipes import baseline

    cfg = _chat_cfg(tmp_path, cache_dir, family_dirs[family])
    res = baseline.main(cfg, out=tmp_path / "run")
    first = json.loads((tmp_path / "run/metrics.jsonl").read_text().splitlines()[0])
    assert res["final_eval_loss"] < first["eval_loss"]
    led = Ledger.load(tmp_path / "run/ledger.json")
    per_token = F.count_flops(family_dirs[family], 64, lora=cfg.lora).train_flops_per_token
    assert led.flops("train") == pytest.approx(per_token * led.tokens("train"), rel=1e-9)
    assert 0 < led.extra["trained_tokens"] < led.tokens("train")


def test_hub_id_from_the_cache_offline(tmp_path, cache_dir, family_dirs, monkeypatch):
    """`model.pretrained=owner/name`: found in the hub cache with HF_HUB_OFFLINE=1; one line when absent."""
    import shutil

    from huggingface_hub import constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--efflab-test--tiny-qwen3"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(family_dirs["qwen3"], repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cfg = _chat_cfg(tmp_path, cache_dir, "efflab-test/tiny-qwen3", train={"steps": 2}, eval={"every": 2})
    from efflab.recipes import baseline

    res = baseline.main(cfg, out=tmp_path / "run")
    assert res["final_eval_loss"] > 0
    assert yaml_pretrained(tmp_path / "run") == "efflab-test/tiny-qwen3"  # the config keeps the hub id
    # the other places a model directory goes take the hub id too
    from efflab.runs import ModelSource, locate

    snapshot = repo / "snapshots" / commit
    assert locate("efflab-test/tiny-qwen3")[1].resolve() == snapshot.resolve()
    assert ModelSource.resolve("efflab-test/tiny-qwen3", "distill.teacher").model_dir == snapshot.resolve()
    assert ModelSource.resolve("efflab-test/tiny-qwen3", "synthetic.generator", tokenizer=True) is not None
    assert "HF_HUB_OFFLINE" in ModelSource.problems("efflab-test/not-cached", "curriculum.reference")[0]
    with pytest.raises(UserError) as e:
        _chat_cfg(tmp_path, cache_dir, "efflab-test/not-cached")
    msg = e.value.problems[0]
    assert "HF_HUB_OFFLINE is set and it is not in the local hub cache" in msg and "hf download" in msg
    assert "\n" not in msg


def yaml_pretrained(run_dir: Path) -> str:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["pretrained"]


def test_dtype_and_qlora_loading(tmp_path, family_dirs):
    import torch

    from efflab.models import load_pretrained, torch_dtype

    assert torch_dtype("bf16") is torch.bfloat16 and torch_dtype("fp32") is torch.float32
    if not torch.cuda.is_available():
        assert torch_dtype("auto") is torch.float32
    model = load_pretrained(str(family_dirs["gemma3"]), dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    with pytest.raises(UserError, match="model.dtype"):
        config_from_dict({"model": {"pretrained": str(family_dirs["qwen3"]), "dtype": "int8"}})
    if torch.cuda.is_available():
        return
    with pytest.raises(UserError) as e:  # QLoRA off a GPU: refused at config time, every problem named
        config_from_dict({"model": {"pretrained": str(family_dirs["qwen3"]), "load_in_4bit": True}})
    text = "\n".join(e.value.problems)
    assert "set lora.r > 0" in text and "CUDA GPU only" in text


def test_auto_dtype_is_bf16_on_a_gpu_for_frozen_weights(monkeypatch):
    import torch

    from efflab.models import torch_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert torch_dtype("auto") is torch.bfloat16  # teacher, generator, reference, LoRA base
    assert torch_dtype("auto", trained=True) is torch.float32  # fully trained: fp32 master weights
    assert torch_dtype("bf16", trained=True) is torch.bfloat16  # unless asked


@pytest.mark.gpu
@pytest.mark.skipif(
    not __import__("torch").cuda.is_available()
    or __import__("importlib").util.find_spec("bitsandbytes") is None,
    reason="QLoRA needs CUDA and bitsandbytes",
)
def test_qlora_chat_finetune_on_gpu(tmp_path, cache_dir, family_dirs):
    from efflab.accounting import flops as F
    from efflab.accounting.ledger import Ledger
    from efflab.recipes import baseline

    cfg = _chat_cfg(tmp_path, cache_dir, family_dirs["qwen3"], model={"load_in_4bit": True})
    res = baseline.main(cfg, out=tmp_path / "run")
    assert res["final_eval_loss"] > 0
    led = Ledger.load(tmp_path / "run/ledger.json")
    per_token = F.count_flops(family_dirs["qwen3"], 64, lora=cfg.lora).train_flops_per_token
    assert led.flops("train") == pytest.approx(per_token * led.tokens("train"), rel=1e-9)  # counted as LoRA
