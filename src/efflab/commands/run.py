"""`efflab list` and `efflab run RECIPE --config FILE [k=v ...]`."""

from __future__ import annotations

from efflab import RECIPES
from efflab.paths import configs_root, resolve_config_path  # noqa: F401  (re-exported)


def register(sub) -> None:
    p = sub.add_parser("list", help="recipes, shipped configs, presets and GPUs")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser(
        "run",
        help="one run of a recipe",
        description="Run one recipe: efflab run RECIPE --config FILE [key=value ...]",
    )
    p.add_argument("recipe", help=f"one of: {', '.join(RECIPES)}")
    p.add_argument("--config", help="YAML config (e.g. configs/baseline/tiny.yaml)")
    p.add_argument("--out", help="run directory (default runs/<recipe>-<config name>)")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its last checkpoint"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.lr=1e-3")
    _add_dry_run_args(p)
    p.set_defaults(func=cmd_run)


# ---- --dry-run: price the run before it starts (efflab.estimate) ----------------------------------
def _add_dry_run_args(p) -> None:
    p.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="print the resolved config and the estimated ledger, steps, memory and wall time; train nothing",
    )
    p.add_argument(
        "--gpu", default="h100", help="--dry-run: the GPU to estimate the wall time on (default h100)"
    )
    p.add_argument("--mfu", help="--dry-run: MFU on that GPU (default 0.40)")
    p.add_argument(
        "--no-time",
        dest="no_time",
        action="store_true",
        help="--dry-run: skip the few timed steps on this machine",
    )
    p.add_argument("--json", action="store_true", help="--dry-run: print one JSON object")


def cmd_dry_run(args, cfg) -> int:
    from efflab.accounting import hardware
    from efflab.errors import parse_count
    from efflab.estimate import estimate_run, format_estimate

    mfu = hardware.DEFAULT_MFU if args.mfu is None else parse_count(args.mfu, "--mfu")
    est = estimate_run(cfg, gpu=args.gpu, mfu=mfu, measure=not args.no_time)
    if args.json:
        from efflab.cli import emit_json

        emit_json(est)
    else:
        print("# resolved config (ladder filled in)")
        print(cfg.to_yaml().rstrip())
        print(format_estimate(est))
    return 0


def cmd_run(args) -> int:
    from efflab import recipes  # the one recipe registry (imported here: the parser needs the names only)
    from efflab.config import load_config

    recipes.check_recipe(args.recipe)
    path = resolve_config_path(args.config)
    cfg = load_config(path, args.overrides, recipe=args.recipe)
    if getattr(args, "dry_run", False):
        return cmd_dry_run(args, cfg)
    recipes.run_recipe(
        args.recipe, cfg, out=args.out, resume=args.resume, overwrite=args.overwrite, config_path=path
    )
    return 0


def cmd_list(args) -> int:
    print("Recipes:")
    for r in RECIPES:
        print(f"  {r}")
    print("\nConfigs (shipped; pass as --config configs/<recipe>/<name>.yaml):")
    root = configs_root()
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        names = sorted(f.stem for f in d.glob("*.yaml"))
        print(f"  {d.name + '/':<14} {', '.join(names)}")
    from efflab.accounting import hardware, presets

    print("\nPresets (efflab flops / efflab cost MODEL):")
    for row in presets.describe_presets():
        print("  " + row if isinstance(row, str) else "  " + "  ".join(str(x) for x in row))
    print("\nGPUs (dense BF16 and FP8 peaks, never the sparsity figure; efflab cost --gpu NAME):")
    for row in hardware.describe_gpus():
        print("  " + row if isinstance(row, str) else "  " + "  ".join(str(x) for x in row))
    return 0
