"""HF Trainer with efflab's ledger on the tiny Qwen3 of build_tiny_open_weight.py:

python examples/trainer_bridge.py /tmp/ow
"""

import json
import sys

from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

from efflab.integrations.hf import EfflabLedgerCallback, efflab_trainer

OW = sys.argv[1] if len(sys.argv) > 1 else "/tmp/ow"
tok = AutoTokenizer.from_pretrained(f"{OW}/qwen3-teacher")
model = AutoModelForCausalLM.from_pretrained(f"{OW}/qwen3-teacher")
rows = []
for line in open(f"{OW}/chat.jsonl").readlines()[:64]:
    enc = tok.apply_chat_template(
        json.loads(line)["messages"],
        tokenize=True,
        return_dict=True,
        padding="max_length",
        max_length=64,
        truncation=True,
    )
    rows.append(
        {**enc, "labels": [t if m else -100 for t, m in zip(enc["input_ids"], enc["attention_mask"])]}
    )
args = TrainingArguments(
    output_dir="runs/trainer-bridge",
    max_steps=5,
    per_device_train_batch_size=8,
    report_to=[],
    use_cpu=True,
    save_strategy="no",
    disable_tqdm=True,
    logging_steps=5,
)
trainer = efflab_trainer(Trainer)(
    model=model, args=args, train_dataset=rows, callbacks=[EfflabLedgerCallback()]
)
trainer.train()
led = json.load(open("runs/trainer-bridge/ledger.json"))
print("tokens (padding excluded): ", led["phases"]["train"]["tokens"])
print("efflab train FLOPs:       ", f"{led['phases']['train']['flops']:.4g}")
print("Trainer total_flos:       ", f"{trainer.state.total_flos:.4g}")
print(
    "Trainer's 6N default:     ",
    f"{6 * 5 * 8 * 64 * model.num_parameters(exclude_embeddings=True):.4g}  (6 x tokens x non-embedding params)",
)
