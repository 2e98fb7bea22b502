"""Mixture-of-experts: a Mixtral-style sparse decoder trained like the baseline, with router losses,
routing diagnostics, optional sparse upcycling, and only the active experts on the ledger.

The baseline with routed experts for FFNs (optionally upcycled from a finished dense run, whose bill
is sunk), the load-balancing and router z-losses added to the loss, and routing diagnostics at every
eval. Method card, ledger and equal-compute pairing: efflab/techniques/moe.py.

CPU:       efflab run moe --config configs/moe/tiny.yaml
Upcycle:   efflab run moe --config configs/moe/tiny.yaml moe.upcycle_from=runs/baseline-tiny
One GPU:   efflab run moe --config configs/moe/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/moe.py --config configs/moe/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/moe.py --config configs/moe/tiny.yaml
"""

from __future__ import annotations

from efflab import loop
from efflab.accounting import flops
from efflab.errors import UserError
from efflab.models import active_flops_ratio, apply_lora, build_model, load_pretrained, torch_dtype
from efflab.moe_model import build_moe_config, moe_blocks, upcycle_
from efflab.runs import ModelSource
from efflab.techniques import moe as M


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()

    # ---- technique: moe: the dense checkpoint to upcycle (a finished dense run or a local HF model) ----
    mc, source_model = cfg.moe, None
    if mc.upcycle_from:
        source_model = ModelSource.resolve(mc.upcycle_from, "moe.upcycle_from")
        problems = M.upcycle_problems(mc.upcycle_from, cfg)
        if problems:
            raise UserError(problems, header="upcycling: the dense checkpoint does not fit this MoE config")

    # ---- data: corpus -> tokenizer -> packed blocks; fixed held-out eval set ------------------
    data = loop.prepare_data(run, tokenizer=source_model.load_tokenizer() if source_model else None)

    # ---- model: built from the model section, seeded by start_run -----------------------------
    # ---- technique: moe: routed experts (the moe section); upcycled from the dense checkpoint if asked ----
    if source_model is None:
        model = build_model(cfg, data.vocab_size)
    else:  # sparse upcycling (Komatsuzaki et al. 2022): every expert starts as the dense MLP
        dense_config = source_model.hf_config()
        M.upcycle_vocab_check(source_model, data.vocab_size, dense_config.vocab_size)
        config = build_moe_config(cfg, dense_config.vocab_size, rms_norm_eps=dense_config.rms_norm_eps)
        config.tie_word_embeddings = bool(dense_config.tie_word_embeddings)
        model = build_model(cfg, dense_config.vocab_size, config=config, lora=False)  # LoRA after the copy
        upcycle_(
            model,
            load_pretrained(str(source_model.model_dir), dtype=torch_dtype(cfg.model.dtype, trained=True)),
        )
        model = apply_lora(model, cfg.lora) if cfg.lora.r else model
        run.charge_sunk(source_model, "sunk.dense_pretrain")  # its whole bill; an external model: said so
    blocks = moe_blocks(model)
    dense = not cfg.model.pretrained  # a model built here has a dense partner at equal active FLOPs
    dense_ratio = active_flops_ratio(cfg, vocab_size=model.config.vocab_size) if dense else None
    dense_ffn = M.moe_shape(cfg).active_ffn if dense else None
    info = M.describe_model(model, blocks, mc, dense_ratio, dense_ffn, log=run.log)
    if source_model is not None:
        info["upcycled_from"] = M.upcycled_from(source_model, log=run.log)
    loop.record_technique(run, "moe", ledger=info, manifest={**mc.model_dump(mode="json"), **info})

    # ---- wiring: what a step trains on, what it minimises, what a token costs, what it logs ----
    sampler = loop.BlockSampler(data.train, cfg.train.batch_size, cfg.train.seed, labels=data.train_labels)

    # ---- technique: moe: LM cross-entropy + router balance and z-losses (training forwards only) ----
    def loss_fn(model, batch):
        out = model(input_ids=batch["input_ids"], labels=batch.get("labels", batch["input_ids"]))
        aux = [b.pop_aux() for b in blocks]  # each sparse layer's router probabilities and logits
        return M.moe_loss(out.loss, aux, balance_coef=mc.balance_coef, z_coef=mc.z_loss_coef)

    # train FLOPs per token at a sequence length (accounting layer, LoRA-aware): the ledger's `train`
    flops_per_token = flops.train_flops_fn(model.config, lora=cfg.lora if cfg.lora.r else None)
    metrics_fn = M.routing_observer(blocks, mc.collapse_threshold, log=run.log)  # per-layer routing at evals

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
    return {**result, "moe": info}


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("moe", main))
