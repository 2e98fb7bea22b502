"""Mixture-of-experts: sparse top-k routing, router losses, routing diagnostics, sparse upcycling.

Method card
-----------
What it does. Every decoder layer's feed-forward network becomes `n_experts` SwiGLU experts and a
router (a d_model x n_experts matmul). Each token goes to the `top_k` experts with the largest
router probabilities; their outputs are summed with the renormalised top-k probabilities as
weights (Shazeer et al. 2017; Mixtral, Jiang et al. 2024). Only the routed experts compute, so the
parameters grow with n_experts while the FLOPs per token grow with top_k x expert_width.
Options: fine-grained experts (narrow `expert_width`, more experts and a larger top_k at the same
active FLOPs; DeepSeekMoE, Dai et al. 2024), an always-on shared expert with a sigmoid gate
(Qwen2-MoE), and capacity-factor routing (Switch Transformer, Fedus et al. 2021; GShard, Lepikhin
et al. 2020): each expert takes at most C = ceil(capacity_factor x tokens x top_k / n_experts)
token-assignments per micro-batch; first choices of all tokens are served before second choices,
then in token order; a dropped assignment contributes nothing (the token keeps its residual).
Capacity applies to training steps only: evaluation and the saved model route dropless, so the
saved checkpoint reproduces the run's eval loss in plain transformers.

Router losses (added to the LM loss in training; eval loss stays the pure cross-entropy):
- load balancing (Fedus et al. 2021, eqs. 4-6; as in Mixtral): n_experts x sum_e f_e x P_e,
  f_e the fraction of token-assignments routed to expert e (before capacity drops, no gradient),
  P_e the mean router probability of e (gradient). It equals 1 at perfect balance and n_experts
  when every token goes to one expert. (transformers' `load_balancing_loss_func` returns top_k
  times this value: its f sums to top_k.)
- router z-loss (Zoph et al. 2022, ST-MoE, eq. 5): mean over tokens of logsumexp(router logits)^2;
  keeps router logits small, which stabilises training in low precision.
Both are averaged over layers, so their coefficients do not depend on depth.

Suggested settings. 8 experts, top-2, balance_coef 0.01 (Switch), z_loss_coef 0.001 (ST-MoE),
dropless routing. For fine-grained experts keep top_k x expert_width fixed and raise both n_experts
and top_k by the same factor. Capacity factor 1.25 (Switch) if dropless imbalance costs too much
time on your hardware. Upcycling: top-2 of 8 copies of the dense MLP (Komatsuzaki et al. 2022).

Costs it adds to the ledger (docs/conventions.md sections 2 and 3).
- `train`: charged by the shared loop from `accounting.flops` on the model's own (Mixtral or
  Qwen2-MoE) config: the router matmul 2 x d_model x n_experts per token plus only the top_k routed
  experts (and the shared expert and its gate), never all experts. Dropped assignments under a
  capacity factor are still charged (an upper bound: dropless accounting).
- `sunk.dense_pretrain`: with `upcycle_from` a finished efflab run, that run's whole ledger total
  (its FLOPs and training tokens), charged once (shared across ranks); the ledger's marginal view
  answers "the dense checkpoint already existed", its total view "we trained it for this". A plain
  Hugging Face directory has no known training cost: nothing is charged and the run says so.

Ladder pairing (what `efflab.models.moe_config_for` / `dense_config_for` build; the suite calls them)
------------------------------------------------------------------------------------------------
A dense baseline config D (model section: width d, layers, heads, FFN width F) is paired with
M = moe_config_for(D):
- the same attention and everything else: the `model`, `data`, `eval`, `log` sections are copied;
- experts: n_experts = 8, top_k = 2, expert_width = (F - shared_expert_width) / top_k (fine-grained
  segmentation of D's FFN, DeepSeekMoE's m = top_k), so the active expert matmuls per token are
  exactly D's FFN matmuls; the router adds 2 x d x n_experts FLOPs per token and layer (+0.25 % at
  d = 256, F = 704, 8 experts; `active_flops_ratio` reports it from the accounting layer);
- the same FLOP budget: D's train.budget_flops (converted from budget_tokens or steps through the
  accounting layer when D states those), so both runs spend equal compute and the MoE model sees
  slightly fewer tokens.
Mixtral-style experts (expert_width = F, 2 x D's FFN FLOPs at top-2) are a documented multiple:
pass `expert_width=F`; `dense_config_for(M)` widens its dense partner's FFN to
shared_expert_width + top_k x expert_width, so the pair is again at equal active FLOPs per token.
configs/moe/small.yaml pairs this way with configs/baseline/small.yaml (same attention, FFN and FLOP
budget).

A finished run's model/ is a plain Mixtral (or Qwen2-MoE) checkpoint: AutoModelForCausalLM loads it
without importing efflab; import efflab.moe_model first only to train it further with efflab blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from efflab.errors import UserError
from efflab.io import DamagedFile, read_json
from efflab.rundir import locate, source_problems
from efflab.sections import Section

if TYPE_CHECKING:  # torch is imported where it runs, so that the config section loads without it
    import torch

DENSE_MODEL_TYPES = ("llama", "mistral")  # bias-free gated-MLP decoders: their MLP can be copied into experts


# =============================================================================================
# config section
# =============================================================================================
class MoEConfig(Section):
    """The `moe` config section: experts, routing, router losses, diagnostics, upcycling."""

    n_experts: int = Field(default=8, description="routed experts per layer")
    top_k: int = Field(default=2, ge=1, description="experts each token is routed to")
    expert_width: int | None = Field(
        default=None,
        ge=1,
        description="d_ff of one routed expert; default (model FFN - shared_expert_width) / top_k, i.e. the "
        "dense model's active FLOPs (with upcycle_from: the dense MLP's width, copied whole)",
    )
    shared_expert_width: int = Field(
        default=0, ge=0, description="d_ff of an always-on shared expert; 0 = none"
    )
    routing: Literal["dropless", "capacity"] = Field(
        default="dropless",
        description="dropless: every token reaches its top_k experts; capacity: at most "
        "capacity_factor x tokens x top_k / n_experts per expert (training)",
    )
    capacity_factor: float | None = Field(
        default=None, gt=0, description="with routing: capacity; default 1.25"
    )
    balance_coef: float = Field(default=0.01, ge=0, description="load-balancing loss weight (Switch: 0.01)")
    z_loss_coef: float = Field(default=0.001, ge=0, description="router z-loss weight (ST-MoE: 0.001)")
    experts_implementation: Literal[
        "auto", "efflab", "efflab_grouped", "eager", "grouped_mm", "batched_mm"
    ] = Field(
        default="auto",
        description="auto: efflab_grouped (grouped GEMM in bf16) on a CUDA GPU with compute capability >= 8.0, "
        "else efflab (sorted tokens, one matmul per expert; every matmul visible to FlopCounterMode)",
    )
    collapse_threshold: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="warn when a layer's effective number of experts (exp of the load entropy) falls below "
        "this fraction of n_experts",
    )
    upcycle_from: str | None = Field(
        default=None,
        description="a finished efflab dense run directory or a local HF dense model directory: "
        "its MLP is copied into every expert (Komatsuzaki et al. 2022)",
    )

    @field_validator("n_experts")
    @classmethod
    def _some_experts(cls, v):
        if v < 1:
            raise ValueError(
                f"a mixture of experts needs at least one expert (got {v}); 8 is a common choice"
            )
        return v

    @property
    def effective_capacity_factor(self) -> float | None:
        """The capacity factor in force (None = dropless)."""
        if self.routing == "dropless":
            return None
        return 1.25 if self.capacity_factor is None else self.capacity_factor

    def cross_check(self, cfg) -> list[str]:
        """Problems that involve other sections or several fields (reported with all others)."""
        out = []
        if self.top_k > self.n_experts:
            out.append(
                f"moe.top_k={self.top_k} is larger than moe.n_experts={self.n_experts}: a token cannot be "
                f"routed to more experts than exist"
            )
        if self.routing == "dropless" and self.capacity_factor is not None:
            if self.capacity_factor < 1:
                out.append(
                    f"moe.capacity_factor={self.capacity_factor:g} < 1 drops tokens on every step, but "
                    f"moe.routing is dropless; set moe.routing: capacity to drop tokens, or remove "
                    f"moe.capacity_factor"
                )
            else:
                out.append(
                    f"moe.capacity_factor={self.capacity_factor:g} is only used with moe.routing: capacity "
                    f"(routing is dropless); set routing: capacity or remove capacity_factor"
                )
        if self.upcycle_from and cfg.model.pretrained:
            out.append(
                "moe.upcycle_from and model.pretrained are both set: upcycle a dense model, or continue a "
                "pretrained MoE model, not both"
            )
        if self.upcycle_from and self.shared_expert_width:
            out.append(
                "moe.upcycle_from copies the dense MLP into the routed experts: use shared_expert_width: 0"
            )
        if not cfg.model.pretrained:
            ffn = cfg.model.resolved()["ffn_width"]
            if self.expert_width is None and not self.upcycle_from and ffn is not None:
                if ffn - self.shared_expert_width < self.top_k:
                    out.append(
                        f"moe.shared_expert_width={self.shared_expert_width} leaves no FFN width for the "
                        f"routed experts (model FFN {ffn}); set moe.expert_width"
                    )
        if self.upcycle_from and not cfg.model.pretrained:
            out.extend(upcycle_problems(self.upcycle_from, cfg, self))
        return out


# =============================================================================================
# shapes and the ladder pairing
# =============================================================================================
@dataclass(frozen=True)
class MoEShape:
    """Resolved widths (all d_ff): routed expert, shared expert, the dense FFN it is paired with."""

    n_experts: int
    top_k: int
    expert_width: int
    shared_width: int
    dense_ffn: int  # the model section's FFN width (the dense model of the same attention)

    @property
    def active_ffn(self) -> int:
        """FFN width active per token: shared + top_k x expert (a dense FFN this wide has equal FLOPs)."""
        return self.shared_width + self.top_k * self.expert_width


def moe_shape(cfg, mc: MoEConfig | None = None) -> MoEShape:
    """Expert widths of a moe RunConfig (no pretrained model): explicit, the copied dense MLP when
    upcycling, else the dense FFN split over the top_k routed experts (equal active FLOPs).
    `mc`: the moe section, if not yet attached to `cfg` (during validation)."""
    mc = mc or cfg.moe
    ffn = int(cfg.model.resolved()["ffn_width"])
    if mc.expert_width is not None:
        w = mc.expert_width
    elif mc.upcycle_from:
        w = ffn
    else:
        w = max(1, (ffn - mc.shared_expert_width) // mc.top_k)
    return MoEShape(mc.n_experts, mc.top_k, int(w), int(mc.shared_expert_width), ffn)


# =============================================================================================
# router losses (pure functions of the router's outputs)
# =============================================================================================
def load_balancing_loss(probs: torch.Tensor, top_k_index: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Switch load-balancing loss, n_experts x sum_e f_e P_e (1.0 at perfect balance).

    probs: [N, E] router softmax (float32); top_k_index: [N, k] chosen experts (before capacity
    drops). f_e (no gradient) is the fraction of the N x k assignments that went to e; P_e the mean
    router probability of e, through which the gradient flows.
    """
    import torch

    counts = torch.bincount(top_k_index.reshape(-1), minlength=n_experts)[:n_experts]
    f = counts.to(probs.dtype) / top_k_index.numel()  # [E], sums to 1
    P = probs.mean(dim=0)  # [E]
    return n_experts * torch.sum(f * P)


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2. logits: [N, E]."""
    import torch

    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def moe_loss(lm_loss: torch.Tensor, aux: list, *, balance_coef: float, z_coef: float):
    """LM loss + balance_coef x mean-over-layers balance + z_coef x mean-over-layers z-loss.

    aux: one (balance, z) pair per MoE layer from the last training forward. Returns the loop's
    (loss, logs) pair; logs carry the LM loss alone so train_loss can be compared with dense runs.
    """
    import torch

    if not aux:
        raise RuntimeError("no router losses recorded: the model has no efflab MoE blocks in training mode")
    bal = torch.stack([a[0] for a in aux]).mean()
    z = torch.stack([a[1] for a in aux]).mean()
    loss = lm_loss + balance_coef * bal.to(lm_loss.dtype) + z_coef * z.to(lm_loss.dtype)
    return loss, {
        "lm_loss": float(lm_loss.detach()),
        "moe_balance_loss": float(bal.detach()),
        "moe_z_loss": float(z.detach()),
    }


# =============================================================================================
# capacity-factor routing
# =============================================================================================
def expert_capacity(n_tokens: int, top_k: int, n_experts: int, capacity_factor: float) -> int:
    """Token-assignments one expert may take: ceil(capacity_factor x n_tokens x top_k / n_experts)."""
    return max(1, math.ceil(capacity_factor * n_tokens * top_k / n_experts))


def capacity_keep(top_k_index: torch.Tensor, n_experts: int, capacity: int) -> torch.Tensor:
    """Which assignments fit under an expert capacity: bool [N, k].

    Priority (GShard): every token's first choice before any second choice, then token order. Each
    expert keeps its first `capacity` assignments in that order.
    """
    import torch

    N, k = top_k_index.shape
    flat = top_k_index.t().reshape(-1)  # [k*N] in priority order: choice rank, then token
    order = torch.sort(flat, stable=True).indices  # grouped by expert, priority kept inside a group
    counts = torch.bincount(flat, minlength=n_experts)
    starts = torch.cumsum(counts, 0) - counts  # [E] first slot of each expert's group
    rank_sorted = torch.arange(flat.numel(), device=flat.device) - starts[flat[order]]
    rank = torch.empty_like(rank_sorted)
    rank[order] = rank_sorted  # position of each assignment in its expert's queue
    return (rank < capacity).view(k, N).t()


# =============================================================================================
# routing diagnostics
# =============================================================================================
def routing_metrics(stats: list[dict | None], *, collapse_threshold: float = 0.25) -> tuple[dict, list[str]]:
    """Per-layer routing diagnostics from the blocks' accumulated statistics, and warnings.

    stats: one dict per MoE layer (None if it routed nothing since the last call) with "counts"
    (assignments per expert, before drops), "assigned", "dropped", "tokens", "entropy_sum" (nats),
    "balance_sum", "forwards". Returns a metrics row:
      moe_expert_fraction  [layer][expert] share of token-assignments (sums to 1 per layer)
      moe_effective_experts [layer] exp(entropy of that share): n_experts when balanced, 1 when collapsed
      moe_router_entropy   [layer] mean per-token entropy of the router distribution (nats)
      moe_balance          [layer] mean load-balancing loss (1.0 = balanced)
      moe_dropped_fraction [layer] share of assignments dropped by the capacity limit
    and a warning for every layer whose effective experts < collapse_threshold x n_experts.
    """
    layers = [(i, s) for i, s in enumerate(stats) if s and s.get("assigned")]
    if not layers:
        return {}, []
    row: dict = {
        "moe_layers": [i for i, _ in layers],
        "moe_expert_fraction": [],
        "moe_effective_experts": [],
        "moe_router_entropy": [],
        "moe_balance": [],
        "moe_dropped_fraction": [],
    }
    warnings = []
    for i, s in layers:
        frac = [c / s["assigned"] for c in s["counts"]]
        h = -sum(p * math.log(p) for p in frac if p > 0)
        eff = math.exp(h)
        row["moe_expert_fraction"].append([round(p, 5) for p in frac])
        row["moe_effective_experts"].append(eff)
        row["moe_router_entropy"].append(s["entropy_sum"] / s["tokens"])
        row["moe_balance"].append(s["balance_sum"] / s["forwards"])
        row["moe_dropped_fraction"].append(s["dropped"] / s["assigned"])
        n = len(frac)
        if n > 1 and eff < collapse_threshold * n:
            top = sorted(range(n), key=lambda e: -frac[e])[:3]
            warnings.append(
                f"routing collapse in layer {i}: {eff:.2f} effective experts of {n} (below "
                f"{collapse_threshold:g} x {n}); busiest experts {top} take "
                f"{sum(frac[e] for e in top):.0%} of assignments; raise moe.balance_coef"
            )
    row["moe_collapse_warning"] = warnings or None
    return row, warnings


# =============================================================================================
# sparse upcycling: where the dense model comes from, and whether it fits
# =============================================================================================
def upcycle_problems(path: str, cfg, mc: MoEConfig | None = None) -> list[str]:
    """Every way the dense checkpoint at `path` does not fit the MoE model `cfg` describes (width,
    depth, heads, head_dim, FFN vs expert width, rope): upcycling copies weights tensor for tensor."""

    probs = source_problems(path, "moe.upcycle_from")
    if probs:
        return probs
    try:
        d = read_json(locate(path, weights=False)[1] / "config.json")
    except (DamagedFile, OSError):
        d = None
    if not isinstance(d, dict):
        return [
            f"moe.upcycle_from {path}: no readable config.json (expected a finished efflab run with model/, "
            f"or a transformers model directory)"
        ]
    mt = d.get("model_type")
    if mt not in DENSE_MODEL_TYPES:
        return [
            f"moe.upcycle_from {path}: model type {mt!r} is not a dense gated-MLP decoder "
            f"({', '.join(DENSE_MODEL_TYPES)})"
        ]
    r = cfg.model.resolved()
    heads = d.get("num_attention_heads")
    want = {
        "width (hidden_size)": (r["width"], d.get("hidden_size")),
        "layers (num_hidden_layers)": (r["n_layer"], d.get("num_hidden_layers")),
        "heads (num_attention_heads)": (r["n_head"], heads),
        "kv heads (num_key_value_heads)": (r["n_kv_head"], d.get("num_key_value_heads") or heads),
        "head_dim": (r["head_dim"], d.get("head_dim") or (d["hidden_size"] // heads if heads else None)),
        "expert width (dense intermediate_size)": (
            moe_shape(cfg, mc).expert_width,
            d.get("intermediate_size"),
        ),
    }
    out = [
        f"moe.upcycle_from {path}: {what} {dense} of the dense model does not match {mine} of this MoE config"
        for what, (mine, dense) in want.items()
        if mine != dense
    ]
    if out:
        hd = want["head_dim"][1]
        out.append(
            f"moe.upcycle_from {path}: to take the dense model's shape, pass model.width={d.get('hidden_size')} "
            f"model.n_layer={d.get('num_hidden_layers')} model.n_head={heads} "
            f"model.n_kv_head={d.get('num_key_value_heads') or heads} model.head_dim={hd} "
            f"moe.expert_width={d.get('intermediate_size')}"
        )
    theta = (d.get("rope_parameters") or {}).get("rope_theta", d.get("rope_theta"))
    if theta is not None and float(theta) != float(cfg.model.rope_theta):
        out.append(
            f"moe.upcycle_from {path}: rope_theta {theta} of the dense model does not match "
            f"model.rope_theta={cfg.model.rope_theta}"
        )
    window = d.get("sliding_window")
    if mt == "mistral" and window is not None and window < cfg.data.seq_len:
        out.append(
            f"moe.upcycle_from {path}: sliding-window attention ({window} < data.seq_len="
            f"{cfg.data.seq_len}) differs from the MoE model's full attention"
        )
    if d.get("mlp_bias") or d.get("attention_bias"):
        out.append(f"moe.upcycle_from {path}: the dense model has biases, which the MoE model does not")
    return out


# =============================================================================================
# what a recipe records (the ledger's and manifest's `moe` entries, its log lines)
# =============================================================================================
def upcycle_vocab_check(source, vocab_size: int, dense_vocab: int) -> None:
    """UserError when the data's tokenizer has more tokens than the dense model has embeddings."""
    if vocab_size > dense_vocab:
        raise UserError(
            f"moe.upcycle_from {source.path}: the tokenizer has {vocab_size} tokens, the "
            f"dense model only {dense_vocab} embeddings"
        )


