"""Dense baseline: a Llama-style decoder trained on the corpus until its budget is spent.

Every technique is measured against this recipe, trained by the same loop on the same data with the
same held-out evaluation; `diff recipes/baseline.py recipes/<technique>.py` shows what a technique
changes, under its `# ---- technique: ... ----` banners.

CPU:       efflab run baseline --config configs/baseline/tiny.yaml
One GPU:   efflab run baseline --config configs/baseline/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/baseline.py --config configs/baseline/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/baseline.py --config configs/baseline/tiny.yaml
"""

from __future__ import annotations

from efflab import loop
from efflab.accounting import flops
from efflab.models import build_model


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()

    # ---- data: corpus -> tokenizer -> packed blocks; fixed held-out eval set ------------------
    data = loop.prepare_data(run)

    # ---- model: built from the model section, seeded by start_run -----------------------------
    model = build_model(cfg, data.vocab_size)

    # ---- wiring: what a step trains on, what it minimises, what a token costs, what it logs ----
    sampler = loop.BlockSampler(data.train, cfg.train.batch_size, cfg.train.seed, labels=data.train_labels)
    loss_fn = loop.default_loss  # causal LM cross-entropy, nats/token
    # train FLOPs per token at a sequence length (accounting layer, LoRA-aware): the ledger's `train`
    flops_per_token = flops.train_flops_fn(model.config, lora=cfg.lora if cfg.lora.r else None)
    metrics_fn = None  # extra diagnostics logged at eval points: observers, they never change training

    # ---- train: until the budget is spent; every step charges the ledger ----------------------
    result = loop.train(
        run,
        model,
        data,
        source=sampler,
        loss_fn=loss_fn,
        flops_per_token=flops_per_token,
        metrics_fn=metrics_fn,
    )

    # ---- result: the final eval and the bill (also in manifest.json) --------------------------
    return result


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("baseline", main))
