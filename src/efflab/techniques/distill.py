"""Knowledge distillation: a small student learns from a frozen teacher's next-token distribution.

Method card
-----------
What it does. The student minimises `alpha * CE + (1 - alpha) * KD`: CE is the ordinary next-token
cross-entropy on the data, KD a divergence between the teacher's and the student's next-token
distributions at temperature T, multiplied by T^2 so that its gradients keep their scale as T
changes (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network").
`alpha` is the weight of the hard-label term: alpha = 0 is pure distillation.

Divergences (p = teacher, q = student, both softmax(logits / T)):
- `forward_kl`: KL(p || q), Hinton et al.'s soft-target loss; mass-covering.
- `reverse_kl`: KL(q || p), mode-seeking (MiniLLM, Gu et al. 2024).
- `gjs`: the generalized Jensen-Shannon divergence of GKD (Agarwal et al. 2024, "On-Policy
  Distillation of Language Models"): beta * KL(p || m) + (1 - beta) * KL(q || m) with
  m = beta * p + (1 - beta) * q; beta = 0.5 is the symmetric JS divergence, bounded by log 2.

Top-k distillation (`top_k > 0`, and always with a logit cache). Only the teacher's k largest logits
are kept, as top-k ("sparse") logit distillation does to make teacher outputs storable (Anshumann et
al. 2025, "Sparse Logit Sampling", analyse the bias this introduces). The teacher distribution is
renormalised over its top-k set K: p_K = softmax(z_K / T). The student keeps its log-probabilities
over the FULL vocabulary, gathered at K, so its mass outside K (r = 1 - sum_K q) is not forgotten:
- forward_kl: sum_K p_K (log p_K - log q_K); pushes the student's mass into K.
- gjs: computed over the K + 1 outcomes (K, and "anything else", where the teacher has mass 0 and
  the student has r); finite, zero exactly when the student matches p_K.
- reverse_kl: KL(q || p_K) is infinite whenever r > 0, so the student is renormalised over K as
  well; its mass outside K is then left to the CE term (use alpha > 0).
With top_k = 0 every divergence runs over the full vocabulary and is exactly zero (with a zero
gradient) when the student equals the teacher.

Suggested settings. forward_kl at temperature 1 with alpha between 0 and 0.5: Busbridge et al. 2025
("Distillation Scaling Laws") distil language-model pretraining with the KD term alone at T = 1. In
efflab's tuning at the configs/distill/small.yaml scale (one seed each), alpha = 0.5 ended 0.03 nats
below alpha = 0, and T = 2 ended 0.09 nats above T = 1 (with a weaker teacher). top_k = 32 to 128
keeps most of a trained teacher's mass for a cache. The teacher must be clearly better than the
student will get on its own: with a teacher only 0.17 nats below the student's final loss, the
distilled student ended worse than the plain one.

Costs it adds to the ledger (docs/conventions.md section 3).
- `teacher_forward`: the teacher's forward pass over every token the student trains on,
  accounting.flops.forward_flops_per_token(teacher.config, T) x tokens (online, per rank); or, with a
  logit cache, one forward over the whole training split, charged once to the run that builds the
  cache. Runs that reuse the cache charge nothing new and show its cost with `record_reuse`.
- `sunk.teacher_pretrain`: the teacher's own training when it is an efflab run (its ledger total,
  charged in full to every student's ledger; a suite amortises it over the students in its report).
  An external (open-weight) teacher has no known training cost: nothing is charged and the ledger
  says so.
Distillation is therefore never free: at equal *total* FLOPs it has to beat a student (or a plain
model) that spent the teacher's compute on training instead. The ledger's marginal view answers "the
teacher exists", its total view "we had to train it too" (`bill`).

In the recipe (recipes/distill.py). The teacher is a finished efflab run, a local Hugging Face model
directory, or trained first by the baseline recipe (`teacher_train`; a complete teacher run is
reused). The student reads the data with the teacher's tokenizer, so their logits line up
(`shared_tokenizer`), and is evaluated on the same held-out set as the baseline; the teacher is
evaluated there once too (charged to `eval`). Teacher logits come from a forward pass every step
(`online_teacher`, per rank) or from a top-k cache built once over the training split
(`run_teacher_cache`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
from pydantic import Field

from efflab.errors import UserError
from efflab.io import atomic_write_json
from efflab.rundir import source_problems
from efflab.sections import ModelConfig, Section, TrainConfig

if TYPE_CHECKING:  # torch is imported where it runs, so that the config section loads without it
    import torch

LOSSES = ("forward_kl", "reverse_kl", "gjs")
CACHE_FORMAT = "efflab-teacher-topk-v1"


# =============================================================================================
# config section
# =============================================================================================
class TeacherTrainConfig(Section):
    """The teacher the recipe trains first (with the baseline recipe) when no `teacher` path is given."""

    model: ModelConfig = Field(
        default_factory=lambda: ModelConfig(depth=4),
        description="the teacher's shape (baseline architecture, larger than the student)",
    )
    train: TrainConfig = Field(description="the teacher's budget and optimizer (give one horizon)")
    out: str | None = Field(
        default=None, description="teacher run directory; default <run_dir>/../<run name>-teacher"
    )


class DistillConfig(Section):
    """The `distill` config section. The student is the `model` section.

    loss = alpha * CE + (1 - alpha) * T^2 * divergence(teacher, student).
    """

    teacher: str | None = Field(
        default=None, description="a finished efflab run directory or a local HF model directory"
    )
    teacher_train: TeacherTrainConfig | None = Field(
        default=None, description="train the teacher first (no `teacher`)"
    )
    loss: Literal["forward_kl", "reverse_kl", "gjs"] = Field(
        default="forward_kl", description="the KD divergence"
    )
    temperature: float = Field(
        default=1.0, gt=0, le=100, description="softmax temperature of both distributions"
    )
    alpha: float = Field(
        default=0.0, ge=0, lt=1, description="weight of the hard-label cross-entropy; 0 = pure KD"
    )
    beta: float = Field(default=0.5, gt=0, lt=1, description="GKD mixture weight of the teacher (loss: gjs)")
    top_k: int = Field(
        default=0, ge=0, description="distil the teacher's top-k logits only; 0 = full vocabulary"
    )
    budget_includes: Literal["train", "marginal"] = Field(
        default="train",
        description="what train.budget_flops pays for: the student's training only, or also the teacher's "
        "forward passes (marginal: equal marginal compute against a baseline of the same budget)",
    )
    logits: Literal["online", "cache"] = Field(
        default="online", description="teacher forward every step, or a top-k cache built once"
    )
    cache_dir: str | None = Field(
        default=None, description="logit caches; default <data cache>/teacher_logits"
    )

    def cross_check(self, cfg) -> list[str]:
        out = []
        if self.teacher is None and self.teacher_train is None:
            out.append(
                "distill: give distill.teacher (a finished efflab run directory or a local Hugging Face model "
                "directory) or distill.teacher_train (the recipe trains the teacher first)"
            )
        if self.teacher is not None and self.teacher_train is not None:
            out.append(
                "distill: give distill.teacher or distill.teacher_train, not both (on the command line, "
                "distill.teacher_train=null drops a teacher_train section of the file)"
            )
        if self.teacher is not None:
            out.extend(source_problems(self.teacher, "distill.teacher"))
        if self.logits == "cache" and self.top_k == 0:
            out.append(
                "distill.logits=cache stores the teacher's top-k logits per token: set distill.top_k "
                "(e.g. 32); a full-vocabulary cache would hold vocab_size values per training token"
            )
        if (
            self.top_k
            and self.top_k > cfg.data.vocab_size
            and cfg.data.tokenizer == "train"
            and self.teacher is None
        ):
            out.append(f"distill.top_k={self.top_k} exceeds data.vocab_size={cfg.data.vocab_size}")
        return out


# =============================================================================================
# losses (pure functions)
# =============================================================================================
class TopK(NamedTuple):
    """The teacher's k largest raw logits per position: values [..., k] and vocabulary ids [..., k]."""

    values: torch.Tensor
    indices: torch.Tensor


