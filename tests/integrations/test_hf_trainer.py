"""transformers.Trainer with efflab's ledger: the callback's ledger.json equals `efflab flops` for the
same tokens, Trainer's own total_flos becomes efflab's count, LoRA and padding are honoured."""

from __future__ import annotations

import json

import pytest
import torch

from efflab.accounting import flops as F
from efflab.cli import main as cli


def _tiny_qwen3(tmp_path):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=128,
                      tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(cfg)
    cfg.save_pretrained(tmp_path / "cfg")
    return model, tmp_path / "cfg" / "config.json"


def _train(tmp_path, model, rows, steps=3, batch=4, accum=1):
    from transformers import Trainer, TrainingArguments

    from efflab.integrations.hf import EfflabLedgerCallback, efflab_trainer

    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=batch,
                             gradient_accumulation_steps=accum, learning_rate=1e-3, report_to=[], use_cpu=True,
                             logging_steps=1, save_strategy="no", disable_tqdm=True)  # fmt: skip
    cb = EfflabLedgerCallback()
    trainer = efflab_trainer(Trainer)(model=model, args=args, train_dataset=rows, callbacks=[cb])
    trainer.train()
    return trainer, cb, json.loads((tmp_path / "out" / "ledger.json").read_text())


def _rows(n, T, pad=0):
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 128, (T,), generator=g)
        mask = torch.ones(T, dtype=torch.long)
        if pad:
            ids[-pad:], mask[-pad:] = 0, 0
        labels = ids.clone()
        labels[mask == 0] = -100
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def test_trainer_ledger_matches_efflab_flops(tmp_path, capsys):
    model, config_json = _tiny_qwen3(tmp_path)
    trainer, cb, ledger = _train(tmp_path, model, _rows(64, 32), steps=3, batch=4, accum=2)
    tokens = 3 * 4 * 2 * 32  # steps x batch x accumulation x T
    assert ledger["phases"]["train"]["tokens"] == tokens
    capsys.readouterr()  # Trainer's own log lines
    assert cli(["flops", str(config_json), "--tokens", str(tokens), "--seq-len", "32", "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)["train_flops"]
    assert ledger["phases"]["train"]["flops"] == pytest.approx(expected, rel=1e-12)
    assert trainer.state.total_flos == pytest.approx(expected, rel=1e-6)  # Trainer's own figure, replaced
    assert [s for s, _ in cb.step_flops] == [1, 2, 3]
    assert cb.step_flops[-1][1] == pytest.approx(expected, rel=1e-12)
    assert "multiply-add = 2 FLOPs" in ledger["conventions"]["count"]
    # what Trainer would have said: 6 x tokens x non-embedding params, no attention
    six_n = 6 * tokens * model.num_parameters(exclude_embeddings=True)
    assert six_n != pytest.approx(expected, rel=0.01)


def test_trainer_ledger_lora_and_padding(tmp_path):
    from peft import LoraConfig, get_peft_model

    model, _ = _tiny_qwen3(tmp_path)
    model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"))
    _, _, ledger = _train(tmp_path, model, _rows(32, 32, pad=8), steps=2, batch=4)
    tokens = 2 * 4 * (32 - 8)  # padding is not training cost
    assert ledger["phases"]["train"]["tokens"] == tokens
    per_token = F.count_flops(model.get_base_model().config, 32, lora=F.LoraSpec(4, ("q_proj", "v_proj")))
    assert ledger["phases"]["train"]["flops"] == pytest.approx(
        per_token.train_flops_per_token * tokens, rel=1e-12
    )
    assert "LoRA r=4" in ledger["conventions"]["count"]
