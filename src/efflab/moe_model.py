"""efflab's mixture-of-experts decoder: a stock transformers Mixtral model (or Qwen2-MoE when there is
a shared expert) whose sparse blocks efflab swaps for its own at build time.

Why stock model types. The checkpoint is a plain `MixtralForCausalLM` / `Qwen2MoeForCausalLM`
(model_type "mixtral" / "qwen2_moe", attention without biases and without a sliding window, i.e.
exactly the dense baseline's Llama attention), so `AutoModelForCausalLM.from_pretrained` loads a
finished run with no efflab import and no remote code, and the accounting layer counts it as it
counts any Mixtral or Qwen2-MoE config (router + top-k experts + shared expert). The efflab block
keeps the stock submodules and parameter names (`mlp.gate`, `mlp.experts.gate_up_proj`, ...) and adds
what training needs: capacity-factor routing, the router losses of the last forward, and routing
statistics. Evaluation (and the saved model) route dropless exactly like the stock block, so the
reloaded model reproduces the run's eval loss.

Experts implementations (`moe.experts_implementation`; transformers' `experts_implementation`;
efflab's two are registered with transformers at import of this module):
- `efflab`: sort the token-assignments by expert, one gather, then per expert one gate_up and one
  down matmul on a contiguous slice, one scatter-add back. Every matmul is an `aten.mm` that
  FlopCounterMode counts; capacity drops skip work; matmuls follow autocast like nn.Linear.
- `efflab_grouped`: transformers' grouped-GEMM path (one grouped GEMM per projection) run in the
  autocast dtype, with dropped assignments skipped. FlopCounterMode has no formula for
  `aten._grouped_mm` (it counts zero; tests/unit/test_moe.py registers one to cross-check it).
- transformers' own: `eager` (a loop over experts with per-expert masks), `grouped_mm` (grouped
  GEMMs; under autocast in the fp32 of the master weights), `batched_mm` (gathers a weight copy per
  token-assignment: memory-bound and very large at training batch sizes).
`auto` measures, when the model is built, forward + backward of one layer's experts at the training
micro-batch, thread count and autocast dtype for efflab, efflab_grouped and eager, and takes the
fastest (ties within 5% go to efflab, or to efflab_grouped on an sm80+ GPU); the times and the choice
go to the run's manifest (`moe.experts_choice`). Why measure: on a 2-core CPU the best kernel
changes with thread count and machine load (one thread: efflab 1.11x the dense step, grouped 1.11x,
eager 1.20x; two threads under load: efflab 1.91x, grouped 0.98x). benchmarks/moe.py measures them
all against the dense model at equal active FLOPs.
"""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as nnf

from efflab.errors import UserError
from efflab.model_files import load_pretrained, torch_dtype
from efflab.techniques import moe as M

MOE_MODEL_TYPES = ("mixtral", "qwen2_moe")
# implementations that skip an expert id == n_experts (a dropped assignment) without computing it
SENTINEL_IMPLEMENTATIONS = ("efflab", "efflab_grouped", "eager")


