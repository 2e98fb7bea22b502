"""MoE technique: router losses, capacity routing, experts implementations, FLOP cross-check, upcycling,
the ladder pairing and bad input. Tiny models built here; nothing downloaded."""

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from efflab.accounting import measure
from efflab.accounting.flops import count_flops
from efflab.config import config_from_dict
from efflab.errors import UserError
from efflab.models import (
    active_flops_ratio,
    build_model,
    build_model_config,
    dense_config_for,
    moe_config_for,
)
from efflab.moe_model import (
    SparseMoeBlock,
    available_experts_implementations,
    build_moe_config,
    decide_implementation,
    moe_blocks,
    pick_experts_implementation,
    upcycle_,
)
from efflab.techniques import moe as M

BASE = {
    "model": {"depth": 2, "aspect": 32, "head_dim": 32, "attn_implementation": "eager"},  # width 64, FFN 192
    "data": {"vocab_size": 512, "seq_len": 32},
    "train": {"steps": 3},
}


def _cfg(moe=None, recipe="moe", **sections):
    raw = {k: dict(v) for k, v in BASE.items()}
    for k, v in sections.items():
        raw[k] = {**raw.get(k, {}), **v}
    if recipe == "moe":
        raw["moe"] = moe or {}
    return config_from_dict(raw, recipe=recipe)


def _model(moe=None, seed=0, **sections):
    cfg = _cfg(moe, **sections)
    torch.manual_seed(seed)
    return cfg, build_model(cfg, 512)


# ---- router losses -------------------------------------------------------------------------------
def test_balance_loss_is_one_when_balanced_and_n_experts_when_collapsed():
    E, N = 4, 8
    uniform = torch.full((N, E), 1 / E)
    idx = torch.arange(N * 2).remainder(E).view(N, 2)  # every expert chosen equally often
    assert M.load_balancing_loss(uniform, idx, E).item() == pytest.approx(1.0)
    onehot = torch.zeros(N, E)
    onehot[:, 0] = 1.0
    assert M.load_balancing_loss(onehot, torch.zeros(N, 1, dtype=torch.long), E).item() == pytest.approx(E)
    # transformers' Mixtral loss is top_k times ours (its token fractions sum to top_k)
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    logits = torch.randn(N, E)
    top = torch.topk(logits.softmax(-1), 2, dim=-1).indices
    ours = M.load_balancing_loss(logits.softmax(-1), top, E)
    assert load_balancing_loss_func((logits,), E, 2).item() == pytest.approx(2 * ours.item(), rel=1e-5)


def test_balance_loss_pushes_a_skewed_router_toward_balance():
    torch.manual_seed(0)
    E, k, d, N = 8, 2, 16, 512
    c = torch.randn(d)
    c /= c.norm()
    x = torch.randn(N, d) + 2 * c  # tokens share a direction c ...
    w = torch.nn.Parameter(torch.randn(E, d) * 0.1)
    with torch.no_grad():
        w[:2] += c  # ... that experts 0 and 1 are aligned with

    def stats():
        probs = torch.softmax(x @ w.t(), -1)
        idx = torch.topk(probs, k, dim=-1).indices
        frac = torch.bincount(idx.reshape(-1), minlength=E).float() / idx.numel()
        return M.load_balancing_loss(probs, idx, E), frac

    loss0, frac0 = stats()
    assert frac0[:2].sum() > 0.85 and loss0 > 2.5  # deliberately skewed: experts 0 and 1 take most
    opt = torch.optim.SGD([w], lr=0.5)
    for _ in range(100):
        loss, _ = stats()
        opt.zero_grad()
        loss.backward()
        opt.step()
    loss1, frac1 = stats()
    assert loss1 < 1.01, (loss0, loss1)
    assert frac1.max() < 0.14 and frac1.min() > 0.11, frac1  # 1/8 = 0.125 each when balanced


def test_router_z_loss_by_hand():
    logits = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    want = (math.log(2) ** 2 + math.log(math.e + 1 / math.e) ** 2) / 2
    assert M.router_z_loss(logits).item() == pytest.approx(want)