def forward_kl(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """KL(p || q) in nats per position from log-probabilities [..., V] -> [...]."""
    p = teacher_logp.exp()
    return (p * (teacher_logp - student_logp)).sum(-1)


def reverse_kl(teacher_logp: torch.Tensor, student_logp: torch.Tensor) -> torch.Tensor:
    """KL(q || p) in nats per position from log-probabilities [..., V] -> [...]."""
    q = student_logp.exp()
    return (q * (student_logp - teacher_logp)).sum(-1)


def generalized_jsd(
    teacher_logp: torch.Tensor,
    student_logp: torch.Tensor,
    beta: float,
    student_rest: torch.Tensor | None = None,
) -> torch.Tensor:
    """GKD's JSD(beta) = beta KL(p || m) + (1 - beta) KL(q || m), m = beta p + (1 - beta) q, per position.

    `student_rest` [...]: the student's probability outside the listed outcomes (top-k mode), an
    extra outcome where the teacher has mass 0: it adds (1 - beta) * r * log(r / ((1 - beta) r)).
    """
    import torch

    if not 0.0 < beta < 1.0:
        raise ValueError(f"beta must be in (0, 1), got {beta}")
    log_m = torch.logaddexp(teacher_logp + math.log(beta), student_logp + math.log1p(-beta))
    kl_pm = (teacher_logp.exp() * (teacher_logp - log_m)).sum(-1)
    kl_qm = (student_logp.exp() * (student_logp - log_m)).sum(-1)
    if student_rest is not None:
        kl_qm = kl_qm - student_rest * math.log1p(-beta)
    return beta * kl_pm + (1.0 - beta) * kl_qm


def kd_divergence(
    student_logits: torch.Tensor,
    teacher: torch.Tensor | TopK,
    *,
    loss: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
) -> torch.Tensor:
    """T^2 x divergence(teacher, student) per position, in nats.

    student_logits [..., V]; teacher: full logits [..., V] or a TopK of [..., k] (see the method card
    for how each loss treats the student's mass outside the teacher's top-k). Computed in fp32.
    """
    from torch.nn import functional as nnf

    if loss not in LOSSES:
        raise ValueError(f"unknown distillation loss {loss!r}; one of {', '.join(LOSSES)}")
    T = float(temperature)
    s_logp = nnf.log_softmax(student_logits.float() / T, dim=-1)  # [..., V], over the full vocabulary
    rest = None
    if isinstance(teacher, TopK):
        t_logp = nnf.log_softmax(teacher.values.float() / T, dim=-1)  # [..., k], renormalised over K
        s_logp = s_logp.gather(-1, teacher.indices.long())  # [..., k], still full-vocabulary log-probs
        if loss == "reverse_kl":  # KL(q || p_K) is infinite when q has mass outside K: renormalise q too
            s_logp = nnf.log_softmax(s_logp, dim=-1)
        elif loss == "gjs":
            rest = (1.0 - s_logp.exp().sum(-1)).clamp_min(0.0)
    else:
        if teacher.shape[-1] != student_logits.shape[-1]:
            raise UserError(
                f"teacher logits have {teacher.shape[-1]} vocabulary entries, the student's "
                f"{student_logits.shape[-1]}: teacher and student must share one vocabulary"
            )
        t_logp = nnf.log_softmax(teacher.float() / T, dim=-1)
    if loss == "forward_kl":
        d = forward_kl(t_logp, s_logp)
    elif loss == "reverse_kl":
        d = reverse_kl(t_logp, s_logp)
    else:
        d = generalized_jsd(t_logp, s_logp, beta, rest)
    return d * (T * T)


def distill_loss(
    student_logits: torch.Tensor,
    teacher: torch.Tensor | TopK,
    labels: torch.Tensor,
    *,
    alpha: float = 0.0,
    loss: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
) -> tuple[torch.Tensor, dict]:
    """alpha * CE + (1 - alpha) * KD, each a mean over predicted tokens (nats/token).

    student_logits [B, T, V] and teacher ([B, T, V] logits or TopK [B, T, k]) at every input position;
    labels [B, T] (the input ids; -100 = not predicted). Position t predicts labels[t + 1], as in a
    causal LM, so both terms use positions 0..T-2 where labels[t + 1] != -100.
    Returns (loss, {"ce": float, "kd": float}).
    """
    from torch.nn import functional as nnf

    target = labels[:, 1:]  # [B, T-1]
    mask = target != -100
    logits = student_logits[:, :-1]  # [B, T-1, V]
    n = mask.sum().clamp_min(1)
    ce = (
        nnf.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            target.reshape(-1),
            ignore_index=-100,
            reduction="sum",
        )
        / n
    )
    t = (
        TopK(teacher.values[:, :-1], teacher.indices[:, :-1])
        if isinstance(teacher, TopK)
        else teacher[:, :-1]
    )
    kd = (kd_divergence(logits, t, loss=loss, temperature=temperature, beta=beta) * mask).sum() / n
    total = alpha * ce + (1.0 - alpha) * kd if alpha else kd
    return total, {"ce": float(ce.detach()), "kd": float(kd.detach())}


