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
from efflab.models import build_model


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    from accelerate.utils import set_seed

    from efflab.accounting.flops import train_flops_per_token
    from efflab.data import cache_root, load_tokenizer
    from efflab.errors import UserError
    from efflab.io import atomic_write_json
    from efflab.models import load_pretrained
    from efflab.techniques import synthetic as S

    syn = cfg.synthetic
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()
    # a resumed run restores its ledger (one-time charges included) from the checkpoint
    from_checkpoint = run.resume and (run.dir / "checkpoint" / "latest.json").exists()

    # ---- generator: a finished efflab run, a local HF model, or trained first by the baseline ----
    if syn.generator == "train":
        gen_cfg = S.generator_run_config(cfg)
        gen_run = Path(syn.generator_dir) if syn.generator_dir else S.default_generator_dir(run.dir, gen_cfg)
        if not S.run_is_complete(gen_run):
            run.log(f"training the generator first (baseline recipe) in {gen_run}")
            from efflab.recipes import baseline

            baseline.main(gen_cfg, out=gen_run, resume=True)
        gen_src = S.inspect_generator(gen_run)
    else:
        gen_src = S.inspect_generator(syn.generator)
    gen_src.identity = S.model_identity(gen_src.model_dir)
    run.log(f"generator: {gen_src.describe()}")

    # ---- data: the generator's tokenizer; real packed blocks; the fixed real held-out set --------
    data = loop.prepare_data(run, tokenizer=load_tokenizer(str(gen_src.model_dir)))
    eos = data.tokenizer.eos_token_id

    # ---- generation: sample until the token budget is spent (or reuse the cached generation) ----
    seed = cfg.train.seed if syn.seed is None else syn.seed
    prompt_data = {"tokenizer_hash": data.meta["tokenizer_hash"]}
    if syn.prompts == "prefix":
        prompt_data.update(corpus_hash=data.meta["corpus_hash"], seq_len=data.seq_len,
                           eval_fraction=cfg.data.eval_fraction)
    acc = run.accelerator
    key = S.generation_key(gen_src.identity, syn.generation_settings(), seed, prompt_data, acc.mixed_precision)
    gen_dir = cache_root(cfg.data) / "synthetic" / key
    existed = (gen_dir / "generation.json").is_file()
    acc.wait_for_everyone()
    with acc.main_process_first():  # the main process generates; the others then read the cache
        if not (gen_dir / "generation.json").is_file():
            generator = load_pretrained(str(gen_src.model_dir)).to(acc.device)
            if syn.prompts == "prefix":
                prompt_fn = S.prefix_prompts(data.train, syn.prompt_len, seed)
            else:
                prompt_fn = S.seed_prompts(data.tokenizer, syn.seeds)
            run.log(f"generating {syn.token_budget:,.0f} tokens: batches of {syn.batch_size}, up to "
                    f"{syn.max_new_tokens} new tokens each, T={syn.temperature} top_p={syn.top_p} top_k={syn.top_k}")
            res = S.generate_corpus(
                generator, prompt_fn, token_budget=syn.token_budget, batch_size=syn.batch_size,
                max_new_tokens=syn.max_new_tokens, min_new_tokens=syn.min_new_tokens,
                temperature=syn.temperature, top_k=syn.top_k, top_p=syn.top_p, eos_id=eos,
                stop_at_eos=syn.stop_at_eos, seed=seed, autocast=acc.autocast,
                progress=cfg.log.progress and run.is_main)
            S.save_generation(gen_dir, res, {
                "generator": {"kind": gen_src.kind, "path": str(gen_src.path.resolve()),
                              "identity": gen_src.identity, "training_flops": gen_src.training_flops},
                "settings": syn.generation_settings(), "seed": seed, "prompt_data": prompt_data,
                "precision": acc.mixed_precision, "device": run.manifest["device"],
                "flops": res.flops, "tokens_generated": res.tokens_generated, "samples": len(res.samples),
                "prompt_tokens": sum(len(s.prompt_ids) for s in res.samples),
                "seconds": res.seconds, "tokens_per_s": res.tokens_generated / max(res.seconds, 1e-9),
                "flops_convention": "accounting.flops.generation_flops per sample: prefill (LM head on the last "
                                    "prompt position) + one-token decodes over the KV cache; every computed "
                                    "token, filtered or not; no padding is computed",
                "generated_by": str(run.dir.resolve()),
            })
            del generator
        samples, generation = S.load_generation(gen_dir)
        # ---- filters: length, exact and near duplicates, NLL band; each reports what it removed --
        corpus_dir, prov, docs = S.build_corpus(gen_dir, samples, generation, syn, data.tokenizer, seed)
    for f in prov["filter_report"]:
        run.log(f"filter {f['filter']}: removed {f['removed']} samples ({f['removed_tokens']:,} tokens), "
                f"{f['kept']} left")

    # ---- ledger: generation (charged once, by the run that paid it) and the generator's training --
    paid_here = not existed or (run.resume and generation["generated_by"] == str(run.dir.resolve()))
    if not from_checkpoint:
        if paid_here:
            run.ledger.charge("generation", generation["flops"], generation["tokens_generated"],
                              generation["seconds"], shared=True)
        else:
            run.ledger.record_reuse("generation", generation["flops"], source=str(corpus_dir),
                                    tokens=prov["tokens_kept"], note=f"synthetic corpus generated by "
                                    f"{generation['generated_by']}; reused, not charged again")
        if gen_src.training_flops is not None:
            run.ledger.charge("sunk.teacher_pretrain", gen_src.training_flops, shared=True)
    run.ledger.extra["synthetic"] = {
        "generator": str(gen_src.path.resolve()), "generator_kind": gen_src.kind,
        "generator_training_cost": "unknown (a local pretrained directory)" if gen_src.training_flops is None
        else "its run's ledger total, charged to sunk.teacher_pretrain",
        "corpus": str(corpus_dir), "generation_charged_here": paid_here}
    uses = S.record_use(gen_dir, run.dir) if run.is_main else None
    run.log(f"synthetic corpus {corpus_dir}: {prov['tokens_kept']:,} of {generation['tokens_generated']:,} "
            f"generated tokens kept; {generation['flops']:.4g} generation FLOPs = "
            f"{prov['flops_per_kept_token'] or float('nan'):.4g} per kept token; "
            + ("charged to this run" if paid_here else "reused (recorded, not charged)"))
    if gen_src.training_flops is None:
        run.log("the generator's training cost is unknown (a local pretrained directory): not on the ledger")

    # ---- training data: synthetic blocks, mixed with real ones at mix_ratio ---------------------
    syn_blocks = S.pack_documents(docs, eos, data.seq_len)
    if len(syn_blocks) < 1:
        raise UserError(f"the filtered synthetic corpus ({prov['tokens_kept']} tokens) is shorter than one "
                        f"block of {data.seq_len}: raise synthetic.token_budget or loosen the filters")
    source = S.MixedSampler(syn_blocks, data.train, cfg.train.batch_size, syn.mix_ratio, cfg.train.seed)

    # ---- budget: what train.budget_flops pays for (train only, + generation, + generator training)
    if syn.budget_includes != "train":
        spent = generation["flops"]
        if syn.budget_includes == "total":
            if gen_src.training_flops is None:
                raise UserError("synthetic.budget_includes=total needs the generator's training cost, which a "
                                "local pretrained directory does not have (use marginal)")
            spent += gen_src.training_flops
        left = cfg.train.budget_flops - spent
        if left <= 0:
            raise UserError(f"generation{' and the generator' if syn.budget_includes == 'total' else ''} "
                            f"({spent:.4g} FLOPs) already spend train.budget_flops={cfg.train.budget_flops:.4g}")
        run.cfg = cfg.model_copy(deep=True)
        run.cfg.train.budget_flops = left
        run.log(f"budget_includes={syn.budget_includes}: {spent:.4g} FLOPs of the budget went to the synthetic "
                f"data; {left:.4g} left for training")

    # ---- model (seeded here: identical whether or not the generator was trained in this process) --
    set_seed(cfg.train.seed)
    model = build_model(cfg, data.vocab_size)
    steps = loop.horizon(run.cfg, source, lambda T: train_flops_per_token(model.config, T))
    consumed = source.synthetic_before(steps)
    summary = {**{k: prov[k] for k in ("samples_generated", "samples_kept", "tokens_kept", "flops_per_kept_token",
                                       "filter_report")},
               "corpus": str(corpus_dir), "generation_flops": generation["flops"],
               "tokens_generated": generation["tokens_generated"], "generation_charged_here": paid_here,
               "corpus_uses": uses, "amortised_generation_flops_per_use": generation["flops"] / uses if uses else None,
               "generator": gen_src.describe(), "mix_ratio": syn.mix_ratio, "synthetic_blocks": int(len(syn_blocks)),
               "synthetic_epochs": consumed / len(syn_blocks), "budget_includes": syn.budget_includes}
    loop.write_manifest(run, synthetic=summary)
    if run.is_main:
        atomic_write_json(run.dir / "synthetic.json", {**prov, **summary})
    run.log(f"student: {steps} steps at mix_ratio={syn.mix_ratio}; {len(syn_blocks)} synthetic blocks, each "
            f"seen {consumed / len(syn_blocks):.2f} times on average")

    # ---- train until the budget is spent; eval on the real held-out set ------------------------
    return loop.train(run, model, data, source=source)


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("synthetic", main))
