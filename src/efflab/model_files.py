"""A model directory's files, checked without loading them: weights files cut short or not what their name
says, a missing config or tokenizer, a load setting this machine cannot honour. Used at config time (the
run config names every problem before any work) and by the run directory's checks (efflab.runs).

Knows no efflab module but errors and hub, so that config validation and the technique sections can use it.
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