def describe_model(
    model, blocks: list, mc: MoEConfig, dense_ratio: float | None, dense_ffn, log=print
) -> dict:
    """The `moe` entry of the ledger and manifest for a built model (its experts implementation, how `auto`
    chose it, active train FLOPs per token against the dense partner's, the partner's FFN width), said on
    `log` with the sparse layers' shape."""
    impl = model.config._experts_implementation
    log(
        f"moe: {len(blocks)} sparse layers x {blocks[0].num_experts} experts, top-{blocks[0].top_k}, "
        f"{mc.routing} routing"
        + (f" (capacity factor {mc.effective_capacity_factor:g})" if mc.effective_capacity_factor else "")
        + f", experts implementation {impl}"
        + (f"; active train FLOPs/token = {dense_ratio:.4f} x the dense partner's" if dense_ratio else "")
    )
    return {
        "experts_implementation": impl,
        "experts_choice": getattr(model, "efflab_experts_choice", None),  # how auto chose (its measurement)
        "active_flops_ratio_vs_dense": dense_ratio,
        "dense_partner_ffn": dense_ffn,
    }


def upcycled_from(source, log=print) -> str:
    """The manifest's note of the dense checkpoint upcycled (path, kind, bill); an external model's
    unknown cost is said on `log`."""
    if source.bill is None:
        log(
            f"upcycling from {source.path}: an external model with no ledger; its pretraining "
            f"cost is unknown and not charged"
        )
    return f"{source.path} ({source.kind}, {source.bill_text()})"


