"""What every recipe shares: run directory, accelerator, optimizer and schedule, the train step,
evaluation, the FLOP-budget horizon, checkpoint/resume, metrics and the Ledger.

A recipe reads top to bottom and calls, in order:

    run = start_run(cfg, out=..., resume=..., overwrite=...)   # run dir, Accelerator, seed, manifest
    data = prepare_data(run)                                   # blocks + tokenizer (cached)
    model = build_model(cfg, data.vocab_size)                  # LoRA adapters on when lora.r > 0
    result = train(run, model, data, source=BlockSampler(...), loss_fn=..., ...)

`train` reads as its steps: FLOP counters, batch plan and horizon, optimizer setup, restore, the
evaluator, then per step `train_step` -> `charge_step` -> `StepLogger` -> `checkpoint_policy`, and
`end_of_training` -> `finish`.

Techniques plug in as plain functions and objects, never by subclassing: `loss_fn(model, batch)`
(distillation, MoE auxiliary losses), `source` (curriculum order, synthetic data), charges to
`run.ledger` (teacher forward, generation, scoring, sunk pretraining). Observers never change
training state.

Run directory (docs/conventions.md section 1): config.yaml, manifest.json (status last), metrics.jsonl,
ledger.json, model/, checkpoint/. Files are written atomically.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from efflab import __version__, trackers
from efflab.accounting import hardware
from efflab.accounting.flops import count_flops, forward_flops_per_token, train_flops_per_token
from efflab.accounting.ledger import Ledger
from efflab.config import load_config
from efflab.data import cache_root, load_tokenizer, prepare
from efflab.errors import RunFailed, UserError
from efflab.io import DamagedFile, append_jsonl, atomic_write_json, atomic_write_text, read_json
from efflab.models import check_pretrained_tokenizer
from efflab.rundir import RunDir, guarded, held_message
from efflab.runs import UNKNOWN_BILL, ModelSource
from efflab.runs import train_helper as _train_helper
from efflab.samplers import BlockSampler  # noqa: F401  (re-exported: recipes use loop.BlockSampler)

LN2 = math.log(2.0)


# =============================================================================================
# run directory and accelerator
# =============================================================================================
@dataclass
class Run:
    """One run: its config, directory, accelerator and ledger. Created by `start_run`."""

    cfg: object
    dir: Path
    accelerator: object
    ledger: Ledger
    manifest: dict
    resume: bool = False
    complete: bool = False  # the run directory already holds a complete run: nothing to do
    checkpoint: dict | None = None  # trainer state of the checkpoint being resumed
    notes: list = field(default_factory=list)
    rundir: RunDir | None = None  # the directory's files and lock (efflab.rundir); held by the main process
    # resumed from a checkpoint, whose ledger already holds the one-time charges (fixed when the run starts)
    resumed: bool = field(init=False, default=False)

    def __post_init__(self):
        self.resumed = bool(self.resume and (Path(self.dir) / "checkpoint" / "latest.json").exists())

    def charge_once(self, phase: str, flops: float, tokens: float = 0, seconds: float = 0.0, **kw) -> None:
        """Charge a one-time cost (paid before training) to the ledger, unless this run resumed from a
        checkpoint: its ledger came back with the charge already in it."""
        if not self.resumed:
            self.ledger.charge(phase, flops, tokens, seconds, **kw)

    def charge_sunk(self, source: ModelSource, phase: str) -> None:
        """Charge a helper model's own training (its bill) as a shared sunk cost, once; a model whose bill
        is unknown (external) charges nothing and says so in ledger.extra["sunk"]."""
        if self.resumed:
            return
        if source.bill is not None:
            b = source.bill
            self.ledger.charge(phase, b.flops, b.tokens, b.seconds, shared=True)
        else:
            self.ledger.extra.setdefault("sunk", {})[phase] = {
                "source": str(source.path),
                "cost": UNKNOWN_BILL,
            }

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def log(self, msg: str) -> None:
        if self.is_main:
            print(f"[efflab] {msg}", flush=True)

    def result(self) -> dict:
        """The finished run's summary (from manifest.json)."""
        return RunDir(self.dir).read_manifest().get("result", {})


def default_run_dir(cfg, config_path: str | None = None) -> Path:
    name = cfg.name or (f"{cfg.recipe}-{Path(config_path).stem}" if config_path else cfg.recipe)
    return Path("runs") / name


def _git_sha() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _precision(cfg) -> str:
    p = cfg.train.precision
    if p == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[p]


def check_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> list[str]:
    """Problems with the output directory, found before any work starts."""
    probs = []
    rd = RunDir(run_dir)
    if resume and overwrite:
        probs.append("--resume and --overwrite contradict each other")
    if run_dir.exists() and not run_dir.is_dir():
        probs.append(f"output {run_dir} exists and is not a directory")
    elif run_dir.is_dir() and (holder := rd.holder()) is not None:
        probs.append(held_message(run_dir, holder))
    elif overwrite and run_dir.is_dir() and (foreign := rd.foreign_problem()):
        probs.append(foreign)
    elif run_dir.is_dir() and rd.entries() and not (resume or overwrite):
        st = rd.status()
        why = (
            f" (status: failed: {rd.read_manifest().get('error') or 'no reason recorded'})"
            if st == "failed"
            else ""
        )
        probs.append(
            f"run directory {run_dir} already exists{why}: pass --resume to continue it or --overwrite to "
            f"replace it"
        )
    parent = run_dir if run_dir.exists() else next((p for p in run_dir.parents if p.exists()), Path("."))
    if parent != run_dir and not parent.is_dir():
        probs.append(f"output directory {run_dir} is not writable ({parent} is a file, not a directory)")
    elif not os.access(parent, os.W_OK):
        probs.append(f"output directory {run_dir} is not writable ({parent} does not allow writing)")
    return probs


