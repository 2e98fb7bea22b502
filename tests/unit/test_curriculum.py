"""Curriculum technique: pacing, length warmup, scorers, the sampler's pool and resume, scoring FLOPs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from efflab.accounting import flops as F
from efflab.config import reference_run_config
from efflab.data import reference_tokenizer_problem
from efflab.errors import UserError
from efflab.runs import locate
from efflab.techniques import curriculum as C

KINDS = ("linear", "root", "step")


# ---- pacing and length schedules --------------------------------------------------------------
def test_pacing_is_monotone_starts_at_c0_and_reaches_all_data_at_the_ramp_end():
    seen = 0
    for kind in KINDS:
        for start in (0.01, 0.2, 0.5, 1.0):
            for ramp in (1, 7, 100):
                c = [
                    C.pacing_fraction(s, kind, start, ramp, power=2.0, stages=4) for s in range(2 * ramp + 3)
                ]
                assert c[0] == pytest.approx(start)
                assert all(0 < x <= 1 for x in c)
                assert all(b >= a for a, b in zip(c, c[1:])), (kind, start, ramp)
                assert c[ramp] == 1.0 and all(x == 1.0 for x in c[ramp:])
                if start < 1 and ramp > 4:
                    assert c[ramp - 1] < 1.0  # the ramp really lasts `ramp` steps
                seen += 1
    assert seen == 3 * 4 * 3


def test_pacing_shapes_match_their_formulas():
    # root with p=2 is Platanios et al.'s sqrt competence; at half the ramp from c0=0.1:
    assert C.pacing_fraction(50, "root", 0.1, 100) == pytest.approx(math.sqrt(0.01 + 0.99 * 0.5))
    assert C.pacing_fraction(50, "linear", 0.1, 100) == pytest.approx(0.55)
    # step: 4 increments of (1 - c0)/4 at s = 25, 50, 75, 100
    steps = [C.pacing_fraction(s, "step", 0.2, 100, stages=4) for s in (0, 24, 25, 49, 50, 99, 100)]
    assert steps == pytest.approx([0.2, 0.2, 0.4, 0.4, 0.6, 0.8, 1.0])
    assert C.pacing_fraction(0, "root", 0.2, 0) == 1.0  # ramp 0: no pacing


def test_resolve_steps_fraction_or_steps():
    assert C.resolve_steps(0.5, 333) == 166 or C.resolve_steps(0.5, 333) == 167
    assert C.resolve_steps(40, 333) == 40
    assert C.resolve_steps(1.0, 333) == 1  # like warmup_steps: a float >= 1 is steps
    assert C.resolve_steps(0, 333) == 0


def test_length_warmup_grows_in_multiples_of_8_to_full_length():
    seen = 0
    for start, full, ramp in ((8, 64, 10), (64, 256, 37), (32, 128, 100), (24, 100, 13)):
        t = [C.warmup_seq_len(s, start, full, ramp) for s in range(ramp + 5)]
        assert t[0] == start and t[ramp] == full and all(x == full for x in t[ramp:])
        assert all(b >= a for a, b in zip(t, t[1:]))
        assert all(x % 8 == 0 or x in (start, full) for x in t)
        assert all(start <= x <= full for x in t)
        seen += 1
    assert seen == 4


# ---- scorers ------------------------------------------------------------------------------------
def test_length_scores_recover_document_lengths_from_the_packed_stream():
    eos = 9
    # documents of 3, 5 and 8 tokens (each ends with EOS), packed into blocks of 4
    stream = [1, 2, eos] + [3, 3, 3, 3, eos] + [4, 4, 4, 4, 4, 4, 4, eos]
    blocks = np.array(stream, dtype=np.int32).reshape(4, 4)
    s = C.length_scores(blocks, eos)
    # block 0 = doc0 x3 + doc1 x1; block 1 = doc1 x4; block 2 = doc2 x4; block 3 = doc2 x4
    assert s == pytest.approx([(3 * 3 + 5) / 4, 5, 8, 8])


def test_rarity_scores_are_mean_unigram_surprisal():
    blocks = np.array([[0, 0, 0, 1], [1, 2, 2, 3]], dtype=np.int32)
    counts = np.array([3, 2, 2, 1], dtype=np.float64) + 1  # add-one smoothing
    surprisal = -np.log(counts / counts.sum())
    want = [surprisal[[0, 0, 0, 1]].mean(), surprisal[[1, 2, 2, 3]].mean()]
    assert C.rarity_scores(blocks, 4) == pytest.approx(want)
    assert want[0] < want[1]  # common tokens -> easier


def test_ranking_easy_first_hard_first_and_deterministic_ties():
    scores = np.array([3.0, 1.0, 2.0, 1.0, 5.0])
    easy = C.difficulty_ranking(scores, "easy_first", seed=0)
    hard = C.difficulty_ranking(scores, "hard_first", seed=0)
    assert sorted(easy[:2].tolist()) == [1, 3] and easy[2:].tolist() == [2, 0, 4]
    assert hard[:3].tolist() == [4, 0, 2]
    assert np.array_equal(easy, C.difficulty_ranking(scores, "easy_first", seed=0))
    with pytest.raises(ValueError):
        C.difficulty_ranking(np.array([1.0, np.nan]), "easy_first", seed=0)


# ---- the sampler ----------------------------------------------------------------------------------
def _sampler(n=200, T=32, B=8, seed=3, ramp=20, start=0.1, kind="root", warmup=None, order="easy_first"):
    blocks = np.arange(n * T, dtype=np.int32).reshape(n, T)  # block i's first token identifies it
    scores = np.random.default_rng(1).random(n)
    ranking = C.difficulty_ranking(scores, order, seed)
    return C.CurriculumSampler(
        blocks, B, seed, ranking=ranking, pacing=C.Pacing(kind, start, ramp), warmup=warmup
    ), scores


def test_sampler_draws_only_from_the_allowed_easiest_fraction_at_every_step():
    seen = 0
    for kind in KINDS:
        for order in ("easy_first", "hard_first"):
            s, scores = _sampler(kind=kind, order=order)
            key = scores if order == "easy_first" else -scores
            for step in range(40):
                m = s.allowed(step)
                assert m == min(200, max(8, math.ceil(s.pacing(step) * 200 - 1e-9)))
                idx = s.indices(step)
                assert len(idx) == 8 and len(set(idx.tolist())) == 8  # no block twice in one batch
                assert set(idx.tolist()) <= set(s.ranking[:m].tolist())
                assert key[idx].max() <= np.sort(key)[m - 1]  # only the m easiest
                ids = s.batch(step)["input_ids"]
                assert torch.equal(ids[:, 0], torch.from_numpy(idx.astype(np.int64) * 32))
                seen += 1
            assert s.allowed(0) < 200 and s.allowed(20) == 200
    assert seen == 3 * 2 * 40


def test_sampler_sees_every_pool_block_once_before_any_twice():
    # no pacing: consecutive batches are an epoch, like the baseline's permutation
    s, _ = _sampler(n=64, B=8, ramp=0)
    first = np.concatenate([s.indices(k) for k in range(8)])
    assert sorted(first.tolist()) == list(range(64))
    second = np.concatenate([s.indices(k) for k in range(8, 16)])
    assert sorted(second.tolist()) == list(range(64))
    # a batch that straddles two passes: 15 batches of 8 over 60 blocks = every block exactly twice
    s, _ = _sampler(n=60, B=8, ramp=0)
    counts = np.bincount(np.concatenate([s.indices(k) for k in range(15)]), minlength=60)
    assert (counts == 2).all() and s.diagnostics()["curriculum_passes"] == 1  # one pass boundary crossed
    # with pacing: within the first pass over the small pool nothing repeats
    s, _ = _sampler(n=200, B=8, ramp=1000, start=0.2, kind="linear")
    drawn = np.concatenate([s.indices(k) for k in range(5)])  # 40 <= pool of 40+ blocks
    assert len(set(drawn.tolist())) == 40


def test_sampler_order_is_a_function_of_seed_and_step_and_resumes_from_its_state():
    a, _ = _sampler(warmup=C.LengthWarmup(8, 15))
    full = [a.indices(k).copy() for k in range(60)]
    b, _ = _sampler(warmup=C.LengthWarmup(8, 15))
    for k in range(23):
        b.batch(k)
    state = json.loads(json.dumps(b.state_dict()))  # what the checkpoint stores (JSON)
    c, _ = _sampler(warmup=C.LengthWarmup(8, 15))
    c.load_state_dict(state)
    resumed = [c.indices(k).copy() for k in range(23, 60)]
    assert all(np.array_equal(x, y) for x, y in zip(full[23:], resumed))
    assert len(resumed) == 37
    # asked out of order, it replays: the same batch for the same step
    assert np.array_equal(c.indices(5), full[5]) and np.array_equal(c.indices(59), full[59])
    d, _ = _sampler(seed=4)
    assert not all(np.array_equal(d.indices(k), full[k]) for k in range(10))


def test_sampler_refuses_a_checkpoint_of_another_order():
    a, _ = _sampler()
    a.indices(5)
    other, _ = _sampler(start=0.3)
    with pytest.raises(UserError):
        other.load_state_dict(a.state_dict())


def test_sampler_without_scores_is_the_baseline_order():
    from efflab.loop import BlockSampler

    blocks = np.arange(50 * 16, dtype=np.int32).reshape(50, 16)
    s = C.CurriculumSampler(blocks, 8, 7, ranking=None, warmup=C.LengthWarmup(8, 10))
    base = BlockSampler(blocks, 8, 7)
    assert all(np.array_equal(s.indices(k), base.indices(k)) for k in range(20))


def test_length_warmup_truncates_or_reshapes_and_counts_its_tokens():
    blocks = np.arange(20 * 64, dtype=np.int32).reshape(20, 64)
    ranking = np.arange(20)
    seen = 0
    for mode in ("truncate", "reshape"):
        s = C.CurriculumSampler(blocks, 4, 0, ranking=ranking, warmup=C.LengthWarmup(16, 12, 8, mode))
        for step in range(15):
            t = s.seq_len_at(step)
            x = s.batch(step)["input_ids"]
            assert x.shape == (s.rows_at(step), t) and x.numel() == s.tokens_at(step)
            first = blocks[s.indices(step)]
            if mode == "truncate":
                assert x.shape[0] == 4 and torch.equal(x, torch.from_numpy(first[:, :t].astype(np.int64)))
            else:  # T // t pieces of each block, in order; tokens per step stay within one piece of B x T
                k = 64 // t
                assert x.shape[0] == 4 * k and torch.equal(
                    x[:k].reshape(-1), torch.from_numpy(first[0, : k * t].astype(np.int64))
                )
                assert 4 * 64 - 4 * t < s.tokens_at(step) <= 4 * 64
            seen += 1
        assert s.seq_len_at(0) == 16 and s.seq_len_at(12) == 64
    assert seen == 30


def test_fixed_point_horizon():
    # a horizon that grows with the ramp (cheaper early steps), saturating
    f = lambda s: 100 + min(s, 400) // 4  # noqa: E731
    h = C.fixed_point_horizon(f)
    assert f(h) == h == 133


# ---- scoring cost ----------------------------------------------------------------------------------
def _tiny_llama(vocab=96, layers=2, width=32, heads=2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=64,
        use_cache=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return LlamaForCausalLM(cfg).eval()


def test_reference_scores_are_per_block_losses_and_cost_forward_flops_over_the_scored_tokens():
    from efflab.accounting.measure import measure_forward_flops

    model = _tiny_llama()
    blocks = np.random.default_rng(0).integers(0, 96, size=(10, 24)).astype(np.int32)
    scores, tokens = C.reference_scores(model, blocks, batch_size=4)
    assert tokens == 10 * 24 and scores.shape == (10,)
    with torch.no_grad():
        ids = torch.from_numpy(blocks.astype(np.int64))
        want = [float(model(input_ids=ids[i : i + 1], labels=ids[i : i + 1]).loss) for i in range(10)]
    assert scores == pytest.approx(want, rel=1e-5)
    charged = C.scoring_flops(model.config, 24, tokens)
    assert charged == F.forward_flops_per_token(model.config, 24) * 240
    # and the accounting count agrees with FlopCounterMode on the same forward (docs/conventions.md section 2: 2%)
    measured = measure_forward_flops(model, torch.from_numpy(blocks.astype(np.int64)))
    assert charged == pytest.approx(measured, rel=0.02)


def test_reference_scores_shard_over_ranks():
    model = _tiny_llama()
    blocks = np.random.default_rng(1).integers(0, 96, size=(7, 16)).astype(np.int32)
    whole, _ = C.reference_scores(model, blocks)
    toks, seen = 0, 0
    for rank, (lo, hi) in enumerate(((0, 3), (3, 6), (6, 7))):  # ceil(7 / 3) = 3 blocks per rank, padded
        shard, t = C.reference_scores(model, blocks, rank=rank, world=3, gather=lambda x: x.reshape(-1))
        assert len(shard) == 3 and np.allclose(shard[: hi - lo], whole[lo:hi])
        assert np.isnan(shard[hi - lo :]).all()  # padding, dropped after the real gather
        toks += t
        seen += 1
    assert seen == 3 and toks == 7 * 16  # every block scored (and charged) exactly once over the ranks


def test_warmup_lengths_cost_what_the_accounting_layer_says_attention_included():
    from efflab.accounting.measure import measure_train_flops

    model = _tiny_llama()
    model.train()
    seen = 0
    per_token = {}
    for t in (8, 16, 32, 64):
        ids = torch.randint(0, 96, (2, t))
        measured = measure_train_flops(model, ids)["total"]
        per_token[t] = F.train_flops_per_token(model.config, t)
        assert per_token[t] * ids.numel() == pytest.approx(measured, rel=0.02), t
        seen += 1
    assert seen == 4
    assert per_token[8] < per_token[16] < per_token[32] < per_token[64]  # shorter context, cheaper attention


# ---- config -----------------------------------------------------------------------------------------
def test_config_cross_checks_report_every_problem(tiny_cfg, tmp_path):
    with pytest.raises(UserError) as e:
        tiny_cfg(
            "curriculum",
            {"curriculum": {"scorer": "none", "reference": str(tmp_path / "nope"), "seq_len_warmup": False}},
        )
    msg = e.value.message
    assert "changes nothing" in msg and "would be ignored" in msg
    with pytest.raises(UserError) as e:
        tiny_cfg(
            "curriculum",
            {
                "curriculum": {
                    "scorer": "reference",
                    "reference": str(tmp_path / "nope"),
                    "seq_len_warmup": True,
                    "seq_len_start": 512,
                }
            },
        )
    msg = e.value.message
    assert "no such directory" in msg and "exceeds data.seq_len" in msg
    with pytest.raises(UserError) as e:
        tiny_cfg("curriculum", {"curriculum": {"ramp": -1, "pacing": "cosine"}})
    assert "curriculum.ramp" in e.value.message and "curriculum.pacing" in e.value.message
    with pytest.raises(UserError):
        tiny_cfg("baseline", {"curriculum": {"scorer": "rarity"}})  # other recipes reject the section


def test_reference_run_config_is_a_smaller_baseline_on_a_fraction_of_the_budget(tiny_cfg):
    cfg = tiny_cfg(
        "curriculum",
        {
            "model": {"depth": 4},
            "train": {"steps": 40},
            "curriculum": {"scorer": "reference", "reference_budget": 0.25},
        },
    )
    ref = reference_run_config(cfg)
    assert ref.recipe == "baseline" and ref.curriculum is None
    assert ref.model.resolved()["n_layer"] == 2 and ref.train.steps == 10
    assert ref.data == cfg.data and ref.eval == cfg.eval


def test_chat_labels_are_cut_like_the_blocks_and_score_only_trained_tokens():
    blocks = np.arange(6 * 32, dtype=np.int32).reshape(6, 32) % 96
    labels = blocks.copy()
    labels[:, :10] = -100  # a prompt: no loss there
    seen = 0
    for mode in ("truncate", "reshape"):
        s = C.CurriculumSampler(
            blocks, 2, 0, ranking=np.arange(6), warmup=C.LengthWarmup(8, 4, 8, mode), labels=labels
        )
        for step in range(5):
            b = s.batch(step)
            assert b["labels"].shape == b["input_ids"].shape
            keep = b["labels"] != -100
            assert torch.equal(b["labels"][keep], b["input_ids"][keep])
            seen += 1
    assert seen == 10
    model = _tiny_llama()
    scores, _ = C.reference_scores(model, blocks, labels=labels)
    with torch.no_grad():
        ids, lab = torch.from_numpy(blocks.astype(np.int64)), torch.from_numpy(labels.astype(np.int64))
        want = [float(model(input_ids=ids[i : i + 1], labels=lab[i : i + 1]).loss) for i in range(6)]
    assert scores == pytest.approx(want, rel=1e-5)


def test_a_reference_with_another_tokenizer_or_a_smaller_vocabulary_is_refused(tmp_path):
    from types import SimpleNamespace

    data = SimpleNamespace(meta={"tokenizer_hash": "abc"}, vocab_size=100)
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps({"vocab_size": 96}))
    assert "smaller" in reference_tokenizer_problem(model_dir, None, data)
    (model_dir / "config.json").write_text(json.dumps({"vocab_size": 128}))
    assert reference_tokenizer_problem(model_dir, None, data) is None
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "manifest.json").write_text(
        json.dumps({"status": "complete", "data": {"tokenizer_hash": "zzz"}})
    )
    assert locate(run_dir) == (run_dir, run_dir / "model", True)
    assert "another tokenizer" in reference_tokenizer_problem(run_dir / "model", run_dir, data)
