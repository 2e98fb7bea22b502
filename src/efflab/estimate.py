"""Price a run before it starts: the ledger it will write, phase by phase, its tokens, steps, peak memory
and wall time (`efflab run RECIPE --config F --dry-run`; the suite sums `estimate_run` over its plan).

What each recipe will charge (docs/conventions.md section 3), estimated from the config with the accounting layer:

    train                  horizon steps x batch x seq_len tokens x train FLOPs/token (LoRA-aware)
    teacher_forward        distill: teacher forward FLOPs/token x the student's tokens (online logits;
                           a top-k cache covers the train split once: the same tokens for one epoch)
    generation             synthetic: token_budget / max_new_tokens sequences of prompt_len + max_new_tokens
                           (an upper bound: samples that stop at EOS cost less)
    scoring                curriculum with a reference scorer: reference forward x the train split's
                           tokens (known once the data is prepared: `measure=True` prepares it, cached)
    sunk.teacher_pretrain  the teacher / generator / reference the recipe trains first (estimated
                           the same way, recursively), or the ledger total of a finished run it reuses

The wall time on this machine comes from a few timed optimizer steps of the real model on random
tokens (`measure=True`): the phases' FLOPs divided by the measured train FLOP/s. Decode-bound
generation runs slower than that (benchmarks/generation.py measures it), so the generation phase's
time is a lower bound. On a named GPU: FLOPs / (dense peak of the precision x MFU).

Peak memory (training, one process): fp32 weights, gradients and two AdamW moments (16 bytes per
trainable parameter, 4 per frozen one) plus activations as Korthikanti et al. 2022 (eq. 1) count them
per layer, s b h (34 + 5 a s / h) bytes in 16-bit, doubled for fp32, plus the fp32 logits and their
gradient (2 x 4 b s V bytes). An estimate: allocator slack and framework buffers are not included.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import yaml

from efflab import RECIPES
from efflab.accounting import flops as F
from efflab.accounting import hardware
from efflab.accounting.ledger import MARGINAL_PHASES, SUNK_PHASES
from efflab.config import generator_run_config, load_config, reference_run_config, teacher_run_config
from efflab.data import prepare
from efflab.errors import UserError
from efflab.models import build_model, build_model_config
from efflab.paths import resolve_config_path
from efflab.runs import ModelSource

TECHNIQUE_OF = {"moe": "moe", "distill": "distill", "curriculum": "curriculum", "synthetic": "synthetic"}
TIMED_STEPS = 3  # timed optimizer steps (after one warm-up step) for the wall-time estimate


# ---- reading a config: the recipe it is for --------------------------------------------------------


def infer_recipe(raw: dict, path: str | Path | None = None) -> str:
    """The recipe a YAML config is for: its `recipe:` key, else the one technique section it has, else
    the shipped-config folder it sits in (configs/<recipe>/...), else baseline."""
    if isinstance(raw, dict) and raw.get("recipe") in RECIPES:
        return raw["recipe"]
    found = [sec for sec in TECHNIQUE_OF if isinstance(raw, dict) and raw.get(sec) is not None]
    if len(found) == 1:
        return found[0]
    if path is not None and Path(path).parent.name in RECIPES:
        return Path(path).parent.name
    return "baseline"


def load_run_config(path, overrides: list[str] | None = None, recipe: str | None = None):
    """A validated RunConfig from a YAML file for `recipe` (inferred when None; see `infer_recipe`)."""

    if recipe is None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            raw = {}  # load_config reports the problem
        if isinstance(raw, dict) and ("scales" in raw or "techniques" in raw) and "model" not in raw:
            raise UserError(f"{path} is a suite plan, not a run config: use `efflab suite {path} --dry-run`")
        if isinstance(raw, dict) and ("compute_environment" in raw or "distributed_type" in raw):
            raise UserError(
                f"{path} is an accelerate launcher config (accelerate launch --config_file), "
                "not an efflab run config"
            )
        recipe = infer_recipe(raw, path)
    return load_config(path, overrides, recipe=recipe)


# ---- phases ----------------------------------------------------------------------------------------


def _model_config(cfg):
    return build_model_config(cfg)


def train_phase(cfg, *, tokens: float | None = None, budget_flops: float | None = None) -> dict:
    """The train phase of `cfg` at its data.seq_len: steps, tokens, model and executed FLOPs.

    tokens: replaces the config's horizon; budget_flops: a FLOP budget left for training (synthetic)."""
    t, T = cfg.train, cfg.data.seq_len
    mc = _model_config(cfg)
    lora = cfg.lora if cfg.lora.r else None
    full = F.count_flops(mc, T, lora=lora)
    executed = F.count_flops(mc, T, causal=True, lora=lora)
    per_step = t.batch_size * T
    if tokens is not None:
        steps = max(1, int(tokens // per_step))
    elif t.steps is not None:
        steps = int(t.steps)
    else:
        limit = budget_flops if budget_flops is not None else t.budget_flops
        unit = full.train_flops_per_token if limit is not None else 1.0
        limit = limit if limit is not None else t.budget_tokens
        steps = int(limit * (1 + 1e-9) // (per_step * unit))
        if steps < 1:
            raise UserError(
                f"the budget ({limit:.3g}) is smaller than one optimizer step ({per_step * unit:.3g})"
            )
    n = steps * per_step
    return {
        "steps": steps,
        "tokens": float(n),
        "seq_len": T,
        "batch_size": t.batch_size,
        "flops": full.train_flops_per_token * n,
        "executed_flops": executed.train_flops_per_token * n,
        "flops_per_token": full.train_flops_per_token,
        "count": full,
        "model_config": mc,
    }


def _phase(flops: float, tokens: float, executed: float | None = None, note: str = "") -> dict:
    return {
        "flops": float(flops),
        "executed_flops": float(flops if executed is None else executed),
        "tokens": float(tokens),
        "note": note,
    }


def _trained_helper(sub_cfg, what: str, phases: dict, parts: dict):
    """A helper model the recipe trains first: estimated the same way (recursively), its whole estimate
    charged to sunk.teacher_pretrain; returns its model config."""
    sub = estimate_config(sub_cfg)
    parts[what] = sub
    phases["sunk.teacher_pretrain"] = _phase(
        sub["total_flops"],
        sub["phases"]["train"]["tokens"],
        sub["total_executed_flops"],
        f"the {what} the recipe trains first",
    )
    return sub["train"]["model_config"]


def _given_helper(path, role: str, phases: dict, phase: str = "sunk.teacher_pretrain") -> ModelSource:
    """A helper model given by path: its bill (a finished efflab run's ledger) charged to `phase`; an
    external model's is unknown and not charged."""
    src = ModelSource.resolve(path, role, weights=False)  # a hub model's config, not its weights
    if src.bill is not None:
        phases[phase] = _phase(src.bill.flops, src.bill.tokens, note=f"ledger total of {path}")
    return src


def _distill_phases(cfg, train: dict, phases: dict, parts: dict) -> None:
    d = cfg.distill
    if d.teacher_train is not None:
        tconf = _trained_helper(teacher_run_config(cfg, "teacher"), "teacher", phases, parts)
    else:
        tconf = _given_helper(d.teacher, "distill.teacher", phases).hf_config()
    T = cfg.data.seq_len
    fwd = F.forward_flops_per_token(tconf, T)
    fwd_exec = F.forward_flops_per_token(tconf, T, causal=True)
    note = (
        "teacher forward on every student token (online logits)"
        if d.logits == "online"
        else "top-k logit cache built once over the train split (estimated at the student's tokens)"
    )
    phases["teacher_forward"] = _phase(
        fwd * train["tokens"], train["tokens"], fwd_exec * train["tokens"], note
    )


def _synthetic_phases(cfg, phases: dict, parts: dict) -> float | None:
    """Generation and the generator's training; returns the FLOPs left for training (budget_flops)."""

    s = cfg.synthetic
    if s.generator == "train":
        gconf = _trained_helper(generator_run_config(cfg), "generator", phases, parts)
        gen_total = parts["generator"]["total_flops"]
    else:
        src = _given_helper(s.generator, "synthetic.generator", phases)
        gconf, gen_total = src.hf_config(), src.pretrain_flops
    n_seqs = math.ceil(float(s.token_budget) / s.max_new_tokens)
    prompt = s.prompt_len if s.prompts == "prefix" else 16
    gen = F.generation_flops(gconf, prompt, s.max_new_tokens, n_seqs)
    phases["generation"] = _phase(
        gen,
        n_seqs * s.max_new_tokens,
        note=f"{n_seqs:,} sequences of {prompt} prompt + {s.max_new_tokens} new tokens "
        "(upper bound: samples ending at EOS cost less)",
    )
    budget = cfg.train.budget_flops
    if budget is None or s.budget_includes == "train":
        return None
    spent = gen + ((gen_total or 0.0) if s.budget_includes == "total" else 0.0)
    if spent >= budget:
        raise UserError(
            f"the synthetic data ({spent:.4g} FLOPs) already spends train.budget_flops={budget:.4g}"
        )
    return budget - spent


def _curriculum_phases(cfg, train: dict, phases: dict, parts: dict, split_tokens: float | None) -> None:
    c = cfg.curriculum
    if c.scorer != "reference":
        phases["scoring"] = _phase(0.0, 0.0, note=f"scorer {c.scorer}: no model FLOPs")
        return
    if c.reference is None:
        rconf = _trained_helper(reference_run_config(cfg), "reference", phases, parts)
    else:
        rconf = _given_helper(c.reference, "curriculum.reference", phases).hf_config()
    T = cfg.data.seq_len
    if split_tokens is None:
        phases["scoring"] = _phase(
            0.0,
            0.0,
            note="reference forward over the train split: not estimated, its size is known "
            "once the data is prepared (the dry run without --no-time prepares it)",
        )
    else:
        phases["scoring"] = _phase(
            F.forward_flops_per_token(rconf, T) * split_tokens,
            split_tokens,
            F.forward_flops_per_token(rconf, T, causal=True) * split_tokens,
            "reference forward over the train split",
        )


def _eval_phase(cfg, train: dict) -> dict:
    """Held-out evaluation (shown, never summed): every `eval.every` steps, at the end and at step 0,
    `eval.max_blocks` blocks of data.seq_len tokens (fewer if the held-out split is smaller)."""
    T = cfg.data.seq_len
    n_evals = train["steps"] // cfg.eval.every + 2 - (train["steps"] % cfg.eval.every == 0)
    tokens = float(n_evals * cfg.eval.max_blocks * T)
    mc = train["model_config"]
    return _phase(
        F.forward_flops_per_token(mc, T) * tokens,
        tokens,
        F.forward_flops_per_token(mc, T, causal=True) * tokens,
        f"{n_evals} evaluations of at most {cfg.eval.max_blocks} blocks (shown, never summed)",
    )


# ---- memory ----------------------------------------------------------------------------------------


def peak_memory_bytes(cfg, count) -> dict:
    """Training memory of one process (see the module docstring for the formula)."""
    mc = count
    trainable = mc.params_total if not cfg.lora.r else 0  # LoRA adapters: small, ignored
    weights = 16.0 * trainable + 4.0 * (mc.params_total - trainable)
    b = cfg.train.micro_batch_size or cfg.train.batch_size
    s = cfg.data.seq_len
    r = cfg.model.resolved() if not cfg.model.pretrained else None
    h = (r or {}).get("width") or 0
    L = (r or {}).get("n_layer") or 0
    a = (r or {}).get("n_head") or 1
    half = cfg.train.precision in ("bf16", "fp16")
    act_layer = s * b * h * (34 + 5 * a * s / max(h, 1)) * (1 if half else 2)
    acts = L * act_layer if not cfg.train.gradient_checkpointing else 2.0 * s * b * h * L + act_layer
    logits = 2 * 4.0 * b * s * cfg.data.vocab_size
    return {
        "weights_optimizer": weights,
        "activations": acts,
        "logits": logits,
        "total": weights + acts + logits,
    }


# ---- timing ----------------------------------------------------------------------------------------


TIMED_TOKENS = 4096  # tokens per timed step at most: a GPU config's batch would take minutes on a CPU


_TIMED: dict[str, dict] = {}  # timing per model shape, batch and threads: a suite times each shape once


def time_train_steps(cfg, steps: int = TIMED_STEPS) -> dict:
    """Cached `_time_train_steps` (one measurement per model shape, batch, length, vocab and threads)."""
    key = repr(
        (
            cfg.recipe,
            cfg.model.model_dump(),
            cfg.to_dict().get("moe"),
            cfg.lora.model_dump(),
            cfg.train.batch_size,
            cfg.train.micro_batch_size,
            cfg.train.threads,
            cfg.data.seq_len,
            cfg.data.vocab_size,
            steps,
        )
    )
    if key not in _TIMED:
        _TIMED[key] = _time_train_steps(cfg, steps)
    return dict(_TIMED[key])


def _time_train_steps(cfg, steps: int = TIMED_STEPS) -> dict:
    """Seconds per optimizer step of the real model on random tokens, on this machine's device (a CUDA GPU
    if there is one, in bf16 autocast unless train.precision says fp32; else the CPU), one warm-up step
    first. At most TIMED_TOKENS tokens per timed step on a CPU (whole sequences; a full batch's time is
    scaled from them: per-token throughput is close to flat in batch size there); a GPU times the
    configured micro-batch. Returns {seconds_per_step, flops_per_s, timed_rows, device, threads}."""
    import contextlib

    import torch

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch.manual_seed(0)
    model = build_model(cfg, cfg.data.vocab_size).to(device)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    B, T = cfg.train.batch_size, cfg.data.seq_len
    mb = min(cfg.train.micro_batch_size or B, B)
    rows = mb if cuda else max(1, min(mb, TIMED_TOKENS // T))
    ids = torch.randint(0, cfg.data.vocab_size, (rows, T), device=device)
    half = cuda and cfg.train.precision in ("auto", "bf16")

    def step():
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if half else contextlib.nullcontext()
        with ctx:
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    sec = (time.perf_counter() - t0) / steps * (B / rows)
    fpt = F.train_flops_per_token(model.config, T)
    return {
        "seconds_per_step": sec,
        "flops_per_s": fpt * B * T / sec,
        "timed_steps": steps,
        "timed_rows": rows,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "threads": torch.get_num_threads(),
    }


# ---- the estimate ----------------------------------------------------------------------------------


def estimate_config(cfg, *, tokens: float | None = None, split_tokens: float | None = None) -> dict:
    """The ledger estimate of one run config (no timing): phases, marginal and total FLOPs, steps."""
    phases: dict[str, dict] = {}
    parts: dict[str, dict] = {}
    budget_left = None
    if cfg.recipe == "synthetic":
        budget_left = _synthetic_phases(cfg, phases, parts)
    train = train_phase(cfg, tokens=tokens, budget_flops=budget_left)
    phases["train"] = _phase(
        train["flops"],
        train["tokens"],
        train["executed_flops"],
        f"{train['steps']} steps x {train['batch_size']} x {train['seq_len']} tokens",
    )
    if cfg.recipe == "distill":
        _distill_phases(cfg, train, phases, parts)
    if cfg.recipe == "curriculum":
        _curriculum_phases(cfg, train, phases, parts, split_tokens)
        if cfg.curriculum.seq_len_warmup:
            phases["train"]["note"] += " (sequence-length warmup not modelled: counted at full length)"
    if cfg.recipe == "moe" and cfg.moe.upcycle_from:
        _given_helper(cfg.moe.upcycle_from, "moe.upcycle_from", phases, "sunk.dense_pretrain")
    phases["eval"] = _eval_phase(cfg, train)
    marginal = sum(phases[p]["flops"] for p in MARGINAL_PHASES if p in phases)
    sunk = sum(phases[p]["flops"] for p in SUNK_PHASES if p in phases)
    mexec = sum(phases[p]["executed_flops"] for p in MARGINAL_PHASES if p in phases)
    sexec = sum(phases[p]["executed_flops"] for p in SUNK_PHASES if p in phases)
    return {
        "recipe": cfg.recipe,
        "phases": phases,
        "marginal_flops": marginal,
        "total_flops": marginal + sunk,
        "total_executed_flops": mexec + sexec,
        "marginal_executed_flops": mexec,
        "train": train,
        "steps": train["steps"],
        "tokens": train["tokens"],
        "parts": parts,
        "peak_memory_bytes": peak_memory_bytes(cfg, train["count"]),
    }


def _resolve(cfg_or_recipe_and_config, overrides):
    if isinstance(cfg_or_recipe_and_config, (tuple, list)):
        recipe, path = cfg_or_recipe_and_config

        return load_run_config(resolve_config_path(str(path)), overrides, recipe=recipe)
    if isinstance(cfg_or_recipe_and_config, (str, Path)):
        return load_run_config(resolve_config_path(str(cfg_or_recipe_and_config)), overrides)
    return cfg_or_recipe_and_config


def _wall_here(est: dict, t: dict) -> dict:
    """Seconds on this machine: every phase's FLOPs at the measured train FLOP/s (evaluation's forward
    passes ran at about the same FLOP/s as training in the tiny runs measured: 1.2e10 vs 1.36e10)."""
    per = t["flops_per_s"]
    ev = est["phases"]["eval"]["flops"] / per
    ev_parts = sum(v["phases"]["eval"]["flops"] / per for v in est["parts"].values())
    return {
        "marginal": est["marginal_flops"] / per + ev,
        "total": est["total_flops"] / per + ev + ev_parts,
        "train": est["steps"] * t["seconds_per_step"],
        "eval": ev + ev_parts,
    }


def estimate_run(
    cfg_or_recipe_and_config,
    *,
    overrides: list[str] | None = None,
    gpu: str = "h100",
    mfu: float = hardware.DEFAULT_MFU,
    precision: str = "bf16",
    measure: bool = False,
    tokens: float | None = None,
) -> dict:
    """Everything a run will spend, before it starts.

    cfg_or_recipe_and_config: a RunConfig, a YAML path, or (recipe, YAML path). overrides: dotted k=v.
    measure: time a few optimizer steps here (builds the model; prepares nothing else) for the wall time
    on this machine. Returns {config (resolved dict), recipe, phases {name: {flops, executed_flops,
    tokens, note}}, marginal_flops, total_flops, steps, tokens, peak_memory_bytes, wall_seconds_here
    (measure only), gpu {name, mfu, precision, seconds}, convention}.
    """
    cfg = _resolve(cfg_or_recipe_and_config, overrides)
    if not (isinstance(mfu, (int, float)) and 0 < mfu <= 1):
        raise UserError(f"MFU must be in (0, 1], got {mfu!r} (default {hardware.DEFAULT_MFU})")
    split_tokens = None
    if measure and cfg.recipe == "curriculum" and cfg.curriculum.scorer == "reference":
        split_tokens = float(prepare(cfg.data, cfg.eval.max_blocks, log=lambda *a, **k: None).train.size)
    est = estimate_config(cfg, tokens=tokens, split_tokens=split_tokens)
    out = {k: v for k, v in est.items() if k not in ("train", "parts")}
    out["config"] = cfg.to_dict()
    out["model_shape"] = cfg.model.resolved() if not cfg.model.pretrained else None
    out["parts"] = {
        k: {
            "recipe": v["recipe"],
            "steps": v["steps"],
            "tokens": v["tokens"],
            "total_flops": v["total_flops"],
        }
        for k, v in est["parts"].items()
    }
    g = hardware.gpu(gpu)
    peak = g.peak(precision)
    out["gpu"] = {
        "name": g.name,
        "mfu": mfu,
        "precision": precision,
        "peak_flops_per_s": peak,
        "seconds_marginal": est["marginal_flops"] / (peak * mfu),
        "seconds_total": est["total_flops"] / (peak * mfu),
    }
    if measure:
        out["measured"] = t = time_train_steps(cfg)
        out["wall_seconds_here"] = _wall_here(est, t)
    out["convention"] = (
        "model FLOPs: multiply-add = 2, attention counted in full, train = 3 x forward "
        "(README, 'Counting FLOPs and pricing runs'); executed FLOPs: causal attention halved, as flash attention "
        "runs it; marginal = train + teacher_forward + generation + scoring; total adds sunk"
    )
    return out


def sum_estimates(estimates: list[dict], *, sunk_once: list[dict] | None = None) -> dict:
    """A plan's estimate (the suite's `--dry-run`): the marginal phases of every run in `estimates` summed,
    plus the totals of `sunk_once` (runs trained once and shared, e.g. the suite's teacher), so that a
    shared teacher is not counted once per run that uses it. Wall seconds sum where measured."""
    phases: dict[str, float] = {}
    for e in estimates:
        for name, ph in e["phases"].items():
            if name in MARGINAL_PHASES or name == "eval":
                phases[name] = phases.get(name, 0.0) + ph["flops"]
    shared = sum(e["total_flops"] for e in sunk_once or [])
    marginal = sum(v for k, v in phases.items() if k in MARGINAL_PHASES)
    out = {
        "runs": len(estimates) + len(sunk_once or []),
        "phases": phases,
        "shared_flops": shared,
        "marginal_flops": marginal,
        "total_flops": marginal + shared,
        "steps": sum(e["steps"] for e in [*estimates, *(sunk_once or [])]),
    }
    walls = [e.get("wall_seconds_here") for e in [*estimates, *(sunk_once or [])]]
    if walls and all(w is not None for w in walls):
        out["wall_seconds_here"] = sum(w["marginal"] for w in walls[: len(estimates)]) + sum(
            w["total"] for w in walls[len(estimates) :]
        )
    return out


def format_estimate(e: dict) -> str:
    """The human-readable dry-run report."""
    lines = [f"dry run: recipe {e['recipe']}, {e['steps']:,} steps, {e['tokens']:.4g} train tokens"]
    if e.get("model_shape"):
        lines.append("  model: " + ", ".join(f"{k} {v}" for k, v in e["model_shape"].items()))
    lines.append(f"  {'phase':<22} {'model FLOPs':>12} {'executed':>12} {'tokens':>10}  note")
    for name, ph in e["phases"].items():
        lines.append(
            f"  {name:<22} {ph['flops']:>12.4g} {ph['executed_flops']:>12.4g} {ph['tokens']:>10.4g}  {ph['note']}"
        )
    lines.append(f"  {'marginal':<22} {e['marginal_flops']:>12.4g} {e['marginal_executed_flops']:>12.4g}")
    lines.append(f"  {'total (with sunk)':<22} {e['total_flops']:>12.4g} {e['total_executed_flops']:>12.4g}")
    for k, v in e.get("parts", {}).items():
        lines.append(
            f"  {k}: {v['recipe']} run of {v['steps']:,} steps, {v['tokens']:.4g} tokens, "
            f"{v['total_flops']:.4g} FLOPs"
        )
    m = e["peak_memory_bytes"]
    lines.append(
        f"  peak memory (estimate, one process): {m['total'] / 2**20:,.1f} MiB "
        f"(weights+grads+AdamW {m['weights_optimizer'] / 2**20:,.1f}, activations "
        f"{m['activations'] / 2**20:,.1f}, logits {m['logits'] / 2**20:,.1f})"
    )
    if "wall_seconds_here" in e:
        w, t = e["wall_seconds_here"], e["measured"]
        lines.append(
            f"  wall time here: {w['marginal']:,.1f} s marginal, {w['total']:,.1f} s with sunk phases, "
            f"evaluation included ({w['eval']:,.1f} s) "
            f"(measured {t['flops_per_s']:.4g} train FLOP/s over {t['timed_steps']} steps on {t['device']}, "
            f"{t['threads']} threads; generation decodes slower: a lower bound for it)"
        )
    g = e["gpu"]
    lines.append(
        f"  on one {g['name']} at MFU {g['mfu']:.2f} of the dense {g['precision'].upper()} peak: "
        f"{g['seconds_marginal']:,.3g} s marginal, {g['seconds_total']:,.3g} s total"
    )
    lines.append(f"convention: {e['convention']}")
    return "\n".join(lines)