# =============================================================================================
# the teacher: where it comes from, its tokenizer, its logits
# =============================================================================================
def vocabulary_problems(
    teacher_vocab: int,
    teacher_tok,
    student_tok,
    *,
    student_vocab: int | None = None,
    requested_vocab: int | None = None,
    teacher_requested: int | None = None,
    where: str = "the student",
) -> list[str]:
    """Why teacher and student cannot share logits; [] when they can.

    teacher_vocab: the teacher's logit width (config.vocab_size); teacher_tok / student_tok: tokenizers
    (None: unknown); student_vocab: a pretrained student's logit width; requested_vocab: data.vocab_size
    when the config sets it explicitly; teacher_requested: the data.vocab_size the teacher was trained
    with (an efflab run: its BPE may have stopped short of it on a small corpus).
    """
    out = []
    t_len = len(teacher_tok) if teacher_tok is not None else None
    if t_len is not None and t_len > teacher_vocab:
        out.append(f"the teacher's tokenizer has {t_len} tokens but its model only {teacher_vocab} logits")
    if student_vocab is not None and student_vocab != teacher_vocab:
        out.append(
            f"vocabulary mismatch: the teacher predicts {teacher_vocab} tokens, {where} {student_vocab}; "
            f"distillation needs one shared vocabulary"
        )
    if teacher_tok is not None and student_tok is not None and student_tok is not teacher_tok:
        if len(student_tok) != t_len or student_tok.get_vocab() != teacher_tok.get_vocab():
            what = "a different vocabulary of the same size" if len(student_tok) == t_len else "a vocabulary"
            out.append(
                f"vocabulary mismatch: the teacher's tokenizer has {t_len} tokens, {where}'s tokenizer has "
                f"{what} of {len(student_tok)}; distillation needs one shared tokenizer"
            )
    if (
        requested_vocab is not None
        and t_len is not None
        and requested_vocab not in (t_len, teacher_vocab, teacher_requested)
    ):
        out.append(
            f"vocabulary mismatch: data.vocab_size={requested_vocab} asks for a {requested_vocab}-token "
            f"student vocabulary, but the teacher's has {t_len} tokens; the student uses the teacher's "
            f"tokenizer, so drop data.vocab_size or set it to {t_len}"
        )
    return out


