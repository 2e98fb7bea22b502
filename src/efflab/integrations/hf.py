"""efflab's FLOP ledger for `transformers.Trainer`, TRL's `SFTTrainer`, or any Trainer subclass.

Trainer's own `total_flos` is 6 x tokens x non-embedding parameters: no attention, every MoE expert
as if active, 6N for a frozen LoRA base, padding charged. efflab's count (docs/conventions.md, printed
in the ledger) has attention at the batch's context length, only routed experts, LoRA's frozen base
without weight gradients, and skips padding (attention_mask = 0)::

    from efflab.integrations.hf import EfflabLedgerCallback, efflab_trainer

    trainer = efflab_trainer(Trainer)(model=model, args=args, train_dataset=ds,
                                      callbacks=[EfflabLedgerCallback()])
    trainer.train()   # args.output_dir/ledger.json; trainer.state.total_flos = efflab's count

`EfflabLedgerCallback` alone is enough for the ledger (it counts every training forward of the model
through a forward pre-hook: micro-batches, gradient accumulation and every data-parallel rank, summed
once); `efflab_trainer(cls)` also makes Trainer's `floating_point_ops` (its logged `total_flos`) use the
same count. Eval and generation forwards (model in eval mode, or no grad) are not charged to `train`.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from efflab.accounting import flops as F
from efflab.accounting.ledger import Ledger


def lora_spec(model) -> F.LoraSpec | None:
    """The LoRA adapters of a peft model (rank, target module names), or None."""
    cfgs = getattr(model, "peft_config", None)
    if not cfgs:
        return None
    c = cfgs.get(getattr(model, "active_adapter", "default")) or next(iter(cfgs.values()))
    if str(getattr(c, "peft_type", "")).split(".")[-1] != "LORA":
        return None
    tm = c.target_modules
    return F.LoraSpec(int(c.r), tm if isinstance(tm, str) else tuple(sorted(tm)))


def _base_config(model):
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.config


class _Counter:
    """Train FLOPs per token of `model` at context T (cached per T)."""

    def __init__(self, model):
        self.config, self.lora = _base_config(model), lora_spec(model)
        self._cache: dict[int, F.FlopCount] = {}

    def count(self, T: int) -> F.FlopCount:
        if T not in self._cache:
            self._cache[T] = F.count_flops(self.config, T, lora=self.lora)
        return self._cache[T]

    def batch(self, input_ids, attention_mask=None) -> tuple[float, int]:
        """(train FLOPs, tokens) of one micro-batch [B, T]: padding (attention_mask 0) excluded."""
        T = int(input_ids.shape[-1])
        tokens = int(attention_mask.sum()) if attention_mask is not None else int(input_ids.numel())
        return self.count(T).train_flops_per_token * tokens, tokens


class EfflabLedgerCallback(TrainerCallback):
    """Charges efflab's train FLOPs for every training micro-batch and writes `ledger.json` into
    `output_dir` (default: the Trainer's `args.output_dir`) when training ends.

    Attributes after training: `ledger` (summed over ranks) and `step_flops` ([(global_step, train
    FLOPs so far on this rank)]).
    """

    def __init__(self, output_dir: str | Path | None = None):
        self.output_dir = output_dir
        self.ledger = Ledger()
        self.step_flops: list[tuple[int, float]] = []
        self._hook = None
        self._counter = None
        self._t0 = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self._counter = _Counter(model)
        self._t0 = time.perf_counter()

        def charge(module, a, kw):
            if not (module.training and torch.is_grad_enabled()):
                return
            ids = kw.get("input_ids", a[0] if a else None)
            if ids is None:
                return
            f, n = self._counter.batch(ids, kw.get("attention_mask"))
            self.ledger.charge("train", f, n)

        self._hook = model.register_forward_pre_hook(charge, with_kwargs=True)

    def on_step_end(self, args, state, control, **kwargs):
        self.step_flops.append((state.global_step, self.ledger.flops("train")))

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        books = self.ledger.local.get("train")
        if books is not None:
            books.seconds = time.perf_counter() - self._t0
        self.ledger = _reduced(self.ledger)
        c = next(iter(self._counter._cache.values()), None) if self._counter else None
        self.ledger.conventions = {
            "count": c.convention if c else "no training forward seen",
            "padding": "excluded (attention_mask = 0); every other processed token charged, labels -100 too",
            "source": "efflab.integrations.hf.EfflabLedgerCallback (a transformers Trainer run)",
        }
        self.ledger.extra["optimizer_steps"] = state.global_step
        if state.is_world_process_zero:
            out = Path(self.output_dir or args.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            self.ledger.save(out / "ledger.json")


def _reduced(ledger: Ledger) -> Ledger:
    """Sum the per-rank train charge over data-parallel ranks (torch.distributed, when initialised)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ledger
    t = ledger.local.get("train")
    v = torch.tensor([t.flops if t else 0.0, t.tokens if t else 0.0], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        v = v.cuda()
    dist.all_reduce(v)
    out = Ledger(extra=dict(ledger.extra))
    out.charge("train", float(v[0]), float(v[1]), t.seconds if t else 0.0)
    return out


class EfflabFlopsMixin:
    """Trainer mixin: `floating_point_ops` (Trainer's `total_flos`) returns efflab's train FLOPs."""

    def floating_point_ops(self, inputs) -> int:
        if getattr(self, "_efflab_counter", None) is None:
            self._efflab_counter = _Counter(self.model)
        ids = inputs.get("input_ids") if hasattr(inputs, "get") else None
        if ids is None:
            return super().floating_point_ops(inputs)
        return int(self._efflab_counter.batch(ids, inputs.get("attention_mask"))[0])


def efflab_trainer(trainer_cls):
    """`trainer_cls` (Trainer, SFTTrainer, a distillation trainer) with efflab's `floating_point_ops`."""
    return type(f"Efflab{trainer_cls.__name__}", (EfflabFlopsMixin, trainer_cls), {})
