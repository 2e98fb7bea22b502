"""Runs and the models in them: `ModelSource` (a model a technique uses besides the one it trains: a
finished efflab run with its bill, or a model directory / hub id whose bill is unknown), `train_helper`
(a model a recipe trains first), and the run directory itself (`RunDir`, `check_run`, the lock and
`guarded`, from efflab.rundir, re-exported here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from efflab.accounting.ledger import MARGINAL_PHASES, SUNK_PHASES, Ledger
from efflab.data import load_tokenizer
from efflab.errors import UserError
from efflab.hub import is_hub_id
from efflab.io import DamagedFile, read_json
from efflab.models import load_pretrained_config
from efflab.rundir import (  # noqa: F401  (re-exported: the run directory, its checks and its lock)
    CONFIG_HEADER,
    LOCK_NAME,
    STATUSES,
    TOKENIZER_FILES,
    RunDir,
    check_run,
    fail_held,
    guarded,
    held_message,
    ledger_problem,
    locate,
    metrics_order_problem,
    release_held,
    require_run,
    source_problems,
    weights_problems,
)

# =============================================================================================
# a model from somewhere, with its bill (teacher, generator, curriculum reference, dense seed)
# =============================================================================================
UNKNOWN_BILL = "unknown (external model)"
_HASH_WHOLE = 256 << 20  # weight files up to this size are hashed whole; larger: size, head and tail
_HASH_PART = 16 << 20


def weights_identity(model_dir: str | os.PathLike) -> str:
    """sha256 of a model directory's config.json and weight files (.safetensors, .bin): content, not
    dates or the directory's name. A file over 256 MiB contributes its name, size and first and last
    16 MiB (hashing a multi-GB checkpoint whole would take longer than the work it keys)."""
    import hashlib

    d = Path(model_dir)
    h = hashlib.sha256()
    h.update((d / "config.json").read_bytes())
    for f in sorted(d.glob("*.safetensors")) + sorted(d.glob("*.bin")):
        size = f.stat().st_size
        h.update(f"{f.name}\0{size}\0".encode())
        with open(f, "rb") as fh:
            if size <= _HASH_WHOLE:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    h.update(chunk)
            else:
                h.update(fh.read(_HASH_PART))
                fh.seek(size - _HASH_PART)
                h.update(fh.read())
    return h.hexdigest()


@dataclass
class Bill:
    """What a finished efflab run cost, from its ledger: `flops` its ledger total (model FLOPs as
    docs/conventions.md section 3 counts them, its own sunk costs included), `tokens` its train tokens,
    `seconds` the seconds charged to the phases that total counts (eval excluded, as in the total)."""

    flops: float
    tokens: float
    seconds: float

    @classmethod
    def of_ledger(cls, ledger) -> Bill:
        phases = ledger.phases()
        secs = sum(v.seconds for k, v in phases.items() if k in MARGINAL_PHASES + SUNK_PHASES)
        return cls(float(ledger.total), float(ledger.tokens("train")), float(secs))


@dataclass
class ModelSource:
    """A model a technique uses besides the one it trains: a finished efflab run (its model/ and the bill
    on its ledger) or a Hugging Face model directory or hub id (bill unknown, and said so)."""

    role: str  # the config key it came from ("distill.teacher", "synthetic.generator", ...)
    given: str  # the path or hub id as given
    path: Path  # the local directory: the run directory, or the model directory
    kind: str  # "efflab-run" | "hf-model"
    model_dir: Path  # what from_pretrained loads
    config: dict  # the model's config.json
    tokenizer_dir: Path | None  # model_dir when it holds tokenizer files, else None
    bill: Bill | None  # None: unknown (external model)
    manifest: dict = field(default_factory=dict)  # an efflab run's manifest ({} otherwise)
    run_config: dict = field(default_factory=dict)  # an efflab run's resolved config.yaml ({} otherwise)
    weights_here: bool = True  # False: a hub model resolved without fetching its weights (no identity)
    _identity: str | None = field(default=None, repr=False)

    @property
    def identity(self) -> str:
        """The one weights hash (`weights_identity`): keys the logit, corpus and score caches."""
        if not self.weights_here:
            raise RuntimeError(f"{self.role} {self.given}: resolved without its weights; no identity")
        if self._identity is None:
            self._identity = weights_identity(self.model_dir)
        return self._identity

    @property
    def pretrain_flops(self) -> float | None:
        return self.bill.flops if self.bill is not None else None

    @property
    def requested_vocab(self) -> int | None:
        """An efflab run's data.vocab_size (what its tokenizer asked for), else None."""
        v = (self.run_config.get("data") or {}).get("vocab_size")
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    @property
    def tokenizer_hash(self) -> str | None:
        """The tokenizer hash an efflab run recorded in its manifest, else None."""
        return (self.manifest.get("data") or {}).get("tokenizer_hash")

    def hf_config(self, trust_remote_code: bool = False):
        """The transformers config object of the model (AutoConfig)."""

        return load_pretrained_config(str(self.model_dir), trust_remote_code)

    def load_tokenizer(self):
        """The tokenizer saved with the model, or None when its directory has none."""
        if self.tokenizer_dir is None:
            return None

        return load_tokenizer(str(self.tokenizer_dir))

    def bill_text(self) -> str:
        if self.bill is None:
            return UNKNOWN_BILL
        return f"{self.bill.flops:.4g} FLOPs, {self.bill.tokens:.4g} tokens, {self.bill.seconds:.1f} s (its ledger)"

    def describe(self) -> dict:
        return {
            "role": self.role,
            "path": str(self.path),
            "kind": self.kind,
            "model_dir": str(self.model_dir),
            "identity": self.identity if self.weights_here else None,
            "pretrain": UNKNOWN_BILL
            if self.bill is None
            else {"flops": self.bill.flops, "tokens": self.bill.tokens, "seconds": self.bill.seconds},
        }

    # ---- finding and checking ---------------------------------------------------------------------
    problems = staticmethod(source_problems)  # every problem with a path, found before any work starts

    @classmethod
    def resolve(
        cls, path: str | os.PathLike, role: str, *, tokenizer: bool = False, weights: bool = True
    ) -> ModelSource:
        """The model at `path` (a finished efflab run, a local model directory, a hub id) for config key
        `role`; UserError naming every problem (`problems`) when it cannot be used. `weights=False`: a
        hub model's weights are not fetched (enough for its config and bill: estimates)."""
        probs = cls.problems(path, role, tokenizer=tokenizer)
        if probs:
            raise UserError(probs)
        p, model_dir, is_run = locate(path, weights=weights)
        weights_here = weights or not is_hub_id(str(path))
        p, model_dir = p.resolve(), model_dir.resolve()
        try:
            config = read_json(model_dir / "config.json")
        except DamagedFile as e:
            raise UserError(f"{role} {path}: {e}") from None
        tok = model_dir if any((model_dir / f).is_file() for f in TOKENIZER_FILES) else None
        if not is_run:
            return cls(
                role, str(path), p, "hf-model", model_dir, config, tok, None, weights_here=weights_here
            )

        rd = RunDir(p)
        try:
            bill = Bill.of_ledger(Ledger.load(rd.ledger_path))
            manifest = rd.read_manifest()
        except (DamagedFile, OSError, ValueError) as e:
            raise UserError(f"{role} {path}: {e}") from None
        try:  # what the run was configured with (its data.vocab_size); {} when unreadable
            run_config = rd.read_config() if rd.config_path.is_file() else {}
        except (DamagedFile, OSError):
            run_config = {}
        return cls(
            role, str(path), p, "efflab-run", model_dir, config, tok, bill, manifest, run_config, weights_here
        )


def run_is_complete(path: str | os.PathLike) -> bool:
    """True when `path` holds an efflab run whose manifest says complete."""
    return RunDir(path).status() == "complete"


def train_helper(
    main, cfg, out_dir: str | os.PathLike, *, role: str, accelerator=None, log=print, tokenizer: bool = False
) -> ModelSource:
    """A model a recipe trains first (teacher, generator, reference): `main` (the baseline recipe's main,
    passed in so runs never imports a recipe) trains `cfg` into `out_dir`, resuming what is there, unless
    a complete run is there already; then every process waits for it before anyone reads it."""
    out_dir = Path(out_dir)
    if not run_is_complete(out_dir):
        log(f"training {role} first (baseline recipe) -> {out_dir}")
        main(cfg, out=out_dir, resume=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()  # the main process writes the ledger and manifest last
    return ModelSource.resolve(out_dir, role, tokenizer=tokenizer)
