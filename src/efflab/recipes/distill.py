"""Knowledge distillation: a smaller student trained on a frozen teacher's next-token distribution.

The baseline with a teacher (found, or trained first by the baseline recipe) whose tokenizer the
student reads, and the loss alpha * CE + (1 - alpha) * KD against the teacher's logits, from a forward
every step or a top-k cache; the teacher's costs are on the ledger. Method card: techniques/distill.py.

CPU:       efflab run distill --config configs/distill/tiny.yaml
One GPU:   efflab run distill --config configs/distill/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/distill.py --config configs/distill/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/distill.py --config configs/distill/tiny.yaml
"""

from __future__ import annotations

from efflab import loop
from efflab.accounting import flops
from efflab.config import teacher_run_config
from efflab.data import cache_root, shared_tokenizer
from efflab.models import build_model, load_pretrained, torch_dtype
from efflab.recipes import baseline
from efflab.runs import ModelSource
from efflab.techniques import distill as D


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()

    # ---- technique: distill: the teacher (a finished run, a local HF model, or trained here first) ----
    dc = cfg.distill
    if dc.teacher is None:  # the baseline recipe trains it once; a complete teacher run is reused
        teacher_dir = D.teacher_run_dir(dc, run.dir)
        teacher_cfg = teacher_run_config(cfg, teacher_dir.name)
        info = loop.train_helper(run, baseline.main, teacher_cfg, teacher_dir, role="distill.teacher")
    else:
        info = ModelSource.resolve(dc.teacher, "distill.teacher")
    teacher_config = info.hf_config()
    tokenizer = shared_tokenizer(cfg, info, teacher_config.vocab_size, info.load_tokenizer())

    # ---- data: corpus -> tokenizer -> packed blocks; fixed held-out eval set ------------------
    data = loop.prepare_data(run, tokenizer=tokenizer)  # the teacher's tokenizer: the logits line up

    # ---- model: built from the model section, seeded by start_run -----------------------------
    # ---- technique: distill: the frozen teacher, its held-out loss (charged to eval), its sunk bill ----
    teacher = D.freeze_teacher(load_pretrained(str(info.model_dir), dtype=torch_dtype(cfg.model.dtype)))
    teacher = teacher.to(run.accelerator.device)
    teacher_fwd = flops.forward_flops_fn(teacher.config)  # forward FLOPs per token at a length
    teacher_eval = loop.evaluate_charged(run, teacher, data, teacher_fwd(data.seq_len))
    run.charge_sunk(info, "sunk.teacher_pretrain")  # an efflab teacher's whole bill; unknown: said so
    summary = D.describe_teacher(info, teacher_eval, teacher_fwd(data.seq_len), log=run.log)
    loop.reseed_for_init(cfg)  # the student's init does not depend on whether a teacher was trained above
    model = build_model(cfg, teacher_config.vocab_size)  # the teacher's logit width (it may pad its vocab)

    # ---- wiring: what a step trains on, what it minimises, what a token costs, what it logs ----
    sampler = loop.BlockSampler(data.train, cfg.train.batch_size, cfg.train.seed, labels=data.train_labels)
    # ---- technique: distill: the teacher's logits (every step, or a top-k cache) in the KD loss ----
    if dc.logits == "cache":  # one teacher forward over the training split: teacher_forward, once
        cache, entry = D.run_teacher_cache(run, teacher, info, data, dc, cache_root(cfg.data), teacher_fwd)
        summary.update(entry)
        sampler, teacher_of = D.CachedTeacherSource(sampler, cache), D.cached_top_k
        teacher.to("cpu")  # every logit the student sees is in the cache
    else:  # a teacher forward every step (eval mode, no graph), charged to teacher_forward per rank
        teacher_of = D.online_teacher(teacher, dc.top_k, run, teacher_fwd)

    def loss_fn(student, batch):  # alpha * CE + (1 - alpha) * T^2 * divergence(teacher, student)
        logits = student(input_ids=batch["input_ids"]).logits  # [B, T, V]
        kw = dict(alpha=dc.alpha, loss=dc.loss, temperature=dc.temperature, beta=dc.beta)
        return D.distill_loss(logits, teacher_of(batch), batch.get("labels", batch["input_ids"]), **kw)

    # train FLOPs per token at a sequence length (accounting layer, LoRA-aware): the ledger's `train`
    flops_per_token = flops.train_flops_fn(model.config, lora=cfg.lora if cfg.lora.r else None)
    metrics_fn = None  # extra diagnostics logged at eval points: observers, they never change training
    loop.record_technique(run, "distill", ledger=summary, manifest={**summary, **D.settings(dc)})
    if dc.budget_includes == "marginal" and cfg.train.budget_flops is not None:  # + the teacher's forwards
        student = flops.train_flops_per_token(model.config, data.seq_len)
        whole, teacher_per_token = cfg.train.budget_flops, teacher_fwd(data.seq_len)
        run.cfg.train.budget_flops = D.marginal_budget(whole, student, teacher_per_token, log=run.log)

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
    # ---- technique: distill: the bill, marginal (the teacher exists) and total (we trained it too) ----
    views = D.bill(run.ledger.reduced(run.accelerator))
    run.log(D.bill_line(views, pretrain_known=info.pretrain_flops is not None))
    return {**result, "teacher_eval_loss": teacher_eval["eval_loss"], "bill": views}


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("distill", main))