def test_moe_loss_adds_weighted_means_and_logs_lm_loss():
    lm = torch.tensor(2.0)
    aux = [(torch.tensor(1.0), torch.tensor(4.0)), (torch.tensor(3.0), torch.tensor(0.0))]
    loss, logs = M.moe_loss(lm, aux, balance_coef=0.1, z_coef=0.01)
    assert loss.item() == pytest.approx(2.0 + 0.1 * 2.0 + 0.01 * 2.0)
    assert logs == {"lm_loss": 2.0, "moe_balance_loss": 2.0, "moe_z_loss": 2.0}


# ---- capacity ------------------------------------------------------------------------------------
def test_capacity_keeps_first_choices_first_then_token_order():
    # 4 tokens, top-2, 3 experts, capacity 2 per expert
    idx = torch.tensor([[0, 1], [0, 2], [0, 1], [1, 0]])
    keep = M.capacity_keep(idx, 3, 2)
    # expert 0: first choices of tokens 0, 1, 2 (keeps 0 and 1), then token 3's second choice (dropped)
    # expert 1: token 3's first choice, then second choices of tokens 0 and 2 (keeps token 0's)
    assert keep.tolist() == [[True, True], [True, True], [False, False], [True, False]]
    assert M.expert_capacity(4, 2, 3, 1.0) == 3 and M.expert_capacity(10, 1, 4, 1.25) == 4


# ---- experts implementations ---------------------------------------------------------------------
def test_implementations_agree_in_output_and_gradients():
    cfg, model = _model({"n_experts": 4, "top_k": 2})
    ids = torch.randint(0, 256, (2, 32))
    impls = [i for i in available_experts_implementations() if i != "batched_mm"] + ["batched_mm"]
    assert {"efflab", "eager", "grouped_mm"} <= set(impls)
    ref = None
    seen = 0
    for impl in impls:
        model.set_experts_implementation(impl)
        model.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
        if ref is None:
            ref = (loss.detach(), grads)
        else:
            assert loss.item() == pytest.approx(ref[0].item(), abs=1e-5), impl
            assert torch.allclose(grads, ref[1], atol=1e-5, rtol=1e-4), impl
        seen += 1
    assert seen == len(impls) >= 3


def test_dropped_assignments_skip_work_and_match_zero_weights():
    torch.manual_seed(0)
    cfg, model = _model({"n_experts": 4, "top_k": 2})
    ex = model.model.layers[0].mlp.experts
    x = torch.randn(10, 64)
    idx = torch.randint(0, 4, (10, 2))
    w = torch.rand(10, 2)
    drop = torch.rand(10, 2) < 0.4
    assert drop.any()
    model.set_experts_implementation("eager")
    zeroed = ex(x, idx, w * ~drop)
    seen = 0
    for impl in ("efflab", "efflab_grouped", "eager"):  # SENTINEL_IMPLEMENTATIONS: id 4 = dropped
        model.set_experts_implementation(impl)
        with FlopCounterMode(display=False) as fc:
            skipped = ex(x, idx.masked_fill(drop, 4), w)
        assert torch.allclose(skipped, zeroed, atol=1e-6), impl
        if impl == "efflab":  # only kept assignments are computed
            assert fc.get_total_flops() == 2 * int((~drop).sum()) * (64 * 2 * 96 + 96 * 64)
        seen += 1
    assert seen == 3


def test_efflab_grouped_flops_match_the_analytic_count_with_the_grouped_mm_formula():
    cfg, model = _model({"n_experts": 4, "top_k": 2, "experts_implementation": "efflab_grouped"})
    ids = torch.randint(0, 256, (2, 32))
    with FlopCounterMode(display=False) as plain:
        model(input_ids=ids, labels=ids).loss.backward()
    with FlopCounterMode(display=False, custom_mapping=measure._custom_mapping()) as fc:
        model(input_ids=ids, labels=ids).loss.backward()
    analytic = count_flops(model.config, 32).train_flops_per_token
    assert fc.get_total_flops() / ids.numel() == pytest.approx(analytic, rel=0.02)
    assert plain.get_total_flops() < 0.8 * fc.get_total_flops()  # without the formula: experts uncounted


