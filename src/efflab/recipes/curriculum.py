"""Curriculum learning: easy-to-hard data order and sequence-length warmup, on the baseline's loop.

The baseline with a difficulty for every training block (a reference model's loss, found or trained
first, or counted from the tokens) and a sampler that draws each step's batch from the easiest fraction
the pacing allows, at the warmup length; scoring is on the ledger. Method card: techniques/curriculum.py.

CPU:       efflab run curriculum --config configs/curriculum/tiny.yaml
Variants:  efflab run curriculum --config configs/curriculum/small.yaml curriculum.scorer=length
One GPU:   efflab run curriculum --config configs/curriculum/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/curriculum.py --config configs/curriculum/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/curriculum.py --config configs/curriculum/tiny.yaml
"""

from __future__ import annotations

import functools

from efflab import loop
from efflab.accounting import flops
from efflab.config import reference_run_config
from efflab.data import cache_root, require_reference_tokenizer
from efflab.models import build_model, load_pretrained, torch_dtype
from efflab.recipes import baseline
from efflab.runs import ModelSource
from efflab.techniques import curriculum as C


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()

    # ---- data: corpus -> tokenizer -> packed blocks; fixed held-out eval set ------------------
    data = loop.prepare_data(run)

    # ---- model: built from the model section, seeded by start_run -----------------------------
    model = build_model(cfg, data.vocab_size)  # before any reference is trained: the baseline's init

    # ---- technique: curriculum: a difficulty for every training block (larger = harder) ----------
    cc = cfg.curriculum
    if cc.scorer == "reference":  # a reference model's mean loss per block
        if cc.reference:
            ref = ModelSource.resolve(cc.reference, "curriculum.reference")
        else:  # a small model trained for the purpose by the baseline recipe (resumed or reused if there)
            ref_cfg, ref_dir = reference_run_config(cfg), run.dir / "reference"
            ref = loop.train_helper(run, baseline.main, ref_cfg, ref_dir, role="curriculum.reference")
        require_reference_tokenizer(ref, data)  # the same tokenizer as this run's data
        run.charge_sunk(ref, "sunk.teacher_pretrain")  # a known bill: sunk, in "total" but not "marginal"
        load = functools.partial(load_pretrained, str(ref.model_dir), dtype=torch_dtype(cfg.model.dtype))
        scores, scoring = C.reference_difficulty(run, ref, load, data, cc, cache_root(cfg.data))  # `scoring`
    else:  # counted (length, rarity: 0 FLOPs, their time shows), random, or none
        scores, scoring = C.counted_difficulty(run, data, cc, cfg.train.seed)

    # ---- wiring: what a step trains on, what it minimises, what a token costs, what it logs ----
    # ---- technique: curriculum: easiest-first pacing and length warmup over the horizon -----------
    ranking = None if scores is None else C.difficulty_ranking(scores, cc.order, cfg.train.seed)

    def sampler_for(horizon: int) -> C.CurriculumSampler:  # ramps given as fractions are fractions of it
        return C.sampler_for(cc, data, cfg.train.batch_size, cfg.train.seed, ranking, horizon)

    loss_fn = loop.default_loss  # causal LM cross-entropy, nats/token
    # train FLOPs per token at a sequence length (accounting layer, LoRA-aware): the ledger's `train`
    flops_per_token = flops.train_flops_fn(model.config, lora=cfg.lora if cfg.lora.r else None)
    # shorter early steps buy more steps from a FLOP or token budget, and the ramps scale with the steps
    steps = C.fixed_point_horizon(lambda s: loop.horizon(cfg, sampler_for(s), flops_per_token))
    sampler = sampler_for(steps)
    order, line = C.order_summary(cc, sampler, steps, data.seq_len)
    loop.record_technique(run, "curriculum", manifest={**scoring, **order})
    run.log(line)

    def metrics_fn(_model) -> dict:  # the pool's size and passes, at eval points (an observer)
        return sampler.diagnostics()

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

    sys.exit(loop.script_main("curriculum", main))
