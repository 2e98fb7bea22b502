"""Forward+backward step time of the MoE model over its dense partner at equal active FLOPs per token,
for every experts implementation transformers offers here and for efflab's choice, in one run.

    python benchmarks/moe.py                                   # CPU, configs/moe/small.yaml, batch 16 x 256
    python benchmarks/moe.py --device cuda                     # GPU, bf16 autocast (as the loop trains)
    python benchmarks/moe.py --device cuda --precision bf16    # GPU, bf16 weights
    python benchmarks/moe.py --batch 4 --threads 1 --json      # a smaller, quieter measurement

The dense partner is `efflab.models.dense_config_for(cfg)`: the same attention, its FFN as wide as the
top-k experts together, so both models have the same train FLOPs per token up to the router (printed,
from the accounting layer). Variants, all with the same weights:
- `stock/<impl>`: transformers' own sparse block (Mixtral / Qwen2-MoE) with experts_implementation
  <impl>: eager (a loop over experts), grouped_mm (grouped GEMMs), batched_mm (one gathered weight
  copy per token-assignment; skipped with the memory it would need when that exceeds half of what is
  free, which at batch 16 x 256 on a CPU is the case);
- `efflab/<impl>`: efflab's block as the recipe trains it (router losses added to the loss, routing
  statistics recorded) with the implementation `auto` chooses here, as the recipe does (a short
  measurement of one layer's experts at this batch, thread count and precision: moe_model.py; its
  times are printed), and any named by --impls (e.g. --impls efflab_grouped,grouped_mm).
Each step is forward + backward of the LM loss (no optimizer: the same for both models). Rounds
interleave the variants (the dense model measured twice per round) and the median of the rounds is
reported, so drifting machine load hits every variant alike. The machine's load average is printed:
on a CPU shared with other work, several threads per op cost more than one (each op waits for all
its threads to be scheduled), which penalises the MoE's many smaller matmuls far more than the dense
model's few large ones; compare with --threads 1 there. Ratio = variant / dense, in wall-clock
time and in this process's CPU time (less sensitive to other processes on a shared machine; on a
CPU with several threads it also counts threads' spin-waiting).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _available_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def batched_mm_bytes(config, tokens: int, bytes_per_el: int) -> float:
    """Memory batched_mm needs for its gathered expert weights: per layer one [2I, d] and one [d, I] copy per
    token-assignment, kept for backward, plus their gradients (x2)."""
    d, k, L = config.hidden_size, config.num_experts_per_tok, config.num_hidden_layers
    inner = getattr(config, "moe_intermediate_size", None) or config.intermediate_size
    return 2.0 * L * tokens * k * 3 * inner * d * bytes_per_el


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs/moe/small.yaml"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument(
        "--precision",
        choices=["auto", "fp32", "autocast", "bf16"],
        default="auto",
        help="auto: fp32 on CPU, bf16 autocast over fp32 weights on CUDA (as efflab trains)",
    )
    ap.add_argument(
        "--batch", type=int, default=None, help="sequences per step (default: the config's batch_size)"
    )
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--impls", default="", help="extra implementations for the efflab block, comma-separated")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. moe.n_experts=16")
    return ap


def run_benchmark(a) -> dict:
    """The measurement for parsed arguments `a`; returns the result printed by --json."""
    from transformers import AutoModelForCausalLM

    from efflab.accounting.flops import train_flops_per_token
    from efflab.config import load_config
    from efflab.models import build_model_config, dense_config_for
    from efflab.moe_model import (
        available_experts_implementations,
        build_moe_config,
        choose_experts_implementation,
        install_blocks,
        moe_blocks,
    )
    from efflab.techniques import moe as M

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    precision = a.precision if a.precision != "auto" else ("autocast" if dev.type == "cuda" else "fp32")
    batch = [f"train.batch_size={a.batch}", "train.micro_batch_size=null"] if a.batch else []
    prec = {"fp32": ["train.precision=fp32"], "bf16": ["train.precision=bf16"]}.get(precision, [])
    cfg = load_config(a.config, [*a.overrides, *batch, *prec], recipe="moe")
    dense_cfg = dense_config_for(cfg)
    V, T, B = cfg.data.vocab_size, cfg.data.seq_len, a.batch or cfg.train.batch_size
    attn = "sdpa"

    torch.manual_seed(0)
    dense = AutoModelForCausalLM.from_config(build_model_config(dense_cfg, V), attn_implementation=attn)
    moe_config = build_moe_config(cfg, V)
    torch.manual_seed(0)
    stock = AutoModelForCausalLM.from_config(moe_config, attn_implementation=attn)
    efflab = copy.deepcopy(stock)
    install_blocks(efflab, cfg.moe.effective_capacity_factor)
    blocks = moe_blocks(efflab)
    wdtype = torch.bfloat16 if precision == "bf16" else torch.float32
    for m in (dense, stock, efflab):
        m.to(device=dev, dtype=wdtype).train()
    ids = torch.randint(0, V, (B, T), device=dev)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def step_fn(model, router_losses: bool):
        def step() -> tuple[float, float]:  # wall and CPU seconds of this process
            sync()
            t, c = time.perf_counter(), time.process_time()
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == "autocast"):
                loss = model(input_ids=ids, labels=ids).loss
                if router_losses:
                    loss, _ = M.moe_loss(
                        loss,
                        [b.pop_aux() for b in blocks],
                        balance_coef=cfg.moe.balance_coef,
                        z_coef=cfg.moe.z_loss_coef,
                    )
            loss.backward()
            model.zero_grad(set_to_none=True)
            sync()
            return time.perf_counter() - t, time.process_time() - c

        return step

    # efflab's choice, as the recipe makes it (for auto: a short measurement at this batch and threads)
    choice_record = choose_experts_implementation(efflab, cfg, dev)
    choice = choice_record["chosen"]
    variants: dict[str, tuple] = {"dense": (dense, None)}
    skipped: dict[str, str] = {}
    tokens = B * T
    for impl in available_experts_implementations():
        if impl.startswith("efflab"):  # efflab's own run in efflab's block, below
            continue
        if impl == "batched_mm":
            need = batched_mm_bytes(moe_config, tokens, 2 if precision == "bf16" else 4)
            have = _available_bytes(dev)
            if need > 0.5 * have:
                skipped[f"stock/{impl}"] = (
                    f"needs ~{need / 2**30:.1f} GiB for gathered expert weights, "
                    f"{have / 2**30:.1f} GiB available"
                )
                continue
        variants[f"stock/{impl}"] = (stock, impl)
    extra = [x for x in a.impls.split(",") if x]
    for impl in dict.fromkeys([choice, *extra]):
        variants[f"efflab/{impl}"] = (efflab, impl)

    def run(name: str) -> tuple[float, float]:
        model, impl = variants[name]
        if impl is not None:
            model.set_experts_implementation(impl)
        return step_fn(model, name.startswith("efflab"))()

    times: dict[str, list[tuple[float, float]]] = {n: [] for n in variants}
    for name in list(variants):  # warm-up (and out-of-memory check) of every variant
        try:
            for _ in range(a.warmup):
                run(name)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if "out of memory" not in str(e).lower() and not isinstance(e, torch.OutOfMemoryError):
                raise
            skipped[name] = "out of memory"
            del variants[name], times[name]
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    for _ in range(a.rounds):
        times["dense"].append(run("dense"))
        for name in variants:
            if name != "dense":
                times[name].append(run(name))
        times["dense"].append(run("dense"))

    med = {n: statistics.median(w for w, _ in v) for n, v in times.items()}
    cpu = {n: statistics.median(c for _, c in v) for n, v in times.items()}
    fpt_dense = train_flops_per_token(dense.config, T)
    fpt_moe = train_flops_per_token(moe_config, T)
    result = {
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "config": a.config,
        "device": str(dev),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "batch": B,
        "seq_len": T,
        "d_model": moe_config.hidden_size,
        "n_layer": moe_config.num_hidden_layers,
        "n_experts": cfg.moe.n_experts,
        "top_k": cfg.moe.top_k,
        "expert_width": M.moe_shape(cfg).expert_width,
        "dense_ffn": M.moe_shape(cfg).active_ffn,
        "train_flops_per_token": {"dense": fpt_dense, "moe": fpt_moe, "ratio": fpt_moe / fpt_dense},
        "efflab_choice": f"efflab/{choice}",
        "efflab_choice_record": choice_record,
        "rounds": a.rounds,
        "median_step_s": med,
        "ratio_vs_dense": {n: med[n] / med["dense"] for n in med if n != "dense"},
        "median_step_cpu_s": cpu,
        "cpu_ratio_vs_dense": {n: cpu[n] / cpu["dense"] for n in cpu if n != "dense"},
        "skipped": skipped,
    }
    return result


def show(result: dict) -> None:
    med, cpu = result["median_step_s"], result["median_step_cpu_s"]
    fpt = result["train_flops_per_token"]
    print(
        f"config      {result['config']}: d={result['d_model']}, {result['n_layer']} layers, "
        f"{result['n_experts']} experts of {result['expert_width']}, top-{result['top_k']}; dense FFN "
        f"{result['dense_ffn']}"
    )
    print(
        f"step        forward+backward, batch {result['batch']} x {result['seq_len']} tokens, {result['device']} "
        f"({result['precision']}), {result['threads']} threads, median of {result['rounds']} interleaved rounds; "
        f"load average {result['load_average']:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"train FLOPs/token  dense {fpt['dense']:.4g}, moe {fpt['moe']:.4g} (x{fpt['ratio']:.4f}: router)")
    rec = result["efflab_choice_record"]
    if rec.get("by") == "measurement":
        times = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in rec["step_s"].items())
        print(f"auto choice  {rec['chosen']} (one layer's experts, {rec['tokens']} tokens: {times})")
    print(f"{'variant':<22}{'wall (s)':>10}{'vs dense':>10}{'cpu (s)':>10}{'vs dense':>10}")
    for n in med:
        mark = "  <- efflab's choice" if n == result["efflab_choice"] else ""
        print(
            f"{n:<22}{med[n]:>10.3f}{med[n] / med['dense']:>10.3f}{cpu[n]:>10.3f}{cpu[n] / cpu['dense']:>10.3f}{mark}"
        )
    for n, why in result["skipped"].items():
        print(f"{n:<22}{'skipped':>10}  {why}")


def main() -> None:
    a = parser().parse_args()
    result = run_benchmark(a)
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        show(result)


if __name__ == "__main__":
    main()