def start_run(
    cfg,
    *,
    out: str | os.PathLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    config_path: str | None = None,
    accelerator=None,
) -> Run:
    """Validate the output directory, start the Accelerator, seed, and write config + manifest."""
    from accelerate.utils import set_seed

    run_dir = Path(out) if out else default_run_dir(cfg, config_path)
    probs = check_run_dir(run_dir, resume=resume, overwrite=overwrite)
    if resume and (run_dir / "config.yaml").exists() and not probs:
        probs += _resume_config_problems(cfg, run_dir)
    if probs:
        raise UserError(probs)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if accelerator is None:
        accelerator = _make_accelerator(cfg, run_dir)
    set_seed(init_seed(cfg))
    ledger = Ledger(conventions=conventions())
    rd = RunDir(run_dir)
    _lock_on_main(rd, accelerator, resume=resume, overwrite=overwrite)
    accelerator.wait_for_everyone()
    if resume and rd.manifest_path.exists():
        manifest = rd.read_manifest()
        if manifest.get("status") == "complete":
            run = Run(
                cfg,
                run_dir,
                accelerator,
                Ledger.load(rd.ledger_path),
                manifest,
                resume=True,
                complete=True,
                rundir=rd,
            )
            run.log(f"{run_dir} is already complete; nothing to do")
            rd.unlock()
            return run
    manifest = _new_manifest(cfg, accelerator)
    run = Run(cfg, run_dir, accelerator, ledger, manifest, resume=resume, rundir=rd)
    for note in rd.notes:
        run.log(note)
    if run.is_main:
        atomic_write_text(
            run_dir / "config.yaml",
            f"# resolved config: efflab run {cfg.recipe} --config this file\n" + cfg.to_yaml(),
        )
        rd.write_manifest(manifest)
        rd.owned = True  # from here on, a failure is recorded in the manifest (efflab.rundir.fail_held)
    trackers.start(accelerator, cfg, run_dir)  # the resolved config goes to every tracker
    return run


def _resume_config_problems(cfg, run_dir: Path) -> list[str]:
    """--resume: the config must be the one the run started with (`log.*` may change)."""
    saved_cfg = run_dir / "config.yaml"
    try:
        old = RunDir(run_dir).read_config()
    except DamagedFile:
        old = None
    if not isinstance(old, dict):
        raise UserError(
            f"--resume: {saved_cfg} is damaged (not a YAML mapping); start the run again with --overwrite"
        )
    new = cfg.to_dict()
    diffs = _dict_diff(old, new)
    diffs = [d for d in diffs if not d.startswith("log.")]
    if diffs:
        return [
            f"--resume: the config differs from the one {run_dir} was started with: {', '.join(diffs[:8])}"
            + (" ..." if len(diffs) > 8 else "")
        ]
    return []


def _make_accelerator(cfg, run_dir: Path):
    """The run's Accelerator: its precision, one accumulation step (the loop sets it), the trackers."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # one process may run several recipes (tests, the suite): let each choose its own precision
    AcceleratorState._reset_state(reset_partial_state=False)
    kw = trackers.accelerator_kwargs(cfg, run_dir)
    return Accelerator(
        mixed_precision=_precision(cfg),
        gradient_accumulation_steps=1,
        step_scheduler_with_optimizer=False,
        cpu=not torch.cuda.is_available(),
        **kw,
    )


def _new_manifest(cfg, accelerator) -> dict:
    """manifest.json of a run that starts: versions, machine, seed, status running."""
    import accelerate
    import transformers

    return {
        "efflab": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": platform.python_version(),
        "git_sha": _git_sha(),
        "recipe": cfg.recipe,
        "device": _device_name(accelerator.device),
        "world_size": accelerator.num_processes,
        "mixed_precision": accelerator.mixed_precision,
        "seed": cfg.train.seed,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",
    }


def _lock_on_main(rd: RunDir, accelerator, *, resume: bool, overwrite: bool) -> None:
    """The main process takes the directory's lock (`_lock_and_check`); a refusal stops every rank."""
    refused = None
    if accelerator.is_main_process:  # one writer: the lock is held until the run ends (efflab.rundir)
        try:
            _lock_and_check(rd, resume=resume, overwrite=overwrite)
        except UserError as e:
            refused = e
    if accelerator.num_processes > 1:  # every rank stops with the main one (none waits at a barrier)
        from accelerate.utils import broadcast_object_list

        msg = broadcast_object_list([refused.message if refused else None])[0]
        if msg and refused is None:
            raise UserError(msg)
    if refused is not None:
        raise refused


def _lock_and_check(rd: RunDir, *, resume: bool, overwrite: bool) -> None:
    """Take the directory's lock, then (under it) refuse a damaged or failed run for --resume, or empty
    the old run for --overwrite. Nothing is removed before the lock is held."""
    rd.lock()
    try:
        if resume:
            probs = rd.resume_problems()
            if probs:
                raise UserError(probs)
        if overwrite:
            foreign = rd.foreign_problem()  # checked again under the lock
            if foreign:
                raise UserError(foreign)
            rd.clear()
    except BaseException:
        rd.unlock()
        raise


def _dict_diff(a, b, prefix="") -> list[str]:
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            out += _dict_diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def conventions(causal: bool = False) -> dict:
    """The FLOP conventions every ledger records (docs/conventions.md section 2)."""
    return {
        "multiply_add": "2 FLOPs",
        "forward": "2 x active matmul params (LM head included, embedding lookup excluded) + attention "
        "scores and values 4 x n_layer x T x d_attn" + (" halved (causal)" if causal else " in full"),
        "train": "3 x forward; frozen weights: backward computes input gradients only (2x, not 4x)",
        "moe": "router 2 x d_model x n_experts + top-k routed (and shared) experts only",
        "excluded": "padding, eval (its own phase, never summed), activation recomputation",
        "executed": "executed_flops and mfu_executed: causal attention halved, as flash attention runs it "
        "(the masked half is skipped); flops and mfu count attention in full (model FLOPs)",
        "distributed": "summed over every micro-batch on every rank, once",
    }


def write_manifest(run: Run, **updates) -> None:
    run.manifest.update(updates)
    if run.is_main:
        RunDir(run.dir).write_manifest(run.manifest)