def _grouped_and_eager_counts(tokens: int, drop: float, device: str) -> tuple[dict, int]:
    torch.manual_seed(tokens)
    _, model = _model({"n_experts": 4, "top_k": 2})
    model.to(device)
    ex = model.model.layers[0].mlp.experts
    x = torch.randn(tokens, 64, device=device, requires_grad=True)
    idx = torch.rand(tokens, 4).topk(2, dim=-1).indices
    idx = idx.masked_fill(torch.rand(tokens, 2) < drop, 4).to(device)
    w = torch.rand(tokens, 2, device=device, requires_grad=True)
    counts = {}
    for impl in ("eager", "efflab_grouped"):
        model.set_experts_implementation(impl)
        # CUDA's grouped GEMM runs in bf16 (as efflab trains there: autocast); the CPU one in fp32
        with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
            with FlopCounterMode(display=False, custom_mapping=measure._custom_mapping()) as fc:
                y = ex(x, idx, w)
                fwd = fc.get_total_flops()
                y.float().square().sum().backward()
        counts[impl] = (fwd, fc.get_total_flops())
        if impl == "efflab_grouped":
            assert torch.ops.aten._grouped_mm in fc.get_flop_counts()["Global"]  # the kernel that trains
    return counts, int((idx < 4).sum())


