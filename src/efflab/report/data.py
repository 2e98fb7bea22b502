"""What the report reads: SUITE_DIR/compare.json (efflab.compare/2), SUITE_DIR/extrapolate.json
(efflab.extrapolate/2, computed and written when missing) and, for loss curves and ledgers, the run
directories that suite.json lists (metrics.jsonl, ledger.json)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from efflab.errors import UserError
from efflab.extrapolate import extrapolate_suite
from efflab.io import read_json, read_jsonl


@dataclass
class Run:
    name: str
    technique: str
    seed: int | None
    dir: Path
    curve: tuple[list, list] = ((), ())  # (marginal FLOPs, eval loss)
    phases: dict = field(default_factory=dict)  # phase -> FLOPs
    marginal_flops: float | None = None
    total_flops: float | None = None
    final_loss: float | None = None


@dataclass
class SuiteData:
    dir: Path
    compare: dict
    extra: dict
    state: dict
    runs: list[Run]


def _flops(row) -> float | None:
    f = row.get("flops")
    if isinstance(f, dict):
        f = f.get("marginal", f.get("train"))
    return float(f) if isinstance(f, (int, float)) and math.isfinite(f) else None


def read_run(d: Path, name: str, technique: str, seed) -> Run:
    """Loss curve (marginal FLOPs, eval loss) and ledger phases of one run directory."""
    run = Run(name=name, technique=technique, seed=seed, dir=d)
    if (d / "metrics.jsonl").is_file():
        xs, ys = [], []
        for row in read_jsonl(d / "metrics.jsonl"):
            f, y = _flops(row), row.get("eval_loss")
            if f and isinstance(y, (int, float)):
                xs.append(f)
                ys.append(float(y))
        run.curve = (xs, ys)
        run.final_loss = ys[-1] if ys else None
    if (d / "ledger.json").is_file():
        led = read_json(d / "ledger.json")
        run.phases = {k: float(v.get("flops", 0.0)) for k, v in (led.get("phases") or {}).items()}
        run.marginal_flops = led.get("marginal_flops")
        run.total_flops = led.get("total_flops")
    return run


def _arms(cmp: dict) -> dict[str, str]:
    """run name -> arm, from compare.json: frontier points (baseline), techniques' and controls' runs."""
    out = {}
    for p in (cmp.get("frontier") or {}).get("points") or []:
        if p.get("run"):
            out[p["run"]] = "baseline"
    for t, e in (cmp.get("techniques") or {}).items():
        for r in (e or {}).get("runs") or []:
            out[r] = t
    for t, e in (cmp.get("controls") or {}).items():
        for r in (e or {}).get("runs") or []:
            out[r] = {"aa": "A/A", "oversized": "oversized"}.get(t, t)
    return out


def load(
    suite_dir, comparison: dict | None = None, extra: dict | None = None, state: dict | None = None
) -> SuiteData:
    """Everything the report needs from a suite directory (arguments given take precedence)."""
    sdir = Path(suite_dir)
    if comparison is None or comparison.get("schema") != "efflab.compare/2":
        p = sdir / "compare.json"
        if not p.is_file():
            raise UserError(
                f"{sdir}: no compare.json to report on; run `efflab suite FILE --out {sdir}` first"
            )
        comparison = read_json(p)
    if comparison.get("schema") != "efflab.compare/2":
        raise UserError(
            f"{sdir}/compare.json is not efflab.compare/2 (rerun `efflab suite` or `efflab compare`)"
        )
    if extra is None or extra.get("schema") != "efflab.extrapolate/2":
        p = sdir / "extrapolate.json"
        extra = read_json(p) if p.is_file() else None
        if not extra or extra.get("schema") != "efflab.extrapolate/2":
            extra = extrapolate_suite(sdir)
    if state is None:
        state = read_json(sdir / "suite.json") if (sdir / "suite.json").is_file() else {}
    runs = []
    arm_of = _arms(comparison)
    for e in state.get("runs", []):
        d = sdir / e.get("dir", "")
        name = e.get("name", d.name)
        # the arm compare.json used the run for; else suite.json's (learning-rate sweeps and shared
        # teachers / generators are not arms)
        arm = arm_of.get(name)
        if arm is None and e.get("kind") not in ("sweep", "shared"):
            arm = e.get("technique") or e.get("arm")
        if arm and e.get("state") == "complete" and d.is_dir():
            runs.append(read_run(d, name, arm, e.get("seed")))
    return SuiteData(sdir, comparison, extra, state, runs)