# =============================================================================================
# data
# =============================================================================================
def prepare_data(run: Run, *, tokenizer=None):
    """Corpus, tokenizer and packed blocks (main process first, so ranks share the cache)."""

    cfg = run.cfg
    if tokenizer is None and cfg.model.pretrained and cfg.data.tokenizer == "train":
        # fine-tuning: the data pipeline uses the pretrained model's own tokenizer (and chat template)

        check_pretrained_tokenizer(cfg.model.pretrained)
        tokenizer = load_tokenizer(cfg.model.pretrained, cfg.model.trust_remote_code)
    with run.accelerator.main_process_first():
        data = prepare(
            cfg.data, cfg.eval.max_blocks, tokenizer=tokenizer, log=run.log, eval_split=cfg.eval.split
        )
    write_manifest(run, data=data.meta)
    run.log(
        f"data: {data.meta['train_tokens']:,} train tokens in {data.meta['train_blocks']:,} blocks of "
        f"{data.seq_len}; eval {data.meta['eval_tokens']:,} tokens; vocab {data.vocab_size:,}; "
        f"unigram entropy {data.meta['unigram_entropy_nats']:.3f} nats/token"
    )
    return data


# =============================================================================================
# optimizer, schedule, horizon
# =============================================================================================
def make_optimizer(model, cfg, device) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only; fused (switchable) on GPU and CPU: on a CPU the fused
    kernel halves clip + AdamW time for tiny models (3.3 vs 7.6 ms a step for the reference shape, one
    thread, load 10) and matches the for-loop AdamW to 1e-7."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    fused = {"on": True, "off": False, "auto": device.type in ("cuda", "cpu")}[cfg.train.fused_optimizer]
    groups = [
        {"params": decay, "weight_decay": cfg.train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kw = {"fused": True} if fused else {}
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=(cfg.train.beta1, cfg.train.beta2), **kw)


def init_seed(cfg) -> int:
    """The seed of the initial weights: train.init_seed, else train.seed (which also orders the data)."""
    return cfg.train.seed if cfg.train.init_seed is None else cfg.train.init_seed


def compile_model(model, cache_dir: str | os.PathLike | None = None):
    """torch.compile (inductor) on any device. Inductor caches compiled graphs on disk (FX-graph and
    AOT-autograd caches, keyed by graph, shapes and torch version), and within one process a second
    model of the same shape reuses the compiled code, so the runs of a suite that share a shape
    compile once. Measured on a 2-core CPU, reference shape (2 x 64, T 128, batch 32), one thread:
    first compile ~60-70 s (idle), a new process with the disk cache warm ~3 s idle (5.6 CPU s under
    load), a second model in the same process ~0.02 CPU s; the compiled step costs ~0.8-0.9x the
    eager one (benchmarks/throughput.py). So a lone ~50 s run only breaks even; a suite's later runs
    gain. The cache lives in $TORCHINDUCTOR_CACHE_DIR, by default `cache_dir` (efflab's cache
    directory + /inductor) rather than /tmp, so it survives reboots."""
    if cache_dir is not None and not _user_inductor_cache_dir():
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(Path(cache_dir) / "inductor")
    return torch.compile(model)


def _user_inductor_cache_dir() -> bool:
    """Whether $TORCHINDUCTOR_CACHE_DIR was chosen by the user (importing torch._dynamo writes
    inductor's default, /tmp/torchinductor_<user>, into it)."""
    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not current:
        return False
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:
        return True
    return os.path.abspath(current) != os.path.abspath(default_cache_dir())


def lr_lambda(total_steps: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warmup, then cosine decay to `min_ratio` x peak at the last step."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        span = max(1, total_steps - warmup)
        prog = min(1.0, (step - warmup) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * prog))

    return f


def horizon(cfg, source, flops_per_token: Callable[[int], float]) -> int:
    """Optimizer steps for the configured budget (train-phase FLOPs, tokens, or steps).

    Tokens per step are `source.tokens_at(step)` when the source defines it (rows of varying count or
    length), else batch_size x seq_len_at(step).
    """
    t = cfg.train
    if t.steps is not None:
        return int(t.steps)
    steps, spent = 0, 0.0
    limit = t.budget_flops if t.budget_flops is not None else t.budget_tokens
    tokens_at = getattr(source, "tokens_at", None)  # sources whose rows vary (e.g. length warmup)
    while True:
        T = source.seq_len_at(steps)
        tokens = tokens_at(steps) if tokens_at else cfg.train.batch_size * T
        cost = tokens * (flops_per_token(T) if t.budget_flops is not None else 1.0)
        if spent + cost > limit * (1 + 1e-9):
            break
        spent += cost
        steps += 1
        if steps > 10_000_000:  # a typo (1e30) or a budget no tiny config should have: refuse, never truncate
            what = "budget_flops" if t.budget_flops is not None else "budget_tokens"
            raise UserError(
                f"train.{what}={limit:.3g} means more than 10,000,000 optimizer steps of "
                f"{cost:.3g}; lower it, or raise train.batch_size"
            )
    if steps < 1:
        what = "budget_flops" if t.budget_flops is not None else "budget_tokens"
        raise UserError(
            f"train.{what}={limit:.3g} is smaller than one optimizer step "
            f"({cost:.3g}); raise it or lower train.batch_size"
        )
    return steps


# =============================================================================================
# evaluation
# =============================================================================================
@torch.no_grad()
def evaluate(run: Run, model, data, batch_size: int | None = None) -> dict:
    """Held-out loss in nats/token and bits per byte over the fixed eval blocks (sharded by rank)."""
    acc = run.accelerator
    bs = batch_size or run.cfg.eval.batch_size
    blocks = data.eval[acc.process_index :: acc.num_processes]
    was_training = model.training
    model.eval()
    nll = torch.zeros(2, dtype=torch.float64, device=acc.device)
    labels = (
        data.eval_labels[acc.process_index :: acc.num_processes] if data.eval_labels is not None else blocks
    )
    for i in range(0, len(blocks), bs):
        ids = torch.from_numpy(blocks[i : i + bs].astype(np.int64)).to(acc.device)
        lab = torch.from_numpy(labels[i : i + bs].astype(np.int64)).to(acc.device)
        with acc.autocast():
            out = model(input_ids=ids, labels=lab)
        n = int((lab[:, 1:] != -100).sum())  # predicted (trained) positions
        if n == 0:
            continue
        nll[0] += out.loss.double() * n
        nll[1] += n
    if acc.num_processes > 1:
        nll = acc.reduce(nll, reduction="sum")
    model.train(was_training)
    loss = float(nll[0] / nll[1])
    return {"eval_loss": loss, "eval_bpb": float(nll[0]) / LN2 / data.eval_bytes, "eval_tokens": int(nll[1])}


def default_loss(model, batch: dict):
    """Causal LM cross-entropy (nats/token) on the batch; labels default to the inputs."""
    out = model(input_ids=batch["input_ids"], labels=batch.get("labels", batch["input_ids"]))
    return out.loss, {}


# =============================================================================================
# checkpoint / resume
# =============================================================================================
def _ckpt_root(run: Run) -> Path:
    return run.dir / "checkpoint"


def save_checkpoint(run: Run, step: int, state: dict) -> None:
    """accelerate state (model, optimizer, scheduler, RNG) + per-rank ledger and trainer state.

    Written to checkpoint/step-N, then `latest.json` is switched atomically; a kill at any moment
    leaves the previous checkpoint valid.
    """
    acc = run.accelerator
    root = _ckpt_root(run)
    path = root / f"step-{step:08d}"
    acc.wait_for_everyone()
    acc.save_state(str(path))
    atomic_write_json(
        path / f"trainer_state_rank{acc.process_index}.json",
        {**state, "step": step, "ledger": run.ledger.to_dict()},
    )
    acc.wait_for_everyone()
    if run.is_main:
        atomic_write_json(root / "latest.json", {"step": step, "dir": path.name})
        for old in root.glob("step-*"):
            if old.name != path.name:
                shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def load_checkpoint(run: Run) -> dict | None:
    """Restore accelerate state and the ledger; returns the trainer state, or None to start fresh."""
    root = _ckpt_root(run)
    if not (root / "latest.json").exists():
        return None
    probs = RunDir(run.dir).checkpoint_problems()
    if probs:
        raise UserError(
            [f"--resume: {p}" for p in probs],
            header=f"--resume: the checkpoint in {root} is damaged (start the run again with --overwrite)",
        )
    latest = read_json(root / "latest.json")
    path = root / latest["dir"]
    try:
        run.accelerator.load_state(str(path))
    except (RuntimeError, ValueError, KeyError, EOFError, OSError, __import__("pickle").UnpicklingError) as e:
        # the files passed the header checks but their contents do not load; say which, never how to load unsafely
        raise UserError(
            f"--resume: the checkpoint {path} does not load ({type(e).__name__}); it is damaged: start "
            f"the run again with --overwrite"
        ) from None
    state = read_json(path / f"trainer_state_rank{run.accelerator.process_index}.json")
    run.ledger = Ledger.from_dict(state.pop("ledger"))
    return state


# =============================================================================================
# the loop
# =============================================================================================
def _fmt(x: float) -> str:
    return f"{x:.3g}"


def train(
    run: Run,
    model,
    data,
    *,
    source=None,
    loss_fn: Callable | None = None,
    flops_per_token: Callable[[int], float] | None = None,
    eval_fn: Callable | None = None,
    metrics_fn: Callable | None = None,
    lora=None,
) -> dict:
    """Train `model` until the budget is spent; charge the Ledger every step; eval, log, checkpoint.

    model: as `efflab.models.build_model` returns it (LoRA adapters already on when `lora.r` is set).
    source: `batch(step) -> {"input_ids": [B_global, T], "labels"?}`, `seq_len_at(step)`, state_dict.
    loss_fn: `(model, micro_batch) -> (loss, {name: float})`; default causal LM cross-entropy.
    flops_per_token: train FLOPs per processed token at a sequence length; default from the
        accounting layer for the model's config (LoRA-aware).
    lora: the LoRA config the FLOP count assumes; default the run config's `lora` section when `r` > 0.
    metrics_fn: `(model) -> dict` extra diagnostics logged at eval points (observers only).
    Returns the result summary also stored in manifest.json.
    """
    cfg = run.cfg
    source = source or BlockSampler(
        data.train, cfg.train.batch_size, cfg.train.seed, labels=data.train_labels
    )
    loss_fn = loss_fn or default_loss
    counted_lora = lora_for_count(cfg, model, lora)
    flops = FlopCounters(base_config(model), data.seq_len, lora=counted_lora, train_fn=flops_per_token)
    plan = plan_training(run, source, flops.train)
    model, optimizer, scheduler = setup_optimization(run, model, plan)
    start_step = restore(run, source, plan.total_steps, observer=metrics_fn)
    state = functools.partial(trainer_state, source, plan.total_steps, metrics_fn)
    peak = _peak_flops(run.accelerator.device)  # here: measuring a CPU's peak draws from torch's RNG
    n_params = announce(run, model, plan, source, flops, start_step)
    evaluator = Evaluator(run, model, data, flops, eval_fn=eval_fn, metrics_fn=metrics_fn)
    last_eval = evaluator.first(start_step)
    logger = StepLogger(run, plan, flops, evaluator, peak, progress_bar(run, plan.total_steps, start_step))
    model.train()
    window = Window()
    for step in range(start_step + 1, plan.total_steps + 1):
        done = train_step(run, model, optimizer, scheduler, source, loss_fn, plan, step)
        charge_step(run, flops, done, step)
        window.add(done, plan.world)
        if logger.due(step):
            last_eval = logger(step, window, done, scheduler) or last_eval
            window = Window()
        logger.tick()
        checkpoint_policy(run, step, plan.total_steps, state)
    logger.close()
    last_eval = end_of_training(run, plan.total_steps, start_step, state, evaluator, last_eval)
    return finish(run, model, data, last_eval, plan.total_steps, n_params)


# ---- step 1: FLOPs per token (docs/conventions.md section 2), cached per sequence length ------------
def base_config(model):
    """The transformers config of the model under any peft wrapper: the shape FLOPs are counted for."""
    return model.get_base_model().config if hasattr(model, "get_base_model") else model.config


def lora_for_count(cfg, model, lora=None):
    """The LoRA config the FLOP count assumes: `lora` if given, else `cfg.lora` when its r > 0. A run
    config asking for LoRA with a model that has no adapters is a recipe error (the count would be
    wrong): LoRA goes on where the model is built (`efflab.models.build_model`)."""
    if lora is not None:
        return lora
    if not cfg.lora.r:
        return None
    if not hasattr(model, "peft_config"):
        raise ValueError(
            f"lora.r={cfg.lora.r} but the model has no LoRA adapters: build it with "
            f"efflab.models.build_model (which applies them), or pass lora= for adapters put on otherwise"
        )
    return cfg.lora


class FlopCounters:
    """FLOPs per token from the accounting layer for one model config (LoRA-aware), per sequence length:
    `train(T)` model FLOPs of a train step (attention in full), `executed(T)` as flash attention runs it
    (causal half), `recompute(T)` hardware FLOPs of gradient checkpointing, and the eval forward pass
    (`eval_forward`, `eval_forward_executed`) at the eval length. `train_fn` replaces the train count
    (a recipe's own); the executed count keeps the accounting layer's causal / full ratio on top of it."""

    def __init__(
        self, config, eval_seq_len: int, *, lora=None, train_fn: Callable[[int], float] | None = None
    ):
        self.config, self.lora, self._train_fn = config, lora, train_fn
        self._train: dict[int, float] = {}
        self._exec_ratio: dict[int, float] = {}
        self._recompute: dict[int, float] = {}
        self.eval_forward = forward_flops_per_token(config, eval_seq_len)
        self.eval_forward_executed = forward_flops_per_token(config, eval_seq_len, causal=True)

    def train(self, T: int) -> float:
        """Train FLOPs per processed token at length T (ledger `flops`)."""
        if self._train_fn is not None:
            return self._train_fn(T)
        if T not in self._train:
            self._train[T] = train_flops_per_token(self.config, T, lora=self.lora)
        return self._train[T]

    def executed(self, T: int) -> float:
        """Train FLOPs per token as flash attention executes causal attention (ledger `executed_flops`):
        the model count scaled by the accounting layer's causal / full ratio at this length."""
        if T not in self._exec_ratio:
            full = train_flops_per_token(self.config, T, lora=self.lora)
            self._exec_ratio[T] = train_flops_per_token(self.config, T, causal=True, lora=self.lora) / full
        return self.train(T) * self._exec_ratio[T]

    def recompute(self, T: int) -> float:
        """Gradient checkpointing re-runs each decoder layer's forward in backward: hardware FLOPs,
        not model FLOPs (docs/conventions.md section 2); reported beside the ledger, never in it."""
        if T not in self._recompute:
            c = count_flops(self.config, T, lora=self.lora)
            self._recompute[T] = c.forward_flops_per_token - c.breakdown.get("lm_head", 0.0)
        return self._recompute[T]


# ---- step 2: batch split and horizon ----------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """How each optimizer step is split (global batch -> processes -> micro-batches) and how many run."""

    world: int  # processes
    batch: int  # global batch (sequences per optimizer step)
    micro: int  # sequences per micro-batch on one process
    accum: int  # micro-batches per optimizer step on one process
    total_steps: int  # optimizer steps the budget buys
    warmup: int  # learning-rate warmup steps


def plan_training(run: Run, source, flops_per_token: Callable[[int], float]) -> Plan:
    """Split the global batch over processes and micro-batches (bad splits are user errors), set the
    accelerator's accumulation, and resolve the horizon and the warmup (a fraction < 1 of the horizon)."""
    cfg, acc = run.cfg, run.accelerator
    world = acc.num_processes
    B = cfg.train.batch_size
    if B % world:
        raise UserError(f"train.batch_size={B} is not divisible by the {world} processes")
    per_rank = B // world
    micro = min(cfg.train.micro_batch_size or per_rank, per_rank)
    if per_rank % micro:
        raise UserError(f"train.micro_batch_size={micro} does not divide the per-process batch {per_rank}")
    accum = per_rank // micro
    acc.gradient_accumulation_steps = accum
    total_steps = horizon(cfg, source, flops_per_token)
    warm = cfg.train.warmup_steps
    warmup = int(round(warm * total_steps)) if isinstance(warm, float) and warm < 1 else int(warm)
    return Plan(world, B, micro, accum, total_steps, warmup)


# ---- step 3: gradient checkpointing, optimizer, schedule, accelerate, compile -------------------------
def setup_optimization(run: Run, model, plan: Plan):
    """Returns (model, optimizer, scheduler), prepared by accelerate (and compiled if asked)."""
    cfg, acc = run.cfg, run.accelerator
    if cfg.train.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    optimizer = make_optimizer(model, cfg, acc.device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(plan.total_steps, plan.warmup, cfg.train.min_lr_ratio)
    )
    model, optimizer, scheduler = acc.prepare(model, optimizer, scheduler)
    if cfg.train.compile:  # CPU too: pays where many runs share a shape (see compile_model)
        model = compile_model(model, cache_root(cfg.data))
    return model, optimizer, scheduler


# ---- step 4: resume ---------------------------------------------------------------------------------
def restore(run: Run, source, total_steps: int, observer=None) -> int:
    """The step training starts from: the checkpoint's (state, ledger, source and an observer's counters
    restored; metrics rows logged after it dropped, to be logged again) on --resume, else 0 with an empty
    metrics.jsonl."""
    metrics_path = run.dir / "metrics.jsonl"
    start_step = 0
    state = load_checkpoint(run) if run.resume else None
    if state is not None:
        start_step = state["step"]
        source.load_state_dict(state.get("source", {}))
        if "observer" in state and hasattr(observer, "load_state_dict"):
            observer.load_state_dict(state["observer"])
        run.log(f"resuming from step {start_step} of {total_steps}")
        if run.is_main:  # drop rows logged after the checkpoint: they will be logged again
            reader = RunDir(run.dir)
            rows = [r for r in reader.read_metrics() if r.get("step", 0) <= start_step]
            for note in reader.notes:
                run.log(note)
            atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in rows))
    elif run.is_main:
        if run.resume:
            run.log("no checkpoint found: starting from the beginning")
        atomic_write_text(metrics_path, "")
    run.accelerator.wait_for_everyone()
    return start_step


