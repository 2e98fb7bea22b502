"""Experiment trackers through accelerate, and plain progress lines when no terminal is attached.

`log.trackers: [tensorboard, wandb, trackio, mlflow, ...]` (any tracker accelerate supports) receives
the resolved run config once (flattened to `section.key` scalars) and every metrics row. A tracker
whose package is missing is a config error naming the extra to install. `log.tensorboard: true` is
kept as a shorthand for `log.trackers: [tensorboard]`.

Under SLURM, nohup or CI (stderr not a terminal) the tqdm bar is off, so every `log.every` steps one
line reports step, loss, tokens/s, FLOPs spent, % of the budget and MFU.
"""

from __future__ import annotations

import importlib.util
import sys

# accelerate's tracker names -> (python module that must be importable, pip extra of efflab)
TRACKERS: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "trackio": ("trackio", "trackio"),
    "mlflow": ("mlflow", "mlflow"),
    "comet_ml": ("comet_ml", "comet_ml"),
    "aim": ("aim", "aim"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
    "swanlab": ("swanlab", "swanlab"),
}


def names(cfg) -> list[str]:
    """Tracker names of a RunConfig: log.trackers, plus tensorboard when log.tensorboard is on."""
    out = list(getattr(cfg.log, "trackers", None) or [])
    if cfg.log.tensorboard and "tensorboard" not in out:
        out.append("tensorboard")
    return out


def problems(cfg) -> list[str]:
    """Config-time problems: unknown tracker names, trackers whose package is not installed."""
    out = []
    for n in names(cfg):
        if n not in TRACKERS:
            out.append(f"log.trackers: unknown tracker {n!r} (accelerate supports {', '.join(TRACKERS)})")
        elif importlib.util.find_spec(TRACKERS[n][0]) is None:
            out.append(
                f"log.trackers: {n} needs the {TRACKERS[n][0]} package: pip install 'efflab[{TRACKERS[n][1]}]'"
            )
    return out


def accelerator_kwargs(cfg, run_dir) -> dict:
    """Keyword arguments for `Accelerator(...)`: the trackers and where file-based ones write."""
    n = names(cfg)
    return {"log_with": n, "project_dir": str(run_dir)} if n else {}


def flat_config(cfg) -> dict:
    """The resolved config as {"section.key": scalar} (lists as strings): what every tracker accepts."""
    out: dict = {}

    def walk(prefix: str, v) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[prefix] = v if v is not None else "none"
        else:
            out[prefix] = str(v)

    walk("", cfg.to_dict())
    return out


def start(accelerator, cfg, run_dir) -> None:
    """Open the trackers (main process) with the resolved config."""
    if names(cfg):
        accelerator.init_trackers(run_dir.name, config=flat_config(cfg))


def scalars(row: dict) -> dict:
    """A metrics row as tracker scalars: nested FLOPs as flops/<phase>, non-numbers dropped."""
    out = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update({f"{k}/{kk}": vv for kk, vv in v.items() if isinstance(vv, (int, float))})
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = v
    return out


def want_lines(cfg) -> bool:
    """Plain progress lines: progress on, and stderr not a terminal (so tqdm's bar is off)."""
    return bool(cfg.log.progress) and not sys.stderr.isatty()


def progress_line(
    step: int,
    total_steps: int,
    loss: float,
    tokens_per_s: float,
    flops: float,
    budget_pct: float,
    mfu: float | None,
) -> str:
    """`step 120/400 (30.0% of budget) | loss 3.412 | 12,345 tok/s | 1.23e+15 FLOPs | MFU 41.2%`."""
    m = f"MFU {100 * mfu:.1f}%" if mfu is not None else "MFU -"
    return (
        f"step {step}/{total_steps} ({budget_pct:.1f}% of budget) | loss {loss:.4f} | {tokens_per_s:,.0f} tok/s"
        f" | {flops:.3g} FLOPs | {m}"
    )


def budget_pct(cfg, step: int, total_steps: int, train_flops: float, train_tokens: float) -> float:
    """Share of the configured budget spent: FLOPs for budget_flops, tokens for budget_tokens, else steps."""
    t = cfg.train
    if t.budget_flops:
        return 100.0 * train_flops / t.budget_flops
    if t.budget_tokens:
        return 100.0 * train_tokens / t.budget_tokens
    return 100.0 * step / max(1, total_steps)
