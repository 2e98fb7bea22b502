"""Mixture-of-experts: a Mixtral-style sparse decoder trained like the baseline, with router losses,
routing diagnostics, optional sparse upcycling, and only the active experts on the ledger.

The same loop, data and held-out set as the baseline; what changes (`diff recipes/baseline.py
recipes/moe.py`): the model's FFNs are routed experts (efflab's sparse blocks on a stock Mixtral /
Qwen2-MoE model, techniques/moe.py and moe_model.py); optionally its weights start from a finished
dense run whose MLP is copied into every expert, and that run's bill goes to `sunk.dense_pretrain`;
the loss adds the load-balancing and router z-losses; every eval row carries per-layer routing
diagnostics and a warning when routing collapses. The train phase is charged by the accounting
layer on the Mixtral / Qwen2-MoE config: router plus the top-k routed (and shared) experts only.
At equal compute, compare with the dense model `efflab.models.dense_config_for(cfg)` describes
(the small config pairs with configs/baseline/small.yaml: same attention, FFN and FLOP budget).

A finished run's model/ is a plain Mixtral (or Qwen2-MoE) checkpoint: AutoModelForCausalLM loads it
without importing efflab; import efflab.moe_model first only to train it further with efflab blocks.

CPU:       efflab run moe --config configs/moe/tiny.yaml
Upcycle:   efflab run moe --config configs/moe/tiny.yaml moe.upcycle_from=runs/baseline-tiny
One GPU:   efflab run moe --config configs/moe/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/moe.py --config configs/moe/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/moe.py --config configs/moe/tiny.yaml
"""

from __future__ import annotations

from efflab import loop
from efflab.errors import UserError
from efflab.models import active_flops_ratio, apply_lora, build_model, load_pretrained, torch_dtype
from efflab.moe_model import build_moe_config, moe_blocks, upcycle_
from efflab.runs import ModelSource
from efflab.techniques import moe as M


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    mc = cfg.moe

    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()

    # ---- upcycling source: a finished dense run (or a local dense HF model) --------------------
    source_model = None
    if mc.upcycle_from:
        source_model = ModelSource.resolve(mc.upcycle_from, "moe.upcycle_from")
        problems = M.upcycle_problems(mc.upcycle_from, cfg)
        if problems:
            raise UserError(problems, header="upcycling: the dense checkpoint does not fit this MoE config")

    # ---- data: corpus -> tokenizer -> packed blocks; the dense model's tokenizer when upcycling --
    tokenizer = source_model.load_tokenizer() if source_model is not None else None
    data = loop.prepare_data(run, tokenizer=tokenizer)

    # ---- model: Mixtral-style experts; upcycled from the dense checkpoint if asked -------------
    if source_model is None:
        model = build_model(cfg, data.vocab_size)
    else:
        dense_config = source_model.hf_config()
        if data.vocab_size > dense_config.vocab_size:
            raise UserError(
                f"moe.upcycle_from {source_model.path}: the tokenizer has {data.vocab_size} tokens, the "
                f"dense model only {dense_config.vocab_size} embeddings"
            )
        config = build_moe_config(cfg, dense_config.vocab_size, rms_norm_eps=dense_config.rms_norm_eps)
        config.tie_word_embeddings = bool(dense_config.tie_word_embeddings)
        model = build_model(cfg, dense_config.vocab_size, config=config, lora=False)  # LoRA after the copy
        upcycle_(
            model,
            load_pretrained(str(source_model.model_dir), dtype=torch_dtype(cfg.model.dtype, trained=True)),
        )
        model = apply_lora(model, cfg.lora) if cfg.lora.r else model
    blocks = moe_blocks(model)
    impl = model.config._experts_implementation
    dense_ratio = (
        None if cfg.model.pretrained else active_flops_ratio(cfg, vocab_size=model.config.vocab_size)
    )
    run.log(
        f"moe: {len(blocks)} sparse layers x {blocks[0].num_experts} experts, top-{blocks[0].top_k}, "
        f"{mc.routing} routing"
        + (f" (capacity factor {mc.effective_capacity_factor:g})" if mc.effective_capacity_factor else "")
        + f", experts implementation {impl}"
        + (f"; active train FLOPs/token = {dense_ratio:.4f} x the dense partner's" if dense_ratio else "")
    )

    # ---- one-time costs, charged before training (never twice: run.charge_once) ----------------
    info = {
        "experts_implementation": impl,
        "experts_choice": getattr(model, "efflab_experts_choice", None),  # how auto chose (its measurement)
        "active_flops_ratio_vs_dense": dense_ratio,
        "dense_partner_ffn": None if cfg.model.pretrained else M.moe_shape(cfg).active_ffn,
    }
    if source_model is not None:
        info["upcycled_from"] = f"{source_model.path} ({source_model.kind}, {source_model.bill_text()})"
        run.charge_sunk(source_model, "sunk.dense_pretrain")
        if source_model.bill is None:
            run.log(
                f"upcycling from {source_model.path}: an external model with no ledger; its pretraining "
                f"cost is unknown and not charged"
            )
    if not run.resumed:
        run.ledger.extra["moe"] = info
    loop.write_manifest(run, moe={**mc.model_dump(mode="json"), **info})

    # ---- the loss: LM cross-entropy + router balance and z-losses (training forwards only) -----
    def loss_fn(model, batch):
        out = model(input_ids=batch["input_ids"], labels=batch.get("labels", batch["input_ids"]))
        return M.moe_loss(
            out.loss, [b.pop_aux() for b in blocks], balance_coef=mc.balance_coef, z_coef=mc.z_loss_coef
        )

    # ---- routing diagnostics at every eval point (observer: reads and resets the counters) -----
    def metrics_fn(_model):
        row, warnings = M.routing_metrics(
            [b.pop_stats() for b in blocks], collapse_threshold=mc.collapse_threshold
        )
        for w in warnings:
            run.log(f"warning: {w}")
        return row

    # ---- train until the budget is spent; every step charges the ledger ------------------------
    source = loop.BlockSampler(data.train, cfg.train.batch_size, cfg.train.seed, labels=data.train_labels)
    result = loop.train(run, model, data, source=source, loss_fn=loss_fn, metrics_fn=metrics_fn)
    return {**result, "moe": info}


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("moe", main))
