"""Synthetic data: a generator writes the training text, filters clean it, a student trains on it.

The student is the baseline's model, trained by the same loop and evaluated on the same real
held-out set; what changes is where its training blocks come from (the generator's filtered
samples, alone or mixed with real blocks at `synthetic.mix_ratio`) and what the ledger is charged:
the generator's prefill and decode for every token generated, kept or filtered away
(`generation`), and the generator's own training (`sunk.teacher_pretrain`, when known). A corpus
already generated with the same generator, settings and seed is reused from the cache: shown on
the ledger with its source, never charged twice. See `efflab.techniques.synthetic` for the method.

CPU:       efflab run synthetic --config configs/synthetic/tiny.yaml
One GPU:   efflab run synthetic --config configs/synthetic/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/synthetic.py --config configs/synthetic/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/synthetic.py --config configs/synthetic/tiny.yaml
"""

from __future__ import annotations

from pathlib import Path

from efflab import loop
from efflab.config import generator_run_config
from efflab.data import pack_documents
from efflab.models import build_model
from efflab.runs import ModelSource, train_helper


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    from accelerate.utils import set_seed

    from efflab.accounting.flops import train_flops_per_token
    from efflab.data import cache_root, load_tokenizer
    from efflab.errors import UserError
    from efflab.io import atomic_write_json
    from efflab.models import load_pretrained, torch_dtype
    from efflab.techniques import synthetic as S

    syn = cfg.synthetic
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()
    acc = run.accelerator

    # ---- generator: a finished efflab run, a local HF model, or trained first by the baseline ----
    if syn.generator == "train":
        from efflab.recipes import baseline

        gen_cfg = generator_run_config(cfg)
        gen_run = Path(syn.generator_dir) if syn.generator_dir else S.default_generator_dir(run.dir, gen_cfg)
        gen_src = train_helper(
            baseline.main,
            gen_cfg,
            gen_run,
            role="synthetic.generator",
            accelerator=acc,
            log=run.log,
            tokenizer=True,
        )
    else:
        gen_src = ModelSource.resolve(syn.generator, "synthetic.generator", tokenizer=True)
    run.log(f"generator: {gen_src.kind} {gen_src.path} (training cost: {gen_src.bill_text()})")

    # ---- data: the generator's tokenizer; real packed blocks; the fixed real held-out set --------
    data = loop.prepare_data(run, tokenizer=load_tokenizer(str(gen_src.model_dir)))
    eos = data.tokenizer.eos_token_id

    # ---- generation: sample until the token budget is spent, or reuse the cached generation -----
    seed = cfg.train.seed if syn.seed is None else syn.seed
    prompt_data = {"tokenizer_hash": data.meta["tokenizer_hash"]}
    if syn.prompts == "prefix":  # prompts are real train blocks: the generation depends on them
        prompt_data.update(
            corpus_hash=data.meta["corpus_hash"], seq_len=data.seq_len, eval_fraction=cfg.data.eval_fraction
        )
    key = S.generation_key(
        gen_src.identity, syn.generation_settings(), seed, prompt_data, acc.mixed_precision
    )
    gen_dir = cache_root(cfg.data) / "synthetic" / key
    existed = (gen_dir / "generation.json").is_file()
    acc.wait_for_everyone()
    with acc.main_process_first():  # the main process generates; the others then read the cache
        if not (gen_dir / "generation.json").is_file():
            generator = load_pretrained(str(gen_src.model_dir), dtype=torch_dtype(cfg.model.dtype)).to(
                acc.device
            )
            if syn.prompts == "prefix":
                prompt_fn = S.prefix_prompts(data.train, syn.prompt_len, seed)
            else:
                prompt_fn = S.seed_prompts(data.tokenizer, syn.seeds)
            run.log(f"generating {syn.token_budget:,.0f} tokens, batches of {syn.batch_size}")
            res = S.generate_corpus(
                generator,
                prompt_fn,
                **syn.sampling_kwargs(),
                eos_id=eos,
                seed=seed,
                autocast=acc.autocast,
                progress=cfg.log.progress and run.is_main,
            )
            prov = S.generation_provenance(
                gen_src,
                syn,
                res,
                seed=seed,
                prompt_data=prompt_data,
                precision=acc.mixed_precision,
                device=run.manifest["device"],
                run_dir=run.dir,
            )
            S.save_generation(gen_dir, res, prov)
            del generator
        samples, generation = S.load_generation(gen_dir)
        # ---- filters: length, exact and near duplicates, NLL band; each reports what it removed --
        corpus_dir, prov, docs = S.build_corpus(gen_dir, samples, generation, syn, data.tokenizer, seed)
    for f in prov["filter_report"]:
        run.log(f"filter {f['filter']}: removed {f['removed']} samples ({f['removed_tokens']:,} tokens)")

    # ---- ledger: generation (charged once, by the run that paid it) and the generator's training --
    paid_here = not existed or (run.resume and generation["generated_by"] == str(run.dir.resolve()))
    flops = generation["flops"]
    if paid_here:
        run.charge_once(
            "generation", flops, generation["tokens_generated"], generation["seconds"], shared=True
        )
    elif not run.resumed:
        note = f"generated by {generation['generated_by']}; reused, not charged again"
        run.ledger.record_reuse(
            "generation", flops, source=str(corpus_dir), tokens=prov["tokens_kept"], note=note
        )
    run.charge_sunk(gen_src, "sunk.teacher_pretrain")  # the run keeps the full bill; the suite amortises it
    run.ledger.extra["synthetic"] = {
        "generator": str(gen_src.path.resolve()),
        "generator_kind": gen_src.kind,
        "generator_training_cost": gen_src.bill_text(),
        "corpus": str(corpus_dir),
    }
    uses = S.record_use(gen_dir, run.dir) if run.is_main else None
    run.log(
        f"synthetic corpus {corpus_dir}: {prov['tokens_kept']:,} of {generation['tokens_generated']:,} tokens "
        f"kept; {flops:.4g} generation FLOPs, {prov['flops_per_kept_token'] or 0:.4g} per kept token, "
        + ("charged to this run" if paid_here else "reused (shown on the ledger, not charged)")
    )

    # ---- training data: synthetic blocks, mixed with real ones at mix_ratio ---------------------
    syn_blocks = pack_documents(docs, eos, data.seq_len)
    if len(syn_blocks) < 1:
        raise UserError(
            f"the filtered synthetic corpus ({prov['tokens_kept']} tokens) is shorter than one block "
            f"of {data.seq_len}: raise synthetic.token_budget or loosen the filters"
        )
    source = S.MixedSampler(syn_blocks, data.train, cfg.train.batch_size, syn.mix_ratio, cfg.train.seed)

    # ---- budget: train.budget_flops pays for training only, + generation, or + the generator too --
    if syn.budget_includes != "train":
        left, spent = S.train_budget(cfg, flops, gen_src)
        run.cfg = cfg.model_copy(deep=True)
        run.cfg.train.budget_flops = left
        run.log(
            f"budget_includes={syn.budget_includes}: {spent:.4g} FLOPs went to the synthetic data, "
            f"{left:.4g} are left for training"
        )

    # ---- model (seeded here: the same whether or not this process trained the generator) -------
    set_seed(loop.init_seed(cfg))
    model = build_model(cfg, data.vocab_size)
    steps = loop.horizon(run.cfg, source, lambda T: train_flops_per_token(model.config, T))
    summary = S.run_summary(
        prov,
        paid_here=paid_here,
        uses=uses,
        source=gen_src,
        syn=syn,
        synthetic_blocks=len(syn_blocks),
        blocks_consumed=source.synthetic_before(steps),
    )
    loop.write_manifest(run, synthetic=summary)
    if run.is_main:
        atomic_write_json(run.dir / "synthetic.json", {**prov, **summary})
    run.log(
        f"student: {steps} steps, mix_ratio={syn.mix_ratio}: each of the {len(syn_blocks)} synthetic blocks "
        f"is seen {summary['synthetic_epochs']:.2f} times on average"
    )

    # ---- train until the budget is spent; eval on the real held-out set ------------------------
    return loop.train(run, model, data, source=source)


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("synthetic", main))
