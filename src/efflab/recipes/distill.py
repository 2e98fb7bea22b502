"""Knowledge distillation: a smaller student trained on a frozen teacher's next-token distribution,
with everything the teacher costs on the ledger.

The same loop, data and held-out set as the baseline; what changes (`diff recipes/baseline.py
recipes/distill.py`): a teacher is found (a finished efflab run, a local Hugging Face model) or
trained first with the baseline recipe; the student reads the data with the teacher's tokenizer;
the loss is alpha * CE + (1 - alpha) * KD (techniques/distill.py); the teacher's logits come from a
forward pass every step (`teacher_forward`, per rank) or from a top-k cache built once over the
training split; the teacher's own training is charged to `sunk.teacher_pretrain`. The ledger's
marginal view answers "the teacher exists", its total view "we had to train it too".

CPU:       efflab run distill --config configs/distill/tiny.yaml
One GPU:   efflab run distill --config configs/distill/gpu.yaml
Many GPUs: accelerate launch --config_file configs/accelerate/multi_gpu.yaml \
               recipes/distill.py --config configs/distill/gpu.yaml
Two CPU processes (gloo): torchrun --nproc_per_node 2 recipes/distill.py --config configs/distill/tiny.yaml
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

from accelerate.utils import set_seed

from efflab import loop
from efflab.accounting import flops as F
from efflab.config import teacher_run_config
from efflab.data import cache_root, shared_tokenizer
from efflab.models import build_model, load_pretrained, torch_dtype
from efflab.recipes import baseline
from efflab.runs import ModelSource, train_helper
from efflab.techniques import distill as D


def main(cfg, *, out=None, resume=False, overwrite=False, config_path=None) -> dict:
    dc = cfg.distill

    # ---- setup: run directory, accelerator, seed, manifest ------------------------------------
    run = loop.start_run(cfg, out=out, resume=resume, overwrite=overwrite, config_path=config_path)
    if run.complete:
        return run.result()

    # ---- teacher: a finished efflab run, a local HF model dir, or trained here first ----------
    if dc.teacher is None:  # the baseline recipe trains it once; a complete teacher run is reused
        teacher_dir = D.teacher_run_dir(dc, run.dir)
        teacher_cfg = teacher_run_config(cfg, teacher_dir.name)
        info = train_helper(
            baseline.main,
            teacher_cfg,
            teacher_dir,
            role="distill.teacher",
            accelerator=run.accelerator,
            log=run.log,
        )
    else:
        info = ModelSource.resolve(dc.teacher, "distill.teacher")
    teacher_config = info.hf_config()

    # ---- data: the student reads with the teacher's tokenizer, so their logits line up --------
    tokenizer = shared_tokenizer(cfg, info, teacher_config.vocab_size, info.load_tokenizer())
    data = loop.prepare_data(run, tokenizer=tokenizer)

    # ---- models: the frozen teacher (eval mode, no grad) and the smaller student ---------------
    teacher = D.freeze_teacher(load_pretrained(str(info.model_dir), dtype=torch_dtype(cfg.model.dtype)))
    teacher = teacher.to(run.accelerator.device)
    set_seed(loop.init_seed(cfg))  # the student's init does not depend on whether a teacher was trained above
    model = build_model(cfg, teacher_config.vocab_size)  # the teacher's logit width (it may pad its vocab)

    # ---- one-time costs, charged before training (never twice: run.charge_once) ----------------
    teacher_fwd = functools.lru_cache(maxsize=None)(lambda T: F.forward_flops_per_token(teacher.config, T))
    t0 = time.perf_counter()
    teacher_eval = loop.evaluate(run, teacher, data)  # the quality the student is distilled towards
    world = run.accelerator.num_processes
    run.charge_once(
        "eval",
        teacher_fwd(data.seq_len) * teacher_eval["eval_tokens"] / world,
        teacher_eval["eval_tokens"] / world,
        time.perf_counter() - t0,
    )
    run.charge_sunk(info, "sunk.teacher_pretrain")  # an efflab teacher's whole bill; unknown: said so
    extra = {
        "teacher": {
            **info.describe(),
            "teacher_pretrain": info.pretrain_flops
            if info.bill
            else f"{info.bill_text()}: no sunk cost charged",
        },
        "teacher_eval_loss": teacher_eval["eval_loss"],
        "teacher_eval_bpb": teacher_eval["eval_bpb"],
        "teacher_forward_flops_per_token": teacher_fwd(data.seq_len),
    }
    run.log(
        f"teacher {info.path} ({info.kind}): eval loss {teacher_eval['eval_loss']:.4f} nats/token; forward "
        f"{teacher_fwd(data.seq_len):.4g} FLOPs/token; pretraining "
        + (
            f"{info.pretrain_flops:.4g} FLOPs (sunk)"
            if info.pretrain_flops is not None
            else "unknown (external)"
        )
    )

    # ---- teacher logits: a forward pass every step, or a top-k cache built once and reused -----
    sampler = loop.BlockSampler(data.train, cfg.train.batch_size, cfg.train.seed, labels=data.train_labels)
    if dc.logits == "cache":
        root = Path(dc.cache_dir).expanduser() if dc.cache_dir else cache_root(cfg.data) / "teacher_logits"
        cache, paid = D.teacher_cache(
            root,
            teacher,
            data.train,
            dc.top_k,
            identity=info.identity,
            forward_flops_per_token=teacher_fwd(data.seq_len),
            accelerator=run.accelerator,
            run_dir=str(run.dir.resolve()),
            batch_size=cfg.eval.batch_size,
            log=run.log,
        )
        users = D.record_cache_use(cache, str(run.dir.resolve())) if run.is_main else 0
        if paid:  # the whole training split, once: an upper bound on what this run reads
            run.charge_once("teacher_forward", cache.flops, cache.tokens, cache.manifest["seconds"])
        elif not run.resumed:  # paid by the run that built it: shown, never summed again
            run.ledger.record_reuse(
                "teacher_forward",
                cache.flops,
                source=str(cache.path),
                tokens=cache.tokens,
                note=f"top-{dc.top_k} teacher logit cache built by {cache.manifest.get('created_by')}",
            )
        extra["cache"] = {
            "path": str(cache.path),
            "flops": cache.flops,
            "tokens": cache.tokens,
            "paid_here": paid,
            "users_so_far": users,
        }
        extra["cache_flops_charged"] = cache.flops if paid else 0.0
        source = D.CachedTeacherSource(sampler, cache)
        teacher.to("cpu")  # not needed any more: every logit the student sees is in the cache

        def teacher_of(batch):
            return D.TopK(batch["teacher_values"], batch["teacher_indices"])
    else:
        source = sampler

        def teacher_of(batch):  # eval mode, inference mode: no graph is kept
            t1 = time.perf_counter()
            out = D.teacher_logits(teacher, batch["input_ids"], dc.top_k)
            n = batch["input_ids"].numel()
            run.ledger.charge(
                "teacher_forward", teacher_fwd(batch["input_ids"].shape[1]) * n, n, time.perf_counter() - t1
            )
            return out

    if not run.resumed:
        run.ledger.extra["distill"] = extra
    loop.write_manifest(
        run,
        distill={
            **extra,
            "loss": dc.loss,
            "alpha": dc.alpha,
            "temperature": dc.temperature,
            "beta": dc.beta,
            "top_k": dc.top_k,
            "logits": dc.logits,
        },
    )

    # ---- the loss: alpha * CE + (1 - alpha) * T^2 * divergence(teacher, student) ---------------
    def loss_fn(student, batch):
        logits = student(input_ids=batch["input_ids"]).logits  # [B, T, V]
        return D.distill_loss(
            logits,
            teacher_of(batch),
            batch.get("labels", batch["input_ids"]),
            alpha=dc.alpha,
            loss=dc.loss,
            temperature=dc.temperature,
            beta=dc.beta,
        )

    # ---- budget: train.budget_flops pays for the student's training, or also its teacher forwards --
    if dc.budget_includes == "marginal" and cfg.train.budget_flops is not None:
        student, whole = F.train_flops_per_token(model.config, data.seq_len), cfg.train.budget_flops
        run.cfg.train.budget_flops = whole * student / (student + teacher_fwd(data.seq_len))
        run.log(
            f"budget_includes=marginal: {run.cfg.train.budget_flops:.4g} of {whole:.4g} FLOPs "
            f"train the student; the rest pays its teacher's forwards"
        )

    # ---- train until the student's budget is spent; every step charges the ledger --------------
    result = loop.train(run, model, data, source=source, loss_fn=loss_fn)
    views = D.bill(run.ledger.reduced(run.accelerator))
    run.log(
        f"bill: marginal {views['marginal']:.4g} FLOPs (student {views['student_train']:.4g} + teacher forward "
        f"{views['teacher_forward']:.4g}); total {views['total']:.4g} (+ teacher pretraining "
        + (
            f"{views['sunk_teacher_pretrain']:.4g})"
            if info.pretrain_flops is not None
            else "unknown: an external model, not charged)"
        )
    )
    return {**result, "teacher_eval_loss": teacher_eval["eval_loss"], "bill": views}


if __name__ == "__main__":
    import sys

    sys.exit(loop.script_main("distill", main))
