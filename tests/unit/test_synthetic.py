"""Synthetic data technique: generation FLOPs vs FlopCounterMode, sampling, the KV-cache loop, filters,
MinHash, the synthetic/real mix, and config validation. Tiny models built here; nothing downloaded."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from efflab.accounting.flops import generation_flops
from efflab.config import generator_run_config
from efflab.errors import UserError
from efflab.runs import ModelSource, weights_identity
from efflab.techniques import synthetic as S


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matmuls: one thread is as fast, and far faster when other processes share the two cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_llama(vocab=97, attn="eager", seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return LlamaForCausalLM._from_config(cfg, attn_implementation=attn).eval()


def counted(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        out = fn()
    return out, float(fc.get_total_flops())


# ---- generation FLOPs ----------------------------------------------------------------------------
def test_generation_flops_match_flop_counter_fixed_length():
    model = tiny_llama()
    prompts = torch.randint(0, 97, (3, 9)).tolist()
    gen = torch.Generator().manual_seed(0)
    samples, measured = counted(
        lambda: S.generate_batch(model, prompts, max_new_tokens=7, stop_at_eos=False, generator=gen)
    )
    assert [s.n_computed for s in samples] == [7, 7, 7] and all(len(s.new_ids) == 7 for s in samples)
    analytic = generation_flops(model.config, 9, 7, n_seqs=3)
    assert measured > 0
    assert abs(analytic - measured) / measured < 0.02, (analytic, measured)


def test_rows_that_stop_at_eos_leave_the_batch_and_are_charged_what_they_computed():
    model = tiny_llama(seed=1)
    prompts = torch.randint(0, 97, (4, 6)).tolist()
    greedy = S.generate_batch(model, prompts, max_new_tokens=1, temperature=0, stop_at_eos=False)
    eos = greedy[0].new_ids[0]  # row 0's first greedy token: row 0 stops at once
    samples, measured = counted(
        lambda: S.generate_batch(model, prompts, max_new_tokens=8, temperature=0, eos_id=eos)
    )
    lengths = [s.n_computed for s in samples]
    assert lengths[0] == 1 and samples[0].eos and samples[0].new_ids == []
    assert max(lengths) > 1, lengths  # others ran on: the batch shrank mid-generation
    cost = S.generation_cost(model.config)
    analytic = sum(cost(6, n) for n in lengths)
    assert abs(analytic - measured) / measured < 0.02, (lengths, analytic, measured)
    # padding would have cost the full batch x 8 tokens
    assert analytic < generation_flops(model.config, 6, 8, n_seqs=4)


def test_generate_corpus_spends_the_budget_and_totals_its_flops():
    model = tiny_llama(seed=2)
    prompt = S.prefix_prompts(np.arange(40 * 16, dtype=np.int32).reshape(40, 16) % 97, 5, seed=0)
    res = S.generate_corpus(
        model, prompt, token_budget=100, batch_size=4, max_new_tokens=12, stop_at_eos=False
    )
    assert 100 <= res.tokens_generated < 100 + 4 * 12
    assert res.tokens_generated == sum(s.n_computed for s in res.samples)
    assert res.flops == pytest.approx(generation_flops(model.config, 5, 12, n_seqs=len(res.samples)))
    assert all(s.prompt_ids == prompt(i) for i, s in enumerate(res.samples))


def test_seed_prompts_of_different_lengths_are_batched_without_padding():
    model = tiny_llama(seed=3)
    seeds = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    res = S.generate_corpus(
        model, lambda k: seeds[k % 3], token_budget=30, batch_size=6, max_new_tokens=5, stop_at_eos=False
    )
    assert res.batches >= 3  # one group per prompt length
    cost = S.generation_cost(model.config)
    assert res.flops == pytest.approx(sum(cost(len(s.prompt_ids), s.n_computed) for s in res.samples))
    assert sorted({len(s.prompt_ids) for s in res.samples}) == [2, 3, 4]


# ---- the KV-cache loop samples from the model's true distribution --------------------------------
def test_cached_nll_equals_a_full_forward_over_the_sample():
    model = tiny_llama(attn="sdpa", seed=4)
    prompts = torch.randint(0, 97, (2, 5)).tolist()
    gen = torch.Generator().manual_seed(1)
    samples = S.generate_batch(model, prompts, max_new_tokens=10, stop_at_eos=False, generator=gen)
    seen = 0
    for s in samples:
        ids = torch.tensor([s.prompt_ids + s.new_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits.float(), -1)[0]
        new = torch.tensor(s.new_ids)
        ref = -logp[4:-1].gather(1, new[:, None]).mean().item()
        assert s.nll == pytest.approx(ref, rel=1e-4, abs=1e-5)
        seen += 1
    assert seen == 2


def test_greedy_generation_matches_transformers_generate():
    model = tiny_llama(attn="sdpa", seed=5)
    prompts = torch.randint(0, 97, (3, 7))
    ours = S.generate_batch(model, prompts.tolist(), max_new_tokens=6, temperature=0, stop_at_eos=False)
    ref = model.generate(
        prompts,
        attention_mask=torch.ones_like(prompts),
        max_new_tokens=6,
        min_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
    )
    assert [s.new_ids for s in ours] == ref[:, 7:].tolist()


def test_min_new_tokens_forbids_early_eos():
    model = tiny_llama(seed=6)
    prompts = torch.randint(0, 97, (3, 4)).tolist()
    eos = S.generate_batch(model, prompts, max_new_tokens=1, temperature=0, stop_at_eos=False)[0].new_ids[0]
    out = S.generate_batch(model, prompts, max_new_tokens=6, min_new_tokens=4, temperature=0, eos_id=eos)
    assert all(s.n_computed >= 4 for s in out)
    assert all(eos not in s.new_ids[:3] for s in out)


# ---- sampling ------------------------------------------------------------------------------------
def test_top_k_and_top_p_restrict_the_support():
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1, 0.0 + 1e-9]])).repeat(4000, 1)
    g = torch.Generator().manual_seed(0)
    assert set(S.sample_next(logits, top_k=2, generator=g).tolist()) == {0, 1}
    assert set(S.sample_next(logits, top_p=0.5, generator=g).tolist()) == {0, 1}  # 0.4 < 0.5 <= 0.4 + 0.3
    assert set(S.sample_next(logits, top_p=0.05, generator=g).tolist()) == {0}  # the top token always stays
    assert set(S.sample_next(logits, temperature=0).tolist()) == {0}
    full = S.sample_next(logits, generator=g)
    freq = np.bincount(full.numpy(), minlength=5) / len(full)
    assert np.allclose(freq[:4], [0.4, 0.3, 0.2, 0.1], atol=0.03)
    hot = S.sample_next(logits, temperature=5.0, generator=g)
    assert np.bincount(hot.numpy(), minlength=5)[3] > np.bincount(full.numpy(), minlength=5)[3]


def test_nucleus_is_exact_on_the_top_candidates_path_and_the_full_sort_path():
    g = torch.Generator().manual_seed(1)
    seen = 0
    for scale in (8.0, 0.5):  # confident (the nucleus lies in the top 256) and flat (it does not)
        logits = (torch.randn(1, 1000, generator=g) * scale).repeat(3000, 1)
        p = logits[0].softmax(-1)
        srt, order = p.sort(descending=True)
        nucleus = set(order[: int((srt.cumsum(0) < 0.9).sum()) + 1].tolist())
        got = set(S.sample_next(logits, top_p=0.9, generator=g).tolist())
        assert got <= nucleus and len(got) >= min(len(nucleus), 20)
        top = order[0].item()
        share = (S.sample_next(logits, top_p=0.9, generator=g) == top).float().mean().item()
        assert share == pytest.approx(p[top].item() / srt[: len(nucleus)].sum().item(), abs=0.03)
        seen += 1
    assert seen == 2


# ---- filters ---------------------------------------------------------------------------------------
def _planted(seed=0):
    """30 random 200-word texts, then (shuffled) 10 exact copies up to case and whitespace and 10
    near copies with one word replaced (5-gram Jaccard ~0.95). Returns (texts, exact idx, near idx)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(5000)]
    base = [" ".join(rng.choice(words, 200)) for _ in range(30)]
    copies = []
    for i in range(0, 30, 3):
        copies.append(("exact", "  " + base[i].upper().replace(" ", "\n ", 7) + " "))
    for i in range(1, 30, 3):
        w = base[i].split(" ")
        w[100] = "changed"
        copies.append(("near", " ".join(w)))
    copies = [copies[j] for j in rng.permutation(len(copies))]
    texts = base + [t for _, t in copies]
    exact = {30 + j for j, (kind, _) in enumerate(copies) if kind == "exact"}
    near = {30 + j for j, (kind, _) in enumerate(copies) if kind == "near"}
    return texts, exact, near


