"""A model directory (local, or a hub id): its files checked without loading them (weights files cut short
or not what their name says, a missing config or tokenizer, a load setting this machine cannot honour),
and the model loaded (`load_pretrained`, `load_pretrained_config`, `torch_dtype`). The checks run at
config time (the run config names every problem before any work) and in the run directory's checks
(efflab.rundir).

Knows no efflab module but errors and hub, so that config validation, the technique sections and the
model builders (efflab.moe_model, efflab.models) can all use it.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path

from efflab import hub
from efflab.errors import UserError

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".pkl")

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
)


# =============================================================================================
# weights files, checked without loading them
# =============================================================================================
def weights_file_problem(path: str | os.PathLike) -> str | None:
    """Why a weights file cannot be read ('truncated', 'not a safetensors file', ...), or None."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if p.suffix == ".safetensors":
                if len(head) < 8:
                    return f"{p}: truncated safetensors file ({size} bytes)"
                (n,) = struct.unpack("<Q", head)
                if n > size - 8:
                    return f"{p}: truncated safetensors file (header of {n} bytes, file of {size})"
                try:
                    header = json.loads(f.read(n).decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    return f"{p}: not a safetensors file (unreadable header)"
                ends = [
                    v["data_offsets"][1]
                    for k, v in header.items()
                    if k != "__metadata__" and isinstance(v, dict) and len(v.get("data_offsets", ())) == 2
                ]
                need = 8 + n + max(ends, default=0)
                if size < need:
                    return f"{p}: truncated safetensors file ({size} of {need} bytes)"
                return None
    except OSError as e:
        return f"{p}: unreadable ({e.strerror or e})"
    # torch.save writes a zip archive; its central directory is at the end, so a cut file fails here
    if not zipfile.is_zipfile(p):
        return f"{p}: truncated or not a torch file ({size} bytes)"
    try:
        with zipfile.ZipFile(p) as z:
            for info in z.infolist():
                if info.header_offset + info.compress_size > size:
                    return f"{p}: truncated torch file"
    except (zipfile.BadZipFile, OSError):
        return f"{p}: truncated or not a torch file ({size} bytes)"
    return None


def weights_problems(directory: str | os.PathLike) -> list[str]:
    """Problems of every weights file directly inside `directory` (a model or checkpoint folder)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    return [msg for f in files if (msg := weights_file_problem(f))]


def check_pretrained_dir(path: str) -> list[str]:
    """Problems with a local model directory or hub id (missing, no config, no weights). A hub id is
    fetched without its weights here (config and tokenizer); the weights come when the model loads."""
    if hub.is_hub_id(path):
        try:
            local = hub.local_dir(path, weights=False)
        except UserError as e:
            return [f"pretrained model {p}" for p in e.problems]
        return [] if (Path(local) / "config.json").is_file() else [f"pretrained model {path}: no config.json"]
    p = Path(path).expanduser()
    if not p.is_dir():
        return [f"pretrained model {path}: no such directory (a local directory written by save_pretrained)"]
    probs = []
    if not (p / "config.json").is_file():
        probs.append(f"pretrained model {path}: no config.json")
    if not any((p / w).is_file() for w in WEIGHT_FILES) and not list(p.glob("model-*.safetensors")):
        probs.append(f"pretrained model {path}: no weights (expected one of {', '.join(WEIGHT_FILES[:3])})")
    # truncated or corrupt weights are named before any work (never loaded to find out)
    return probs + [f"pretrained model {path}: {w}" for w in weights_problems(p)]


def pretrained_tokenizer_problems(path: str) -> list[str]:
    """A pretrained directory must carry its tokenizer when the data pipeline is to use it."""
    p = Path(hub.local_dir(path, weights=False)).expanduser()
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if p.is_dir() and not any((p / n).is_file() for n in names):
        return [
            f"pretrained model {path}: no tokenizer files ({', '.join(names)}); save the tokenizer "
            f"with the model, or set data.tokenizer to a tokenizer directory"
        ]
    return []


def check_pretrained_tokenizer(path: str) -> None:
    probs = pretrained_tokenizer_problems(path)
    if probs:
        raise UserError(probs)


def loading_problems(cfg) -> list[str]:
    """Config-time problems with how the pretrained model loads (4-bit QLoRA needs LoRA, CUDA and
    bitsandbytes)."""
    m = cfg.model
    if not getattr(m, "load_in_4bit", False):
        return []
    import importlib.util

    import torch

    out = []
    if not m.pretrained:
        out.append("model.load_in_4bit (QLoRA) quantizes a pretrained model: set model.pretrained")
    if not cfg.lora.r:
        out.append("model.load_in_4bit (QLoRA) trains LoRA adapters on a frozen 4-bit base: set lora.r > 0")
    if not torch.cuda.is_available():
        out.append(
            "model.load_in_4bit (QLoRA) runs on a CUDA GPU only (bitsandbytes 4-bit kernels); this "
            "machine has none: drop it, or use plain LoRA (lora.r) with model.dtype"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        out.append("model.load_in_4bit (QLoRA) needs bitsandbytes: pip install 'efflab[qlora]'")
    return out


def load_pretrained_config(path: str, trust_remote_code: bool = False):
    from transformers import AutoConfig

    p = Path(hub.local_dir(path, weights=False)).expanduser()
    if not (p / "config.json").is_file():
        raise UserError(f"pretrained model {path}: no config.json")
    try:
        return AutoConfig.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except Exception as e:
        raise UserError(f"pretrained model {path}: unreadable config ({type(e).__name__}: {e})") from None


DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def torch_dtype(choice: str = "auto", *, trained: bool = False):
    """The torch dtype a pretrained model loads in, for `model.dtype` = auto | bf16 | fp16 | fp32.

    auto: bf16 on a CUDA GPU that supports it (an 8B teacher takes 16 GB, not 32), fp32 on a CPU. A
    fully fine-tuned model (`trained=True`) keeps fp32 weights under auto: AdamW updates smaller than
    bf16's resolution (~0.4% of a weight) would vanish; its matmuls still run in bf16 through
    accelerate's autocast. Frozen weights (teacher, generator, reference, a LoRA base) take bf16.
    """
    import torch

    if choice == "auto":
        gpu_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 and not trained else torch.float32
    return getattr(torch, DTYPES[choice])


def load_pretrained(
    path: str,
    *,
    dtype=None,
    trust_remote_code: bool = False,
    attn_implementation: str | None = None,
    load_in_4bit: bool = False,
):
    """AutoModelForCausalLM.from_pretrained on a local directory or hub id, with clear errors for bad input.

    dtype: a torch dtype or "auto" | "bf16" | "fp16" | "fp32" (default fp32). load_in_4bit: QLoRA's
    NF4 base with double quantization and bf16 compute (bitsandbytes, CUDA), placed on the current GPU.
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = hub.local_dir(path)
    probs = check_pretrained_dir(path)
    if probs:
        raise UserError(probs)
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype)
    kw = {"trust_remote_code": trust_remote_code, "dtype": dtype or torch.float32}
    if attn_implementation:
        kw["attn_implementation"] = attn_implementation
    if load_in_4bit:  # Dettmers et al. 2023 (QLoRA), section 3: NF4, double quantization, bf16 compute
        from transformers import BitsAndBytesConfig

        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kw["dtype"] = torch.bfloat16
        kw["device_map"] = {"": torch.cuda.current_device()}
    try:
        return AutoModelForCausalLM.from_pretrained(str(Path(path).expanduser()), **kw)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"pretrained model {path}: could not load ({type(e).__name__}: {e})") from None