def teacher_run_dir(section: DistillConfig, run_dir: Path) -> Path:
    """Where the recipe trains (or finds) its teacher: teacher_train.out, else <run_dir>/../<name>-teacher."""
    tt = section.teacher_train
    if tt is not None and tt.out:
        return Path(tt.out).expanduser()
    return Path(run_dir).parent / f"{Path(run_dir).name}-teacher"


def freeze_teacher(teacher):
    """Eval mode, no gradients: the teacher only ever runs forward."""
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def teacher_logits(teacher, input_ids: torch.Tensor, top_k: int = 0) -> torch.Tensor | TopK:
    """The teacher's logits [B, T, V] (or TopK [B, T, k]) for input_ids [B, T], with no autograd graph.

    Runs under torch.inference_mode(); the result is cloned outside it, because inference tensors
    cannot be saved for the student's backward pass.
    """
    import torch

    with torch.inference_mode():
        logits = teacher(input_ids=input_ids).logits  # [B, T, V]
        out = TopK(*logits.topk(top_k, dim=-1, sorted=False)) if top_k else logits
    if isinstance(out, TopK):
        return TopK(out.values.clone(), out.indices.clone())
    return out.clone()


# =============================================================================================
# offline logit cache: the teacher runs once over the training split; students reuse it
# =============================================================================================
def cache_key(teacher_identity: str, train_blocks: np.ndarray, top_k: int) -> str:
    """Key of a cache: teacher weights, the exact training blocks (hence data and seq_len), k.

    The cache stores raw logits, so the temperature and the loss are not part of the key.
    """
    data = hashlib.sha256(np.ascontiguousarray(train_blocks).tobytes()).hexdigest()
    return hashlib.sha256(
        f"{CACHE_FORMAT}\0{teacher_identity}\0{data}\0{train_blocks.shape}\0{top_k}".encode()
    ).hexdigest()[:24]