@pytest.mark.parametrize("method", ["ngram", "minhash"])
def test_dedup_removes_planted_duplicates_and_keeps_the_rest(method):
    texts, exact, near = _planted()
    assert len(exact) == len(near) == 10
    assert set(np.flatnonzero(S.exact_duplicates(texts))) == exact
    dup = S.near_duplicates(texts, threshold=0.8, n=5, method=method, num_perm=128)
    assert set(np.flatnonzero(dup)) == exact | near
    assert not dup[:30].any()  # every original kept


def test_filter_samples_reports_every_filter_and_its_count():
    texts, exact, near = _planted(1)
    n = len(texts)
    ntok = [200] * n
    ntok[2], ntok[5] = 3, 4  # too short (originals with no planted copy)
    nll = list(np.linspace(1.0, 5.0, n))
    syn = S.SyntheticConfig(min_tokens=10, near_dup="minhash", nll_quantiles=(0.1, 0.9))
    keep, report = S.filter_samples(texts, ntok, nll, syn)
    names = [r["filter"] for r in report]
    assert names == ["length", "exact_dedup", "near_dedup", "nll_band"]
    assert report[0]["removed"] == 2 and report[0]["removed_tokens"] == 7
    assert report[1]["removed"] == len(exact) and report[2]["removed"] == len(near)
    assert sum(r["removed"] for r in report) == n - keep.sum() == n - report[-1]["kept"]
    left = np.asarray(nll)[keep]
    assert report[3]["removed"] >= 2 and left.min() >= report[3]["low"] and left.max() <= report[3]["high"]
    json.dumps(report)  # provenance is JSON


