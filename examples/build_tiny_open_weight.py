"""Build tiny open-weight-style model directories to walk through examples/finetune_open_weight.md offline.

    python examples/build_tiny_open_weight.py OUT_DIR

Writes, from the published Qwen3-0.6B config.json (tests/data/hf_configs/qwen3-0.6b.json) shrunk to a
few layers, random weights and a byte-level BPE tokenizer trained here with Qwen3's special tokens and
its chat template (tests/data/chat_templates/qwen3.jinja):
  OUT_DIR/qwen3-teacher/   4 layers, 128 wide: stands in for the model you `hf download`
  OUT_DIR/qwen3-student/   2 layers,  64 wide, the same tokenizer: the distillation student
  OUT_DIR/chat.jsonl       600 two-turn arithmetic conversations ({"messages": [...]})
Each directory is what `hf download` leaves (config.json, model.safetensors, tokenizer files).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def conversations(n: int) -> list[dict]:
    out = []
    for i in range(n):
        a, b = i % 97, (7 * i) % 89
        out.append(
            {
                "messages": [
                    {"role": "user", "content": f"What is {a} plus {b}?"},
                    {"role": "assistant", "content": f"{a} plus {b} is {a + b}."},
                    {"role": "user", "content": "And twice that?"},
                    {"role": "assistant", "content": f"Twice {a + b} is {2 * (a + b)}."},
                ]
            }
        )
    return out


def tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIALS,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    fast.chat_template = (ROOT / "tests" / "data" / "chat_templates" / "qwen3.jinja").read_text()
    return fast


def model_dir(out: Path, tok, layers: int, width: int, seed: int) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    data = json.loads((ROOT / "tests" / "data" / "hf_configs" / "qwen3-0.6b.json").read_text())
    data.update(
        hidden_size=width,
        intermediate_size=3 * width,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        vocab_size=len(tok),
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(data.pop("model_type"), **data))
    model.save_pretrained(out)
    tok.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(f"{out}: qwen3, {layers} layers x {width} wide, {n:,} parameters, vocab {len(tok)}")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    recs = conversations(600)
    (out / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    print(f"{out / 'chat.jsonl'}: {len(recs)} conversations")
    tok = tokenizer([m["content"] for r in recs for m in r["messages"]])
    model_dir(out / "qwen3-teacher", tok, layers=4, width=128, seed=0)
    model_dir(out / "qwen3-student", tok, layers=2, width=64, seed=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