# =============================================================================================
# the efflab experts implementation
# =============================================================================================
@torch.compiler.disable  # per-expert sizes are data (.tolist()): traced, every new split recompiled
def efflab_experts_forward(
    self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """Routed experts on sorted token-assignments. hidden_states [N, d], top_k_index [N, k] (an id equal
    to n_experts marks a dropped assignment), top_k_weights [N, k] -> [N, d]."""
    if self.is_transposed or self.has_bias or not self.has_gate or self.has_post_expert_norm:
        raise NotImplementedError(
            "efflab experts: only untransposed, bias-free gated experts (Mixtral, Qwen2-MoE)"
        )
    N, d = hidden_states.shape
    k = top_k_index.shape[1]
    E = self.num_experts
    flat = top_k_index.reshape(-1)  # [S], S = N * k assignments
    order = torch.sort(flat).indices  # grouped by expert; dropped (id E) sort last
    counts = torch.bincount(flat, minlength=E + 1).tolist()  # the one host sync
    kept = sum(counts[:E])
    order = order[:kept]
    token_of = order // k  # [S_kept] token of each sorted assignment
    x = hidden_states.index_select(0, token_of)  # [S_kept, d], grouped by expert
    # split/unbind (not slicing) so that backward concatenates the per-expert gradients once
    # instead of allocating a full-size zero gradient per expert
    w_gate_up, w_down = self.gate_up_proj.unbind(0), self.down_proj.unbind(0)
    outs = []
    for e, xe in enumerate(x.split(counts[:E])):
        if xe.shape[0]:
            h = nnf.linear(xe, w_gate_up[e])  # [n_e, 2I]
            outs.append(nnf.linear(self._apply_gate(h), w_down[e]))  # act(gate) * up: [n_e, I] -> [n_e, d]
    out = torch.zeros_like(hidden_states)
    if not outs:
        return out
    w = top_k_weights.reshape(-1)[order]  # [S_kept]
    y = torch.cat(outs)
    y = y * w.unsqueeze(-1).to(y.dtype)
    return out.index_add_(0, token_of, y.to(out.dtype))  # sum of the k weighted expert outputs per token


def efflab_grouped_experts_forward(
    self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """transformers' grouped-GEMM experts, run in the autocast dtype (bf16) when autocast is on, and with
    dropped assignments (id n_experts) skipped. Same shapes as `efflab_experts_forward`.

    Why: under autocast (how efflab trains on a GPU: fp32 master weights, bf16 compute) transformers'
    grouped_mm casts its input to the fp32 weights, so the experts would run in fp32 while every
    nn.Linear of the model runs in bf16. Here the weights are cast instead (gradients flow back to the
    fp32 masters, as autocast does for nn.Linear), and the dropped-assignment masking of transformers'
    expert-parallel path is switched on, which keeps uninitialised rows out of the sums.
    """
    from types import SimpleNamespace

    from transformers.integrations.moe import grouped_mm_experts_forward

    dev = hidden_states.device.type
    dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else self.gate_up_proj.dtype
    view = SimpleNamespace(
        num_experts=self.num_experts,
        has_gate=self.has_gate,
        has_bias=self.has_bias,
        is_transposed=self.is_transposed,
        has_post_expert_norm=self.has_post_expert_norm,
        _is_expert_parallel=True,
        act_fn=self.act_fn,
        _apply_gate=self._apply_gate,
        gate_up_proj=self.gate_up_proj.to(dtype),
        down_proj=self.down_proj.to(dtype),
    )
    with torch.autocast(dev, enabled=False):
        out = grouped_mm_experts_forward(view, hidden_states.to(dtype), top_k_index, top_k_weights)
    return out.to(hidden_states.dtype)


def register_experts_implementation() -> None:
    """Make "efflab" and "efflab_grouped" transformers experts implementations (idempotent)."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    ALL_EXPERTS_FUNCTIONS.register("efflab", efflab_experts_forward)
    ALL_EXPERTS_FUNCTIONS.register("efflab_grouped", efflab_grouped_experts_forward)


register_experts_implementation()


def available_experts_implementations() -> list[str]:
    """Experts implementations this transformers offers, plus efflab's."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    names = ["eager", *sorted(ALL_EXPERTS_FUNCTIONS.keys())]
    return [n for n in names if n in ("eager", "efflab", "efflab_grouped", "grouped_mm", "batched_mm")]


def pick_experts_implementation(requested: str = "auto", device: str | torch.device | None = None) -> str:
    """The implementation to run without measuring: `requested`, or for "auto" the first of
    `candidate_implementations(device)` (efflab_grouped on CUDA sm80+, else efflab)."""
    if requested != "auto":
        return requested
    return candidate_implementations(device)[0]


def _device(device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def candidate_implementations(device: str | torch.device | None = None) -> tuple[str, ...]:
    """What "auto" chooses among on `device`, in order of preference on a tie: efflab's (a loop of
    matmuls, the most portable), efflab_grouped (torch's grouped GEMM, transformers' `grouped_mm`
    kernel, in the autocast dtype and skipping dropped assignments) and eager (transformers' loop over
    experts). On CUDA with compute capability >= 8.0 the grouped GEMM comes first."""
    dev = _device(device)
    grouped = hasattr(nnf, "grouped_mm") or hasattr(torch, "_grouped_mm")
    if dev.type == "cuda" and grouped and torch.cuda.get_device_capability(dev) >= (8, 0):
        return ("efflab_grouped", "efflab", "eager")
    if dev.type == "cuda":
        return ("efflab", "eager")
    return ("efflab", "efflab_grouped", "eager") if grouped else ("efflab", "eager")


def decide_implementation(step_s: dict[str, float], preference: tuple[str, ...], margin: float = 0.05) -> str:
    """The choice, a pure function of the measurement: the first implementation in `preference` whose
    median step time is within `margin` of the fastest (so noise between near-equals cannot flip it)."""
    best = min(step_s.values())
    return next(n for n in preference if n in step_s and step_s[n] <= best * (1 + margin))


def time_experts_implementations(
    experts: nn.Module,
    tokens: int,
    top_k: int,
    candidates: tuple[str, ...],
    *,
    device=None,
    autocast_dtype: torch.dtype | None = None,
    rounds: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Median seconds of forward + backward of one layer's experts (a copy of `experts`) on `tokens`
    random tokens routed uniformly to `top_k` distinct experts, per implementation; rounds interleave
    the implementations so drifting machine load hits them alike."""
    dev = _device(device)
    ex = copy.deepcopy(experts).to(dev).train()  # its own config: the model's is untouched
    E, d = ex.num_experts, ex.gate_up_proj.shape[-1]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(tokens, d, generator=g).to(dev).requires_grad_(True)  # [N, d]
    index = torch.rand(tokens, E, generator=g).topk(top_k, dim=-1).indices.to(dev)  # [N, k] distinct
    weights = torch.rand(tokens, top_k, generator=g).softmax(-1).to(dev)  # [N, k]

    def once(impl: str) -> float:
        ex.config._experts_implementation = impl
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t = time.perf_counter()
        with torch.autocast(
            dev.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            y = ex(x, index, weights)
        y.float().square().mean().backward()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        ex.zero_grad(set_to_none=True)
        x.grad = None
        return time.perf_counter() - t

    for impl in candidates:  # warm-up (kernel selection, allocator)
        once(impl)
    times: dict[str, list[float]] = {n: [] for n in candidates}
    for r in range(rounds):
        for impl in candidates if r % 2 == 0 else reversed(candidates):
            times[impl].append(once(impl))
    return {n: statistics.median(v) for n, v in times.items()}


def choose_experts_implementation(model, cfg, device=None) -> dict:
    """Set the model's experts implementation for `cfg.moe.experts_implementation`; return the record
    of the choice (logged in the run's manifest). "auto" measures forward + backward of one layer's
    experts at the training micro-batch (per process), thread count and autocast dtype for each of
    `candidate_implementations` (a second or two) and takes `decide_implementation` of the medians.
    With several processes rank 0 measures and broadcasts, so every rank runs the same kernel."""
    requested = cfg.moe.experts_implementation
    dev = _device(device)
    record: dict = {"requested": requested, "device": dev.type, "threads": torch.get_num_threads()}
    if requested != "auto":
        record.update(chosen=requested, by="config")
    else:
        import torch.distributed as dist

        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        per_rank = max(1, cfg.train.batch_size // world)
        micro = min(cfg.train.micro_batch_size or per_rank, per_rank)
        tokens = min(micro * cfg.data.seq_len, 8192)  # capped: the ranking, not the time, matters
        precision = (
            cfg.train.precision
            if cfg.train.precision != "auto"
            else ("bf16" if dev.type == "cuda" else "fp32")
        )
        autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)  # as the loop trains
        candidates = candidate_implementations(dev)
        if world == 1 or dist.get_rank() == 0:
            block = moe_blocks(model)[0]
            step_s = time_experts_implementations(
                block.experts,
                tokens,
                block.top_k,
                candidates,
                device=dev,
                autocast_dtype=autocast,
                seed=cfg.train.seed,
            )
            record.update(
                by="measurement",
                tokens=tokens,
                autocast=str(autocast).replace("torch.", "") if autocast else None,
                step_s=step_s,
                preference=list(candidates),
                margin=0.05,
                chosen=decide_implementation(step_s, candidates),
            )
        if world > 1:
            box = [record]
            dist.broadcast_object_list(box, src=0)
            record = box[0]
    model.set_experts_implementation(record["chosen"])
    return record


# =============================================================================================
# the sparse block
# =============================================================================================
class SparseMoeBlock(nn.Module):
    """A stock Mixtral / Qwen2-MoE sparse block's router and experts, routed by efflab.

    In training: capacity-factor routing (if configured), the (balance, z) router losses of this
    forward in `self.aux`, and routing statistics accumulated until `pop_stats()`. In eval: exactly the
    stock block (dropless).
    """

    def __init__(self, block: nn.Module, *, layer: int, capacity_factor: float | None = None):
        super().__init__()
        self.gate = block.gate  # router: weight [E, d]; forward -> (logits, top-k weights, top-k ids)
        self.experts = block.experts
        shared = getattr(block, "shared_expert", None)
        self.has_shared = shared is not None and shared.down_proj.weight.numel() > 0
        if shared is not None:  # kept (and saved) even when empty, so the stock class loads cleanly
            self.shared_expert = shared
            self.shared_expert_gate = block.shared_expert_gate
            if not self.has_shared:  # an empty shared expert: unused, so frozen (DDP rejects unused params)
                for p in [*shared.parameters(), *self.shared_expert_gate.parameters()]:
                    p.requires_grad_(False)
        self.num_experts = self.gate.num_experts
        self.top_k = self.gate.top_k
        self.layer = layer
        self.capacity_factor = capacity_factor
        self.aux: tuple[torch.Tensor, torch.Tensor] | None = None
        self._stats: dict | None = None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        B, T, d = hidden_states.shape
        x = hidden_states.reshape(-1, d)  # [N, d], N = B*T tokens
        logits, weights, index = self.gate(x)  # [N, E], [N, k], [N, k]
        if self.training:
            probs = torch.softmax(logits.float(), dim=-1)  # [N, E]
            keep = None
            if self.capacity_factor is not None:
                cap = M.expert_capacity(x.shape[0], self.top_k, self.num_experts, self.capacity_factor)
                keep = M.capacity_keep(index, self.num_experts, cap)  # [N, k] bool
            aux = (M.load_balancing_loss(probs, index, self.num_experts), M.router_z_loss(logits))
            # gradient checkpointing re-runs this forward inside backward: the same ops (it checks the
            # saved tensors match), but no side effects there
            if not _in_backward():
                self.aux = aux
                self._record(probs, index, keep, aux[0])
            if keep is not None:
                if self.experts.config._experts_implementation in SENTINEL_IMPLEMENTATIONS:
                    index = index.masked_fill(~keep, self.num_experts)  # skipped: no compute
                else:
                    weights = weights * keep  # computed, weighted zero
        y = self.experts(x, index, weights)
        if self.has_shared:  # Qwen2-MoE: always-on shared expert behind a sigmoid gate
            y = y + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        return y.reshape(B, T, d)

    @torch.no_grad()
    def _record(self, probs, index, keep, balance) -> None:
        E = self.num_experts
        s = self._stats
        if s is None:
            z = torch.zeros((), dtype=torch.float64, device=probs.device)
            s = self._stats = {
                "counts": torch.zeros(E, dtype=torch.float64, device=probs.device),
                "assigned": z.clone(),
                "dropped": z.clone(),
                "tokens": z.clone(),
                "entropy_sum": z.clone(),
                "balance_sum": z.clone(),
                "forwards": z.clone(),
            }
        s["counts"] += torch.bincount(index.reshape(-1), minlength=E)[:E]
        s["assigned"] += index.numel()
        if keep is not None:
            s["dropped"] += (~keep).sum()
        s["tokens"] += probs.shape[0]
        s["entropy_sum"] += -(probs * torch.log(probs.clamp_min(1e-20))).sum()
        s["balance_sum"] += balance.detach()
        s["forwards"] += 1

    def pop_aux(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (balance, z) losses of the last training forward; cleared so they are never reused."""
        aux, self.aux = self.aux, None
        if aux is None:
            raise RuntimeError(
                f"MoE layer {self.layer}: no router losses (call after a training-mode forward)"
            )
        return aux

    def pop_stats(self) -> dict | None:
        """Routing statistics since the last call, as Python numbers (see techniques.moe.routing_metrics)."""
        out = self.stats_state()
        self._stats = None
        return out

    def stats_state(self) -> dict | None:
        """The routing statistics gathered since the last `pop_stats`, as Python numbers (float64 counters
        convert exactly), for a checkpoint; None when there are none."""
        s = self._stats
        return None if s is None else {k: (v.tolist() if k == "counts" else float(v)) for k, v in s.items()}

    def load_stats_state(self, state: dict | None) -> None:
        """Put back what `stats_state` returned (a resumed run's first eval row then covers its window)."""
        dev = self.gate.weight.device
        self._stats = (
            None
            if state is None
            else {k: torch.tensor(v, dtype=torch.float64, device=dev) for k, v in state.items()}
        )


def _in_backward() -> bool:
    f = getattr(torch._C, "_current_graph_task_id", None)
    return f is not None and f() != -1


def moe_blocks(model) -> list[SparseMoeBlock]:
    """The efflab sparse blocks of a model (in layer order)."""
    return [m for m in model.modules() if isinstance(m, SparseMoeBlock)]


def install_blocks(model, capacity_factor: float | None = None) -> list[SparseMoeBlock]:
    """Replace every stock sparse block of a Mixtral / Qwen2-MoE model by an efflab block (same weights)."""
    blocks = []
    for i, layer in enumerate(model.model.layers):
        mlp = layer.mlp
        if isinstance(mlp, SparseMoeBlock):
            mlp.capacity_factor = capacity_factor
        elif hasattr(mlp, "gate") and hasattr(mlp, "experts"):
            mlp = layer.mlp = SparseMoeBlock(mlp, layer=i, capacity_factor=capacity_factor)
        else:
            continue  # a dense layer (Qwen2-MoE mlp_only_layers)
        blocks.append(mlp)
    if not blocks:
        raise UserError(f"{type(model).__name__}: no sparse MoE layers to route")
    return blocks


# =============================================================================================
# building the model
# =============================================================================================
def build_moe_config(cfg, vocab_size: int | None = None, *, rms_norm_eps: float | None = None):
    """The transformers config of the MoE model a moe RunConfig describes: MixtralConfig, or Qwen2MoeConfig
    with a shared expert. Attention as the dense baseline's (no biases, no sliding window)."""
    from transformers import LlamaConfig, MixtralConfig, Qwen2MoeConfig

    mc = cfg.moe
    r = cfg.model.resolved()
    s = M.moe_shape(cfg)
    common = dict(
        vocab_size=int(vocab_size or cfg.data.vocab_size),
        hidden_size=r["width"],
        num_hidden_layers=r["n_layer"],
        num_attention_heads=r["n_head"],
        num_key_value_heads=r["n_kv_head"],
        head_dim=r["head_dim"],
        max_position_embeddings=max(cfg.data.seq_len, 128),
        rope_theta=cfg.model.rope_theta,
        rms_norm_eps=rms_norm_eps if rms_norm_eps is not None else LlamaConfig().rms_norm_eps,
        initializer_range=cfg.model.init_std,
        tie_word_embeddings=cfg.model.tie_embeddings,
        num_experts_per_tok=s.top_k,
        router_aux_loss_coef=mc.balance_coef,
        output_router_logits=False,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        use_cache=False,
        # provenance, saved in config.json (transformers ignores it): how efflab trained this model
        efflab_moe={
            "routing": mc.routing,
            "capacity_factor": mc.effective_capacity_factor,
            "balance_coef": mc.balance_coef,
            "z_loss_coef": mc.z_loss_coef,
            "dense_ffn": s.dense_ffn,
            "upcycled_from": mc.upcycle_from,
        },
    )
    if s.shared_width == 0:
        return MixtralConfig(
            intermediate_size=s.expert_width,
            num_local_experts=s.n_experts,
            sliding_window=None,
            router_jitter_noise=0.0,
            **common,
        )
    return Qwen2MoeConfig(
        intermediate_size=s.dense_ffn,
        moe_intermediate_size=s.expert_width,
        shared_expert_intermediate_size=s.shared_width,
        num_experts=s.n_experts,
        norm_topk_prob=True,
        qkv_bias=False,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        use_sliding_window=False,
        **common,
    )


def _check_pretrained_moe(model, cfg) -> None:
    mt = model.config.model_type
    if mt not in MOE_MODEL_TYPES:
        raise UserError(
            f"model.pretrained {cfg.model.pretrained}: model type {mt!r} is not an MoE model "
            f"({', '.join(MOE_MODEL_TYPES)}); to start from a dense model use moe.upcycle_from"
        )
    c = model.config
    have = {
        "n_experts": getattr(c, "num_local_experts", None) or getattr(c, "num_experts", None),
        "top_k": c.num_experts_per_tok,
        "expert_width": getattr(c, "moe_intermediate_size", None) or c.intermediate_size,
        "shared_expert_width": getattr(c, "shared_expert_intermediate_size", 0),
    }
    bad = [
        f"moe.{k}={getattr(cfg.moe, k)} differs from the pretrained model's {have[k]}"
        for k in cfg.moe.model_fields_set & set(have)
        if getattr(cfg.moe, k) != have[k]
    ]
    if bad:
        raise UserError(
            bad, header=f"model.pretrained {cfg.model.pretrained}: the moe section contradicts the model"
        )


def build_moe_model(cfg, vocab_size: int, *, config=None, device=None):
    """The MoE model of a moe RunConfig (fresh, or `model.pretrained` MoE), with efflab blocks installed
    and the experts implementation picked for `device` (default: CUDA if available, else CPU)."""
    from transformers import AutoModelForCausalLM

    if cfg.model.pretrained:
        model = load_pretrained(
            cfg.model.pretrained,
            trust_remote_code=cfg.model.trust_remote_code,
            attn_implementation=cfg.model.attn_implementation,
            dtype=torch_dtype(cfg.model.dtype, trained=not cfg.lora.r),
        )
        _check_pretrained_moe(model, cfg)
    else:
        config = config or build_moe_config(cfg, vocab_size)
        model = AutoModelForCausalLM.from_config(config, attn_implementation=cfg.model.attn_implementation)
    install_blocks(model, cfg.moe.effective_capacity_factor)
    model.efflab_experts_choice = choose_experts_implementation(model, cfg, device)
    return model


# =============================================================================================
# sparse upcycling (Komatsuzaki et al. 2022)
# =============================================================================================
@torch.no_grad()
def upcycle_(moe_model, dense_model) -> None:
    """Copy a dense Llama-style model into an MoE model of the same shape, in place: embeddings,
    attention, norms and LM head tensor for tensor; the dense MLP into every expert
    (gate_up_proj[e] = [gate; up], down_proj[e] = down). The router keeps its fresh initialisation.
    With top-k weights renormalised to sum to 1, the upcycled model computes the dense function."""
    dense_sd = dense_model.state_dict()
    probs = []
    for name, p in moe_model.named_parameters():
        if ".mlp." in name:
            continue
        src = dense_sd.get(name)
        if src is None or src.shape != p.shape:
            probs.append(
                f"{name}: {None if src is None else tuple(src.shape)} in the dense model, "
                f"{tuple(p.shape)} in the MoE model"
            )
            continue
        p.copy_(src)
    for i, layer in enumerate(moe_model.model.layers):
        mlp = dense_model.model.layers[i].mlp
        ex = layer.mlp.experts
        gate_up = torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight], dim=0)  # [2I, d]
        if gate_up.shape != ex.gate_up_proj.shape[1:] or mlp.down_proj.weight.shape != ex.down_proj.shape[1:]:
            probs.append(
                f"layer {i}: dense MLP {tuple(gate_up.shape)}/{tuple(mlp.down_proj.weight.shape)} vs "
                f"experts {tuple(ex.gate_up_proj.shape[1:])}/{tuple(ex.down_proj.shape[1:])}"
            )
            continue
        ex.gate_up_proj.copy_(gate_up.unsqueeze(0).expand_as(ex.gate_up_proj))
        ex.down_proj.copy_(mlp.down_proj.weight.unsqueeze(0).expand_as(ex.down_proj))
    if probs:
        raise UserError(probs[:8], header="upcycling: the dense checkpoint does not fit the MoE model")