def test_minhash_estimates_jaccard():
    rng = np.random.default_rng(0)
    a = rng.choice(1 << 30, 400, replace=False).astype(np.uint64)
    b = np.concatenate([a[:300], rng.choice(1 << 30, 100, replace=False).astype(np.uint64) + (1 << 30)])
    true = S.jaccard(a, b)
    sig = S.minhash_signatures([a, b], num_perm=512, seed=3)
    est = float((sig[0] == sig[1]).mean())
    assert abs(est - true) < 0.06, (est, true)
    bands, rows = S.lsh_params(128, 0.8)
    assert bands * rows == 128 and (1 / bands) ** (1 / rows) <= 0.8


# ---- the mix -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.85, 1.0])
def test_mixing_ratio_holds_within_one_block_per_step(ratio):
    syn = np.full((23, 4), 1, dtype=np.int32) * np.arange(23)[:, None]  # rows 0..22
    real = 1000 + np.arange(37)[:, None] * np.ones((1, 4), dtype=np.int32)  # rows 1000..1036
    B, steps = 8, 60
    s = S.MixedSampler(syn, real, B, ratio, seed=0)
    total = 0
    for step in range(steps):
        ids = s.batch(step)["input_ids"]
        assert ids.shape == (B, 4)
        n_syn = int((ids[:, 0] < 1000).sum())
        assert abs(n_syn - ratio * B) < 1.0, (step, n_syn)
        total += n_syn
        assert abs(total - ratio * B * (step + 1)) <= 0.5
    assert total > 0
    again = S.MixedSampler(syn, real, B, ratio, seed=0)  # resume: a pure function of the step
    assert torch.equal(again.batch(37)["input_ids"], s.batch(37)["input_ids"])
    if ratio < 1:  # each stream is read in epochs: no synthetic block repeats before all were used
        steps_in_epoch = [st for st in range(steps) if s.synthetic_before(st + 1) <= len(syn)]
        first = [int(r[0]) for st in steps_in_epoch for r, y in zip(*s.rows(st)) if y]
        assert len(steps_in_epoch) >= 2 and len(first) == len(set(first))


