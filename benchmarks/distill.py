"""Does distillation pay? The distilled student against the same student trained without a teacher, at
equal student FLOPs, at equal marginal FLOPs (the teacher exists) and at equal total FLOPs (we trained it).

    python benchmarks/distill.py --config configs/distill/small.yaml --out runs/bench-distill [k=v ...]

Runs, in one process (finished runs are reused, so an interrupted benchmark continues):
  distill        the distill recipe as configured (trains its teacher first if `teacher_train`)
  plain@student  the baseline recipe on the same student, data and budget (equal student FLOPs)
  plain@marginal the same baseline with train.budget_flops = distill's marginal FLOPs
  plain@total    the same baseline with train.budget_flops = distill's total FLOPs (teacher training included)
and prints one table of held-out loss against the FLOPs of each view. Every FLOP figure is read from the
runs' ledgers (the accounting layer); nothing is re-derived here. Overrides (k=v) apply to every run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from efflab.accounting.ledger import MARGINAL_PHASES, Ledger
from efflab.config import config_from_dict, load_config
from efflab.recipes import baseline, distill


def _baseline_cfg(cfg, budget_flops: float | None):
    raw = cfg.to_dict()
    raw.pop("distill", None)
    raw["recipe"] = "baseline"
    raw["name"] = None
    if budget_flops is not None:
        raw["train"].update(budget_flops=float(budget_flops), budget_tokens=None, steps=None)
    return config_from_dict(raw, recipe="baseline", source="benchmark baseline")


def _run(main, cfg, out: Path) -> dict:
    res = main(cfg, out=out, resume=out.exists())
    led = Ledger.load(out / "ledger.json")
    return {
        "dir": str(out),
        "final_eval_loss": res["final_eval_loss"],
        "final_eval_bpb": res["final_eval_bpb"],
        "train_tokens": led.tokens("train"),
        "train_flops": led.flops("train"),
        "teacher_forward_flops": led.flops("teacher_forward"),
        "marginal_flops": led.marginal,
        "total_flops": led.total,
        # seconds the run spent on its marginal phases, from its ledger (also for a reused finished run)
        "seconds": sum(p.seconds for k, p in led.phases().items() if k in MARGINAL_PHASES),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/distill/small.yaml")
    ap.add_argument("--out", default="runs/bench-distill")
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    out = Path(a.out)
    cfg = load_config(a.config, a.overrides, recipe="distill")
    if cfg.distill.teacher_train is not None and not cfg.distill.teacher_train.out:
        cfg.distill.teacher_train.out = str(out / "teacher")
    rows = {"distill": _run(distill.main, cfg, out / "distill")}
    kd = rows["distill"]
    rows["plain@student"] = _run(baseline.main, _baseline_cfg(cfg, None), out / "plain-student")
    rows["plain@marginal"] = _run(
        baseline.main, _baseline_cfg(cfg, kd["marginal_flops"]), out / "plain-marginal"
    )
    rows["plain@total"] = _run(baseline.main, _baseline_cfg(cfg, kd["total_flops"]), out / "plain-total")
    manifest = json.loads((out / "distill" / "manifest.json").read_text())
    teacher = manifest["distill"]["teacher"]
    print(
        f"\nteacher: {teacher['path']} ({teacher['kind']}), eval loss {manifest['distill']['teacher_eval_loss']:.4f}; "
        f"sunk pretraining {teacher['teacher_pretrain'] if isinstance(teacher['teacher_pretrain'], str) else format(teacher['teacher_pretrain'], '.3e')}"
    )
    print(
        "\n| run | eval loss (nats/token) | eval bpb | student tokens | train FLOPs | teacher fwd FLOPs "
        "| marginal FLOPs | total FLOPs | marginal s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['final_eval_loss']:.4f} | {r['final_eval_bpb']:.4f} | {r['train_tokens']:.3g} | "
            f"{r['train_flops']:.3e} | {r['teacher_forward_flops']:.3e} | {r['marginal_flops']:.3e} | "
            f"{r['total_flops']:.3e} | {r['seconds']:.0f} |"
        )
    for view, ref in (
        ("equal student FLOPs", "plain@student"),
        ("equal marginal FLOPs", "plain@marginal"),
        ("equal total FLOPs", "plain@total"),
    ):
        d = kd["final_eval_loss"] - rows[ref]["final_eval_loss"]
        print(
            f"{view:>22}: distilled - plain = {d:+.4f} nats/token ({'distillation wins' if d < 0 else 'plain training wins'})"
        )
    (out / "summary.json").write_text(
        json.dumps({"config": a.config, "overrides": a.overrides, "runs": rows, "teacher": teacher}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