def announce(run: Run, model, plan: Plan, source, flops: FlopCounters, start_step: int) -> int:
    """Log what is about to train; returns the parameter count (frozen ones included)."""
    acc = run.accelerator
    n_params = sum(p.numel() for p in acc.unwrap_model(model).parameters())
    n_train = sum(p.numel() for p in acc.unwrap_model(model).parameters() if p.requires_grad)
    trainable = "" if n_train == n_params else f" ({n_train:,} trainable)"
    T = source.seq_len_at(start_step)
    precision = "fp32" if acc.mixed_precision == "no" else acc.mixed_precision + " autocast"
    run.log(
        f"training {run.cfg.recipe}: {n_params:,} params{trainable}, {plan.total_steps} steps x "
        f"{plan.batch} x {T} tokens, {flops.train(T):.4g} train FLOPs/token, {plan.accum} micro-step(s) "
        f"of {plan.micro} per process, {plan.world} process(es), {precision}"
    )
    return n_params


# ---- metrics rows -----------------------------------------------------------------------------------
def log_row(run: Run, row: dict) -> None:
    """One metrics.jsonl row (main process) and the same scalars to every tracker."""
    if run.is_main:
        append_jsonl(run.dir / "metrics.jsonl", row)
    if trackers.names(run.cfg):
        run.accelerator.log(trackers.scalars(row), step=row["step"])