# ---- config ------------------------------------------------------------------------------------------
def test_config_problems_are_reported_together(tiny_cfg, tmp_path):
    with pytest.raises(UserError) as e:
        tiny_cfg(
            "synthetic",
            {
                "synthetic": {
                    "prompts": "seeds",
                    "min_new_tokens": 50,
                    "max_new_tokens": 20,
                    "budget_includes": "marginal",
                    "generator": str(tmp_path / "nope"),
                }
            },
        )
    msg = e.value.message
    for needle in ("seeds", "min_new_tokens=50", "budget_includes=marginal", "no such directory"):
        assert needle in msg, (needle, msg)
    with pytest.raises(UserError) as e:
        tiny_cfg("synthetic", {"synthetic": {"nll_quantiles": [0.9, 0.1], "top_p": 0, "colour": 1}})
    assert len(e.value.problems) == 3, e.value.message
    with pytest.raises(UserError, match="data.seq_len cannot be overridden"):
        tiny_cfg("synthetic", {"synthetic": {"generator_overrides": {"data.seq_len": 32}}})
    with pytest.raises(UserError, match="prompt_len=64 must be shorter"):
        tiny_cfg("synthetic", {"synthetic": {"prompt_len": 64}})
    with pytest.raises(UserError, match="synthetic: section not used"):
        tiny_cfg("baseline", {"synthetic": {}})
    cfg = tiny_cfg(
        "synthetic", {"synthetic": {"token_budget": "3e4", "generator_overrides": {"model.depth": 3}}}
    )
    assert cfg.synthetic.token_budget == 3e4
    gen = generator_run_config(cfg)
    assert gen.model.depth == 3 and gen.recipe == "baseline" and gen.train.steps == cfg.train.steps
    nested = tiny_cfg("synthetic", {"synthetic": {"generator_overrides": {"train": {"budget_tokens": 5e4}}}})
    gen = generator_run_config(nested)  # the shape a CLI override gives: the horizon is replaced
    assert gen.train.budget_tokens == 5e4 and gen.train.steps is None and gen.train.lr == nested.train.lr


def tokenizer_dir(path):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({"<|endoftext|>": 0, "a": 1}, unk_token="<|endoftext|>"))
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(str(path))


def test_generator_sources(tmp_path):
    model = tiny_llama()
    hf = tmp_path / "hf"
    model.save_pretrained(hf)
    with pytest.raises(UserError, match="no tokenizer files"):
        ModelSource.resolve(hf, "synthetic.generator", tokenizer=True)
    tokenizer_dir(hf)
    src = ModelSource.resolve(hf, "synthetic.generator", tokenizer=True)
    assert src.kind == "hf-model" and src.pretrain_flops is None and "unknown" in src.bill_text()
    ident = weights_identity(hf)
    assert ident == weights_identity(hf) and len(ident) == 64
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    model.save_pretrained(run / "model")
    tokenizer_dir(run / "model")
    (run / "manifest.json").write_text(json.dumps({"status": "running"}))
    with pytest.raises(UserError, match="not complete"):
        ModelSource.resolve(run, "synthetic.generator", tokenizer=True)
    (run / "manifest.json").write_text(json.dumps({"status": "complete"}))
    (run / "ledger.json").write_text(json.dumps({"phases": {"train": {"flops": 5e12}}}))
    src = ModelSource.resolve(run, "synthetic.generator", tokenizer=True)
    assert (
        src.kind == "efflab-run" and src.pretrain_flops == 5e12 and src.model_dir == (run / "model").resolve()
    )
    assert not math.isnan(src.pretrain_flops)
