"""Synthetic data: a generator writes the training text, filters clean it, a student trains on it.

The baseline whose training blocks come from a generator's filtered samples (alone or mixed with real
blocks at `synthetic.mix_ratio`), evaluated on the same real held-out set; the generation and the
generator's training are on the ledger. Method card: efflab/techniques/synthetic.py.

CPU:       efflab run synthetic --config configs/synthetic/tiny.yaml
One GPU:   efflab run synthetic --config configs/synthetic/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/synthetic.py --config configs/synthetic/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/synthetic.py --config configs/synthetic/tiny.yaml
"""

from __future__ import annotations

from efflab import loop
from efflab.accounting import flops
from efflab.config import generator_run_config
from efflab.data import cache_root, load_tokenizer, pack_documents
from efflab.models import build_model, load_pretrained, torch_dtype
from efflab.recipes import baseline
from efflab.runs import ModelSource
from efflab.techniques import synthetic as S


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()

    # ---- technique: synthetic: the generator (a finished run, a local HF model, or trained first) ----
    syn, acc = cfg.synthetic, run.accelerator
    if syn.generator == "train":  # the baseline recipe trains it once; a complete generator run is reused
        gen_cfg = generator_run_config(cfg)
        gen_run = S.default_generator_dir(run.dir, gen_cfg, given=syn.generator_dir)
        gen = loop.train_helper(
            run, baseline.main, gen_cfg, gen_run, role="synthetic.generator", tokenizer=True
        )
    else:
        gen = ModelSource.resolve(syn.generator, "synthetic.generator", tokenizer=True)
    run.log(f"generator: {gen.kind} {gen.path} (training cost: {gen.bill_text()})")

    # ---- data: corpus -> tokenizer -> packed blocks; fixed held-out eval set ------------------
    data = loop.prepare_data(run, tokenizer=load_tokenizer(str(gen.model_dir)))  # the generator's

    # ---- technique: synthetic: generate until the token budget is spent (or reuse the cache), filter ----
    seed = cfg.train.seed if syn.seed is None else syn.seed
    prompts = S.prompt_data(syn, data, cfg.data.eval_fraction)
    key = S.generation_key(gen.identity, syn.generation_settings(), seed, prompts, acc.mixed_precision)
    gen_dir = cache_root(cfg.data) / "synthetic" / key
    existed = (gen_dir / "generation.json").is_file()
    acc.wait_for_everyone()
    with acc.main_process_first():  # the main process generates; the others then read the cache
        if not (gen_dir / "generation.json").is_file():
            generator = load_pretrained(str(gen.model_dir), dtype=torch_dtype(cfg.model.dtype)).to(acc.device)
            S.generate_and_save(run, generator, gen, data, syn, seed=seed, prompts=prompts, gen_dir=gen_dir)
            del generator
        samples, generation = S.load_generation(gen_dir)
        # filters: length, exact and near duplicates, NLL band; each reports what it removed
        corpus_dir, prov, docs = S.build_corpus(gen_dir, samples, generation, syn, data.tokenizer, seed)
    paid_here = S.charge_generation(run, generation, prov, corpus_dir, existed=existed)  # once; reuse shown
    run.charge_sunk(gen, "sunk.teacher_pretrain")  # the run keeps the full bill; the suite amortises it
    loop.record_technique(run, "synthetic", ledger=S.ledger_entry(gen, corpus_dir))
    uses = S.record_use(gen_dir, run.dir) if run.is_main else None

    # ---- model: built from the model section, seeded by start_run -----------------------------
    loop.reseed_for_init(cfg)  # the same init whether or not this process trained the generator
    model = build_model(cfg, data.vocab_size)

    # ---- wiring: what a step trains on, what it minimises, what a token costs, what it logs ----
    # ---- technique: synthetic: synthetic blocks mixed with real ones at mix_ratio; the budget ----
    packed = pack_documents(docs, data.tokenizer.eos_token_id, data.seq_len)
    syn_blocks = S.synthetic_blocks(packed, data.seq_len, prov["tokens_kept"])
    sampler = S.MixedSampler(syn_blocks, data.train, cfg.train.batch_size, syn.mix_ratio, cfg.train.seed)
    loss_fn = loop.default_loss  # causal LM cross-entropy, nats/token
    # train FLOPs per token at a sequence length (accounting layer, LoRA-aware): the ledger's `train`
    flops_per_token = flops.train_flops_fn(model.config, lora=cfg.lora if cfg.lora.r else None)
    metrics_fn = None  # extra diagnostics logged at eval points: observers, they never change training
    run.cfg = S.budgeted_config(cfg, generation["flops"], gen, log=run.log)  # budget_includes
    steps = loop.horizon(run.cfg, sampler, flops_per_token)
    kw = dict(paid_here=paid_here, uses=uses, source=gen, syn=syn, synthetic_blocks=len(syn_blocks))
    summary = S.run_summary(prov, **kw, blocks_consumed=sampler.synthetic_before(steps))
    loop.record_technique(run, "synthetic", manifest=summary, files={"synthetic.json": {**prov, **summary}})
    run.log(S.student_line(summary, steps, syn))

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

    sys.exit(loop.script_main("synthetic", main))