def flops_row(led: Ledger) -> dict:
    """A metrics row's `flops`: every phase's FLOPs so far (train first), marginal and total."""
    ph = led.phases()
    d = {"train": 0.0, **{k: v.flops for k, v in ph.items()}}
    d.update(marginal=led.marginal, total=led.total)
    return d


# ---- step 5: evaluation, charged to its own ledger phase ---------------------------------------------
class Evaluator:
    """Held-out eval at a step: charged to the ledger's eval phase (forward FLOPs of the eval tokens),
    logged as a metrics row with the ledger so far, `extra` (the train window) and `metrics_fn`'s
    diagnostics. Eval runs the uncompiled module: its no-grad graph and eval batch would be more compiles."""

    def __init__(self, run: Run, model, data, flops: FlopCounters, *, eval_fn=None, metrics_fn=None):
        self.run, self.model, self.data, self.flops = run, model, data, flops
        self.eval_fn, self.metrics_fn = eval_fn or evaluate, metrics_fn

    def due(self, step: int, total_steps: int) -> bool:
        return step % self.run.cfg.eval.every == 0 or step == total_steps

    def __call__(self, step: int, extra: dict) -> dict:
        run, acc, world = self.run, self.run.accelerator, self.run.accelerator.num_processes
        t0 = time.perf_counter()
        ev = self.eval_fn(run, getattr(self.model, "_orig_mod", self.model), self.data)
        run.ledger.charge(
            "eval",
            self.flops.eval_forward * ev["eval_tokens"] / world,
            ev["eval_tokens"] / world,
            time.perf_counter() - t0,
            executed_flops=self.flops.eval_forward_executed * ev["eval_tokens"] / world,
        )
        led = run.ledger.reduced(acc)
        row = {"step": step, "tokens": led.tokens("train"), "flops": flops_row(led), **extra, **ev}
        if self.metrics_fn is not None:
            row.update(self.metrics_fn(acc.unwrap_model(self.model)) or {})
        log_row(run, row)
        return row

    def first(self, start_step: int) -> dict | None:
        """The step-0 eval of a run that starts from the beginning (None when resuming)."""
        if start_step != 0:
            return None
        ev = self(0, {})
        self.run.log(f"step 0: eval loss {ev['eval_loss']:.4f} nats/token, {ev['eval_bpb']:.4f} bpb")
        return ev


