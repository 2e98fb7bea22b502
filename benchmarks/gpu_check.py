"""One GPU check, at most ~10 minutes on one H100/H200: MFU of the dense gpu config in bf16 with fused
AdamW and torch.compile, the MoE/dense step ratio on CUDA, generation tokens/s (efflab's batched
sampler against transformers' `model.generate` at the same batch), and peak memory, in one JSON.

    python benchmarks/gpu_check.py                          # on a GPU machine: writes gpu_check.json
    python benchmarks/gpu_check.py --out runs/gpu_check.json
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/smoke.json   # tiny shapes on a CPU, seconds:
                                                                       # the test that keeps it working

Sections (each timed, its peak CUDA memory recorded; one that fails records its error and the
others still run):
- `dense`: configs/baseline/gpu.yaml (8 layers x 512, batch 64 x 512) through efflab's step as the
  loop runs it (accelerate bf16 autocast over fp32 weights, fused AdamW, clipping), eager and
  compiled, interleaved rounds (benchmarks/throughput.py). MFU = model FLOP/s (accounting layer,
  docs/conventions.md section 2: train = 3 x forward, attention in full) / the datasheet dense BF16 peak of
  the device (accounting/hardware.py). Also the bf16 matmul rate measured here and the first
  compiled step's seconds (compile included, inductor cache as found).
- `moe`: configs/moe/gpu.yaml against its dense partner at equal active FLOPs, forward + backward
  under bf16 autocast, for transformers' stock implementations and efflab's block with the
  implementation `auto` measures and chooses (benchmarks/moe.py).
- `generation`: configs/synthetic/gpu.yaml's model (random weights, EOS off), 256 prompts of 64
  tokens, 128 new tokens each, top-p 0.95 under bf16 autocast: efflab's `generate_batch` and
  transformers' `generate` (KV cache, sampling) at the same batch, tokens/s of each.
Goals (issue: "Speed where the main job spends its time"): MFU >= 0.35 for the compiled dense
model, MoE/dense <= 1.2 for efflab's choice.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
import traceback
from argparse import Namespace
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _bench(name: str):
    """A sibling benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"efflab_bench_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# the shapes of each mode: the real gpu configs, or tiny ones that run on a CPU in seconds
GPU = {
    "dense": {
        "config": str(REPO / "configs/baseline/gpu.yaml"),
        "overrides": [],
        "rounds": 5,
        "steps": 10,
        "warmup": 3,
        "compile": True,
        "matmul_n": 8192,
    },
    "moe": {"config": str(REPO / "configs/moe/gpu.yaml"), "overrides": [], "batch": None, "rounds": 5},
    "generation": {
        "config": str(REPO / "configs/synthetic/gpu.yaml"),
        "overrides": [],
        "batch": 256,
        "prompt": 64,
        "new": 128,
    },
}
TINY = ["model.depth=1", "model.aspect=32", "model.head_dim=16", "data.vocab_size=512", "data.seq_len=16"]
SMOKE = {  # the same code paths at 1 layer x 32 (compile off: a cold CPU compile takes a minute)
    "dense": {
        "config": str(REPO / "configs/baseline/tiny.yaml"),
        "overrides": [*TINY, "train.batch_size=2", 'train.fused_optimizer="on"'],
        "rounds": 1,
        "steps": 1,
        "warmup": 1,
        "compile": False,
        "matmul_n": 64,
    },
    "moe": {"config": str(REPO / "configs/moe/tiny.yaml"), "overrides": TINY, "batch": 2, "rounds": 1},
    "generation": {
        "config": str(REPO / "configs/synthetic/tiny.yaml"),
        "overrides": [*TINY, "synthetic.prompt_len=4"],
        "batch": 2,
        "prompt": 4,
        "new": 4,
    },
}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gib(dev: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None


# =============================================================================================
# sections
# =============================================================================================
def dense_section(dev: torch.device, s: dict) -> dict:
    """Eager and compiled step of the dense gpu config (throughput.py's interleaved measurement)."""
    tp = _bench("throughput")
    a = Namespace(
        config=s["config"],
        overrides=s["overrides"],
        device=dev.type,
        threads=torch.get_num_threads(),
        rounds=s["rounds"],
        steps=s["steps"],
        warmup=s["warmup"],
        matmul_n=s["matmul_n"],
        compile=s["compile"],
        compile_cost=False,
        run_seconds=50.0,
    )
    # the first compiled step (compile included) of a fresh model, before the interleaved measurement
    first = None
    if s["compile"]:
        cfg = tp.load_cfg(a.config, a.overrides)
        tr = tp.Trainer(cfg, tp.make_accelerator(dev), compile_model=True)
        _sync(dev)
        t = time.perf_counter()
        tr.step()
        _sync(dev)
        first = time.perf_counter() - t
        del tr
    res = tp.measure(a)
    res["first_compiled_step_s"] = first
    res["fused_adamw"] = dev.type == "cuda" or any("fused_optimizer" in o for o in s["overrides"])
    return res


def moe_section(dev: torch.device, s: dict) -> dict:
    mb = _bench("moe")
    a = Namespace(
        config=s["config"],
        overrides=s["overrides"],
        device=dev.type,
        precision="auto",
        batch=s["batch"],
        rounds=s["rounds"],
        warmup=1,
        threads=None,
        impls="efflab,efflab_grouped",
        json=True,
    )
    res = mb.run_benchmark(a)
    res["efflab_choice_vs_dense"] = res["ratio_vs_dense"].get(res["efflab_choice"])
    return res


def generation_section(dev: torch.device, s: dict) -> dict:
    """efflab's batched sampler and transformers' generate, same model, prompts, tokens and autocast."""
    from efflab.accounting.flops import generation_flops
    from efflab.config import load_config
    from efflab.models import build_model
    from efflab.techniques.synthetic import generate_batch

    cfg = load_config(s["config"], s["overrides"], recipe="synthetic")
    torch.manual_seed(0)
    model = build_model(cfg, cfg.data.vocab_size).to(dev).eval()
    B, P, N = s["batch"], s["prompt"], s["new"]
    prompts = torch.randint(0, cfg.data.vocab_size, (B, P))
    bf16 = dev.type == "cuda"

    def autocast():
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    def efflab_batched():
        generate_batch(
            model,
            prompts.tolist(),
            max_new_tokens=N,
            stop_at_eos=False,
            top_p=0.95,
            generator=torch.Generator(dev).manual_seed(0),
            autocast=autocast,
        )

    ids = prompts.to(dev)

    def hf_generate():
        with autocast(), torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=N,
                min_new_tokens=N,
                do_sample=True,
                top_p=0.95,
                top_k=0,
                use_cache=True,
                pad_token_id=0,
            )
        if out.shape != (B, P + N):
            raise RuntimeError(f"generate returned {tuple(out.shape)}, not {(B, P + N)}")

    res = {
        "config": s["config"],
        "batch": B,
        "prompt_tokens": P,
        "new_tokens": N,
        "top_p": 0.95,
        "precision": "bf16 autocast" if bf16 else "fp32",
        "generation_flops": generation_flops(model.config, P, N, n_seqs=B),
        "flop_convention": "accounting.flops.generation_flops (KV cache: prefill + one position per token)",
    }
    for name, fn in (("efflab_generate_batch", efflab_batched), ("hf_generate", hf_generate)):
        fn()  # warm-up (allocator, kernels)
        _sync(dev)
        t = time.perf_counter()
        fn()
        _sync(dev)
        dt = time.perf_counter() - t
        res[name] = {"seconds": dt, "tokens_per_s": B * N / dt}
    res["efflab_over_hf_tokens_per_s"] = (
        res["efflab_generate_batch"]["tokens_per_s"] / res["hf_generate"]["tokens_per_s"]
    )
    return res