@pytest.mark.parametrize("tokens,drop", [(10, 0.0), (33, 0.3), (64, 0.6)])
def test_grouped_mm_formula_agrees_with_eager_counting(tokens, drop):
    """The aten._grouped_mm formula (accounting/measure.py) counts forward and backward exactly as
    FlopCounterMode counts the eager loop of matmuls, dropped assignments (id n_experts) skipped."""
    counts, kept = _grouped_and_eager_counts(tokens, drop, "cpu")
    assert counts["eager"][0] == 2 * kept * (64 * 2 * 96 + 96 * 64)  # [n, 64] x [64, 192], [n, 96] x [96, 64]
    assert counts["efflab_grouped"] == counts["eager"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("tokens,drop", [(64, 0.0), (256, 0.3)])
def test_grouped_mm_formula_agrees_with_eager_counting_on_cuda(tokens, drop):
    if torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("torch's CUDA grouped GEMM needs compute capability >= 8.0")
    counts, kept = _grouped_and_eager_counts(tokens, drop, "cuda")
    assert counts["eager"][0] == 2 * kept * (64 * 2 * 96 + 96 * 64)
    assert counts["efflab_grouped"] == counts["eager"]


def test_grouped_mm_formula_layouts():
    """Weight-gradient ([K, S] x [S, N] -> [E, K, N]) and batched ([E, M, K] x [E, K, N]) layouts."""
    a, b = torch.randn(8, 12), torch.randn(12, 5)
    offs = torch.tensor([4, 4, 10], dtype=torch.int32)  # rows 10, 11 belong to no group
    assert measure._grouped_mm_flops(a, b, offs) == 2 * 8 * 10 * 5
    assert measure._grouped_mm_flops(torch.randn(12, 8), torch.randn(3, 8, 5), offs) == 2 * 10 * 8 * 5
    assert measure._grouped_mm_flops(torch.randn(3, 4, 8), torch.randn(3, 8, 5)) == 2 * 3 * 4 * 8 * 5


def test_auto_chooses_by_measurement_and_records_it():
    assert pick_experts_implementation("auto", "cpu") == "efflab"  # without a measurement
    assert pick_experts_implementation("eager", "cpu") == "eager"
    cfg, model = _model({"experts_implementation": "grouped_mm"})
    assert model.config._experts_implementation == "grouped_mm"
    assert model.efflab_experts_choice == {
        "requested": "grouped_mm",
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "chosen": "grouped_mm",
        "by": "config",
    }
    cfg, model = _model()
    rec = model.efflab_experts_choice
    assert rec["by"] == "measurement" and rec["tokens"] == cfg.train.batch_size * cfg.data.seq_len
    assert set(rec["step_s"]) == set(rec["preference"]) == {"efflab", "efflab_grouped", "eager"}
    assert all(t > 0 for t in rec["step_s"].values())
    assert (
        model.config._experts_implementation
        == rec["chosen"]
        == decide_implementation(rec["step_s"], tuple(rec["preference"]), rec["margin"])
    )


def test_choice_is_a_deterministic_function_of_the_measurement():
    pref = ("efflab", "efflab_grouped", "eager")
    assert (
        decide_implementation({"efflab": 1.0, "efflab_grouped": 0.5, "eager": 2.0}, pref) == "efflab_grouped"
    )
    # within the 5% margin the preferred one wins, whatever the order of the dict
    assert decide_implementation({"eager": 0.97, "efflab_grouped": 0.98, "efflab": 1.0}, pref) == "efflab"
    assert (
        decide_implementation({"efflab": 1.06, "efflab_grouped": 1.04, "eager": 1.0}, pref)
        == "efflab_grouped"
    )
    assert decide_implementation({"efflab": 1.2, "efflab_grouped": 1.2, "eager": 1.0}, pref) == "eager"
    times = {"efflab": 0.31, "efflab_grouped": 0.30, "eager": 0.5}
    assert len({decide_implementation(dict(times), pref) for _ in range(5)}) == 1


# ---- accounting: analytic count vs FlopCounterMode on the implementation that runs ----------------
@pytest.mark.parametrize(
    "moe",
    [
        {"n_experts": 4, "top_k": 2},
        {"n_experts": 8, "top_k": 2, "shared_expert_width": 64},
        {"n_experts": 6, "top_k": 3, "expert_width": 48},
    ],
)
def test_flop_count_matches_flopcountermode_on_efflab_experts(moe):
    cfg, model = _model({**moe, "experts_implementation": "efflab"})
    ids = torch.randint(0, 256, (2, 32))
    model.train()
    with FlopCounterMode(display=False, custom_mapping=measure._custom_mapping()) as fc:
        out = model(input_ids=ids, labels=ids)
        loss, _ = M.moe_loss(
            out.loss, [b.pop_aux() for b in moe_blocks(model)], balance_coef=0.01, z_coef=0.001
        )
        loss.backward()
    measured = fc.get_total_flops() / ids.numel()
    analytic = count_flops(model.config, 32).train_flops_per_token
    assert measured == pytest.approx(analytic, rel=0.02)
    by_module = measure._by_module(fc)
    root = type(model).__name__
    experts = [v for k, v in by_module.items() if k.startswith(root) and k.endswith("mlp.experts")]
    assert len(experts) == 2 and all(v > 0 for v in experts)  # the experts' matmuls are counted
    if "shared_expert_width" not in moe:  # and through the shared measurement (the kernel that trains)
        r = measure.measure_train_flops(model, ids)
        assert r["per_token"] == pytest.approx(analytic, rel=0.02) and not r["uncounted"]


def test_active_params_and_flops_match_the_dense_partner():
    cfg = _cfg({"n_experts": 8, "top_k": 2})
    dense = dense_config_for(cfg)
    assert dense.recipe == "baseline" and dense.model.resolved()["ffn_width"] == 192
    cm, cd = count_flops(build_model_config(cfg, 512), 32), count_flops(build_model_config(dense, 512), 32)
    assert cm.breakdown["experts"] == cd.breakdown["mlp"]  # routed experts active = the dense FFN
    assert cm.breakdown["router"] == 2 * 64 * 8 * 2  # 2 x d x E per layer, 2 layers
    assert cm.params_active == cd.params_total + 2 * 64 * 8
    assert cm.params_total > 3 * cd.params_total // 2
    assert 1.0 < active_flops_ratio(cfg, dense, 512) < 1.01


# ---- the ladder pairing --------------------------------------------------------------------------
def test_moe_config_for_keeps_attention_and_converts_the_budget_to_flops():
    dense = _cfg(recipe="baseline", train={"steps": None, "budget_tokens": 1e5})
    moe = moe_config_for(dense)
    assert moe.recipe == "moe" and moe.model == dense.model and moe.data == dense.data
    want = 1e5 * count_flops(build_model_config(dense), 32).train_flops_per_token
    assert moe.train.budget_flops == pytest.approx(want) and moe.train.budget_tokens is None
    assert M.moe_shape(moe).expert_width == 96 and moe.moe.n_experts == 8
    mixtral_like = moe_config_for(dense, expert_width=192)
    assert dense_config_for(mixtral_like).model.resolved()["ffn_width"] == 2 * 192  # a documented multiple
    assert isinstance(build_moe_config(moe, 512).to_dict()["efflab_moe"], dict)


# ---- upcycling ----------------------------------------------------------------------------------------
def _dense_dir(tmp_path, **model):
    cfg = _cfg(recipe="baseline", model=model)
    torch.manual_seed(1)
    dense = build_model(cfg, 512)
    dense.save_pretrained(tmp_path / "dense")
    return dense, tmp_path / "dense"


def test_upcycled_copies_give_exactly_the_dense_loss(tmp_path):
    dense, path = _dense_dir(tmp_path)
    cfg = _cfg({"n_experts": 4, "top_k": 2, "upcycle_from": str(path)})
    assert M.moe_shape(cfg).expert_width == 192  # the dense MLP, copied whole
    torch.manual_seed(2)
    moe = build_model(cfg, 512)
    upcycle_(moe, dense)
    ids = torch.randint(0, 256, (4, 32))
    dense.eval()
    seen = 0
    for impl in ("efflab", "eager", "grouped_mm"):
        moe.set_experts_implementation(impl)
        for mode in (moe.eval, moe.train):
            mode()
            with torch.no_grad():
                assert moe(input_ids=ids, labels=ids).loss.item() == pytest.approx(
                    dense(input_ids=ids, labels=ids).loss.item(), abs=1e-5
                )
            seen += 1
    assert seen == 6
    assert not torch.equal(
        moe.model.layers[0].mlp.gate.weight, torch.zeros_like(moe.model.layers[0].mlp.gate.weight)
    )


def test_upcycling_shape_mismatch_is_a_user_error(tmp_path):
    _, path = _dense_dir(tmp_path)
    with pytest.raises(UserError) as e:
        _cfg({"upcycle_from": str(path)}, model={"depth": 3})
    assert "layers" in str(e.value)
    with pytest.raises(UserError) as e:
        _cfg({"upcycle_from": str(path)}, model={"depth": 2, "aspect": 64, "head_dim": 64})
    msg = str(e.value)
    assert "width (hidden_size) 64" in msg and "128" in msg
    with pytest.raises(UserError) as e:
        _cfg({"upcycle_from": str(path), "expert_width": 96})
    assert "expert width" in str(e.value)
    with pytest.raises(UserError, match="no such directory"):
        _cfg({"upcycle_from": str(tmp_path / "nope")})


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "moe,needle",
    [
        ({"n_experts": 4, "top_k": 5}, "top_k=5 is larger than moe.n_experts=4"),
        ({"n_experts": 0}, "at least one expert"),
        ({"capacity_factor": 0.5}, "capacity_factor=0.5 < 1 drops tokens"),
        ({"routing": "dropless", "capacity_factor": 1.5}, "only used with moe.routing: capacity"),
        ({"routing": "sometimes"}, "moe.routing"),
        ({"experts_implementation": "fast"}, "moe.experts_implementation"),
        ({"n_expert": 4}, "moe.n_expert: unknown key"),
    ],
)
def test_bad_moe_sections_name_the_problem(moe, needle):
    with pytest.raises(UserError) as e:
        _cfg(moe)
    assert needle in str(e.value)


