"""Synthetic data: a generator model writes the training text, filters clean it, a student trains on it.

Method card
-----------
What it does. A generator (a finished efflab run, a local Hugging Face model, or one the recipe
trains first) continues prompts (the first `prompt_len` tokens of real training blocks, or seed
strings from the config) by temperature / top-k / top-p sampling, in batches, with a KV cache,
until `token_budget` new tokens exist. Filters then remove, in this order and each with its count:
samples outside the length bounds, exact duplicates (hash of whitespace-normalised, lower-cased
text), near duplicates (word n-gram Jaccard >= threshold, all pairs exactly or through MinHash
LSH), and samples outside a quality band on the generator's own per-sample mean NLL (repetition
loops sit at the bottom of the band, noise at the top). The kept text is saved as a `datasets`
dataset with its provenance; a student trains on it alone or mixed with real blocks at `mix_ratio`
and is always evaluated on the real held-out set.

Suggested settings. temperature 1.0, top_p 0.95 (Holtzman et al. 2020); prompts from real
prefixes of 16-32 tokens; near-dup threshold 0.8 on 5-gram shingles (the usual MinHash
deduplication setting, e.g. Lee et al. 2022 "Deduplicating training data makes language models
better"); NLL band at the 2nd-98th percentile. A generator much better than the student is the
point of the method (TinyStories, Eldan & Li 2023; phi-1 "Textbooks are all you need", Gunasekar
et al. 2023; Cosmopedia, Ben Allal et al. 2024); a generator no better than the student mostly
teaches it the generator's mistakes.

Costs it adds to the ledger.
- `generation`: prefill + decode of the generator, from `accounting.flops.generation_flops`, for
  every token generated, including those the filters throw away. Rows that stop at EOS leave the
  batch at once (their KV cache rows are dropped), so no padded decode position is computed and
  none is charged; seed prompts are batched by token length, so no padded prompt position is
  computed either. The quality filter's NLL comes from the logits the decode already computed (the
  raw, untempered distribution), so it costs no extra forward pass.
- `sunk.teacher_pretrain`: the generator's training bill (its run's ledger total), when known. A
  local Hugging Face directory has no known cost: the run says so instead of inventing one.
- A corpus reused from the cache charges nothing: the run records the reuse (FLOPs, source) with
  `Ledger.record_reuse`, and the provenance keeps the list of runs that used it, so the report can
  amortise the generation bill over them.

Corpus cache layout, under `<cache>/synthetic/<generation key>/` (key: generator weights hash,
sampling settings, seed, prompt data):

    generation.json     generator, settings, seed, FLOPs, tokens generated, seconds, which run paid
    samples/            every generated sample (datasets): prompt_ids, new_ids, nll, n_computed, eos
    corpus-<filters>/   the kept samples (datasets; `text`, `input_ids`, `nll`) + provenance.json
    uses.jsonl          the runs that used this generation (amortisation)

A `corpus-*` folder is a plain `datasets.save_to_disk` folder, so `data.corpus: <that folder>`
trains any other recipe on it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from efflab.accounting.flops import generation_flops
from efflab.errors import UserError, parse_count
from efflab.io import append_jsonl, atomic_write_json, read_json, read_jsonl
from efflab.rundir import source_problems
from efflab.sections import Section


# =============================================================================================
# config
# =============================================================================================
class SyntheticConfig(Section):
    """The `synthetic` config section: generator, prompts, sampling, filters, and the data mix."""

    # ---- generator --------------------------------------------------------------------------
    generator: str = Field(
        default="train",
        description="'train' (the baseline recipe trains one first), a finished efflab run directory, "
        "or a local Hugging Face model directory",
    )
    generator_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="generator='train': dotted overrides of this config for the generator's baseline run, "
        "e.g. {model.depth: 4, train.budget_tokens: 2e6}",
    )
    generator_dir: str | None = Field(
        default=None,
        description="generator='train': its run directory "
        "(default <runs>/synthetic-generator-<config hash>, shared by runs)",
    )
    # ---- prompts ------------------------------------------------------------------------------
    prompts: Literal["prefix", "seeds"] = Field(
        default="prefix",
        description="prefix: the first prompt_len tokens of random real train blocks; seeds: `seeds`",
    )
    prompt_len: int = Field(default=16, ge=1, description="tokens of real text per prompt (prompts=prefix)")
    seeds: list[str] = Field(default_factory=list, description="prompt strings (prompts=seeds), used in turn")
    keep_prompt: bool = Field(
        default=False,
        description="keep the prompt in the sample (real prefixes would leak real tokens into the corpus)",
    )
    # ---- sampling -----------------------------------------------------------------------------
    temperature: float = Field(default=1.0, ge=0, le=10, description="0 = greedy")
    top_p: float = Field(default=0.95, gt=0, le=1, description="nucleus sampling; 1 = off")
    top_k: int = Field(default=0, ge=0, description="0 = off")
    max_new_tokens: int = Field(default=128, ge=1, description="new tokens per sample at most")
    min_new_tokens: int = Field(default=0, ge=0, description="EOS is forbidden before this many new tokens")
    stop_at_eos: bool = Field(default=True, description="a sample ends at EOS (and leaves the batch)")
    batch_size: int = Field(default=64, ge=1, description="sequences generated together")
    token_budget: float = Field(default=2e5, description="new tokens to generate, filtered ones included")
    seed: int | None = Field(default=None, description="sampling seed; default train.seed")
    # ---- filters ------------------------------------------------------------------------------
    min_tokens: int = Field(default=16, ge=1, description="samples shorter than this (tokens) are removed")
    max_tokens: int | None = Field(default=None, ge=1, description="samples longer than this are removed")
    dedup_exact: bool = Field(default=True, description="remove exact duplicates of normalised text")
    near_dup: Literal["off", "ngram", "minhash"] = Field(
        default="minhash", description="near duplicates: exact n-gram Jaccard over all pairs, or MinHash LSH"
    )
    near_dup_threshold: float = Field(default=0.8, gt=0, le=1, description="Jaccard that counts as duplicate")
    ngram: int = Field(default=5, ge=1, description="words per shingle")
    minhash_perms: int = Field(default=128, ge=8, le=1024, description="MinHash permutations")
    nll_quantiles: tuple[float, float] = Field(
        default=(0.02, 0.98), description="keep mean NLLs between these quantiles (of the samples left)"
    )
    nll_min: float | None = Field(default=None, ge=0, description="absolute lower bound on mean NLL (nats)")
    nll_max: float | None = Field(default=None, gt=0, description="absolute upper bound on mean NLL (nats)")
    # ---- training data ------------------------------------------------------------------------
    mix_ratio: float = Field(
        default=1.0, gt=0, le=1, description="synthetic fraction of every batch (1 = synthetic only)"
    )
    budget_includes: Literal["train", "marginal", "total"] = Field(
        default="train",
        description="what train.budget_flops pays for: training only; generation + training (marginal); "
        "or also the generator's training (total)",
    )

    @field_validator("token_budget", mode="before")
    @classmethod
    def _count(cls, v):
        return parse_count(v, "synthetic.token_budget") if isinstance(v, str) else v

    @field_validator("token_budget")
    @classmethod
    def _positive(cls, v):
        if v < 1:
            raise ValueError("must be at least 1 token")
        return v

    @field_validator("nll_quantiles")
    @classmethod
    def _band(cls, v):
        lo, hi = v
        if not (0 <= lo < hi <= 1):
            raise ValueError(f"need 0 <= low < high <= 1, got {list(v)}")
        return v

    def cross_check(self, cfg) -> list[str]:
        """Problems that involve other sections (reported with every other problem)."""
        out = []
        if self.prompts == "seeds" and not [s for s in self.seeds if s.strip()]:
            out.append("synthetic.seeds: prompts=seeds needs at least one non-empty seed string")
        if self.prompts == "prefix" and self.prompt_len >= cfg.data.seq_len:
            out.append(
                f"synthetic.prompt_len={self.prompt_len} must be shorter than data.seq_len={cfg.data.seq_len}"
            )
        if self.min_new_tokens > self.max_new_tokens:
            out.append(
                f"synthetic.min_new_tokens={self.min_new_tokens} exceeds max_new_tokens={self.max_new_tokens}"
            )
        longest = self.max_new_tokens + (
            self.prompt_len if self.keep_prompt and self.prompts == "prefix" else 0
        )
        if self.min_tokens > longest and not (self.keep_prompt and self.prompts == "seeds"):
            out.append(
                f"synthetic.min_tokens={self.min_tokens} exceeds the longest possible sample ({longest} "
                f"tokens): every sample would be filtered away"
            )
        if self.max_tokens is not None and self.max_tokens < self.min_tokens:
            out.append(f"synthetic.max_tokens={self.max_tokens} is below min_tokens={self.min_tokens}")
        if self.nll_min is not None and self.nll_max is not None and self.nll_min >= self.nll_max:
            out.append(f"synthetic.nll_min={self.nll_min} must be below nll_max={self.nll_max}")
        if self.budget_includes != "train" and cfg.train.budget_flops is None:
            out.append(
                f"synthetic.budget_includes={self.budget_includes} needs train.budget_flops "
                f"(a FLOP budget to share between generation and training)"
            )
        if self.generator == "train":
            bad = [k for k in self.generator_overrides if k.split(".")[0] in ("data", "synthetic", "recipe")]
            if bad:
                out.append(
                    f"synthetic.generator_overrides: {', '.join(bad)} cannot be overridden (the generator "
                    f"shares the student's data and tokenizer)"
                )
            # the overrides themselves are checked where the generator's config is built (efflab.config)
        else:
            # the student learns the generator's tokens: it needs the generator's tokenizer
            out.extend(source_problems(self.generator, "synthetic.generator", tokenizer=True))
        return out

    def sampling_kwargs(self) -> dict:
        """The keyword arguments of `generate_corpus` that this section sets."""
        keys = (
            "token_budget",
            "batch_size",
            "max_new_tokens",
            "min_new_tokens",
            "temperature",
            "top_k",
            "top_p",
            "stop_at_eos",
        )
        return {k: getattr(self, k) for k in keys}

    def generation_settings(self) -> dict:
        """The settings that change what is generated (they key the corpus cache)."""
        keys = (
            "prompts",
            "prompt_len",
            "seeds",
            "temperature",
            "top_p",
            "top_k",
            "max_new_tokens",
            "min_new_tokens",
            "stop_at_eos",
            "batch_size",
            "token_budget",
        )
        d = {k: getattr(self, k) for k in keys}
        if self.prompts == "seeds":
            d.pop("prompt_len")
        else:
            d.pop("seeds")
        return d

    def filter_settings(self) -> dict:
        """The settings that change which samples are kept (they key the filtered corpus)."""
        keys = (
            "keep_prompt",
            "min_tokens",
            "max_tokens",
            "dedup_exact",
            "near_dup",
            "near_dup_threshold",
            "ngram",
            "minhash_perms",
            "nll_quantiles",
            "nll_min",
            "nll_max",
        )
        d = {k: getattr(self, k) for k in keys}
        d["nll_quantiles"] = list(d["nll_quantiles"])
        return d


def _hash(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


# =============================================================================================
# the generator: a ModelSource (efflab.runs), or a baseline run trained first
# =============================================================================================
def default_generator_dir(run_dir: Path, gen_cfg, given: str | None = None) -> Path:
    """`given` (synthetic.generator_dir) when set; else beside the run, named by a hash of the generator's
    config, so runs with one generator share it."""
    if given:
        return Path(given).expanduser()
    d = gen_cfg.to_dict()
    d.pop("log", None)
    return Path(run_dir).parent / f"synthetic-generator-{_hash(d)[:10]}"


# =============================================================================================
# prompts
# =============================================================================================
def prefix_prompts(blocks: np.ndarray, prompt_len: int, seed: int):
    """Prompt k = the first `prompt_len` tokens of train block perm[k mod n] (a new order each pass)."""
    n = len(blocks)

    def prompt(k: int) -> list[int]:
        perm = np.random.default_rng([seed, 7, k // n]).permutation(n)
        return blocks[perm[k % n], :prompt_len].tolist()

    return prompt


def seed_prompts(tokenizer, seeds: list[str]):
    """Prompt k = the k-th seed string (in turn), tokenized without special tokens."""
    enc = [tokenizer(s, add_special_tokens=False)["input_ids"] for s in seeds if s.strip()]
    enc = [e for e in enc if e]
    if not enc:
        raise UserError("synthetic.seeds: every seed string tokenizes to nothing")
    return lambda k: list(enc[k % len(enc)])


# =============================================================================================
# sampling and generation
# =============================================================================================
def sample_next(logits, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, generator=None):
    """One token per row from logits [B, V] (float): temperature, then top-k, then top-p (nucleus),
    in the order transformers applies them. Returns LongTensor [B]. temperature 0 is greedy.

    Nucleus sampling sorts only the top 256 candidates when they can hold top_p of the mass (a
    confident model), and the whole vocabulary otherwise; either way the nucleus is exact. The draw
    inverts the cumulative distribution with one uniform per row (searchsorted), which picks token i
    with probability p_i as torch.multinomial does, at a fraction of its cost on a CPU.
    """
    import torch

    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    B, V = logits.shape
    idx = None  # candidate token ids [B, k] when only some are kept; None = all V in order
    if 0 < top_k < V:
        logits, idx = torch.topk(logits, top_k, dim=-1)  # [B, k], sorted
    if top_p < 1.0:
        log_z = torch.logsumexp(logits, -1, keepdim=True)  # of the (top-k) distribution
        if idx is None:
            k, sorted_ = min(V, 256), None
            if k < V and bool((k * (logits.max(-1, keepdim=True).values - log_z).exp() >= top_p).all()):
                vals, cand = torch.topk(logits, k, dim=-1)
                if bool(((vals - log_z).exp().sum(-1) >= top_p).all()):
                    sorted_ = (vals, cand)
            logits, idx = sorted_ or logits.sort(dim=-1, descending=True)
        p = (logits - log_z).exp()
        before = p.cumsum(-1) - p  # probability mass ranked above each candidate
        logits = logits.masked_fill(before >= top_p, float("-inf"))  # the top token always survives
    q = torch.softmax(logits, -1)
    cdf = q.cumsum(-1)
    u = torch.rand((B, 1), generator=generator, device=q.device) * cdf[:, -1:]
    last = (q > 0).cumsum(-1).argmax(-1, keepdim=True)  # the last token with positive probability
    choice = torch.minimum(torch.searchsorted(cdf, u, right=True), last)  # [B, 1]
    return (choice if idx is None else idx.gather(-1, choice)).squeeze(1)


@dataclass
class Sample:
    prompt_ids: list[int]
    new_ids: list[int]  # generated tokens, EOS excluded
    eos: bool  # ended by sampling EOS
    n_computed: int  # new tokens the generator computed for this row (EOS included)
    nll: float  # mean -log p(token) over the n_computed tokens, raw (untempered) distribution, nats


def generation_cost(config):
    """`cost(prompt_len, new_tokens) -> FLOPs` for one sequence, from the accounting layer (memoised)."""
    memo: dict[tuple[int, int], float] = {}

    def cost(prompt_len: int, new_tokens: int) -> float:
        key = (int(prompt_len), int(new_tokens))
        if key not in memo:
            memo[key] = generation_flops(config, key[0], key[1], 1)
        return memo[key]

    return cost


def generate_batch(
    model,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    stop_at_eos: bool = True,
    generator=None,
    autocast=contextlib.nullcontext,
) -> list[Sample]:
    """Sample continuations of equal-length prompts together, with a KV cache.

    Prefill: one forward over the prompts [B, P], LM head on the last position only (as
    transformers' `generate` does, and as `generation_flops` counts). Decode: one forward per new
    token over [B_alive, 1] with attention over the cache. A row that samples EOS leaves the batch
    immediately (its cache rows are dropped), so every computed position belongs to a real sample.
    """
    import torch
    from transformers import DynamicCache

    lens = {len(p) for p in prompts}
    if len(lens) != 1 or 0 in lens:
        raise ValueError(f"generate_batch needs non-empty prompts of one length, got lengths {sorted(lens)}")
    device = next(model.parameters()).device
    B = len(prompts)
    ids = torch.tensor(prompts, dtype=torch.long, device=device)  # [B, P]
    cache = DynamicCache(config=model.config)
    new = [[] for _ in range(B)]
    nll = torch.zeros(B, dtype=torch.float64, device=device)
    n_comp = [0] * B
    ended = [False] * B
    alive = torch.arange(B, device=device)  # original row of each batch row
    was_training = model.training
    model.eval()
    with torch.no_grad(), autocast():
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        for t in range(max_new_tokens):
            logits = out.logits[:, -1, :].float()  # [B_alive, V]
            tok_logits = logits
            if eos_id is not None and t < min_new_tokens:
                tok_logits = logits.clone()
                tok_logits[:, eos_id] = float("-inf")
            tok = sample_next(
                tok_logits, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
            )
            logp = torch.log_softmax(logits, -1).gather(1, tok[:, None]).squeeze(1)  # [B_alive]
            nll.index_add_(0, alive, -logp.double())
            rows, toks = alive.tolist(), tok.tolist()
            done = []
            for j, (r, x) in enumerate(zip(rows, toks)):
                n_comp[r] += 1
                if stop_at_eos and eos_id is not None and x == eos_id:
                    ended[r] = True
                    done.append(j)
                else:
                    new[r].append(x)
            if t == max_new_tokens - 1:
                break
            if done:  # drop finished rows from the batch and the cache
                keep = torch.ones(len(rows), dtype=torch.bool, device=device)
                keep[done] = False
                sel = keep.nonzero().squeeze(1)
                if sel.numel() == 0:
                    break
                cache.batch_select_indices(sel)
                alive, tok = alive[sel], tok[sel]
            out = model(input_ids=tok[:, None], past_key_values=cache, use_cache=True)
    model.train(was_training)
    nll = nll.cpu().tolist()
    return [
        Sample(list(prompts[i]), new[i], ended[i], n_comp[i], nll[i] / max(1, n_comp[i])) for i in range(B)
    ]


@dataclass
class GenerationResult:
    samples: list[Sample]
    flops: float  # generation FLOPs (accounting layer), every computed token included
    tokens_generated: int  # new tokens computed (EOS included)
    seconds: float
    batches: int


def generate_corpus(
    model,
    prompt_fn,
    *,
    token_budget: float,
    batch_size: int,
    max_new_tokens: int,
    min_new_tokens: int = 0,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_id: int | None = None,
    stop_at_eos: bool = True,
    seed: int = 0,
    autocast=contextlib.nullcontext,
    progress: bool = False,
) -> GenerationResult:
    """Generate batches of samples until `token_budget` new tokens have been computed.

    `prompt_fn(k)` gives the k-th prompt (token ids). A chunk of `batch_size` prompts is split into
    groups of equal prompt length (no padding is ever computed). Each chunk is sized so the budget
    is not overshot by more than one chunk of rows that stop early.
    """
    import torch

    device = next(model.parameters()).device
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    kw = dict(
        max_new_tokens=max_new_tokens,
        min_new_tokens=min_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        eos_id=eos_id,
        stop_at_eos=stop_at_eos,
        generator=gen,
        autocast=autocast,
    )
    cost = generation_cost(model.config)
    samples: list[Sample] = []
    flops, done, k, batches = 0.0, 0, 0, 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(token_budget), desc="generating", unit="tok", mininterval=1.0, disable=None)
    t0 = time.perf_counter()
    while done < token_budget:
        n = min(batch_size, max(1, math.ceil((token_budget - done) / max_new_tokens)))
        chunk = [prompt_fn(k + i) for i in range(n)]
        k += n
        by_len: dict[int, list[list[int]]] = {}
        for p in chunk:
            by_len.setdefault(len(p), []).append(p)
        for group in by_len.values():
            out = generate_batch(model, group, **kw)
            batches += 1
            for s in out:
                flops += cost(len(s.prompt_ids), s.n_computed)
                done += s.n_computed
            samples += out
            if bar is not None:
                bar.update(sum(s.n_computed for s in out))
    if bar is not None:
        bar.close()
    return GenerationResult(samples, flops, done, time.perf_counter() - t0, batches)


# =============================================================================================
# filters
# =============================================================================================
_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower-case, whitespace collapsed, stripped: what exact deduplication compares."""
    return _WS.sub(" ", text).strip().lower()


def exact_duplicates(texts: list[str]) -> np.ndarray:
    """Boolean mask [N]: True where the normalised text already appeared earlier (first one kept)."""
    seen, dup = set(), np.zeros(len(texts), dtype=bool)
    for i, t in enumerate(texts):
        h = hashlib.sha1(normalize_text(t).encode()).digest()
        dup[i] = h in seen
        seen.add(h)
    return dup


def shingles(text: str, n: int) -> np.ndarray:
    """Unique 32-bit hashes of the word n-grams of the normalised text (the whole text if it has < n words)."""
    words = normalize_text(text).split(" ")
    grams = [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))]
    hs = {int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little") for g in grams}
    return np.fromiter(hs, dtype=np.uint64, count=len(hs))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    union = len(a) + len(b) - inter
    return inter / union if union else 1.0


_MERSENNE = np.uint64((1 << 61) - 1)
_MAX32 = np.uint64((1 << 32) - 1)


def minhash_signatures(shingle_sets: list[np.ndarray], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signatures [N, num_perm] (uint64) of 32-bit shingle sets (Broder 1997).

    Permutation j is h_j(x) = ((a_j x + b_j) mod (2^61 - 1)) & (2^32 - 1), a universal hash family;
    a_j < 2^31 and x < 2^32 keep a_j x + b_j below 2^64, so uint64 arithmetic never wraps. The
    fraction of equal entries of two signatures estimates the Jaccard similarity of the sets.
    """
    rng = np.random.default_rng([seed, 1997])
    a = rng.integers(1, 1 << 31, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, 1 << 31, size=num_perm, dtype=np.uint64)
    sig = np.full((len(shingle_sets), num_perm), _MAX32, dtype=np.uint64)
    for i, s in enumerate(shingle_sets):
        if len(s):
            h = ((s[:, None] * a[None, :] + b[None, :]) % _MERSENNE) & _MAX32  # [|s|, num_perm]
            sig[i] = h.min(axis=0)
    return sig


def lsh_params(num_perm: int, threshold: float) -> tuple[int, int]:
    """(bands, rows) with bands x rows = num_perm and the LSH threshold (1/b)^(1/r) at or below
    `threshold` by the least margin. A pair of Jaccard J becomes a candidate with probability
    1 - (1 - J^r)^b (128 permutations, threshold 0.8: b=16, r=8; 0.947 at J=0.8, 0.9999 at J=0.9);
    candidates are then verified exactly, so MinHash can miss a borderline pair but never invents one."""
    best = None
    for r in range(1, num_perm + 1):
        if num_perm % r:
            continue
        b = num_perm // r
        t = (1 / b) ** (1 / r)
        if t <= threshold and (best is None or t > best[0]):
            best = (t, b, r)
    return (best[1], best[2]) if best else (num_perm, 1)


def near_duplicates(
    texts: list[str],
    *,
    threshold: float = 0.8,
    n: int = 5,
    method: str = "minhash",
    num_perm: int = 128,
    seed: int = 0,
) -> np.ndarray:
    """Boolean mask [N]: True where a text's word-n-gram Jaccard similarity with an earlier kept text
    is >= threshold. `ngram`: candidates are all pairs that share a shingle (exact). `minhash`:
    candidates are pairs that collide in an LSH band of their MinHash signatures (Broder 1997;
    Leskovec et al., Mining of Massive Datasets, ch. 3). Candidates are verified by exact Jaccard."""
    sets = [shingles(t, n) for t in texts]
    N = len(texts)
    cands: list[set[int]] = [set() for _ in range(N)]  # earlier texts that may be duplicates of i
    if method == "ngram":
        index: dict[int, list[int]] = {}
        for i, s in enumerate(sets):
            for h in s.tolist():
                lst = index.setdefault(h, [])
                cands[i].update(lst)
                lst.append(i)
    elif method == "minhash":
        sig = minhash_signatures(sets, num_perm, seed)
        bands, rows = lsh_params(num_perm, threshold)
        for bnd in range(bands):
            buckets: dict[bytes, list[int]] = {}
            part = np.ascontiguousarray(sig[:, bnd * rows : (bnd + 1) * rows])
            for i in range(N):
                lst = buckets.setdefault(part[i].tobytes(), [])
                cands[i].update(lst)
                lst.append(i)
    else:
        raise ValueError(f"unknown near-duplicate method {method!r}")
    dup = np.zeros(N, dtype=bool)
    for i in range(N):
        for j in sorted(cands[i]):
            if not dup[j] and jaccard(sets[i], sets[j]) >= threshold:
                dup[i] = True
                break
    return dup


def filter_samples(
    texts: list[str], n_tokens: list[int], nll: list[float], syn: SyntheticConfig, seed: int = 0
) -> tuple[np.ndarray, list[dict]]:
    """Apply the filters in order; returns (keep mask [N], one report per filter).

    Each report: {filter, removed (samples), removed_tokens, kept (samples left after it), ...}.
    Order: length bounds, exact duplicates, near duplicates, NLL band (quantiles of what is left).
    """
    N = len(texts)
    keep = np.ones(N, dtype=bool)
    ntok = np.asarray(n_tokens, dtype=np.int64)
    nll_a = np.asarray(nll, dtype=np.float64)
    report: list[dict] = []

    def apply(name: str, remove: np.ndarray, **info):
        remove = remove & keep
        keep[remove] = False
        report.append(
            {
                "filter": name,
                "removed": int(remove.sum()),
                "removed_tokens": int(ntok[remove].sum()),
                "kept": int(keep.sum()),
                **info,
            }
        )

    too_short = ntok < syn.min_tokens
    too_long = ntok > syn.max_tokens if syn.max_tokens is not None else np.zeros(N, dtype=bool)
    apply("length", too_short | too_long, min_tokens=syn.min_tokens, max_tokens=syn.max_tokens)
    if syn.dedup_exact:
        idx = np.flatnonzero(keep)
        d = np.zeros(N, dtype=bool)
        d[idx] = exact_duplicates([texts[i] for i in idx])
        apply("exact_dedup", d)
    if syn.near_dup != "off":
        idx = np.flatnonzero(keep)
        d = np.zeros(N, dtype=bool)
        d[idx] = near_duplicates(
            [texts[i] for i in idx],
            threshold=syn.near_dup_threshold,
            n=syn.ngram,
            method=syn.near_dup,
            num_perm=syn.minhash_perms,
            seed=seed,
        )
        apply("near_dedup", d, method=syn.near_dup, threshold=syn.near_dup_threshold, ngram=syn.ngram)
    lo_q, hi_q = syn.nll_quantiles
    idx = np.flatnonzero(keep)
    lo, hi = -np.inf, np.inf
    if len(idx) and (lo_q > 0 or hi_q < 1):
        lo, hi = (float(x) for x in np.quantile(nll_a[idx], [lo_q, hi_q]))
        lo = lo if lo_q > 0 else -np.inf
        hi = hi if hi_q < 1 else np.inf
    if syn.nll_min is not None:
        lo = max(lo, syn.nll_min)
    if syn.nll_max is not None:
        hi = min(hi, syn.nll_max)
    apply(
        "nll_band",
        (nll_a < lo) | (nll_a > hi),
        low=None if np.isinf(lo) else lo,
        high=None if np.isinf(hi) else hi,
        quantiles=list(syn.nll_quantiles),
    )
    return keep, report


# =============================================================================================
# the corpus on disk (datasets), its provenance, and reuse
# =============================================================================================
def generation_provenance(
    source,  # an efflab.runs.ModelSource
    syn: SyntheticConfig,
    res: GenerationResult,
    *,
    seed: int,
    prompt_data: dict,
    precision: str,
    device: str,
    run_dir,
) -> dict:
    """generation.json: which generator, settings and seed, what it cost (FLOPs, tokens, seconds), who paid."""
    return {
        "generator": {
            "kind": source.kind,
            "path": str(source.path.resolve()),
            "identity": source.identity,
            "training_flops": source.pretrain_flops,
        },
        "settings": syn.generation_settings(),
        "seed": seed,
        "prompt_data": prompt_data,
        "precision": precision,
        "device": device,
        "flops": res.flops,
        "tokens_generated": res.tokens_generated,
        "samples": len(res.samples),
        "prompt_tokens": sum(len(s.prompt_ids) for s in res.samples),
        "seconds": res.seconds,
        "tokens_per_s": res.tokens_generated / max(res.seconds, 1e-9),
        "flops_convention": "accounting.flops.generation_flops per sample: prefill (LM head on the last prompt "
        "position) + one-token decodes over the KV cache, for every computed token, "
        "filtered or not; no padding is computed",
        "generated_by": str(Path(run_dir).resolve()),
    }


def train_budget(cfg, generation_flops: float, source) -> tuple[float, float]:
    """(FLOPs left for training, FLOPs the synthetic data took) under `synthetic.budget_includes`."""
    syn = cfg.synthetic
    spent = generation_flops
    if syn.budget_includes == "total":
        if source.bill is None:
            raise UserError(
                "synthetic.budget_includes=total needs the generator's training cost, which a local "
                "pretrained directory does not have (use marginal)"
            )
        spent += source.bill.flops
    left = cfg.train.budget_flops - spent
    if left <= 0:
        raise UserError(
            f"the synthetic data ({spent:.4g} FLOPs, budget_includes={syn.budget_includes}) already "
            f"spends train.budget_flops={cfg.train.budget_flops:.4g}"
        )
    return left, spent


def run_summary(
    prov: dict,
    *,
    paid_here: bool,
    uses: int | None,
    source,  # an efflab.runs.ModelSource
    syn: SyntheticConfig,
    synthetic_blocks: int,
    blocks_consumed: int,
) -> dict:
    """What the manifest records about the synthetic data of one run (numbers, not prose)."""
    keys = (
        "samples_generated",
        "samples_kept",
        "tokens_generated",
        "tokens_kept",
        "flops_per_kept_token",
        "filter_report",
        "corpus_dir",
    )
    return {
        **{k: prov[k] for k in keys},
        "generation_flops": prov["flops"],
        "generation_charged_here": paid_here,
        "corpus_uses": uses,
        "amortised_generation_flops_per_use": prov["flops"] / uses if uses else None,
        "generator": source.describe(),
        "mix_ratio": syn.mix_ratio,
        "budget_includes": syn.budget_includes,
        "synthetic_blocks": synthetic_blocks,
        "synthetic_epochs": blocks_consumed / synthetic_blocks,
    }


def generation_key(
    generator_identity: str, settings: dict, seed: int, prompt_data: dict, precision: str
) -> str:
    """Cache key of one generation: generator weights, sampling settings, seed, prompt data, precision."""
    return _hash("synthetic-gen-v1", generator_identity, settings, seed, prompt_data, precision)[:24]


def save_generation(gen_dir: Path, result: GenerationResult, provenance: dict) -> None:
    """Write every sample (a datasets dataset) and generation.json; atomic (folder renamed into place)."""
    import datasets

    datasets.disable_progress_bars()
    gen_dir = Path(gen_dir)
    gen_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = gen_dir.with_name(gen_dir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    ds = datasets.Dataset.from_dict(
        {
            "prompt_ids": [s.prompt_ids for s in result.samples],
            "new_ids": [s.new_ids for s in result.samples],
            "eos": [s.eos for s in result.samples],
            "n_computed": [s.n_computed for s in result.samples],
            "nll": [s.nll for s in result.samples],
        }
    )
    ds.save_to_disk(str(tmp / "samples"))
    atomic_write_json(tmp / "generation.json", provenance)
    if gen_dir.exists():  # another process finished first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
        return
    os.replace(tmp, gen_dir)


def load_generation(gen_dir: Path) -> tuple[list[Sample], dict]:
    import datasets

    ds = datasets.load_from_disk(str(Path(gen_dir) / "samples"))
    cols = ds.to_dict()
    samples = [
        Sample(p, n, bool(e), int(c), float(x))
        for p, n, e, c, x in zip(
            cols["prompt_ids"], cols["new_ids"], cols["eos"], cols["n_computed"], cols["nll"]
        )
    ]
    return samples, read_json(Path(gen_dir) / "generation.json")


def build_corpus(
    gen_dir: Path, samples: list[Sample], generation: dict, syn: SyntheticConfig, tokenizer, seed: int = 0
) -> tuple[Path, dict, list[list[int]]]:
    """Filter the samples, save the kept ones as a datasets dataset with provenance.json.

    Returns (corpus dir, provenance, kept token-id lists). The provenance carries the generation's
    FLOPs (filtered-away tokens included), tokens generated and kept, and FLOPs per kept token.
    """
    import datasets

    datasets.disable_progress_bars()
    docs = [(s.prompt_ids + s.new_ids) if syn.keep_prompt else list(s.new_ids) for s in samples]
    texts = tokenizer.batch_decode(docs, skip_special_tokens=False)
    keep, report = filter_samples(texts, [len(d) for d in docs], [s.nll for s in samples], syn, seed)
    kept_docs = [d for d, k in zip(docs, keep) if k]
    kept_tokens = int(sum(len(d) for d in kept_docs))
    fkey = _hash("synthetic-filter-v1", syn.filter_settings())[:12]
    cdir = Path(gen_dir) / f"corpus-{fkey}"
    prov = {
        **generation,
        "filters": syn.filter_settings(),
        "filter_report": report,
        "samples_generated": len(samples),
        "samples_kept": int(keep.sum()),
        "tokens_kept": kept_tokens,
        "real_tokens_in_corpus": int(sum(len(s.prompt_ids) for s, k in zip(samples, keep) if k))
        if syn.keep_prompt and generation["settings"]["prompts"] == "prefix"
        else 0,
        "flops_per_kept_token": generation["flops"] / kept_tokens if kept_tokens else None,
        "corpus_dir": str(cdir),
    }
    if not (cdir / "provenance.json").is_file():
        ds = datasets.Dataset.from_dict(
            {
                "text": [t for t, k in zip(texts, keep) if k],
                "input_ids": kept_docs,
                "nll": [s.nll for s, k in zip(samples, keep) if k],
            }
        )
        tmp = cdir.with_name(cdir.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        ds.save_to_disk(str(tmp))
        atomic_write_json(tmp / "provenance.json", prov)
        if not cdir.exists():
            os.replace(tmp, cdir)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        prov = read_json(cdir / "provenance.json")
    return cdir, prov, kept_docs


def record_use(gen_dir: Path, run_dir: Path) -> int:
    """Note that `run_dir` used this generation (once per run); returns how many runs have used it."""
    uses = Path(gen_dir) / "uses.jsonl"
    rows = read_jsonl(uses)
    me = str(Path(run_dir).resolve())
    if not any(r.get("run") == me for r in rows):
        append_jsonl(uses, {"run": me, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        rows.append({"run": me})
    return len(rows)


# =============================================================================================
# mixing synthetic and real blocks
# =============================================================================================
@dataclass
class MixedSampler:
    """Global batches of synthetic and real blocks at `mix_ratio`; a pure function of the step.

    Step s holds n_syn(s) = round(r B (s+1)) - round(r B s) synthetic blocks (so every batch is
    within one block of r x B, and the running total within half a block), and B - n_syn(s) real
    ones. Each kind is read from its own stream, reshuffled each pass over it; rows are then
    shuffled so every rank and micro-batch sees both kinds. Exact resume needs only the step.
    """

    synthetic: np.ndarray  # [n_syn, T]
    real: np.ndarray  # [n_real, T]
    batch_size: int
    mix_ratio: float
    seed: int
    _perms: dict = field(default_factory=dict, repr=False)

    def synthetic_before(self, step: int) -> int:
        """Synthetic blocks in steps 0 .. step-1."""
        return int(math.floor(self.mix_ratio * self.batch_size * step + 0.5))

    def n_synthetic(self, step: int) -> int:
        return self.synthetic_before(step + 1) - self.synthetic_before(step)

    def _take(self, blocks: np.ndarray, salt: int, start: int, count: int) -> np.ndarray:
        n = len(blocks)
        idx = []
        for i in range(start, start + count):
            key = (salt, i // n)
            if key not in self._perms:
                if len(self._perms) > 8:
                    self._perms.clear()
                self._perms[key] = np.random.default_rng([self.seed, salt, i // n]).permutation(n)
            idx.append(self._perms[key][i % n])
        return blocks[np.asarray(idx, dtype=np.int64)]

    def rows(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """(blocks [B, T], is_synthetic [B]) of the global batch at `step`."""
        s0, n_syn = self.synthetic_before(step), self.n_synthetic(step)
        n_real = self.batch_size - n_syn
        r0 = step * self.batch_size - s0
        parts = [self._take(self.synthetic, 1, s0, n_syn)] if n_syn else []
        if n_real:
            parts.append(self._take(self.real, 2, r0, n_real))
        blocks = np.concatenate(parts)
        is_syn = np.arange(self.batch_size) < n_syn
        order = np.random.default_rng([self.seed, 3, step]).permutation(self.batch_size)
        return blocks[order], is_syn[order]

    def batch(self, step: int) -> dict:
        import torch

        return {"input_ids": torch.from_numpy(self.rows(step)[0].astype(np.int64))}

    def seq_len_at(self, step: int) -> int:
        return int(self.synthetic.shape[1])

    def state_dict(self) -> dict:
        return {
            "seed": self.seed,
            "batch_size": self.batch_size,
            "mix_ratio": self.mix_ratio,
            "synthetic_blocks": int(len(self.synthetic)),
        }

    def load_state_dict(self, state: dict) -> None:
        if state and state != self.state_dict():
            raise UserError(
                "--resume: the synthetic/real data mix of the checkpoint differs from this run's "
                f"({state} vs {self.state_dict()})"
            )


# =============================================================================================
# what a recipe does around the method: generation on disk, the ledger, the manifest, log lines
# =============================================================================================
def prompt_data(syn: SyntheticConfig, data, eval_fraction: float) -> dict:
    """What the prompts depend on (it keys the generation): the tokenizer; with `prefix` prompts (real
    train blocks) also the corpus, the block length and the held-out carve-out."""
    out = {"tokenizer_hash": data.meta["tokenizer_hash"]}
    if syn.prompts == "prefix":
        out.update(corpus_hash=data.meta["corpus_hash"], seq_len=data.seq_len, eval_fraction=eval_fraction)
    return out


def generate_and_save(
    run,
    generator,
    source,
    data,
    syn: SyntheticConfig,
    *,
    seed: int,
    prompts: dict,
    gen_dir: Path,
) -> None:
    """Sample `syn.token_budget` tokens from `generator` (prompts: real train-block prefixes or the seed
    strings) and save them with their provenance (`generation_provenance`) under `gen_dir`."""
    acc = run.accelerator
    if syn.prompts == "prefix":
        prompt_fn = prefix_prompts(data.train, syn.prompt_len, seed)
    else:
        prompt_fn = seed_prompts(data.tokenizer, syn.seeds)
    run.log(f"generating {syn.token_budget:,.0f} tokens, batches of {syn.batch_size}")
    res = generate_corpus(
        generator,
        prompt_fn,
        **syn.sampling_kwargs(),
        eos_id=data.tokenizer.eos_token_id,
        seed=seed,
        autocast=acc.autocast,
        progress=run.cfg.log.progress and run.is_main,
    )
    prov = generation_provenance(
        source,
        syn,
        res,
        seed=seed,
        prompt_data=prompts,
        precision=acc.mixed_precision,
        device=run.manifest["device"],
        run_dir=run.dir,
    )
    save_generation(gen_dir, res, prov)


def charge_generation(run, generation: dict, prov: dict, corpus_dir: Path, *, existed: bool) -> bool:
    """Put a generation on `run`'s ledger: `generation` charged once (shared) by the run that paid for it
    (it generated now, or generated in an earlier attempt of this run directory), shown with
    `record_reuse` (never summed) by a run that reuses it. Logs the filters and the corpus. Returns
    whether this run paid."""
    for f in prov["filter_report"]:
        run.log(f"filter {f['filter']}: removed {f['removed']} samples ({f['removed_tokens']:,} tokens)")
    paid_here = not existed or (run.resume and generation["generated_by"] == str(run.dir.resolve()))
    flops = generation["flops"]
    if paid_here:
        run.charge_once(
            "generation", flops, generation["tokens_generated"], generation["seconds"], shared=True
        )
    elif not run.resumed:
        note = f"generated by {generation['generated_by']}; reused, not charged again"
        run.ledger.record_reuse(
            "generation", flops, source=str(corpus_dir), tokens=prov["tokens_kept"], note=note
        )
    run.log(
        f"synthetic corpus {corpus_dir}: {prov['tokens_kept']:,} of {generation['tokens_generated']:,} tokens "
        f"kept; {flops:.4g} generation FLOPs, {prov['flops_per_kept_token'] or 0:.4g} per kept token, "
        + ("charged to this run" if paid_here else "reused (shown on the ledger, not charged)")
    )
    return paid_here


def ledger_entry(source, corpus_dir: Path) -> dict:
    """The ledger's `synthetic` entry: the generator, what its training cost, the corpus trained on."""
    return {
        "generator": str(source.path.resolve()),
        "generator_kind": source.kind,
        "generator_training_cost": source.bill_text(),
        "corpus": str(corpus_dir),
    }


def synthetic_blocks(blocks: np.ndarray, seq_len: int, tokens_kept: int) -> np.ndarray:
    """The packed synthetic blocks (`efflab.data.pack_documents`), refusing a filtered corpus shorter than
    one block (UserError)."""
    if len(blocks) < 1:
        raise UserError(
            f"the filtered synthetic corpus ({tokens_kept} tokens) is shorter than one block "
            f"of {seq_len}: raise synthetic.token_budget or loosen the filters"
        )
    return blocks


def budgeted_config(cfg, generation_flops: float, source, log=print):
    """The run config training reads: `cfg` itself under budget_includes=train; otherwise a copy whose
    train.budget_flops is what `train_budget` leaves after the synthetic data (FLOPs)."""
    if cfg.synthetic.budget_includes == "train":
        return cfg
    left, spent = train_budget(cfg, generation_flops, source)
    out = cfg.model_copy(deep=True)
    out.train.budget_flops = left
    log(
        f"budget_includes={cfg.synthetic.budget_includes}: {spent:.4g} FLOPs went to the synthetic data, "
        f"{left:.4g} are left for training"
    )
    return out


def student_line(summary: dict, steps: int, syn: SyntheticConfig) -> str:
    """The log line of how often the student sees each synthetic block."""
    return (
        f"student: {steps} steps, mix_ratio={syn.mix_ratio}: each of the {summary['synthetic_blocks']} "
        f"synthetic blocks is seen {summary['synthetic_epochs']:.2f} times on average"
    )