SECTIONS = {"dense": dense_section, "moe": moe_section, "generation": generation_section}


# =============================================================================================
# the check
# =============================================================================================
def run_check(*, cpu_smoke: bool, only: list[str] | None = None) -> dict:
    """Every section on CUDA (or, with cpu_smoke, tiny shapes on the CPU); returns the JSON object."""
    dev = torch.device("cpu" if cpu_smoke else "cuda")
    shapes = SMOKE if cpu_smoke else GPU
    import transformers

    from efflab import __version__
    from efflab.accounting.hardware import device_peak_flops

    out = {
        "cpu_smoke": cpu_smoke,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.machine()})",
        "peak_bf16_flops": device_peak_flops(dev) if dev.type == "cuda" else None,
        "efflab": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "sections": {},
    }
    threads = torch.get_num_threads()
    if cpu_smoke:
        torch.set_num_threads(1)  # a smoke test on a shared CPU: one thread does not thrash
    for name, fn in SECTIONS.items():
        if only and name not in only:
            continue
        _reset_peak(dev)
        t = time.perf_counter()
        try:
            r = fn(dev, shapes[name])
        except Exception as e:  # one failing section must not lose the others' figures
            r = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-4000:]}
        r["section_seconds"] = time.perf_counter() - t
        r["peak_memory_gib"] = _peak_gib(dev)
        out["sections"][name] = r
        print(
            f"[gpu_check] {name}: {r['section_seconds']:.1f} s"
            + (f"  ERROR {r['error']}" if "error" in r else ""),
            flush=True,
        )
    torch.set_num_threads(threads)
    out["summary"] = summary(out["sections"])
    return out


def summary(sections: dict) -> dict:
    d, m, g = (sections.get(k, {}) for k in ("dense", "moe", "generation"))
    dv = d.get("variants", {})
    mfu = (dv.get("compiled") or dv.get("eager") or {}).get("mfu")
    ratio = m.get("efflab_choice_vs_dense")
    return {
        "mfu_compiled": dv.get("compiled", {}).get("mfu"),
        "mfu_eager": dv.get("eager", {}).get("mfu"),
        "moe_choice": m.get("efflab_choice"),
        "moe_over_dense": ratio,
        "generation_efflab_over_hf": g.get("efflab_over_hf_tokens_per_s"),
        "goal_mfu_0.35": None if mfu is None else mfu >= 0.35,
        "goal_moe_1.2": None if ratio is None else ratio <= 1.2,
        "errors": [k for k, v in sections.items() if "error" in v],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gpu_check.json", help="the JSON written")
    ap.add_argument(
        "--cpu-smoke", action="store_true", help="tiny shapes on the CPU (a test, not a measurement)"
    )
    ap.add_argument("--only", default="", help="comma-separated sections: dense,moe,generation")
    a = ap.parse_args(argv)
    only = [x for x in a.only.split(",") if x]
    bad = [x for x in only if x not in SECTIONS]
    if bad:
        print(f"gpu_check: error: unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}")
        return 2
    if not a.cpu_smoke and not torch.cuda.is_available():
        print("gpu_check: error: no CUDA device here (--cpu-smoke runs the tiny CPU mode)")
        return 2
    res = run_check(cpu_smoke=a.cpu_smoke, only=only)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=2, default=str))
    print(json.dumps(res["summary"], indent=2))
    print(f"[gpu_check] wrote {a.out}")
    return 1 if res["summary"]["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