def progress_bar(run: Run, total_steps: int, start_step: int):
    """A tqdm bar on the main process when `log.progress` (it hides itself without a terminal)."""
    if not (run.is_main and run.cfg.log.progress):
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=total_steps,
        initial=start_step,
        desc=f"{run.cfg.recipe}",
        unit="step",
        dynamic_ncols=True,
        mininterval=1.0,
        disable=None,
    )


# ---- step 6: one optimizer step ---------------------------------------------------------------------
@dataclass
class StepDone:
    """What one optimizer step did on this process."""

    loss: float  # mean loss over the micro-batches (nats/token for the default loss)
    logs: list  # (name, value / accum) per micro-batch, in order: loss_fn's extra numbers
    tokens: int  # tokens this process processed (rows x T, padding included)
    T: int  # sequence length of the step
    gnorm: object  # gradient norm before clipping (a tensor), None without train.grad_clip
    seconds: float
    trained_tokens: int | None  # chat data: tokens that carry a loss (labels != -100); else None


def train_step(run: Run, model, optimizer, scheduler, source, loss_fn, plan: Plan, step: int) -> StepDone:
    """Take this process's share of the step's global batch, run it as `plan.accum` micro-batches
    (gradients accumulated, clipped and applied once), then advance the schedule."""
    acc, accum = run.accelerator, plan.accum
    t0 = time.perf_counter()
    batch = source.batch(step - 1)
    rows, T = (int(x) for x in batch["input_ids"].shape)  # [B_global, T]
    if rows % (plan.world * accum):  # a source may return more, shorter rows (length warmup)
        raise RuntimeError(
            f"source returned {rows} rows at step {step}: not divisible by {plan.world * accum}"
        )
    r_rank, r_micro = rows // plan.world, rows // plan.world // accum
    share = {k: v[acc.process_index * r_rank : (acc.process_index + 1) * r_rank] for k, v in batch.items()}
    step_loss, logs, gnorm = torch.zeros((), device=acc.device), [], None
    for m in range(accum):
        mb = {k: v[m * r_micro : (m + 1) * r_micro].to(acc.device) for k, v in share.items()}
        with acc.accumulate(model):
            with acc.autocast():
                loss, extra = loss_fn(model, mb)
            acc.backward(loss)
            if acc.sync_gradients:
                clip = run.cfg.train.grad_clip
                gnorm = acc.clip_grad_norm_(model.parameters(), clip) if clip else None
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        step_loss += loss.detach() / accum
        logs += [(k, float(v) / accum) for k, v in (extra or {}).items()]
    scheduler.step()
    dt = time.perf_counter() - t0
    trained = int((share["labels"][:, 1:] != -100).sum()) if "labels" in share else None
    return StepDone(float(step_loss), logs, r_rank * T, T, gnorm, dt, trained)


