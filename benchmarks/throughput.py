"""Training throughput of the baseline through efflab's step (accelerate, AdamW, autocast), against
the plain matrix-product rate of the same machine measured in the same run.

    python benchmarks/throughput.py                          # CPU, configs/baseline/small.yaml
    python benchmarks/throughput.py --config configs/baseline/gpu.yaml --device cuda   # MFU on a GPU

Prints tokens/s, achieved model FLOP/s (accounting layer's train FLOPs per token x tokens/s), the
plain fp32 (CPU) or bf16 (GPU) matmul FLOP/s measured here, their ratio, and on a GPU the MFU against
the datasheet dense BF16 peak.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def matmul_rate(device: torch.device, dtype: torch.dtype, n: int, reps: int) -> float:
    """Best-of FLOP/s of an n x n x n matrix product (2 n^3 FLOPs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "configs/baseline/small.yaml"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()

    from accelerate import Accelerator

    from efflab import loop
    from efflab.accounting.flops import train_flops_per_token
    from efflab.accounting.hardware import device_peak_flops
    from efflab.config import load_config
    from efflab.models import build_model

    cfg = load_config(a.config, a.overrides)
    dev = torch.device(a.device)
    acc = Accelerator(cpu=dev.type == "cpu", mixed_precision="bf16" if dev.type == "cuda" else "no")
    torch.manual_seed(0)
    model = build_model(cfg, cfg.data.vocab_size)
    T, B = cfg.data.seq_len, cfg.train.batch_size
    fpt = train_flops_per_token(model.config, T)
    opt = loop.make_optimizer(model, cfg, acc.device)
    model, opt = acc.prepare(model, opt)
    if a.compile:
        model = torch.compile(model)
    ids = torch.randint(0, cfg.data.vocab_size, (B, T), device=acc.device)

    def step():
        with acc.autocast():
            loss = model(input_ids=ids, labels=ids).loss
        acc.backward(loss)
        acc.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(a.warmup):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / a.steps
    tps = B * T / dt
    achieved = tps * fpt
    mm_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    mm = matmul_rate(dev, mm_dtype, 8192 if dev.type == "cuda" else 1024, 10)
    params = sum(p.numel() for p in acc.unwrap_model(model).parameters())
    print(f"config          {a.config}  ({params / 1e6:.2f}M params, batch {B} x {T} tokens, {'fp32' if acc.mixed_precision == 'no' else acc.mixed_precision + ' autocast'})")
    print(f"device          {loop._device_name(acc.device)}")
    print(f"train FLOPs/tok {fpt:.4g}  (DESIGN.md section 5: 3 x forward, attention in full)")
    print(f"step time       {dt * 1e3:.1f} ms")
    print(f"tokens/s        {tps:,.0f}")
    print(f"model FLOP/s    {achieved / 1e9:,.1f} GFLOP/s")
    print(f"matmul FLOP/s   {mm / 1e9:,.1f} GFLOP/s  (plain {str(mm_dtype).split('.')[-1]} matrix product, same run)")
    print(f"ratio           {achieved / mm:.3f}  (model FLOP/s / matmul FLOP/s)")
    peak = device_peak_flops(acc.device)
    if dev.type == "cuda" and peak:
        print(f"MFU             {achieved / peak:.3f}  (vs datasheet dense BF16 peak {peak / 1e12:.0f} TFLOP/s)")


if __name__ == "__main__":
    main()
