"""Hugging Face hub ids wherever a local model directory is accepted.

`model.pretrained=Qwen/Qwen3-0.6B` (likewise distill.teacher, synthetic.generator, curriculum.reference,
moe.upcycle_from, data.tokenizer) that is not an existing local path is fetched with `huggingface_hub.snapshot_download` into the hub cache (`hf download` uses the
same cache) and replaced by its snapshot directory. Only configs, tokenizer files and safetensors
weights are fetched (no pickled `.bin` weights). With `HF_HUB_OFFLINE=1` a model already in the cache
loads; one that is not is refused with a one-line message.
"""

from __future__ import annotations

import re
from pathlib import Path

from efflab.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name, as the hub spells repository ids
SMALL_FILES = ["*.json", "*.jinja", "*.model", "*.txt", "*.tiktoken", "tokenizer*"]
WEIGHT_FILES = ["*.safetensors"]


def is_hub_id(spec) -> bool:
    """True when `spec` names a hub repository (owner/name) and is not an existing local path."""
    if not isinstance(spec, str) or spec.startswith((".", "/", "~")) or Path(spec).expanduser().exists():
        return False
    return bool(HUB_ID.match(spec))


def local_dir(spec, *, weights: bool = True) -> str:
    """The local directory for `spec`: itself when it is not a hub id, else the hub snapshot directory
    (configs and tokenizer files; safetensors weights too when `weights`). UserError when it cannot be
    fetched (offline and not cached, unknown or gated repository)."""
    if not is_hub_id(spec):
        return spec
    from huggingface_hub import constants, snapshot_download

    patterns = SMALL_FILES + (WEIGHT_FILES if weights else [])
    try:
        return snapshot_download(repo_id=spec, allow_patterns=patterns)
    except Exception as e:  # offline, not found, gated, network down: one line, no traceback
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        if constants.HF_HUB_OFFLINE:
            why = "HF_HUB_OFFLINE is set and it is not in the local hub cache"
        else:
            why = f"could not fetch it from the Hugging Face hub ({type(e).__name__}: {first})"
        raise UserError(
            f"{spec}: not a local directory, and {why}; run `hf download {spec}` where the network is "
            f"reachable (same cache), or give a local directory"
        ) from None