# ---- step 7: the step's ledger charges; a non-finite loss ends the run ---------------------------------
def charge_step(run: Run, flops: FlopCounters, done: StepDone, step: int) -> None:
    """Charge the train phase (model and executed FLOPs, tokens, seconds), the trained-token and
    recompute extras; a loss that is not finite fails the run (metrics row, ledger, manifest)."""
    tokens, T = done.tokens, done.T
    run.ledger.charge(
        "train", flops.train(T) * tokens, tokens, done.seconds, executed_flops=flops.executed(T) * tokens
    )
    ex = run.ledger.extra
    if done.trained_tokens is not None:  # chat data: every processed token costs FLOPs; only responses train
        ex["trained_tokens"] = ex.get("trained_tokens", 0) + done.trained_tokens
    if run.cfg.train.gradient_checkpointing:
        ex["recompute_flops"] = ex.get("recompute_flops", 0.0) + flops.recompute(T) * tokens
    if not math.isfinite(done.loss):
        fail_run(
            run, step, f"the training loss became {done.loss} at step {step}; stopped (try a lower train.lr)"
        )


def fail_run(run: Run, step: int, msg: str) -> None:
    """Record a failed run (a metrics row with the error, the ledger, the manifest) and raise RunFailed."""
    log_row(run, {"step": step, "train_loss": None, "error": msg})
    led = run.ledger.reduced(run.accelerator)
    if run.is_main:
        led.save(run.dir / "ledger.json")
    write_manifest(run, status="failed", error=msg, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    if run.rundir is not None:
        run.rundir.unlock()
    raise RunFailed(msg)


# ---- step 8: window averages, the metrics row, trackers and progress -----------------------------------
@dataclass
class Window:
    """Train numbers summed since the last logged step (averaged when logged)."""

    tokens: float = 0.0  # over all processes
    seconds: float = 0.0
    loss: float = 0.0
    n: int = 0
    logs: dict = field(default_factory=dict)

    def add(self, done: StepDone, world: int) -> None:
        self.tokens += done.tokens * world
        self.seconds += done.seconds
        self.loss += done.loss
        self.n += 1
        for k, v in done.logs:
            self.logs[k] = self.logs.get(k, 0.0) + v


class StepLogger:
    """The metrics row of a log step (an eval row at eval points: `Evaluator`), one progress line per log
    step without a terminal (SLURM, nohup), and the progress bar's postfix with one."""

    def __init__(self, run: Run, plan: Plan, flops: FlopCounters, evaluator: Evaluator, peak, bar):
        self.run, self.plan, self.flops, self.evaluator = run, plan, flops, evaluator
        self.peak, self.bar = peak, bar  # peak: the device's FLOP/s for MFU (None: unknown)

    def due(self, step: int) -> bool:
        return step % self.run.cfg.log.every == 0 or self.evaluator.due(step, self.plan.total_steps)

    def __call__(self, step: int, window: Window, done: StepDone, scheduler) -> dict | None:
        """Log the window's averages at `step`; returns the eval row when this step evaluated."""
        tps = window.tokens / max(window.seconds, 1e-9)
        fps = tps * self.flops.train(done.T)
        peak, world = self.peak, self.plan.world
        extra = {
            "train_loss": window.loss / window.n,
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": float(done.gnorm) if done.gnorm is not None else None,
            "tokens_per_s": tps,
            "model_flops_per_s": fps,
            "mfu": fps / peak / world if peak else None,
            "mfu_executed": tps * self.flops.executed(done.T) / peak / world if peak else None,
            "seq_len": done.T,
            **{k: v / window.n for k, v in window.logs.items()},
        }
        ev = None
        if self.evaluator.due(step, self.plan.total_steps):
            ev = self.evaluator(step, extra)
        else:
            led = self.run.ledger.reduced(self.run.accelerator)
            log_row(self.run, {"step": step, "tokens": led.tokens("train"), "flops": flops_row(led), **extra})
        self.show(step, extra, tps, ev)
        return ev

    def show(self, step: int, extra: dict, tps: float, ev: dict | None) -> None:
        run, cfg, total = self.run, self.run.cfg, self.plan.total_steps
        fl, tk = run.ledger.flops("train") * self.plan.world, run.ledger.tokens("train") * self.plan.world
        if run.is_main and trackers.want_lines(cfg):
            pct = trackers.budget_pct(cfg, step, total, fl, tk)
            run.log(trackers.progress_line(step, total, extra["train_loss"], tps, fl, pct, extra["mfu"]))
        if self.bar is not None:
            post = {"loss": f"{extra['train_loss']:.3f}", "tok/s": f"{tps:,.0f}", "FLOPs": _fmt(fl)}
            if ev is not None:
                post["eval"] = f"{ev['eval_loss']:.3f}"
            self.bar.set_postfix(post, refresh=False)

    def tick(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- step 9: checkpoints and the end of training -------------------------------------------------------
def trainer_state(source, total_steps: int, observer=None) -> dict:
    """What a checkpoint keeps beside accelerate's state and the ledger: the source's position, the
    horizon, and the counters of an observer that has them (MoE routing since the last eval)."""
    state = {"source": source.state_dict(), "total_steps": total_steps}
    if hasattr(observer, "state_dict"):
        state["observer"] = observer.state_dict()
    return state


def checkpoint_policy(run: Run, step: int, total_steps: int, state: Callable[[], dict]) -> None:
    """Every `train.checkpoint_every` steps before the last (the last step's is `end_of_training`'s)."""
    every = run.cfg.train.checkpoint_every
    if every and step % every == 0 and step < total_steps:
        save_checkpoint(run, step, state())


def end_of_training(
    run: Run, total_steps: int, start_step: int, state: Callable[[], dict], evaluator, last_eval
) -> dict:
    """The end-of-training checkpoint (checkpoint_every: 0 = only this one) and the final eval row,
    unless the last step already logged one; returns the final eval."""
    if total_steps > start_step:
        save_checkpoint(run, total_steps, state())
    if last_eval is None or last_eval.get("step") != total_steps:  # resumed at the very end
        last_eval = evaluator(total_steps, {})
    return last_eval


def _peak_flops(device) -> float | None:
    try:
        return hardware.device_peak_flops(device)
    except AttributeError:
        return None


def finish(run: Run, model, data, last_eval: dict, steps: int, n_params: int) -> dict:
    """Save the model (save_pretrained + tokenizer), the reduced ledger, and the manifest (last)."""
    acc = run.accelerator
    led = run.ledger.reduced(acc)
    acc.wait_for_everyone()
    unwrapped = acc.unwrap_model(model)
    unwrapped = getattr(unwrapped, "_orig_mod", unwrapped)
    from accelerate.utils import DistributedType

    # FSDP / DeepSpeed shard the weights: every rank takes part in gathering the full state dict, the
    # way accelerate documents the save (Accelerator.get_state_dict); rank 0 writes it
    sharded = acc.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)
    state = acc.get_state_dict(model) if sharded else None
    if hasattr(unwrapped, "merge_and_unload") and run.cfg.lora.merge_on_save:
        if sharded:  # merging needs the whole base on one rank: the adapters are saved unmerged
            run.log("lora.merge_on_save: sharded training saves the LoRA adapters unmerged (peft format)")
        else:
            unwrapped = unwrapped.merge_and_unload()
    if run.is_main:
        tmp = run.dir / "model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        unwrapped.save_pretrained(
            str(tmp), safe_serialization=True, **({"state_dict": state} if sharded else {})
        )
        data.tokenizer.save_pretrained(str(tmp))
        final = run.dir / "model"
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        led.save(run.dir / "ledger.json")
    result = {
        "final_eval_loss": last_eval["eval_loss"],
        "final_eval_bpb": last_eval["eval_bpb"],
        "steps": steps,
        "train_tokens": led.tokens("train"),
        "flops_marginal": led.marginal,
        "flops_total": led.total,
        "params": n_params,
    }
    if trackers.names(run.cfg):
        acc.end_training()
    write_manifest(run, status="complete", finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), result=result)
    if run.is_main and not run.cfg.train.keep_checkpoint:  # complete: the model/ directory is the result
        shutil.rmtree(_ckpt_root(run), ignore_errors=True)
    if run.rundir is not None:
        run.rundir.unlock()
    run.log(
        f"done: eval loss {result['final_eval_loss']:.4f} nats/token ({result['final_eval_bpb']:.4f} bpb), "
        f"{result['flops_marginal']:.4g} FLOPs marginal, {result['flops_total']:.4g} total -> {run.dir}"
    )
    return result


