"""Curriculum learning: train on the easiest data first, and grow the sequence length.

Method card
-----------
What it does. Two independent curricula over the packed training blocks (`data.train`, [n, T]):

1. Data order (Bengio et al. 2009, "Curriculum learning", ICML; Platanios et al. 2019,
   "Competence-based curriculum learning for neural machine translation", NAACL, arXiv:1903.09848).
   A scorer gives every block a difficulty; a pacing function c(step) in (0, 1] says which fraction
   of the data, easiest first, the sampler may draw from at that step. c grows from `start_fraction`
   to 1 over `ramp` steps, then training sees all the data.
   Scorers (what each one measures, for packed blocks):
     length     the token-weighted mean length, in tokens, of the source documents the block's
                tokens come from. Packing loses each block's document, but every document ends with
                EOS and blocks are consecutive cuts of one stream, so the documents are recovered
                from the EOS positions (the stream's last document is cut by the tail drop). Longer
                documents count as harder, as sentence length does in Platanios et al.
     rarity     mean unigram surprisal -log p(token) of the block's tokens, nats/token, with p counted
                on the train split (Platanios et al.'s word rarity, per token for equal-length blocks).
     reference  mean next-token loss (nats/token) of a reference model on the block: a finished efflab
                run's model/, a local Hugging Face directory with the same tokenizer, or a small model
                the recipe trains for the purpose.
     random     random difficulties: the control that keeps the pacing (a growing pool) but no order.
     none       no data curriculum: the baseline's uniform order (for length warmup alone).
   `order: hard_first` reverses the difficulty (the anti-curriculum control).
   Pacing: linear c = c0 + (1 - c0) s/R; root c = (c0^p + (1 - c0^p) s/R)^(1/p) (Platanios et al.'s
   competence, p = 2 the square root); step ("baby steps", Bengio et al. 2009; Spitkovsky et al. 2010)
   c0, then `stages` equal increments, the last at s = R. Inside the pool, blocks are drawn without
   replacement: every block of the pool is seen once before any is seen twice, as in an epoch.

2. Sequence-length warmup (Li et al. 2022, "The Stability-Efficiency Dilemma: Investigating Sequence
   Length Warmup for Training GPT Models", NeurIPS, arXiv:2108.06084; DeepSpeed's `seqlen`
   curriculum; Composer's `SeqLengthWarmup`). The training length t grows linearly from
   `seq_len_start` to the full block length T over `seq_len_ramp` steps, rounded down to a multiple
   of 8 (Composer's step_size, for tensor-core shapes). `truncate` (what Li et al.'s DeepSpeed
   implementation does, and Composer's default) trains on the first t tokens of each block: fewer
   tokens and FLOPs per step early, so a FLOP or token budget buys more steps. `reshape` cuts each
   block into T // t rows of t (Composer's truncate=False): tokens per step stay within one row of
   B x T and only attention, which grows with context, gets cheaper. Evaluation always uses
   full-length blocks.

Suggested settings. rarity or reference scorer, root pacing, start_fraction 0.1-0.3, ramp 0.3-0.6 of
the horizon; length warmup from 64 (or T/8) over 0.2-0.4 of the horizon. With about one epoch of
data, a small pool early means repeating easy blocks: watch the random-order control.

Costs on the ledger. `train` is charged by the loop at the length actually trained (attention
included, from `efflab.accounting`), so the warmup's saving shows there. `scoring`: a reference
model's forward FLOPs (accounting's forward_flops_per_token(ref.config, T)) over every scored token,
once; counting scorers (length, rarity) do no model FLOPs and are charged 0 FLOPs with their tokens
and seconds. Scores are cached on disk, keyed by the reference weights and the data; a run that
reuses them records the reuse (`ledger.record_reuse`), shown and not summed. A reference trained by
the recipe goes to `sunk.teacher_pretrain` (its ledger total); so does a finished efflab run given as
the reference, whose cost is known; an outside model has no known training cost and adds none.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from efflab.accounting import flops as F
from efflab.errors import UserError
from efflab.io import atomic_write_json
from efflab.rundir import source_problems
from efflab.samplers import BlockSampler
from efflab.sections import Section

SCORES_VERSION = "curriculum-scores-v1"


class CurriculumConfig(Section):
    """The `curriculum` config section: difficulty scorer, pacing, and sequence-length warmup."""

    scorer: Literal["length", "rarity", "reference", "random", "none"] = Field(
        default="rarity",
        description="block difficulty; random = control with pacing but no order; none = no data order",
    )
    order: Literal["easy_first", "hard_first"] = Field(
        default="easy_first", description="hard_first = anti-curriculum"
    )
    pacing: Literal["linear", "root", "step"] = Field(default="root", description="how the pool grows")
    start_fraction: float = Field(
        default=0.2, gt=0, le=1, description="fraction of the data (easiest) at step 0"
    )
    ramp: int | float = Field(
        default=0.5,
        ge=0,
        description="steps until all data is allowed; a float < 1 is a "
        "fraction of the horizon; 0 = no pacing",
    )
    root_power: float = Field(
        default=2.0, ge=1, description="p of root pacing (2 = square root, Platanios et al.)"
    )
    stages: int = Field(default=4, ge=1, description="increments of step pacing after the first pool")
    reference: str | None = Field(
        default=None,
        description="reference model: an efflab run dir or a local HF "
        "model dir; default: the recipe trains a small one",
    )
    reference_depth: int | None = Field(
        default=None,
        ge=1,
        description="layers of the trained reference (default: half the model's, at least 1)",
    )
    reference_budget: float = Field(
        default=0.25, gt=0, le=10, description="trained reference's budget as a fraction of this run's"
    )
    score_batch_size: int = Field(default=32, ge=1, description="blocks per reference forward")
    cache_scores: bool = Field(
        default=True, description="reuse reference scores from the cache (recorded as reuse)"
    )
    seq_len_warmup: bool = Field(default=False, description="grow the training length (Li et al. 2022)")
    seq_len_start: int = Field(default=64, ge=8, description="training length at step 0, tokens")
    seq_len_ramp: int | float = Field(
        default=0.3, ge=0, description="steps until full length; a float < 1 is a fraction of the horizon"
    )
    seq_len_multiple: int = Field(
        default=8, ge=1, description="lengths are rounded down to a multiple of this"
    )
    seq_len_mode: Literal["truncate", "reshape"] = Field(
        default="truncate",
        description="truncate: first t tokens of each block; reshape: T // t rows of t per block",
    )

    def cross_check(self, cfg) -> list[str]:
        """Problems that involve other sections (reported with every other problem)."""
        out = []
        if self.scorer == "none" and not self.seq_len_warmup:
            out.append(
                "curriculum: scorer none with seq_len_warmup off changes nothing (use the baseline recipe)"
            )
        if self.reference is not None and self.scorer != "reference":
            out.append(f"curriculum.reference is set but scorer is {self.scorer!r} (it would be ignored)")
        if self.scorer == "reference":
            if self.reference is not None:
                out.extend(source_problems(self.reference, "curriculum.reference"))
            elif cfg.model.pretrained:
                out.append(
                    "curriculum.reference: give a reference model (an efflab run dir or a local model dir); "
                    "a reference is only trained for models built from the ladder"
                )
        if self.seq_len_warmup and self.seq_len_start > cfg.data.seq_len:
            out.append(
                f"curriculum.seq_len_start={self.seq_len_start} exceeds data.seq_len={cfg.data.seq_len}"
            )
        return out


# =============================================================================================
# pacing and length schedules (pure functions of the step)
# =============================================================================================
def resolve_steps(spec: int | float, horizon: int) -> int:
    """A ramp given as steps (int, or float >= 1) or as a fraction of the horizon (float < 1) -> steps."""
    if isinstance(spec, float) and spec < 1:
        return int(round(spec * horizon))
    return int(round(spec))


def pacing_fraction(
    step: int, kind: str, start: float, ramp_steps: int, *, power: float = 2.0, stages: int = 4
) -> float:
    """Fraction of the data (easiest first) allowed at `step`: in (0, 1], non-decreasing, 1 from `ramp_steps` on.

    linear: c0 + (1 - c0) s/R.  root: (c0^p + (1 - c0^p) s/R)^(1/p) (Platanios et al. 2019, eq. 7 for
    p = 2).  step: c0 + (1 - c0) floor(stages s/R)/stages ("baby steps").
    """
    if ramp_steps <= 0 or step >= ramp_steps:
        return 1.0
    x = max(0.0, step / ramp_steps)
    if kind == "linear":
        c = start + (1 - start) * x
    elif kind == "root":
        c = (start**power + (1 - start**power) * x) ** (1 / power)
    elif kind == "step":
        c = start + (1 - start) * math.floor(stages * x) / stages
    else:
        raise ValueError(f"unknown pacing {kind!r}")
    return float(min(1.0, max(start, c)))


def warmup_seq_len(step: int, start: int, full: int, ramp_steps: int, multiple: int = 8) -> int:
    """Training length at `step` (Li et al. 2022): linear from `start` to `full` over `ramp_steps`,
    rounded down to a multiple of `multiple` but never below `start`; exactly `full` from the ramp's end."""
    start = min(start, full)
    if ramp_steps <= 0 or step >= ramp_steps:
        return int(full)
    raw = start + (full - start) * max(0, step) / ramp_steps
    t = int(raw // multiple) * multiple
    return int(min(full, max(start, t)))


# =============================================================================================
# difficulty scorers: one number per block, larger = harder
# =============================================================================================
def length_scores(blocks: np.ndarray, eos_id: int) -> np.ndarray:
    """Token-weighted mean length (tokens) of the source documents of each block's tokens.

    blocks [n, T] are consecutive cuts of one stream of documents, each ending with EOS (data.pack),
    so document d spans the tokens after the (d-1)-th EOS up to and including the d-th. The stream's
    first document is whole; its last is cut where packing dropped the tail. Returns [n] float64.
    """
    n, T = blocks.shape
    is_eos = blocks.reshape(-1) == eos_id
    doc = np.concatenate([[0], np.cumsum(is_eos)[:-1]])  # [n*T] document index of each token
    doc_len = np.bincount(doc).astype(np.float64)  # [n_docs] tokens of each document in the stream
    return doc_len[doc].reshape(n, T).mean(axis=1)


def unigram_counts(blocks: np.ndarray, vocab_size: int) -> np.ndarray:
    """Token counts [vocab_size] over the blocks (the train split)."""
    return np.bincount(blocks.reshape(-1), minlength=vocab_size).astype(np.float64)


def rarity_scores(blocks: np.ndarray, vocab_size: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Mean unigram surprisal -ln p(token) of each block, nats/token; p from `counts` (default: the
    blocks' own counts, add-one smoothed so any token has finite surprisal). Returns [n] float64."""
    c = (unigram_counts(blocks, vocab_size) if counts is None else np.asarray(counts, np.float64)) + 1.0
    surprisal = -np.log(c / c.sum())  # [V]
    return surprisal[blocks].mean(axis=1)


def random_scores(n: int, seed: int) -> np.ndarray:
    """Random difficulties [n] (the control: pacing without any order)."""
    return np.random.default_rng([seed, 0x5C0E]).random(n)


def reference_scores(
    model,
    blocks: np.ndarray,
    *,
    batch_size: int = 32,
    device=None,
    autocast=None,
    rank: int = 0,
    world: int = 1,
    gather: Callable | None = None,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Mean next-token loss (nats/token) of `model` on each block.

    `labels` [n, T] (chat data): -100 marks tokens without loss; the mean is over the others, and a
    block with none scores 0 (it trains nothing). With `world` > 1 each rank scores a contiguous
    shard and `gather` (e.g. accelerator.gather) concatenates the padded shards.
    Returns (scores [n] float64, tokens this rank forwarded: every token, labelled or not).
    """
    import contextlib

    import torch

    n, T = blocks.shape
    device = device or next(model.parameters()).device
    autocast = autocast or contextlib.nullcontext
    per = -(-n // world)  # ceil: every rank scores (and pads to) `per` blocks
    lo, hi = min(n, rank * per), min(n, (rank + 1) * per)
    was_training = model.training
    model.eval()
    out = torch.full((per,), float("nan"), dtype=torch.float64, device=device)
    with torch.no_grad():
        for i in range(lo, hi, batch_size):
            j = min(hi, i + batch_size)
            ids = torch.from_numpy(blocks[i:j].astype(np.int64)).to(device)  # [b, T]
            lab = ids if labels is None else torch.from_numpy(labels[i:j].astype(np.int64)).to(device)
            with autocast():
                logits = model(input_ids=ids).logits  # [b, T, V]
            nll = torch.nn.functional.cross_entropy(
                logits[:, :-1].float().transpose(1, 2), lab[:, 1:], reduction="none", ignore_index=-100
            )  # [b, T-1], 0 where ignored
            valid = (lab[:, 1:] != -100).sum(dim=1).clamp(min=1)
            out[i - lo : i - lo + ids.shape[0]] = (nll.sum(dim=1) / valid).double()
    model.train(was_training)
    if world > 1:
        out = gather(out.unsqueeze(0)).reshape(-1)  # [world * per]
    return out[:n].cpu().numpy(), (hi - lo) * T


def scoring_flops(ref_config, seq_len: int, tokens: float) -> float:
    """FLOPs of a reference model's forward over `tokens` tokens at context `seq_len` (accounting layer)."""
    return F.forward_flops_per_token(ref_config, seq_len) * float(tokens)


def difficulty_ranking(scores: np.ndarray, order: str, seed: int) -> np.ndarray:
    """Block indices [n], the first `allowed` of which form the pool: easiest first (hard_first:
    hardest first). Ties are broken by a seeded random permutation, so the ranking is deterministic."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("difficulty scores must be finite")
    tie = np.random.default_rng([seed, 0x71E]).permutation(len(scores))
    key = -scores if order == "hard_first" else scores
    return np.lexsort((tie, key))


# =============================================================================================
# reference model: where it comes from, and its cache key
# =============================================================================================
def scores_cache_key(identity: str, blocks: np.ndarray) -> str:
    """Cache key of reference scores: the reference's weights identity (efflab.runs.weights_identity)
    and the exact blocks."""
    h = hashlib.sha256(SCORES_VERSION.encode())
    h.update(identity.encode())
    h.update(str(blocks.shape).encode())
    h.update(np.ascontiguousarray(blocks).tobytes())
    return h.hexdigest()[:32]


def load_cached_scores(cache_dir: Path, key: str) -> tuple[np.ndarray, dict] | None:
    """(scores, meta) from a previous scoring with the same key, or None."""
    npy, meta = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not (npy.is_file() and meta.is_file()):
        return None
    return np.load(npy, allow_pickle=False), json.loads(meta.read_text())


def save_cached_scores(cache_dir: Path, key: str, scores: np.ndarray, meta: dict) -> None:
    """Write scores (.npy) then their meta (.json, which marks the entry complete), atomically."""
    import os

    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".{key}.{os.getpid()}.npy"
    np.save(tmp, np.asarray(scores, dtype=np.float64), allow_pickle=False)
    os.replace(tmp, cache_dir / f"{key}.npy")
    atomic_write_json(cache_dir / f"{key}.json", meta)


def fixed_point_horizon(horizon_of: Callable[[int], int], max_iter: int = 200) -> int:
    """The horizon S (steps) with horizon_of(S) == S, where horizon_of(S) is the loop's horizon when the
    ramps are fractions of S. Length warmup makes early steps cheaper, so a FLOP or token budget buys
    more steps when the ramp is longer: horizon_of is non-decreasing, and iterating from 0 climbs to
    its least fixed point."""
    s = horizon_of(0)
    for _ in range(max_iter):
        nxt = horizon_of(s)
        if nxt == s:
            break
        s = nxt
    return s


# =============================================================================================
# the sampler: loop's source interface
# =============================================================================================
@dataclass(frozen=True)
class Pacing:
    kind: str = "root"
    start: float = 1.0
    ramp_steps: int = 0
    power: float = 2.0
    stages: int = 4

    def __call__(self, step: int) -> float:
        return pacing_fraction(
            step, self.kind, self.start, self.ramp_steps, power=self.power, stages=self.stages
        )


@dataclass(frozen=True)
class LengthWarmup:
    start: int
    ramp_steps: int
    multiple: int = 8
    mode: str = "truncate"


class CurriculumSampler:
    """Global batches for the loop: drawn from the easiest fraction allowed at each step, at the
    warmup length.

    blocks [n, T]; `ranking` block indices easiest first (None: the baseline's uniform order, from
    efflab.samplers.BlockSampler with the same seed); `pacing(step)` in (0, 1]; `warmup` None for full length.
    Within the pool, blocks are drawn without replacement until every pool block was seen, then a
    new pass starts (an epoch over a growing pool); the draw at each step uses a generator seeded by
    (seed, step). The order is a pure function of (seed, step): the state (next step, blocks seen in
    this pass) only saves replaying the draws, and `state_dict` carries it across a checkpoint.
    """

    def __init__(
        self,
        blocks: np.ndarray,
        batch_size: int,
        seed: int,
        *,
        ranking: np.ndarray | None = None,
        pacing: Pacing | None = None,
        warmup: LengthWarmup | None = None,
        labels: np.ndarray | None = None,
    ):
        self.blocks = blocks
        self.labels = labels  # chat data: -100 where no loss is taken; cut exactly like the blocks
        self.n, self.T = (int(x) for x in blocks.shape)
        self.batch_size = batch_size
        self.seed = seed
        self.ranking = None if ranking is None else np.asarray(ranking, dtype=np.int64)
        if self.ranking is not None and sorted(self.ranking.tolist()) != list(range(self.n)):
            raise ValueError("ranking must be a permutation of the block indices")
        self.pacing = pacing or Pacing()
        self.warmup = warmup
        self._uniform = None
        if self.ranking is None:
            self._uniform = BlockSampler(blocks, batch_size, seed, labels=labels)
        self._reset()

    # ---- the pool and the draw ------------------------------------------------------------------
    def _reset(self) -> None:
        self._next = 0  # the next step to draw
        self._seen = np.zeros(self.n, dtype=bool)  # drawn in the current pass
        self._passes = 0
        self._last = None

    def allowed(self, step: int) -> int:
        """Pool size at `step`: the ceil(pacing x n) easiest blocks, at least one batch."""
        if self.ranking is None:
            return self.n
        m = math.ceil(self.pacing(step) * self.n - 1e-9)
        return int(min(self.n, max(m, self.batch_size, 1)))

    def _draw(self, step: int) -> np.ndarray:
        B = self.batch_size
        pool = self.ranking[: self.allowed(step)]
        rng = np.random.default_rng([self.seed, 0xC0CC, step])
        fresh = pool[~self._seen[pool]]
        if len(fresh) >= B:
            pick = rng.choice(fresh, B, replace=False)
            self._seen[pick] = True
            return pick
        # the pass over the pool ends inside this batch: take its last blocks, then open a new pass
        first = rng.permutation(fresh)
        self._seen[:] = False
        self._passes += 1
        rest = pool[~np.isin(pool, first)]  # not twice in one batch, unless the pool is smaller than it
        need = B - len(first)
        second = rng.choice(rest if len(rest) else pool, need, replace=len(rest) < need)
        self._seen[second] = True  # the new pass has seen these only
        pick = np.concatenate([first, second]).astype(np.int64)
        return pick

    def indices(self, step: int) -> np.ndarray:
        """Block indices [B] of the global batch at `step`."""
        if self._uniform is not None:
            return self._uniform.indices(step)
        if self._last is not None and step == self._next - 1:
            return self._last
        if step < self._next:  # out of order: replay from the start (the order is a function of step)
            self._reset()
        while self._next <= step:
            self._last = self._draw(self._next)
            self._next += 1
        return self._last

    # ---- loop's source interface ------------------------------------------------------------------
    def seq_len_at(self, step: int) -> int:
        w = self.warmup
        return self.T if w is None else warmup_seq_len(step, w.start, self.T, w.ramp_steps, w.multiple)

    def rows_at(self, step: int) -> int:
        """Rows of the global batch at `step` (reshape mode cuts each block into T // t rows)."""
        t = self.seq_len_at(step)
        if self.warmup is not None and self.warmup.mode == "reshape":
            return self.batch_size * (self.T // t)
        return self.batch_size

    def tokens_at(self, step: int) -> int:
        """Tokens trained at `step` (what loop.horizon and the ledger count)."""
        return self.rows_at(step) * self.seq_len_at(step)

    def _cut(self, x: np.ndarray, t: int) -> np.ndarray:
        if t < self.T:
            if self.warmup.mode == "reshape":
                k = self.T // t
                return x[:, : k * t].reshape(len(x) * k, t)  # [B * k, t]: row j*k+i = piece i of block j
            return x[:, :t]  # [B, t]: the first t tokens (positions 0..t-1)
        return x

    def batch(self, step: int) -> dict:
        """{"input_ids": LongTensor [rows_at(step), seq_len_at(step)], "labels" with chat data}."""
        import torch

        idx, t = self.indices(step), self.seq_len_at(step)
        out = {
            "input_ids": torch.from_numpy(
                np.ascontiguousarray(self._cut(self.blocks[idx], t)).astype(np.int64)
            )
        }
        if self.labels is not None:
            out["labels"] = torch.from_numpy(
                np.ascontiguousarray(self._cut(self.labels[idx], t)).astype(np.int64)
            )
        return out

    def diagnostics(self) -> dict:
        """What the curriculum allows now (logged at eval points; observer only)."""
        s = max(0, self._next - 1)
        return {"curriculum_pool": self.allowed(s) / self.n, "curriculum_passes": self._passes}

    def signature(self) -> dict:
        rank_hash = None if self.ranking is None else hashlib.sha256(self.ranking.tobytes()).hexdigest()[:16]
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "n": self.n,
            "ranking": rank_hash,
            "pacing": asdict(self.pacing),
            "warmup": None if self.warmup is None else asdict(self.warmup),
        }

    def state_dict(self) -> dict:
        return {
            "signature": self.signature(),
            "next_step": self._next,
            "passes": self._passes,
            "seen": base64.b64encode(np.packbits(self._seen).tobytes()).decode("ascii"),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if state.get("signature") != json.loads(json.dumps(self.signature())):
            raise UserError(
                "--resume: the curriculum data order of the checkpoint differs from this run's "
                "(scores, pacing or length warmup changed)"
            )
        self._reset()
        self._next = int(state["next_step"])
        self._passes = int(state["passes"])
        bits = np.frombuffer(base64.b64decode(state["seen"]), dtype=np.uint8)
        self._seen = np.unpackbits(bits)[: self.n].astype(bool)


# =============================================================================================
# what a recipe does around the method: scoring with its charges and cache, the manifest, log lines
# =============================================================================================
def reference_difficulty(run, ref, load_model, data, section: CurriculumConfig, data_cache: Path):
    """(scores, scoring summary): the reference's mean loss on every training block, from the score cache
    under <data cache>/curriculum_scores when it holds them (its FLOPs shown with `record_reuse`, never
    summed), else computed here: the model from `load_model()`, on this process's device, scores this
    rank's share and its forward FLOPs (`scoring_flops`) are charged to `scoring` once. Every process
    waits for the cache to be written."""
    import time

    t0 = time.perf_counter()
    acc, (n, T) = run.accelerator, data.train.shape
    scoring: dict = {"scorer": section.scorer}
    cache_dir = Path(data_cache) / "curriculum_scores"
    key = scores_cache_key(ref.identity, data.train)
    hit = load_cached_scores(cache_dir, key) if section.cache_scores else None
    if hit is not None:  # paid by an earlier run
        scores, meta = hit
        if not run.resumed:
            note = "reference-model block scores reused from the cache"
            run.ledger.record_reuse("scoring", meta["flops"], meta["source"], meta["tokens"], note=note)
        scoring.update(cached=True, cache_key=key, flops=meta["flops"])
    else:
        ref_model = load_model().to(acc.device)
        scores, tokens_here = reference_scores(
            ref_model,
            data.train,
            batch_size=section.score_batch_size,
            device=acc.device,
            autocast=acc.autocast,
            rank=acc.process_index,
            world=acc.num_processes,
            gather=acc.gather,
            labels=data.train_labels,
        )
        # the reference's forward FLOPs over the tokens this rank scored
        run.charge_once(
            "scoring", scoring_flops(ref_model.config, T, tokens_here), tokens_here, time.perf_counter() - t0
        )
        total = scoring_flops(ref_model.config, T, n * T)
        if run.is_main and section.cache_scores:
            meta = {"flops": total, "tokens": n * T, "source": str(run.dir), "reference": str(ref.model_dir)}
            save_cached_scores(cache_dir, key, scores, meta)
        acc.wait_for_everyone()
        scoring.update(
            cached=False,
            cache_key=key,
            flops=total,
            reference_forward_flops_per_token=scoring_flops(ref_model.config, T, 1),
        )
        del ref_model
    scoring["reference"] = str(ref.model_dir)
    return scores, {**scoring, **score_stats(scores)}


def counted_difficulty(run, data, section: CurriculumConfig, seed: int):
    """(scores or None, scoring summary) of the scorers that need no model: length and rarity (counting,
    charged to `scoring` as 0 FLOPs with their tokens and seconds), random, none."""
    import time

    t0 = time.perf_counter()
    n, T = data.train.shape
    scores = None
    if section.scorer == "length":
        scores = length_scores(data.train, data.tokenizer.eos_token_id)
    elif section.scorer == "rarity":
        scores = rarity_scores(data.train, data.vocab_size)
    elif section.scorer == "random":
        scores = random_scores(n, seed)
    if section.scorer in ("length", "rarity"):  # counting, not model FLOPs: the time shows, 0 FLOPs
        run.charge_once("scoring", 0.0, n * T, time.perf_counter() - t0, shared=True)
    return scores, {"scorer": section.scorer, **score_stats(scores)}


def score_stats(scores: np.ndarray | None) -> dict:
    """min, median, max of the difficulties ({} without scores)."""
    if scores is None:
        return {}
    return {"min": float(scores.min()), "median": float(np.median(scores)), "max": float(scores.max())}


def sampler_for(
    section: CurriculumConfig, data, batch_size: int, seed: int, ranking: np.ndarray | None, horizon: int
) -> CurriculumSampler:
    """The curriculum sampler over `data.train` when training lasts `horizon` steps: pacing over
    `ramp` and length warmup over `seq_len_ramp` (fractions of the horizon, or steps)."""
    cc = section
    ramp, length_ramp = resolve_steps(cc.ramp, horizon), resolve_steps(cc.seq_len_ramp, horizon)
    pacing = Pacing(cc.pacing, cc.start_fraction, ramp, cc.root_power, cc.stages)
    warmup = LengthWarmup(cc.seq_len_start, length_ramp, cc.seq_len_multiple, cc.seq_len_mode)
    warmup = warmup if cc.seq_len_warmup else None
    return CurriculumSampler(
        data.train, batch_size, seed, ranking=ranking, pacing=pacing, warmup=warmup, labels=data.train_labels
    )


def order_summary(section: CurriculumConfig, sampler: CurriculumSampler, steps: int, seq_len: int):
    """(the manifest's order entry, the log line) of a curriculum over `steps` steps."""
    cc, ranked = section, sampler.ranking is not None
    order = {
        "order": cc.order,
        "pacing": cc.pacing,
        "start_fraction": cc.start_fraction,
        "horizon_steps": steps,
        "ramp_steps": sampler.pacing.ramp_steps if ranked else 0,
        "seq_len_warmup": None,
    }
    said = f"scorer {cc.scorer} ({cc.order}), {cc.pacing} pacing from {cc.start_fraction:.0%} of the data"
    said = f"{said} over {order['ramp_steps']} steps" if ranked else "uniform order"
    if sampler.warmup is not None:
        w = sampler.warmup
        order["seq_len_warmup"] = {"start": w.start, "ramp_steps": w.ramp_steps, "mode": w.mode}
        said += f"; length {w.start} -> {seq_len} over {w.ramp_steps} steps ({w.mode})"
    return order, f"curriculum over {steps} steps: {said}"