@dataclass
class LogitCache:
    """An opened cache: top-k values (fp16) and ids (int32) per training block row and position."""

    path: Path
    manifest: dict
    values: np.ndarray  # [n_blocks, T, k] float16, memory-mapped
    indices: np.ndarray  # [n_blocks, T, k] int32, memory-mapped

    @property
    def flops(self) -> float:
        return float(self.manifest["flops"])

    @property
    def tokens(self) -> float:
        return float(self.manifest["tokens"])

    def rows(self, idx: np.ndarray) -> TopK:
        """TopK [len(idx), T, k] for training-block rows `idx`."""
        import torch

        return TopK(
            torch.from_numpy(np.asarray(self.values[idx])), torch.from_numpy(np.asarray(self.indices[idx]))
        )


def open_cache(path: Path) -> LogitCache | None:
    """The complete cache at `path`, or None (a cache is complete once its manifest exists)."""
    m = path / "manifest.json"
    if not m.is_file():
        return None
    manifest = json.loads(m.read_text())
    if manifest.get("format") != CACHE_FORMAT:
        raise UserError(f"teacher logit cache {path}: unknown format {manifest.get('format')!r}")
    vals = np.load(path / "values.npy", mmap_mode="r")
    idx = np.load(path / "indices.npy", mmap_mode="r")
    return LogitCache(path, manifest, vals, idx)