# =============================================================================================
# running a recipe file as a script (torchrun / accelerate launch)
# =============================================================================================
def script_main(recipe: str, main: Callable, argv: list[str] | None = None) -> int:
    """`python recipes/<recipe>.py --config FILE [--out DIR] [--resume] [--overwrite] [k=v ...]`."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog=f"recipes/{recipe}.py")
    ap.add_argument("--config", required=False)
    ap.add_argument("--out")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    try:
        cfg = load_config(a.config, a.overrides, recipe=recipe)
        guarded(main, cfg, out=a.out, resume=a.resume, overwrite=a.overwrite, config_path=a.config)
    except UserError as e:
        print(f"efflab: error: {e.message}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"efflab: run failed: {e}", file=sys.stderr)
        return 1
    return 0


# =============================================================================================
# helpers recipes share (a model evaluated but not trained here; a technique's summary)
# =============================================================================================
def evaluate_charged(run: Run, model, data, forward_flops_per_token: float, phase: str = "eval") -> dict:
    """`evaluate` a model this run does not train (a teacher) on the held-out set, and charge its forward
    passes to `phase` once (`Run.charge_once`): forward_flops_per_token x eval tokens, this rank's share
    (model FLOPs, docs/conventions.md section 2). Returns `evaluate`'s dict."""
    t0 = time.perf_counter()
    res = evaluate(run, model, data)
    world = run.accelerator.num_processes
    tokens = res["eval_tokens"] / world
    run.charge_once(phase, forward_flops_per_token * tokens, tokens, time.perf_counter() - t0)
    return res


def record_technique(
    run: Run,
    name: str,
    *,
    ledger: dict | None = None,
    manifest: dict | None = None,
    files: dict | None = None,
) -> None:
    """A technique's summary under key `name`: `ledger` in ledger.extra (unless the run resumed: its ledger
    comes back from the checkpoint with the summary in it), `manifest` in manifest.json, and `files`
    ({file name: JSON object}) written into the run directory by the main process."""
    if ledger is not None and not run.resumed:
        run.ledger.extra[name] = ledger
    if manifest is not None:
        write_manifest(run, **{name: manifest})
    for fname, obj in (files or {}).items():
        if run.is_main:
            atomic_write_json(run.dir / fname, obj)


def train_helper(
    run: Run, main: Callable, cfg, out_dir: str | os.PathLike, *, role: str, tokenizer: bool = False
):
    """`runs.train_helper` for a model `run` needs trained first (teacher, generator, reference), with the
    run's accelerator (every process waits for it) and log. Returns its `ModelSource`."""
    return _train_helper(
        main, cfg, out_dir, role=role, accelerator=run.accelerator, log=run.log, tokenizer=tokenizer
    )


def reseed_for_init(cfg) -> None:
    """Seed every RNG with the model-init seed (`init_seed`), as `start_run` does, so the model built next
    starts from the same weights whatever ran since (a helper model trained first, a generation)."""
    from accelerate.utils import set_seed

    set_seed(init_seed(cfg))