class RoutingObserver:
    """`model -> routing metrics row` for eval points (`routing_metrics` of the blocks' counters, which it
    reads and resets); a collapse warning is said on `log`. An observer: it never changes training. Its
    counters between two eval points go into a checkpoint (`state_dict`), so a resumed run's first eval
    row covers the whole window, as an uninterrupted run's does."""

    def __init__(self, blocks: list, collapse_threshold: float, log=print):
        self.blocks, self.collapse_threshold, self.log = blocks, collapse_threshold, log

    def __call__(self, _model) -> dict:
        stats = [b.pop_stats() for b in self.blocks]
        row, warnings = routing_metrics(stats, collapse_threshold=self.collapse_threshold)
        for w in warnings:
            self.log(f"warning: {w}")
        return row

    def state_dict(self) -> dict:
        return {"blocks": [b.stats_state() for b in self.blocks]}

    def load_state_dict(self, state: dict) -> None:
        saved = state.get("blocks") or []
        if len(saved) != len(self.blocks):
            raise ValueError(f"routing state of {len(saved)} layers for a model of {len(self.blocks)}")
        for b, s in zip(self.blocks, saved, strict=True):
            b.load_stats_state(s)


def routing_observer(blocks: list, collapse_threshold: float, log=print) -> RoutingObserver:
    """The recipe's `metrics_fn`: routing diagnostics at eval points, resumable (RoutingObserver)."""
    return RoutingObserver(blocks, collapse_threshold, log=log)