def build_cache(
    path: Path,
    teacher,
    train_blocks: np.ndarray,
    top_k: int,
    *,
    forward_flops_per_token: float,
    device,
    batch_size: int = 16,
    autocast=None,
    meta: dict | None = None,
    log=print,
) -> LogitCache:
    """Run the teacher once over every training block and store its top-k raw logits (atomically).

    Writes values.npy [n, T, k] fp16 and indices.npy [n, T, k] int32 into a temporary directory, then
    a manifest with the FLOPs it cost (forward_flops_per_token x n x T), then renames the directory.
    If another process finished the same cache first, its copy is kept and this one discarded.
    """
    import torch

    n, T = train_blocks.shape
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vals = np.lib.format.open_memmap(tmp / "values.npy", mode="w+", dtype=np.float16, shape=(n, T, top_k))
    idx = np.lib.format.open_memmap(tmp / "indices.npy", mode="w+", dtype=np.int32, shape=(n, T, top_k))
    log(f"building the teacher logit cache: top-{top_k} over {n:,} blocks x {T} tokens -> {path}")
    t0 = time.perf_counter()
    for i in range(0, n, batch_size):
        ids = torch.from_numpy(train_blocks[i : i + batch_size].astype(np.int64)).to(device)
        if autocast is not None:
            with autocast():
                tk = teacher_logits(teacher, ids, top_k)
        else:
            tk = teacher_logits(teacher, ids, top_k)
        vals[i : i + len(ids)] = tk.values.float().cpu().numpy().astype(np.float16)
        idx[i : i + len(ids)] = tk.indices.cpu().numpy().astype(np.int32)
    vals.flush()
    idx.flush()
    del vals, idx
    seconds = time.perf_counter() - t0
    manifest = {
        "format": CACHE_FORMAT,
        "key": path.name,
        "top_k": top_k,
        "blocks": n,
        "seq_len": T,
        "tokens": n * T,
        "flops": forward_flops_per_token * n * T,
        "forward_flops_per_token": forward_flops_per_token,
        "seconds": seconds,
        "values_dtype": "float16",
        "indices_dtype": "int32",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(meta or {}),
    }
    atomic_write_json(tmp / "manifest.json", manifest)
    try:
        os.replace(tmp, path)
    except OSError:  # someone else finished the same cache first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return open_cache(path)


def record_cache_use(cache: LogitCache, run_dir: str) -> int:
    """Append a run to the cache's users (for amortisation in reports); returns the number of users."""
    users_path = cache.path / "users.json"
    users = json.loads(users_path.read_text()) if users_path.is_file() else []
    if run_dir not in users:
        users.append(run_dir)
        atomic_write_json(users_path, users)
    return len(users)


def teacher_cache(
    root: Path,
    teacher,
    train_blocks: np.ndarray,
    top_k: int,
    *,
    identity: str,
    forward_flops_per_token: float,
    accelerator,
    run_dir: str,
    batch_size: int = 16,
    log=print,
) -> tuple[LogitCache, bool]:
    """Open the cache for (teacher, training blocks, k) under `root`, building it on the main process if
    missing. Returns (cache, paid): paid is True on the process that must charge its FLOPs, i.e. the
    main process when this run built it (now, or in an earlier attempt of the same run directory)."""
    path = Path(root).expanduser() / cache_key(identity, train_blocks, top_k)
    built = False
    with accelerator.main_process_first():
        cache = open_cache(path)
        if cache is None and accelerator.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            cache = build_cache(
                path,
                teacher,
                train_blocks,
                top_k,
                forward_flops_per_token=forward_flops_per_token,
                device=accelerator.device,
                batch_size=batch_size,
                autocast=accelerator.autocast,
                meta={"teacher_identity": identity, "created_by": run_dir},
                log=log,
            )
            built = True
    if cache is None:
        raise RuntimeError(f"teacher logit cache {path} was not written by the main process")
    if cache.manifest["top_k"] != top_k or cache.values.shape[:2] != train_blocks.shape:
        raise UserError(
            f"teacher logit cache {path}: its shape {cache.values.shape} does not match the training "
            f"blocks {train_blocks.shape} with top_k={top_k}; delete it to rebuild"
        )
    paid = accelerator.is_main_process and (built or cache.manifest.get("created_by") == run_dir)
    return cache, paid


