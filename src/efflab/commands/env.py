"""`efflab env`: what a bug report needs -- versions, device, threads, BLAS."""

from __future__ import annotations

import importlib
import os
import platform
import sys

PACKAGES = (
    "efflab",
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "tokenizers",
    "peft",
    "safetensors",
    "numpy",
    "scipy",
    "pydantic",
    "yaml",
    "tqdm",
)


def register(sub) -> None:
    p = sub.add_parser(
        "env",
        help="versions, device, threads and BLAS, for bug reports",
        description="Print the environment efflab runs in (paste it into a bug report).",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_env)


def _version(name: str) -> str | None:
    try:
        mod = importlib.import_module(name)
    except Exception:  # not installed or broken: say so, never fail
        return None
    return str(getattr(mod, "__version__", "?"))


def _blas(torch) -> str:
    """The BLAS/LAPACK backends torch was built with (from torch.__config__.show())."""
    import re

    cfg = torch.__config__.show()
    found = [m.group(0) for m in re.finditer(r"(BLAS_INFO|LAPACK_INFO)=[^,\s]+", cfg)]
    for line in cfg.splitlines():
        line = line.strip().lstrip("- ")
        if line.startswith(
            ("Intel(R) oneAPI Math Kernel", "Intel(R) Math Kernel", "Intel(R) MKL-DNN", "OpenMP")
        ):
            found.append(line.split(" (Git Hash")[0].split("-Product Build")[0].split(" Product Build")[0])
    found.append(f"torch.backends.mkl {'on' if torch.backends.mkl.is_available() else 'off'}")
    return "; ".join(dict.fromkeys(found))


def environment() -> dict:
    """Versions, platform, CPU threads, BLAS and accelerator of this process."""
    out = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "env_threads": {
            k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if os.environ.get(k)
        },
        "packages": {name: _version(name) for name in PACKAGES},
    }
    try:
        import torch
    except ImportError:
        out["device"] = "torch not installed"
        return out
    out["torch_threads"] = torch.get_num_threads()
    out["torch_interop_threads"] = torch.get_num_interop_threads()
    out["blas"] = _blas(torch)
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        out["device"] = {
            "type": "cuda",
            "count": n,
            "cuda": torch.version.cuda,
            "names": [torch.cuda.get_device_name(i) for i in range(n)],
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        out["device"] = {"type": "mps"}
    else:
        out["device"] = {"type": "cpu"}
    return out


def cmd_env(args) -> int:
    env = environment()
    if args.json:
        from efflab.cli import emit_json

        emit_json(env)
        return 0
    print(f"python       {env['python']} on {env['platform']} ({env['machine']}), {env['cpu_count']} CPUs")
    for name, v in env["packages"].items():
        print(f"{name:<12} {v or 'not installed'}")
    if "torch_threads" in env:
        extra = "".join(f", {k}={v}" for k, v in env["env_threads"].items())
        print(f"threads      torch {env['torch_threads']} (interop {env['torch_interop_threads']}){extra}")
        print(f"blas         {env['blas']}")
    dev = env["device"]
    if isinstance(dev, dict) and dev.get("type") == "cuda":
        print(
            f"device       cuda {dev['cuda']}: {dev['count']} x {', '.join(dict.fromkeys(dev['names']))} "
            f"(capability {dev['capability']}, bf16 {'yes' if dev['bf16'] else 'no'})"
        )
    else:
        print(f"device       {dev['type'] if isinstance(dev, dict) else dev}")
    return 0
