"""Distillation losses against hand computations, the frozen teacher, the logit cache, the config section."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from efflab.accounting.flops import forward_flops_per_token
from efflab.accounting.ledger import Ledger
from efflab.errors import UserError
from efflab.techniques import distill as D

# one position, vocabulary of 4: raw logits
S = [1.0, -0.5, 0.3, 2.0]  # student
TT = [2.5, 0.1, -1.0, 0.7]  # teacher


def _softmax(z, T=1.0):
    e = [math.exp(v / T) for v in z]
    return [v / sum(e) for v in e]


def _kl(a, b):
    return sum(x * math.log(x / y) for x, y in zip(a, b) if x > 0)


def _t(z):
    return torch.tensor([z], dtype=torch.float64)


@pytest.mark.parametrize("T", [1.0, 2.0])
def test_forward_and_reverse_kl_match_hand_computation_with_t_squared(T):
    p, q = _softmax(TT, T), _softmax(S, T)
    fwd = D.kd_divergence(_t(S), _t(TT), loss="forward_kl", temperature=T)
    rev = D.kd_divergence(_t(S), _t(TT), loss="reverse_kl", temperature=T)
    assert float(fwd) == pytest.approx(T * T * _kl(p, q), rel=1e-6)  # Hinton et al.: KL(p||q) x T^2
    assert float(rev) == pytest.approx(T * T * _kl(q, p), rel=1e-6)
    assert float(fwd) != pytest.approx(float(rev), rel=1e-3)  # the example tells the two apart


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_generalized_jsd_matches_hand_computation(beta):
    p, q = _softmax(TT), _softmax(S)
    m = [beta * a + (1 - beta) * b for a, b in zip(p, q)]
    want = beta * _kl(p, m) + (1 - beta) * _kl(q, m)  # Agarwal et al. 2024, JSD(beta)
    got = float(D.kd_divergence(_t(S), _t(TT), loss="gjs", beta=beta))
    assert got == pytest.approx(want, rel=1e-6)
    assert 0 < got < math.log(2)  # a JS-type divergence is bounded by log 2


def test_top_k_losses_match_hand_computation():
    k_idx = [0, 3]  # the teacher's top-2: logits 2.5 and 0.7
    T = 2.0
    pk = _softmax([TT[i] for i in k_idx], T)  # teacher renormalised over K
    q = _softmax(S, T)  # student over the full vocabulary
    qk = [q[i] for i in k_idx]
    rest = 1 - sum(qk)
    top = D.TopK(*torch.tensor([TT], dtype=torch.float64).topk(2))
    assert sorted(top.indices[0].tolist()) == k_idx

    fwd = float(D.kd_divergence(_t(S), top, loss="forward_kl", temperature=T))
    assert fwd == pytest.approx(T * T * sum(a * math.log(a / b) for a, b in zip(pk, qk)), rel=1e-6)

    qk_norm = [v / sum(qk) for v in qk]  # reverse KL: the student renormalised over K as well
    rev = float(D.kd_divergence(_t(S), top, loss="reverse_kl", temperature=T))
    assert rev == pytest.approx(T * T * _kl(qk_norm, pk), rel=1e-6)

    beta = 0.5  # gjs over K plus one "elsewhere" outcome (teacher 0, student `rest`)
    p_ext, q_ext = pk + [0.0], qk + [rest]
    m = [beta * a + (1 - beta) * b for a, b in zip(p_ext, q_ext)]
    want = beta * _kl(p_ext, m) + (1 - beta) * _kl(q_ext, m)
    assert float(D.kd_divergence(_t(S), top, loss="gjs", beta=beta, temperature=T)) == pytest.approx(
        T * T * want, rel=1e-6
    )


def test_top_k_with_the_whole_vocabulary_equals_the_full_loss():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, 11, generator=g), torch.randn(3, 5, 11, generator=g)
    seen = 0
    for loss in D.LOSSES:
        full = D.kd_divergence(s, t, loss=loss, temperature=1.5)
        top = D.kd_divergence(s, D.TopK(*t.topk(11)), loss=loss, temperature=1.5)
        torch.testing.assert_close(full, top, rtol=1e-5, atol=1e-6)
        seen += 1
    assert seen == 3


def test_distill_loss_mixes_ce_and_kd_by_alpha_over_predicted_tokens():
    # B=1, T=3, V=4: positions 0 and 1 predict tokens 3 and 0; the label at position 2 is ignored
    s = torch.tensor([[S, TT, S]], dtype=torch.float64)
    t = torch.tensor([[TT, S, [0.0, 0.0, 0.0, 9.0]]], dtype=torch.float64)
    labels = torch.tensor([[1, 3, 0]])
    alpha = 0.3
    ce = (-math.log(_softmax(S)[3]) - math.log(_softmax(TT)[0])) / 2
    kd = (_kl(_softmax(TT), _softmax(S)) + _kl(_softmax(S), _softmax(TT))) / 2  # position 2 predicts nothing
    loss, logs = D.distill_loss(s, t, labels, alpha=alpha)
    assert float(loss) == pytest.approx(alpha * ce + (1 - alpha) * kd, rel=1e-6)
    assert logs["ce"] == pytest.approx(ce, rel=1e-6) and logs["kd"] == pytest.approx(kd, rel=1e-6)
    masked, logs2 = D.distill_loss(s, t, torch.tensor([[1, -100, 0]]), alpha=alpha)  # only position 1 counts
    assert logs2["ce"] == pytest.approx(-math.log(_softmax(TT)[0]), rel=1e-6)
    assert logs2["kd"] == pytest.approx(_kl(_softmax(S), _softmax(TT)), rel=1e-6)


def _tiny_llama(seed=0, vocab=64, layers=1):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=64,
        use_cache=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    return LlamaForCausalLM(cfg)


@pytest.mark.parametrize("loss", D.LOSSES)
def test_teacher_identical_to_student_gives_zero_loss_and_zero_gradient(loss):
    student = _tiny_llama()
    teacher = D.freeze_teacher(copy.deepcopy(student))
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    out, logs = D.distill_loss(
        student(input_ids=ids).logits,
        D.teacher_logits(teacher, ids),
        ids,
        alpha=0.0,
        loss=loss,
        temperature=2.0,
    )
    out.backward()
    assert abs(out.item()) < 1e-6 and logs["ce"] > 3.0  # CE is large (random model); KD is zero
    grads = [p.grad.abs().max().item() for p in student.parameters() if p.grad is not None]
    assert len(grads) == len(list(student.parameters())) and max(grads) < 1e-6
    # control: a different teacher gives a loss and a gradient, so the check above can fail
    other = D.freeze_teacher(_tiny_llama(seed=1))
    student.zero_grad()
    out2, _ = D.distill_loss(student(input_ids=ids).logits, D.teacher_logits(other, ids), ids, loss=loss)
    out2.backward()
    assert out2.item() > 1e-3 and max(p.grad.abs().max().item() for p in student.parameters()) > 1e-4


def test_teacher_logits_keep_no_graph_and_leave_the_teacher_untouched():
    teacher = D.freeze_teacher(_tiny_llama())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ids = torch.randint(0, 64, (2, 8))
    full = D.teacher_logits(teacher, ids)
    top = D.teacher_logits(teacher, ids, top_k=5)
    assert not full.requires_grad and full.grad_fn is None and not full.is_inference()
    assert top.values.shape == (2, 8, 5) and not top.values.is_inference()
    torch.testing.assert_close(top.values.sort(-1).values, full.topk(5).values.sort(-1).values)
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())


def test_logit_cache_roundtrip_key_and_cost(tmp_path):
    teacher = D.freeze_teacher(_tiny_llama(layers=2))
    blocks = np.random.default_rng(0).integers(0, 64, size=(10, 16)).astype(np.int32)
    fpt = forward_flops_per_token(teacher.config, 16)
    key = D.cache_key("teacher-a", blocks, 8)
    assert key != D.cache_key("teacher-b", blocks, 8) and key != D.cache_key("teacher-a", blocks, 4)
    assert key != D.cache_key("teacher-a", blocks[:, :8].copy(), 8) and key == D.cache_key(
        "teacher-a", blocks.copy(), 8
    )
    cache = D.build_cache(
        tmp_path / key,
        teacher,
        blocks,
        8,
        forward_flops_per_token=fpt,
        device="cpu",
        batch_size=4,
        log=lambda *_: None,
    )
    assert (
        cache.values.shape == (10, 16, 8)
        and cache.values.dtype == np.float16
        and cache.indices.dtype == np.int32
    )
    assert cache.flops == pytest.approx(fpt * 10 * 16) and cache.tokens == 160
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically: no temporary left behind

    from efflab.loop import BlockSampler

    sampler = BlockSampler(blocks, 2, seed=3)
    rows = sampler.indices(4)
    batch = D.CachedTeacherSource(sampler, D.open_cache(tmp_path / key)).batch(4)
    assert torch.equal(batch["input_ids"], torch.from_numpy(blocks[rows].astype(np.int64)))
    want = D.teacher_logits(teacher, batch["input_ids"], top_k=8)
    for b in range(2):  # same top-k set, values to fp16 precision
        order_c, order_w = batch["teacher_indices"][b].argsort(-1), want.indices[b].argsort(-1)
        assert torch.equal(
            batch["teacher_indices"][b].gather(-1, order_c), want.indices[b].gather(-1, order_w)
        )
        torch.testing.assert_close(
            batch["teacher_values"][b].float().gather(-1, order_c),
            want.values[b].gather(-1, order_w),
            rtol=2e-3,
            atol=2e-3,
        )


def test_vocabulary_problems_name_both_sizes():
    class Tok(dict):
        def get_vocab(self):
            return dict(self)

    a = Tok({f"t{i}": i for i in range(300)})
    b = Tok({f"u{i}": i for i in range(300)})
    assert D.vocabulary_problems(300, a, a) == []
    assert any("different vocabulary" in p for p in D.vocabulary_problems(300, a, b))
    msg = " ".join(D.vocabulary_problems(512, a, Tok({f"t{i}": i for i in range(256)})))
    assert "300" in msg and "256" in msg
    msg = " ".join(D.vocabulary_problems(512, None, None, student_vocab=1000))
    assert "512" in msg and "1000" in msg
    assert "256" in " ".join(D.vocabulary_problems(300, a, None, requested_vocab=256))
    assert D.vocabulary_problems(300, a, None, requested_vocab=512, teacher_requested=512) == []


def test_bill_marginal_total_and_amortised():
    led = Ledger()
    led.charge("train", 10.0)
    led.charge("teacher_forward", 6.0)  # a cache this run built
    led.charge("sunk.teacher_pretrain", 100.0, shared=True)
    led.extra["distill"] = {"cache_flops_charged": 6.0}
    b = D.bill(led, students=4)
    assert (b["marginal"], b["total"]) == (16.0, 116.0)
    assert b["total_amortised"] == pytest.approx(10.0 + (6.0 + 100.0) / 4)
    reuse = Ledger()
    reuse.charge("train", 10.0)
    reuse.record_reuse("teacher_forward", 6.0, source="cache")
    assert D.bill(reuse)["marginal"] == 10.0 and D.bill(reuse, students=2)[
        "total_amortised"
    ] == pytest.approx(13.0)


def test_config_section_problems_reported_together(tmp_path):
    from efflab.config import config_from_dict

    def make(distill, recipe="distill"):
        return config_from_dict({"model": {"depth": 2}, "distill": distill}, recipe=recipe)

    with pytest.raises(UserError) as e:
        make({})
    assert "distill.teacher" in e.value.message and "teacher_train" in e.value.message
    with pytest.raises(UserError) as e:
        make({"teacher": str(tmp_path / "nope"), "logits": "cache", "loss": "forward_kl"})
    assert "no such directory" in e.value.message and "distill.top_k" in e.value.message
    with pytest.raises(UserError) as e:
        make({"teacher": str(tmp_path), "alpha": 1.0, "loss": "kl", "temperature": 0})
    msg = e.value.message
    assert "distill.alpha" in msg and "distill.loss" in msg and "distill.temperature" in msg
    with pytest.raises(UserError, match="neither a finished efflab run"):
        make({"teacher": str(tmp_path)})
    with pytest.raises(UserError, match="not complete"):
        (tmp_path / "manifest.json").write_text('{"status": "running"}')
        make({"teacher": str(tmp_path)})
    cfg = make({"teacher_train": {"model": {"depth": 3}, "train": {"steps": 5}}})
    assert cfg.distill.teacher_train.model.depth == 3 and cfg.distill.alpha == 0.0
    with pytest.raises(UserError, match="distill: section not used"):
        make({"teacher": str(tmp_path)}, recipe="baseline")