class CachedTeacherSource:
    """A BlockSampler whose batches also carry the cached teacher top-k for the same rows.

    batch(step) -> the sampler's batch ({"input_ids": [B, T] int64, "labels"?}) plus
    "teacher_values" [B, T, k] fp16 and "teacher_indices" [B, T, k] int32.
    """

    def __init__(self, sampler, cache: LogitCache):
        self.sampler, self.cache = sampler, cache

    def batch(self, step: int) -> dict:
        out = self.sampler.batch(step)  # input_ids [B, T] (and labels for chat data)
        tk = self.cache.rows(self.sampler.indices(step))  # the same rows of the cache: [B, T, k]
        out.update(teacher_values=tk.values, teacher_indices=tk.indices)
        return out

    def seq_len_at(self, step: int) -> int:
        return self.sampler.seq_len_at(step)

    def state_dict(self) -> dict:
        return {**self.sampler.state_dict(), "teacher_cache": self.cache.manifest["key"]}

    def load_state_dict(self, state: dict) -> None:
        state = dict(state or {})
        key = state.pop("teacher_cache", None)
        if key is not None and key != self.cache.manifest["key"]:
            raise UserError(
                f"--resume: the checkpoint used teacher logit cache {key}, this run {self.cache.manifest['key']}"
            )
        self.sampler.load_state_dict(state)


# =============================================================================================
# the two views of the bill
# =============================================================================================
def bill(ledger, students: int = 1) -> dict:
    """The distillation bill from a ledger, in FLOPs.

    marginal: the teacher exists (an open-weight model): student training + teacher forward passes.
    total: we trained the teacher too (+ sunk.teacher_pretrain, charged in full to every student).
    total_amortised: the one-time costs, the teacher's training and the logit cache (built by this run
    or reused), shared by `students` runs; the per-run ledger always keeps the full bill.
    """
    reused = sum(r["flops"] for r in ledger.reuse if r["phase"] == "teacher_forward")
    built = float((ledger.extra.get("distill") or {}).get("cache_flops_charged", 0.0))
    sunk = ledger.flops("sunk.teacher_pretrain")
    n = max(1, int(students))
    return {
        "student_train": ledger.flops("train"),
        "teacher_forward": ledger.flops("teacher_forward"),
        "teacher_forward_cache_built": built,
        "teacher_forward_cache_reused": reused,
        "sunk_teacher_pretrain": sunk,
        "marginal": ledger.marginal,
        "total": ledger.total,
        "total_amortised": ledger.marginal - built + (built + reused + sunk) / n,
        "students": n,
    }


# =============================================================================================
# what a recipe records (the ledger's and manifest's `distill` entries, its log lines)
# =============================================================================================
def describe_teacher(info, teacher_eval: dict, forward_flops_per_token: float, log=print) -> dict:
    """The teacher's entry for the ledger and manifest (its source and bill, held-out loss in nats/token
    and bits per byte, forward FLOPs per token at the training length), said on `log`."""
    pretrain = (
        f"{info.pretrain_flops:.4g} FLOPs (sunk)" if info.pretrain_flops is not None else "unknown (external)"
    )
    log(
        f"teacher {info.path} ({info.kind}): eval loss {teacher_eval['eval_loss']:.4f} nats/token; forward "
        f"{forward_flops_per_token:.4g} FLOPs/token; pretraining {pretrain}"
    )
    return {
        "teacher": {
            **info.describe(),
            "teacher_pretrain": info.pretrain_flops
            if info.bill
            else f"{info.bill_text()}: no sunk cost charged",
        },
        "teacher_eval_loss": teacher_eval["eval_loss"],
        "teacher_eval_bpb": teacher_eval["eval_bpb"],
        "teacher_forward_flops_per_token": forward_flops_per_token,
    }


def run_teacher_cache(
    run,
    teacher,
    info,
    data,
    section: DistillConfig,
    data_cache: Path,
    forward_fn,
) -> tuple[LogitCache, dict]:
    """`teacher_cache` of `info`'s teacher over `data.train` for `run`, under distill.cache_dir (default
    <data cache>/teacher_logits), charged by `charge_cache`; `forward_fn(T)`: the teacher's forward
    FLOPs per token at length T. Returns (cache, its ledger entry)."""
    root = Path(section.cache_dir).expanduser() if section.cache_dir else Path(data_cache) / "teacher_logits"
    train_blocks = data.train
    cache, paid = teacher_cache(
        root,
        teacher,
        train_blocks,
        section.top_k,
        identity=info.identity,
        forward_flops_per_token=forward_fn(train_blocks.shape[1]),
        accelerator=run.accelerator,
        run_dir=str(run.dir.resolve()),
        batch_size=run.cfg.eval.batch_size,
        log=run.log,
    )
    return cache, charge_cache(run, cache, paid, section.top_k)