def test_capacity_routing_accepts_factors_below_one():
    cfg = _cfg({"routing": "capacity", "capacity_factor": 0.5})
    assert cfg.moe.effective_capacity_factor == 0.5
    assert _cfg({"routing": "capacity"}).moe.effective_capacity_factor == 1.25


def test_block_records_routing_statistics_and_drops_under_capacity():
    cfg, model = _model({"n_experts": 4, "top_k": 2, "routing": "capacity", "capacity_factor": 0.5})
    blocks = moe_blocks(model)
    assert len(blocks) == 2 and all(isinstance(b, SparseMoeBlock) for b in blocks)
    ids = torch.randint(0, 256, (4, 32))
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    assert all(b.pop_stats() is None for b in blocks)  # eval forwards are not training statistics
    model.train()
    model(input_ids=ids)
    row, warnings = M.routing_metrics([b.pop_stats() for b in blocks])
    assert row["moe_layers"] == [0, 1]
    for frac, dropped in zip(row["moe_expert_fraction"], row["moe_dropped_fraction"]):
        assert len(frac) == 4 and sum(frac) == pytest.approx(1.0, abs=1e-4)
        assert dropped >= 0.5 - 1e-9  # capacity 0.5 x fair share: at least half the assignments dropped
    assert all(0 < h <= math.log(4) + 1e-6 for h in row["moe_router_entropy"])


