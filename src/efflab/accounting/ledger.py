"""The Ledger: every FLOP a technique spends, by phase (docs/conventions.md section 3).

Phases and the two views:

    phase                   charged by                                   marginal  total
    train                   every optimizer step of the trained model    yes       yes
    teacher_forward         distillation teacher logits / logit cache    yes       yes
    generation              synthetic data: generator prefill + decode   yes       yes
    scoring                 curriculum: FLOP-spending difficulty scorer  yes       yes
    sunk.teacher_pretrain   training teacher/generator/reference model   no        yes
    sunk.dense_pretrain     dense checkpoint that MoE upcycling reuses   no        yes
    eval                    held-out evaluation                          shown, never summed

"marginal" answers "the teacher already exists"; "total" answers "we had to train it too".

Two FLOP figures per phase: `flops` are model FLOPs (attention counted in full, the PaLM / Chinchilla /
FlopCounterMode convention every comparison uses); `executed_flops` count causal attention as flash
attention runs it (the masked half of the score and value matmuls skipped). A charge that gives no
executed figure (generation, a sunk bill) executes what it models.

Data parallelism: each rank charges what it computed itself (`charge`); costs that are the same on
every rank (a sunk pretraining bill read from another run) are charged with `shared=True`.
`reduced()` sums per-rank charges over ranks once, and takes shared charges once.

Reuse: an artifact paid for elsewhere (a teacher-logit cache, a synthetic corpus) is recorded with
`record_reuse`: shown, with its source, but never summed again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from efflab.io import atomic_write_json, read_json

MARGINAL_PHASES = ("train", "teacher_forward", "generation", "scoring")
SUNK_PHASES = ("sunk.teacher_pretrain", "sunk.dense_pretrain")
SHOWN_PHASES = ("eval",)
PHASES = MARGINAL_PHASES + SUNK_PHASES + SHOWN_PHASES


@dataclass
class PhaseTotals:
    flops: float = 0.0
    tokens: float = 0.0
    seconds: float = 0.0
    executed_flops: float = 0.0

    def add(self, flops: float, tokens: float, seconds: float, executed_flops: float | None = None) -> None:
        self.flops += float(flops)
        self.tokens += float(tokens)
        self.seconds += float(seconds)
        self.executed_flops += float(flops if executed_flops is None else executed_flops)

    def as_dict(self) -> dict:
        return {
            "flops": self.flops,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "executed_flops": self.executed_flops,
        }


@dataclass
class Ledger:
    """Phases -> {flops, tokens, seconds}. FLOPs follow `conventions` (recorded with the numbers)."""

    conventions: dict = field(default_factory=dict)
    local: dict[str, PhaseTotals] = field(default_factory=dict)  # summed over ranks
    shared: dict[str, PhaseTotals] = field(default_factory=dict)  # same on every rank; taken once
    reuse: list[dict] = field(default_factory=list)  # paid elsewhere: shown, never summed
    extra: dict = field(default_factory=dict)  # free-form counters (e.g. trained vs processed tokens)

    def charge(
        self,
        phase: str,
        flops: float,
        tokens: float = 0,
        seconds: float = 0.0,
        *,
        shared: bool = False,
        executed_flops: float | None = None,
    ):
        """Add model FLOPs (and the tokens and seconds they took) to a phase; `executed_flops`: the same work
        with causal attention as flash attention runs it (default: = flops)."""
        if phase not in PHASES:
            raise ValueError(f"unknown ledger phase {phase!r}; phases: {', '.join(PHASES)}")
        if flops < 0 or tokens < 0 or (executed_flops is not None and executed_flops < 0):
            raise ValueError(
                f"negative charge to {phase}: flops={flops} tokens={tokens} executed={executed_flops}"
            )
        book = self.shared if shared else self.local
        book.setdefault(phase, PhaseTotals()).add(flops, tokens, seconds, executed_flops)

    def record_reuse(self, phase: str, flops: float, source: str, tokens: float = 0, note: str = "") -> None:
        """Show the cost of an artifact paid for elsewhere (cache, corpus) without charging it again."""
        if phase not in PHASES:
            raise ValueError(f"unknown ledger phase {phase!r}")
        self.reuse.append(
            {"phase": phase, "flops": float(flops), "tokens": float(tokens), "source": source, "note": note}
        )

    # ---- views -------------------------------------------------------------------------------
    def phases(self) -> dict[str, PhaseTotals]:
        out: dict[str, PhaseTotals] = {}
        for book in (self.local, self.shared):
            for k, v in book.items():
                out.setdefault(k, PhaseTotals()).add(v.flops, v.tokens, v.seconds, v.executed_flops)
        return out

    def flops(self, phase: str) -> float:
        p = self.phases().get(phase)
        return p.flops if p else 0.0

    def tokens(self, phase: str) -> float:
        p = self.phases().get(phase)
        return p.tokens if p else 0.0

    @property
    def marginal(self) -> float:
        """FLOPs spent by this run: train + teacher_forward + generation + scoring (eval excluded)."""
        return sum(self.flops(p) for p in MARGINAL_PHASES)

    @property
    def total(self) -> float:
        """Marginal plus the sunk pretraining of teachers, generators, references and dense seeds."""
        return self.marginal + sum(self.flops(p) for p in SUNK_PHASES)

    def executed(self, phase: str) -> float:
        """Executed FLOPs of a phase (causal attention halved, as flash attention runs it)."""
        p = self.phases().get(phase)
        return p.executed_flops if p else 0.0

    @property
    def marginal_executed(self) -> float:
        return sum(self.executed(p) for p in MARGINAL_PHASES)

    @property
    def total_executed(self) -> float:
        return self.marginal_executed + sum(self.executed(p) for p in SUNK_PHASES)

    # ---- distribution ------------------------------------------------------------------------
    def reduced(self, accelerator=None) -> Ledger:
        """A copy whose per-rank charges are summed over all data-parallel ranks (seconds: max)."""
        out = copy.deepcopy(self)
        if accelerator is None or getattr(accelerator, "num_processes", 1) <= 1:
            return out
        import torch

        names = list(PHASES)
        vals = torch.zeros(len(names), 4, dtype=torch.float64, device=accelerator.device)
        for i, n in enumerate(names):
            if n in self.local:
                t = self.local[n]
                vals[i, 0], vals[i, 1], vals[i, 2], vals[i, 3] = (
                    t.flops,
                    t.tokens,
                    t.seconds,
                    t.executed_flops,
                )
        summed = accelerator.reduce(vals.clone(), reduction="sum")
        secs = accelerator.gather(vals[:, 2].contiguous().unsqueeze(0)).reshape(-1, len(names)).max(0).values
        out.local = {}
        for i, n in enumerate(names):
            if summed[i, 0] or summed[i, 1] or n in self.local:
                out.local[n] = PhaseTotals(
                    float(summed[i, 0]), float(summed[i, 1]), float(secs[i]), float(summed[i, 3])
                )
        extra_keys = sorted(k for k, v in self.extra.items() if isinstance(v, (int, float)))
        if extra_keys:
            ev = torch.tensor(
                [float(self.extra[k]) for k in extra_keys], dtype=torch.float64, device=accelerator.device
            )
            ev = accelerator.reduce(ev, reduction="sum")
            for k, v in zip(extra_keys, ev.tolist()):
                out.extra[k] = v
        return out

    # ---- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        ph = self.phases()
        return {
            "conventions": self.conventions,
            "phases": {k: ph[k].as_dict() for k in PHASES if k in ph},
            "marginal_flops": self.marginal,
            "total_flops": self.total,
            "marginal_executed_flops": self.marginal_executed,
            "total_executed_flops": self.total_executed,
            "reuse": self.reuse,
            "extra": self.extra,
            "_books": {
                "local": {k: v.as_dict() for k, v in self.local.items()},
                "shared": {k: v.as_dict() for k, v in self.shared.items()},
            },
        }

    @classmethod
    def from_dict(cls, d: dict) -> Ledger:
        books = d.get("_books")
        led = cls(
            conventions=dict(d.get("conventions", {})),
            reuse=list(d.get("reuse", [])),
            extra=dict(d.get("extra", {})),
        )
        if books is None:  # a ledger written by hand or another tool: treat phases as local
            books = {"local": d.get("phases", {}), "shared": {}}
        for name, book in (("local", led.local), ("shared", led.shared)):
            for k, v in books.get(name, {}).items():
                fl = float(v.get("flops", 0))
                book[k] = PhaseTotals(
                    fl,
                    float(v.get("tokens", 0)),
                    float(v.get("seconds", 0)),
                    float(v.get("executed_flops", fl)),
                )  # older ledgers: executed = model
        return led

    def save(self, path) -> None:
        atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> Ledger:
        return cls.from_dict(read_json(path))