def cached_top_k(batch: dict) -> TopK:
    """The teacher's top-k a `CachedTeacherSource` batch carries ([B, T, k] values and indices)."""
    return TopK(batch["teacher_values"], batch["teacher_indices"])


def charge_cache(run, cache: LogitCache, paid: bool, top_k: int) -> dict:
    """Put a logit cache on `run`'s ledger: charged to `teacher_forward` once by the run that built it
    (the whole training split: an upper bound on what it reads), shown with `record_reuse` (never summed)
    by a run that reuses it. Records the run among the cache's users. Returns the cache's ledger entry."""
    users = record_cache_use(cache, str(run.dir.resolve())) if run.is_main else 0
    if paid:
        run.charge_once("teacher_forward", cache.flops, cache.tokens, cache.manifest["seconds"])
    elif not run.resumed:  # paid by the run that built it
        run.ledger.record_reuse(
            "teacher_forward",
            cache.flops,
            source=str(cache.path),
            tokens=cache.tokens,
            note=f"top-{top_k} teacher logit cache built by {cache.manifest.get('created_by')}",
        )
    return {
        "cache": {
            "path": str(cache.path),
            "flops": cache.flops,
            "tokens": cache.tokens,
            "paid_here": paid,
            "users_so_far": users,
        },
        "cache_flops_charged": cache.flops if paid else 0.0,
    }


def online_teacher(teacher, top_k: int, run, forward_fn):
    """`batch -> the teacher's logits` (or TopK) from a forward pass over the batch's input_ids [B, T], in
    eval and inference mode, each charged to `run.ledger`'s `teacher_forward`: forward_fn(T) x B x T
    FLOPs (this rank's tokens), with its tokens and seconds. `run.ledger` is looked up at every call:
    a resumed run's ledger is replaced by the checkpoint's when training starts."""

    def teacher_of(batch: dict):
        t0, ids = time.perf_counter(), batch["input_ids"]
        out = teacher_logits(teacher, ids, top_k)
        flops = forward_fn(ids.shape[1]) * ids.numel()
        run.ledger.charge("teacher_forward", flops, ids.numel(), time.perf_counter() - t0)
        return out

    return teacher_of


def settings(section: DistillConfig) -> dict:
    """The loss and logit settings the manifest records beside the teacher."""
    keys = ("loss", "alpha", "temperature", "beta", "top_k", "logits")
    return {k: getattr(section, k) for k in keys}


def marginal_budget(
    budget_flops: float, student_per_token: float, teacher_per_token: float, log=print
) -> float:
    """budget_includes=marginal: the share of `budget_flops` that trains the student when every trained
    token also costs a teacher forward (FLOPs per token of each, at the training length)."""
    student = budget_flops * student_per_token / (student_per_token + teacher_per_token)
    log(
        f"budget_includes=marginal: {student:.4g} of {budget_flops:.4g} FLOPs "
        f"train the student; the rest pays its teacher's forwards"
    )
    return student


def bill_line(views: dict, pretrain_known: bool) -> str:
    """The log line of `bill(...)`'s views (FLOPs)."""
    sunk = (
        f"{views['sunk_teacher_pretrain']:.4g})"
        if pretrain_known
        else "unknown: an external model, not charged)"
    )
    return (
        f"bill: marginal {views['marginal']:.4g} FLOPs (student {views['student_train']:.4g} + teacher forward "
        f"{views['teacher_forward']:.4g}); total {views['total']:.4g} (+ teacher pretraining {sunk}"
    )
