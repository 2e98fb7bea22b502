"""Training throughput through efflab's step (accelerate, AdamW, clipping), eager and torch.compile'd,
against the plain matrix-product rate of the same machine and thread count measured in the same run,
and what the compile costs (first compile, and a recompile served by inductor's on-disk cache).

    python benchmarks/throughput.py                        # the reference shape, 1 thread, CPU
    python benchmarks/throughput.py --threads 2            # ... 2 threads
    python benchmarks/throughput.py --config configs/baseline/small.yaml --no-compile-cost
    python benchmarks/throughput.py --config configs/baseline/gpu.yaml --device cuda   # MFU on a GPU

The reference shape (`--config reference`, the default) is the main job's largest dense model: 2
layers x 64 wide, 2 heads of 32, tied embeddings, vocabulary 512, T = 128, batch 32 x 128, fp32,
about 139,584 parameters.

Method. Eager and compiled models start from the same weights; rounds interleave eager steps,
compiled steps and a plain fp32 (CPU) or bf16 (GPU) n x n x n matrix product, and each figure is the
median over rounds, so drifting load on a shared machine hits them alike. Model FLOP/s = the
accounting layer's train FLOPs per token (docs/conventions.md section 2: 3 x forward, attention in full) x
tokens/s. The compile cost is measured in two child processes sharing a fresh
TORCHINDUCTOR_CACHE_DIR: the first pays the whole compile, the second finds inductor's FX-graph and
AOT-autograd caches warm, as every run after the first of a suite does (the loop keeps that cache in
efflab's cache directory). Compile seconds = first compiled step - a steady compiled step. From these
the script prints when compile pays: an eager run of S seconds takes warm + S x (compiled/eager)
compiled. The machine's load average is printed with every time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
# the main job's reference shape (issue #13): ~139.6k parameters, ~1.03 MFLOPs per trained token
REFERENCE = [
    "model.depth=2",
    "model.width=64",
    "model.head_dim=32",
    "model.tie_embeddings=true",
    "data.vocab_size=512",
    "data.seq_len=128",
    "train.batch_size=32",
    "train.lr=3e-3",
    "train.precision=fp32",
    "train.steps=100",
]


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def load_cfg(config: str, overrides: list[str]):
    from efflab.config import load_config

    if config == "reference":
        return load_config(None, [*REFERENCE, *overrides], recipe="baseline")
    return load_config(config, overrides)


def matmul_seconds(a: torch.Tensor, b: torch.Tensor, reps: int = 3) -> tuple[float, float]:
    """Best-of wall seconds and best-of CPU seconds (this process) of one a @ b."""
    best, best_cpu = float("inf"), float("inf")
    for _ in range(reps):
        _sync(a.device)
        t, c = time.perf_counter(), time.process_time()
        a @ b
        _sync(a.device)
        best, best_cpu = min(best, time.perf_counter() - t), min(best_cpu, time.process_time() - c)
    return best, best_cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Trainer:
    """One model + AdamW through accelerate, stepped exactly as loop.train steps (one micro-batch)."""

    def __init__(self, cfg, acc, *, compile_model: bool, seed: int = 0):
        from efflab import loop
        from efflab.models import build_model

        torch.manual_seed(seed)
        model = build_model(cfg, cfg.data.vocab_size)
        opt = loop.make_optimizer(model, cfg, acc.device)
        self.model, self.opt = acc.prepare(model, opt)
        if compile_model:
            self.model = loop.compile_model(self.model)
        self.acc, self.clip = acc, cfg.train.grad_clip
        B, T = cfg.train.batch_size, cfg.data.seq_len
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, cfg.data.vocab_size, (B, T), generator=g).to(acc.device)

    def step(self) -> float:
        acc = self.acc
        with acc.autocast():
            loss = self.model(input_ids=self.ids, labels=self.ids).loss
        acc.backward(loss)
        if self.clip:
            acc.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return float(loss.detach())  # the loop reads the loss every step too

    def timed(self, steps: int) -> tuple[float, float]:
        """Mean wall and CPU seconds (this process, all its threads) per step over `steps` steps."""
        _sync(self.acc.device)
        t, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step()
        _sync(self.acc.device)
        return (time.perf_counter() - t) / steps, (time.process_time() - c) / steps


def make_accelerator(device: torch.device):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(cpu=device.type == "cpu", mixed_precision="bf16" if device.type == "cuda" else "no")


# =============================================================================================
# compile cost (child processes)
# =============================================================================================
def compile_probe(a) -> dict:
    """In a child process: seconds of the first compiled step and of steady compiled steps."""
    cfg = load_cfg(a.config, a.overrides)
    dev = torch.device(a.device)
    tr = Trainer(cfg, make_accelerator(dev), compile_model=True)
    _sync(dev)
    t = time.perf_counter()
    tr.step()
    _sync(dev)
    first = time.perf_counter() - t
    steady = statistics.median(tr.timed(1)[0] for _ in range(5))
    return {"first_step_s": first, "steady_step_s": steady, "compile_s": first - steady}


def compile_cost(a) -> dict:
    """Cold (fresh cache directory) and warm (the same directory again) compile seconds."""
    cache = tempfile.mkdtemp(prefix="efflab-inductor-")
    env = {
        **os.environ,
        "TORCHINDUCTOR_CACHE_DIR": cache,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH")) if p),
    }
    cmd = [
        sys.executable,
        __file__,
        "--config",
        a.config,
        "--device",
        a.device,
        "--threads",
        str(a.threads),
        "--_compile-probe",
        *a.overrides,
    ]
    out = {"cache_dir": cache}
    for kind in ("cold", "warm"):
        load = load_average()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"compile probe failed:\n{r.stderr[-3000:]}")
        ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and its compile workers / gcc
        cpu = ru2.ru_utime + ru2.ru_stime - ru.ru_utime - ru.ru_stime
        out[kind] = {
            **json.loads(r.stdout.strip().splitlines()[-1]),
            "load_average": load,
            "process_cpu_s": cpu,
        }
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # this process's own compile is then served warm
    return out


# =============================================================================================
# the measurement
# =============================================================================================
def measure(a) -> dict:
    from efflab.accounting.flops import train_flops_per_token
    from efflab.accounting.hardware import device_peak_flops

    cfg = load_cfg(a.config, a.overrides)
    dev = torch.device(a.device)
    costs = compile_cost(a) if a.compile and a.compile_cost else None
    acc = make_accelerator(dev)
    variants = {"eager": Trainer(cfg, acc, compile_model=False)}
    if a.compile:
        variants["compiled"] = Trainer(cfg, acc, compile_model=True)
    B, T = cfg.train.batch_size, cfg.data.seq_len
    fpt = train_flops_per_token(acc.unwrap_model(variants["eager"].model).config, T)
    n = a.matmul_n or (8192 if dev.type == "cuda" else 1024)
    mm_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    ma, mb = (torch.randn(n, n, device=dev, dtype=mm_dtype) for _ in range(2))
    for tr in variants.values():  # warm-up (and, for the compiled model, its compile)
        for _ in range(a.warmup):
            tr.step()
    matmul_seconds(ma, mb)
    step_s: dict[str, list[float]] = {k: [] for k in variants}
    step_cpu: dict[str, list[float]] = {k: [] for k in variants}
    mm_rate: list[float] = []
    mm_rate_cpu: list[float] = []
    loads = [load_average()]
    for _ in range(a.rounds):
        for k, tr in variants.items():
            w, c = tr.timed(a.steps)
            step_s[k].append(w)
            step_cpu[k].append(c)
        w, c = matmul_seconds(ma, mb)
        mm_rate.append(2 * n**3 / w)
        mm_rate_cpu.append(2 * n**3 / max(c, 1e-9))
        loads.append(load_average())
    mm, mm_cpu = statistics.median(mm_rate), statistics.median(mm_rate_cpu)
    res = {
        "config": a.config,
        "overrides": a.overrides,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "precision": "fp32" if acc.mixed_precision == "no" else f"{acc.mixed_precision} autocast",
        "params": sum(p.numel() for p in acc.unwrap_model(variants["eager"].model).parameters()),
        "batch": B,
        "seq_len": T,
        "train_flops_per_token": fpt,
        "flop_convention": "docs/conventions.md section 2: train = 3 x forward, attention in full",
        "rounds": a.rounds,
        "steps_per_round": a.steps,
        "load_average": {
            "min": min(x for x in loads if x is not None) if loads[0] is not None else None,
            "max": max(x for x in loads if x is not None) if loads[0] is not None else None,
        },
        "matmul_flops_per_s": mm,
        "matmul_flops_per_cpu_s": mm_cpu,
        "matmul": f"{n} x {n} x {n} {str(mm_dtype).split('.')[-1]}, best of 3 per round, median of rounds",
        "variants": {},
    }
    peak = device_peak_flops(dev) if dev.type == "cuda" else None
    for k, v in step_s.items():
        s = statistics.median(v)
        fps = B * T / s * fpt
        res["variants"][k] = {
            "step_s": s,
            "tokens_per_s": B * T / s,
            "model_flops_per_s": fps,
            "ratio_to_matmul": fps / mm,
            "mfu": fps / peak if peak else None,
            # per CPU second of this process: what an idle machine would give (one thread); with
            # several threads it counts their spin-waiting too
            "cpu_step_s": statistics.median(step_cpu[k]),
            "ratio_to_matmul_cpu": B * T * fpt / statistics.median(step_cpu[k]) / mm_cpu,
        }
    if "compiled" in step_s:  # the ratio within each round, then the median: robust to drift
        res["compiled_over_eager_step"] = statistics.median(
            c / e for c, e in zip(step_s["compiled"], step_s["eager"])
        )
        res["compiled_over_eager_cpu"] = statistics.median(
            c / e for c, e in zip(step_cpu["compiled"], step_cpu["eager"])
        )
    if costs:
        res["compile_cost"] = costs
        r = res["compiled_over_eager_step"]
        warm, cold = costs["warm"]["compile_s"], costs["cold"]["compile_s"]
        res["pays_off"] = {
            "break_even_eager_run_s_warm": warm / (1 - r) if r < 1 else None,
            "break_even_eager_run_s_cold": cold / (1 - r) if r < 1 else None,
            f"run_of_{a.run_seconds:g}s": {
                "eager_s": a.run_seconds,
                "compiled_warm_s": warm + a.run_seconds * r,
                "compiled_cold_s": cold + a.run_seconds * r,
            },
        }
    return res


def show(res: dict) -> None:
    la = res["load_average"]
    print(f"config      {res['config']} {' '.join(res['overrides'])}".rstrip())
    print(
        f"model       {res['params']:,} params, batch {res['batch']} x {res['seq_len']} tokens, {res['precision']}, "
        f"{res['device']}, {res['threads']} thread(s)"
    )
    print(f"FLOPs       {res['train_flops_per_token']:.4g} train FLOPs/token ({res['flop_convention']})")
    print(
        f"method      median of {res['rounds']} interleaved rounds of {res['steps_per_round']} steps; "
        f"load average {la['min']:.1f}-{la['max']:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"matmul      {res['matmul_flops_per_s'] / 1e9:,.1f} GFLOP/s wall, "
        f"{res['matmul_flops_per_cpu_s'] / 1e9:,.1f} GFLOP per CPU second ({res['matmul']})"
    )
    print(
        f"{'variant':<10}{'step ms':>9}{'tokens/s':>11}{'GFLOP/s':>9}{'/matmul':>9}{'cpu ms':>9}{'/matmul':>9}"
        + ("   MFU" if res["device"].startswith("cuda") else "")
    )
    for k, v in res["variants"].items():
        mfu = f"{v['mfu']:>7.3f}" if v.get("mfu") else ""
        print(
            f"{k:<10}{v['step_s'] * 1e3:>9.1f}{v['tokens_per_s']:>11,.0f}{v['model_flops_per_s'] / 1e9:>9.1f}"
            f"{v['ratio_to_matmul']:>9.3f}{v['cpu_step_s'] * 1e3:>9.1f}{v['ratio_to_matmul_cpu']:>9.3f}{mfu}"
        )
    if "compiled_over_eager_step" in res:
        print(
            f"compiled / eager: {res['compiled_over_eager_step']:.3f} wall, {res['compiled_over_eager_cpu']:.3f} "
            "CPU time (medians of per-round ratios)"
        )
    c = res.get("compile_cost")
    if c:
        for kind in ("cold", "warm"):
            print(
                f"compile     {kind}: {c[kind]['compile_s']:.1f} s (first step {c[kind]['first_step_s']:.1f} s; "
                f"the probe process {c[kind]['process_cpu_s']:.1f} CPU s in all; load {c[kind]['load_average']:.2f})"
            )
        p = res["pays_off"]
        if p["break_even_eager_run_s_warm"] is not None:
            print(
                f"pays off    for eager runs longer than {p['break_even_eager_run_s_warm']:.0f} s with a warm cache, "
                f"{p['break_even_eager_run_s_cold']:.0f} s cold"
            )
        else:
            print("pays off    never: the compiled step is not faster")
        run = next(v for k, v in p.items() if k.startswith("run_of_"))
        print(
            f"a {run['eager_s']:g} s eager run: {run['compiled_warm_s']:.1f} s compiled (warm cache), "
            f"{run['compiled_cold_s']:.1f} s (cold)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config", default="reference", help="a YAML config, or 'reference' (the main job's shape)"
    )
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=5, help="steps per variant per round")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--matmul-n", type=int, default=None, help="matmul size (default 1024 CPU, 8192 GPU)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="eager only")
    ap.add_argument(
        "--no-compile-cost",
        dest="compile_cost",
        action="store_false",
        help="skip the cold/warm compile-cost child processes (about a minute cold on a CPU)",
    )
    ap.add_argument("--run-seconds", type=float, default=50.0, help="eager run length for the pay-off line")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--_compile-probe", dest="probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="config overrides, e.g. train.batch_size=64")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.probe:
        print(json.dumps(compile_probe(a)))
        return
    res = measure(a)
    print(json.dumps(res, indent=2)) if a.json else show(res)


if __name__ == "__main__":
    main()
