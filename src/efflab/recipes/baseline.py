"""Dense baseline: a Llama-style decoder trained on the corpus until its budget is spent.

Every technique is measured against this recipe, trained by the same loop on the same data with the
same held-out evaluation; `diff recipes/baseline.py recipes/<technique>.py` shows what a technique
changes.

CPU:       efflab run baseline --config configs/baseline/tiny.yaml
One GPU:   efflab run baseline --config configs/baseline/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/baseline.py --config configs/baseline/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/baseline.py --config configs/baseline/tiny.yaml
"""

from __future__ import annotations

from efflab import loop
from efflab.models import build_model


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()

    # ---- data: corpus -> tokenizer -> packed blocks; fixed held-out eval set ------------------
    data = loop.prepare_data(run)

    # ---- model ----------------------------------------------------------------------------------
    model = build_model(cfg, data.vocab_size)

    # ---- train until the budget is spent; every step charges the ledger ------------------------
    source = loop.BlockSampler(data.train, cfg.train.batch_size, cfg.train.seed, labels=data.train_labels)
    return loop.train(run, model, data, source=source)


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("baseline", main))