def test_collapse_warning():
    collapsed = {
        "counts": [97.0, 1.0, 1.0, 1.0],
        "assigned": 100.0,
        "dropped": 0.0,
        "tokens": 50.0,
        "entropy_sum": 5.0,
        "balance_sum": 3.7,
        "forwards": 1.0,
    }
    fine = {**collapsed, "counts": [25.0, 25.0, 24.0, 26.0]}
    row, warnings = M.routing_metrics([fine, collapsed, None], collapse_threshold=0.5)
    assert row["moe_layers"] == [0, 1] and len(warnings) == 1 and "layer 1" in warnings[0]
    assert row["moe_effective_experts"][0] == pytest.approx(4.0, abs=0.01)
    assert row["moe_effective_experts"][1] < 1.2


def test_gradient_checkpointing_recompute_is_not_counted_twice():
    cfg, model = _model({"n_experts": 4, "top_k": 2})
    enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
    key = (
        "activation_checkpointing_kwargs"
        if hasattr(model, "activation_checkpointing_enable")
        else ("gradient_checkpointing_kwargs")
    )
    enable(**{key: {"use_reentrant": False}})
    model.train()
    ids = torch.randint(0, 256, (2, 32))
    out = model(input_ids=ids, labels=ids)
    blocks = moe_blocks(model)
    loss, _ = M.moe_loss(out.loss, [b.pop_aux() for b in blocks], balance_coef=0.01, z_coef=0.001)
    loss.backward()  # re-runs each layer's forward
    assert all(b.aux is None for b in blocks)
    stats = [b.pop_stats() for b in blocks]
    assert [s["assigned"] for s in stats] == [2 * 32 * 2] * 2 and [s["forwards"] for s in stats] == [1, 1]
    assert blocks[0].gate.weight.grad is not None and blocks[0].gate.weight.grad.abs().sum() > 0


def test_the_routing_observer_carries_its_window_through_a_checkpoint():
    """A checkpoint between two eval points keeps the routing counters gathered so far: the observer
    restored from it reports at the next eval exactly what the uninterrupted one reports."""
    _, model = _model()
    model.train()
    torch.manual_seed(1)
    first, second = torch.randint(0, 256, (2, 32)), torch.randint(0, 256, (2, 32))
    logs = []
    obs = M.routing_observer(moe_blocks(model), 0.25, log=logs.append)
    model(input_ids=first)
    state = json.loads(json.dumps(obs.state_dict()))  # as the per-rank trainer state stores it
    assert all(s is not None and s["forwards"] == 1.0 for s in state["blocks"])
    model(input_ids=second)
    whole = obs(model)  # the uninterrupted run's eval row (resets the counters)

    model(input_ids=second)  # a resumed run: counters from the checkpoint, then the steps after it
    obs.load_state_dict(state)
    assert [s["forwards"] for s in obs.state_dict()["blocks"]] == [1.0, 1.0]
    model(input_ids=second)
    assert obs(model) == whole
    with pytest.raises(ValueError, match="routing state of 1 layers"):
        obs.load_state_dict({"blocks": state["blocks"][:1]})
