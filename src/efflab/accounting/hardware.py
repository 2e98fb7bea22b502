"""Accelerator table and the cost of a FLOP budget: GPU-hours, wall-clock days, dollars, energy.

    gpu_hours  = FLOPs / (peak FLOP/s x MFU) / 3600
    wall_days  = gpu_hours / K GPUs / 24
    cost_usd   = gpu_hours x price per GPU-hour
    energy_mwh = TDP (W) x gpu_hours x PUE / 1e6

Peaks are dense tensor-core figures (never the "with sparsity" figure, which NVIDIA datasheets
print first and which is exactly 2x the dense one): BF16 for every accelerator, and FP8 where the
accelerator has FP8 tensor cores (Hopper, Blackwell). MFU is stated against the peak of the precision
the run's matmuls used: a run trained in FP8 (DeepSeek-V3) is measured against the FP8 peak, twice the
BF16 one, so the same GPU-hours mean half the BF16-relative MFU. Prices are always a parameter; the defaults
below are assumptions stated with their source, to be overridden with the user's real rate.

Assumptions and their sources:
- DEFAULT_MFU = 0.40. State-of-the-art frameworks reach 38-55% MFU (efflab's starting claims); Epoch AI's
  median hardware utilisation over notable training runs is 0.375 (~0.4). The Llama 3 405B run
  reported 38-43% (Llama 3 paper, Table 4).
- DEFAULT_PUE = 1.2: an assumption for a modern AI data centre, between Google's reported fleet-wide
  trailing-twelve-month PUE of ~1.10 (Google 2024 Environmental Report) and the Uptime Institute's
  2023 industry average of ~1.58. Energy counts accelerator board power (TDP) only, times PUE:
  host CPUs, networking and storage are not included, so it is a lower bound on the facility's draw.
- Default prices: typical 2025-26 on-demand rental rates at specialised GPU clouds (e.g. the ranges
  in mercatus-ai.com "Cloud GPU pricing" 2026: A100 80GB $1.10-1.50, H100 SXM $2.50-3.50,
  H200 $3.50-4.50), the DeepSeek-V3 report's $2/H800-hour, and Google Cloud TPU on-demand list
  prices per chip-hour. Long-term contracts are cheaper, hyperscaler on-demand dearer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from efflab.errors import Problems, UserError, suggest

DEFAULT_MFU = 0.40  # 38-55% state of the art; Epoch AI median 0.375: see module docstring
DEFAULT_PUE = 1.2  # assumption: see module docstring


@dataclass(frozen=True)
class GPU:
    """One accelerator. peak_flops: dense BF16 FLOP/s; peak_flops_fp8: dense FP8 FLOP/s (None: no FP8
    tensor cores); tdp_w: board power (W); price: $ per GPU-hour."""

    name: str
    description: str
    peak_flops: float
    tdp_w: float | None
    price: float | None
    source: str
    price_source: str
    peak_flops_fp8: float | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def peak(self, precision: str = "bf16") -> float:
        """Dense peak FLOP/s for the matmul precision `precision` ("bf16" or "fp8"); UserError if none."""
        key = str(precision).lower()
        if key in PRECISIONS_BF16:
            return self.peak_flops
        if key == "fp8":
            if self.peak_flops_fp8 is None:
                raise UserError(f"{self.name} has no FP8 tensor cores (no FP8 peak); use precision bf16")
            return self.peak_flops_fp8
        raise UserError(f"unknown precision {precision!r}: bf16 or fp8")


PRECISIONS_BF16 = ("bf16", "fp16")  # same tensor-core peak on every accelerator in the table
PRECISIONS = ("bf16", "fp8")


_NV = "NVIDIA datasheet, dense BF16 tensor-core (the sparsity figure is 2x)"

GPUS: dict[str, GPU] = {
    g.name: g
    for g in (
        GPU(
            name="a100",
            description="NVIDIA A100 SXM 80GB",
            peak_flops=312e12,
            tdp_w=400,
            price=1.50,
            source=f"{_NV}: A100 312 TFLOP/s (624 sparse), 400 W SXM",
            price_source="assumption: specialised-cloud on-demand 2025-26",
        ),
        GPU(
            name="h100",
            description="NVIDIA H100 SXM5 80GB",
            peak_flops=989e12,
            tdp_w=700,
            price=2.50,
            source=f"{_NV}: H100 SXM 989 TFLOP/s (1979 sparse), FP8 1979 (3958 sparse), 700 W",
            price_source="assumption: specialised-cloud on-demand 2025-26",
            peak_flops_fp8=1979e12,
        ),
        GPU(
            name="h100-pcie",
            description="NVIDIA H100 PCIe 80GB",
            peak_flops=756e12,
            tdp_w=350,
            price=2.00,
            source=f"{_NV}: H100 PCIe 756 TFLOP/s (1513 sparse), FP8 1513 (3026 sparse), 350 W",
            price_source="assumption: specialised-cloud on-demand 2025-26",
            peak_flops_fp8=1513e12,
        ),
        GPU(
            name="h800",
            description="NVIDIA H800 SXM (export H100: same compute, less NVLink)",
            peak_flops=989e12,
            tdp_w=700,
            price=2.00,
            source="H800 SXM has H100 SXM's tensor cores: 989 TFLOP/s dense BF16, 1979 dense FP8, 700 W",
            price_source="DeepSeek-V3 report (arXiv:2412.19437) Table 1: $2 per H800 GPU-hour",
            peak_flops_fp8=1979e12,
        ),
        GPU(
            name="h200",
            description="NVIDIA H200 SXM 141GB",
            peak_flops=989e12,
            tdp_w=700,
            price=3.50,
            source=f"{_NV}: H200 SXM 989 TFLOP/s (1979 sparse), FP8 1979 (3958 sparse), up to 700 W",
            price_source="assumption: specialised-cloud on-demand 2025-26",
            peak_flops_fp8=1979e12,
        ),
        GPU(
            name="b200",
            description="NVIDIA B200 (HGX, 1000 W)",
            peak_flops=2250e12,
            tdp_w=1000,
            price=5.00,
            source="NVIDIA HGX B200 spec: 2.25 PFLOP/s dense BF16 (4.5 sparse), FP8 4.5 dense (9 sparse), 1000 W",
            price_source="assumption: early Blackwell cloud on-demand rates",
            peak_flops_fp8=4500e12,
        ),
        GPU(
            name="tpu-v4",
            description="Google Cloud TPU v4 (per chip)",
            peak_flops=275e12,
            tdp_w=None,
            price=3.22,
            source="Google Cloud TPU v4 docs: 275 TFLOP/s BF16 per chip; no TDP published",
            price_source="Google Cloud TPU on-demand list price per chip-hour (us-central2)",
        ),
        GPU(
            name="tpu-v5e",
            description="Google Cloud TPU v5e (per chip)",
            peak_flops=197e12,
            tdp_w=None,
            price=1.20,
            source="Google Cloud TPU v5e docs: 197 TFLOP/s BF16 per chip; no TDP published",
            price_source="Google Cloud TPU on-demand list price per chip-hour",
        ),
        GPU(
            name="tpu-v5p",
            description="Google Cloud TPU v5p (per chip)",
            peak_flops=459e12,
            tdp_w=None,
            price=4.20,
            source="Google Cloud TPU v5p docs: 459 TFLOP/s BF16 per chip; no TDP published",
            price_source="Google Cloud TPU on-demand list price per chip-hour",
        ),
    )
}
CPU_NAME = "cpu"
GPU_NAMES = (*GPUS, CPU_NAME)


@functools.lru_cache(maxsize=1)
def measure_cpu_peak(n: int = 1024, repeats: int = 5) -> float:
    """This CPU's fp32 matmul throughput in FLOP/s: the best of `repeats` n x n x n matmuls (2 n^3 FLOPs).

    Measured once per process and cached. Shared machines make this noisy; it is an achievable
    peak for torch on this CPU, not a datasheet figure.
    """
    import time

    import torch

    a = torch.randn(n, n)
    b = torch.randn(n, n)
    a @ b  # warm-up: thread pool, allocator
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def gpu(name: str | GPU) -> GPU:
    """The accelerator called `name` (case-insensitive). `cpu` is measured on the spot (fp32 matmul)."""
    if isinstance(name, GPU):
        return name
    key = str(name).lower().strip()
    if key in GPUS:
        return GPUS[key]
    if key == CPU_NAME:
        return GPU(
            CPU_NAME,
            "this machine's CPU (fp32 matmul, measured)",
            measure_cpu_peak(),
            None,
            None,
            "measured now: best of 5 fp32 1024^3 matmuls with torch",
            "none: pass --price",
        )
    raise UserError(f"unknown GPU {name!r}{suggest(key, GPU_NAMES)}; GPUs: {', '.join(GPU_NAMES)}")


_lookup_gpu = gpu  # `cost` and `implied_mfu` take a parameter named `gpu`


def device_peak_flops(device) -> float | None:
    """Peak FLOP/s of a torch device for MFU: the table entry matching a CUDA device name, the
    measured figure for a CPU, None when the device is not in the table."""
    dev_type = getattr(device, "type", str(device))
    if dev_type == "cpu":
        return measure_cpu_peak()
    if dev_type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device).lower()
    for key, pattern in (
        ("h100-pcie", ("h100", "pcie")),
        ("h100", ("h100",)),
        ("h800", ("h800",)),
        ("h200", ("h200",)),
        ("b200", ("b200",)),
        ("a100", ("a100",)),
    ):
        if all(p in name for p in pattern):
            return GPUS[key].peak_flops
    return None


def _check(p: Problems, *, flops=None, mfu=None, price=None, gpus=None, pue=None, tdp_w=None, gpu_hours=None):
    import math

    def bad(x):
        return not isinstance(x, (int, float)) or isinstance(x, bool) or not math.isfinite(x)

    if flops is not None and (bad(flops) or flops <= 0):
        p.add(f"FLOPs must be a positive number, got {flops!r}")
    if mfu is not None and (bad(mfu) or not 0 < mfu <= 1):
        p.add(f"MFU must be in (0, 1], got {mfu!r} (typical: 0.3-0.55; default {DEFAULT_MFU})")
    if price is not None and (bad(price) or price < 0):
        p.add(f"price per GPU-hour must be >= 0, got {price!r}")
    if gpus is not None and (bad(gpus) or gpus < 1 or gpus != int(gpus)):
        p.add(f"number of GPUs must be a whole number >= 1, got {gpus!r}")
    if pue is not None and (bad(pue) or pue < 1):
        p.add(f"PUE must be >= 1 (1.0 = no overhead), got {pue!r}")
    if tdp_w is not None and (bad(tdp_w) or tdp_w <= 0):
        p.add(f"TDP must be a positive number of watts, got {tdp_w!r}")
    if gpu_hours is not None and (bad(gpu_hours) or gpu_hours <= 0):
        p.add(f"GPU-hours must be a positive number, got {gpu_hours!r}")


def cost(
    flops: float,
    gpu: str | GPU,
    mfu: float = DEFAULT_MFU,
    price: float | None = None,
    gpus: int | None = None,
    pue: float = DEFAULT_PUE,
    tdp_w: float | None = None,
    precision: str = "bf16",
) -> dict:
    """Time, money and energy of `flops` FLOPs on accelerator `gpu` (name or GPU) at model-FLOPs utilisation `mfu`.

    precision: the matmul precision whose dense peak the MFU is stated against ("bf16" or "fp8").

    price: $ per GPU-hour (default: the table's, see `describe_gpus`); gpus: K GPUs for wall-clock
    days; pue: data-centre power usage effectiveness; tdp_w: board power override (W).
    Returns {flops, gpu, peak_flops_per_s, mfu, gpu_hours, wall_days (only with gpus), cost_usd,
    energy_mwh, price_per_gpu_hour, tdp_w, pue, assumptions}. cost_usd / energy_mwh are None when the
    accelerator has no default price / TDP and none was given. Bad input: one UserError naming all.
    """
    p = Problems(header="bad cost input")
    _check(p, flops=flops, mfu=mfu, price=price, gpus=gpus, pue=pue, tdp_w=tdp_w)
    g = peak = None
    try:
        g = _lookup_gpu(gpu)
        peak = g.peak(precision)
    except UserError as e:
        p.extend(e.problems)
    p.raise_if_any()
    price_used = g.price if price is None else float(price)
    tdp = g.tdp_w if tdp_w is None else float(tdp_w)
    gpu_hours = flops / (peak * mfu) / 3600.0
    out = {
        "flops": float(flops),
        "gpu": g.name,
        "precision": str(precision).lower(),
        "peak_flops_per_s": peak,
        "mfu": float(mfu),
        "gpu_hours": gpu_hours,
    }
    if gpus is not None:
        out["gpus"] = int(gpus)
        out["wall_days"] = gpu_hours / int(gpus) / 24.0
    out["cost_usd"] = None if price_used is None else gpu_hours * price_used
    out["energy_mwh"] = None if tdp is None else tdp * gpu_hours * pue / 1e6
    out["price_per_gpu_hour"] = price_used
    out["tdp_w"] = tdp
    out["pue"] = float(pue)
    out["assumptions"] = {
        "peak": g.source,
        "price": "given" if price is not None else g.price_source,
        "mfu": "given"
        if mfu != DEFAULT_MFU
        else "default 0.40 (state of the art 38-55%; Epoch AI median 0.375)",
        "energy": "TDP x GPU-hours x PUE (accelerator board power only)",
    }
    return out


def implied_mfu(flops: float, gpu: str | GPU, gpu_hours: float, precision: str = "bf16") -> float:
    """The MFU a run must have had to spend `flops` FLOPs in `gpu_hours` hours on accelerator `gpu`,
    against the dense peak of `precision` ("bf16", or "fp8" for a run whose matmuls ran in FP8)."""
    p = Problems(header="bad MFU input")
    _check(p, flops=flops, gpu_hours=gpu_hours)
    peak = None
    try:
        peak = _lookup_gpu(gpu).peak(precision)
    except UserError as e:
        p.extend(e.problems)
    p.raise_if_any()
    return flops / (gpu_hours * 3600.0 * peak)


def describe_gpus() -> list[str]:
    """One aligned line per accelerator for `efflab list`: peak, TDP, default price, source."""
    rows = []
    for g in GPUS.values():
        tdp = f"{g.tdp_w:.0f} W" if g.tdp_w else "TDP n/a"
        price = f"${g.price:.2f}/h" if g.price is not None else "no price"
        fp8 = f"{g.peak_flops_fp8 / 1e12:>5.0f} FP8" if g.peak_flops_fp8 else f"{'-':>5} FP8"
        rows.append(
            f"{g.name:<10} {g.peak_flops / 1e12:>6.0f} TFLOP/s  {fp8}  {tdp:<8} {price:<9} {g.description}"
        )
    rows.append(f"{CPU_NAME:<10} {'measured':>6} (fp32 matmul timed on first use; pass --price and --tdp)")
    return rows
