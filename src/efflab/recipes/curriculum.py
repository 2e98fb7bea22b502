"""Curriculum learning: easy-to-hard data order and sequence-length warmup, on the baseline's loop.

Against recipes/baseline.py this recipe adds three stages before training: (1) a reference model
when the difficulty comes from one (loaded, or trained with the baseline recipe; its training bill
is sunk cost), (2) a difficulty score for every training block (a reference model's forward FLOPs
are charged to `scoring`), and (3) a sampler that draws each step's batch from the easiest fraction
the pacing allows and trains it at the warmup length. The loop charges `train` at the length
actually trained. Method card, scorers and papers: efflab/techniques/curriculum.py.

CPU:       efflab run curriculum --config configs/curriculum/tiny.yaml
Variants:  efflab run curriculum --config configs/curriculum/small.yaml curriculum.scorer=length
One GPU:   efflab run curriculum --config configs/curriculum/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \\
               recipes/curriculum.py --config configs/curriculum/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/curriculum.py --config configs/curriculum/tiny.yaml
"""

from __future__ import annotations

import time

import numpy as np

from efflab import loop
from efflab.accounting import flops as F
from efflab.config import reference_run_config
from efflab.data import cache_root, reference_tokenizer_problem
from efflab.errors import UserError
from efflab.models import build_model, load_pretrained, torch_dtype
from efflab.runs import ModelSource, train_helper
from efflab.techniques import curriculum as C


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    cc = cfg.curriculum
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()
    acc = run.accelerator

    # ---- data: corpus -> tokenizer -> packed blocks; fixed held-out eval set ------------------
    data = loop.prepare_data(run)
    n, T = data.train.shape

    # ---- model: built before any reference is trained, so its initial weights are the baseline's ----
    model = build_model(cfg, data.vocab_size)

    # ---- curriculum 1: the reference model (scorer: reference) -------------------------------------
    ref = ref_dir = None
    if cc.scorer == "reference":
        if cc.reference:
            ref = ModelSource.resolve(cc.reference, "curriculum.reference")
        else:  # a small model trained for the purpose by the baseline recipe (resumed or reused if there)
            from efflab.recipes import baseline

            ref_cfg = reference_run_config(cfg)
            ref = train_helper(
                baseline.main,
                ref_cfg,
                run.dir / "reference",
                role="curriculum.reference",
                accelerator=acc,
                log=run.log,
            )
        ref_dir = ref.model_dir
        problem = reference_tokenizer_problem(ref_dir, ref.path if ref.kind == "efflab-run" else None, data)
        if problem:
            raise UserError(problem)
        run.charge_sunk(ref, "sunk.teacher_pretrain")  # a known bill: sunk, in "total" but not "marginal"

    # ---- curriculum 2: a difficulty for every training block (larger = harder) -----------------------
    t0 = time.perf_counter()
    scoring = {"scorer": cc.scorer}
    scores = None
    if cc.scorer == "reference":
        cache_dir = cache_root(cfg.data) / "curriculum_scores"
        key = C.scores_cache_key(ref.identity, data.train)
        hit = C.load_cached_scores(cache_dir, key) if cc.cache_scores else None
        if hit is not None:  # paid by an earlier run: shown with its source, never summed again
            scores, meta = hit
            if not run.resumed:
                run.ledger.record_reuse(
                    "scoring",
                    meta["flops"],
                    meta["source"],
                    meta["tokens"],
                    note="reference-model block scores reused from the cache",
                )
            scoring.update(cached=True, cache_key=key, flops=meta["flops"])
        else:
            ref_model = load_pretrained(str(ref_dir), dtype=torch_dtype(cfg.model.dtype)).to(acc.device)
            scores, tokens_here = C.reference_scores(
                ref_model,
                data.train,
                batch_size=cc.score_batch_size,
                device=acc.device,
                autocast=acc.autocast,
                rank=acc.process_index,
                world=acc.num_processes,
                gather=acc.gather,
                labels=data.train_labels,
            )
            # the reference's forward FLOPs over the tokens this rank scored
            flops_here = C.scoring_flops(ref_model.config, T, tokens_here)
            run.charge_once("scoring", flops_here, tokens_here, time.perf_counter() - t0)
            total = C.scoring_flops(ref_model.config, T, n * T)
            if run.is_main and cc.cache_scores:
                C.save_cached_scores(
                    cache_dir,
                    key,
                    scores,
                    {"flops": total, "tokens": n * T, "source": str(run.dir), "reference": str(ref_dir)},
                )
            acc.wait_for_everyone()
            scoring.update(
                cached=False,
                cache_key=key,
                flops=total,
                reference_forward_flops_per_token=F.forward_flops_per_token(ref_model.config, T),
            )
            del ref_model
        scoring["reference"] = str(ref_dir)
    elif cc.scorer == "length":
        scores = C.length_scores(data.train, data.tokenizer.eos_token_id)
    elif cc.scorer == "rarity":
        scores = C.rarity_scores(data.train, data.vocab_size)
    elif cc.scorer == "random":
        scores = C.random_scores(n, cfg.train.seed)
    if cc.scorer in ("length", "rarity"):  # counting, not model FLOPs: the time shows, 0 FLOPs
        run.charge_once("scoring", 0.0, n * T, time.perf_counter() - t0, shared=True)
    if scores is not None:
        scoring.update(min=float(scores.min()), median=float(np.median(scores)), max=float(scores.max()))

    # ---- curriculum 3: order, pacing and length warmup; ramps given as fractions of the horizon ----
    ranking = None if scores is None else C.difficulty_ranking(scores, cc.order, cfg.train.seed)
    fpt_cache: dict[int, float] = {}
    lora = cfg.lora if cfg.lora.r else None  # build_model put LoRA on; the count must know it

    def flops_per_token(t: int) -> float:  # the loop's own default: accounting at the trained length
        if t not in fpt_cache:
            fpt_cache[t] = F.train_flops_per_token(model.config, t, lora=lora)
        return fpt_cache[t]

    def sampler(horizon: int) -> C.CurriculumSampler:  # ramps given as fractions are fractions of `horizon`
        ramp, length_ramp = C.resolve_steps(cc.ramp, horizon), C.resolve_steps(cc.seq_len_ramp, horizon)
        pacing = C.Pacing(cc.pacing, cc.start_fraction, ramp, cc.root_power, cc.stages)
        warmup = C.LengthWarmup(cc.seq_len_start, length_ramp, cc.seq_len_multiple, cc.seq_len_mode)
        warmup = warmup if cc.seq_len_warmup else None
        B, seed = cfg.train.batch_size, cfg.train.seed
        return C.CurriculumSampler(
            data.train, B, seed, ranking=ranking, pacing=pacing, warmup=warmup, labels=data.train_labels
        )

    # shorter early steps buy more steps from a FLOP or token budget, and the ramps scale with the steps
    steps = C.fixed_point_horizon(lambda s: loop.horizon(cfg, sampler(s), flops_per_token))
    source = sampler(steps)
    order = {
        "order": cc.order,
        "pacing": cc.pacing,
        "start_fraction": cc.start_fraction,
        "horizon_steps": steps,
        "ramp_steps": source.pacing.ramp_steps if ranking is not None else 0,
        "seq_len_warmup": None,
    }
    said = f"scorer {cc.scorer} ({cc.order}), {cc.pacing} pacing from {cc.start_fraction:.0%} of the data"
    said = f"{said} over {order['ramp_steps']} steps" if ranking is not None else "uniform order"
    if source.warmup is not None:
        w = source.warmup
        order["seq_len_warmup"] = {"start": w.start, "ramp_steps": w.ramp_steps, "mode": w.mode}
        said += f"; length {w.start} -> {T} over {w.ramp_steps} steps ({w.mode})"
    loop.write_manifest(run, curriculum={**scoring, **order})
    run.log(f"curriculum over {steps} steps: {said}")

    # ---- train until the budget is spent; every step charges the ledger at its trained length ----
    def diagnostics(_model) -> dict:  # the pool's size and passes, at eval points (an observer)
        return source.diagnostics()

    return loop.train(
        run, model, data, source=source, flops_per_token=flops_per_token, metrics_fn=diagnostics
    )


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("curriculum", main))
