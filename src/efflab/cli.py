"""The `efflab` command. Each subcommand lives in `efflab.commands.<module>` and registers itself.

Exit status: 0 done, 2 bad input (one message naming every problem, no traceback), 1 a bug.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from efflab import __version__
from efflab.errors import RunFailed, UserError

# module -> the subcommands it adds through register(subparsers)
COMMANDS = {
    "efflab.commands.run": ("list", "run"),
    "efflab.commands.suite": ("suite", "compare"),
    "efflab.commands.scaling": ("scaling", "extrapolate"),
    "efflab.commands.laws": ("laws",),
    "efflab.commands.accounting": ("flops", "cost"),
    "efflab.commands.validate": ("validate",),
    "efflab.commands.env": ("env",),
}
COMMAND_MODULES = list(COMMANDS)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: same exit status as every bad input
        self.print_usage(sys.stderr)
        print(f"efflab: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with `only`, just the module that defines that subcommand is imported, so
    `efflab flops ...` does not pay for the imports of the training commands."""
    parser = _Parser(
        prog="efflab",
        description="Measure which efficiency technique saves training compute, "
        "and what it is worth at frontier scale. Exit status: 0 done, 2 bad input, 1 failure.",
    )

    parser.add_argument("--version", action="version", version=f"efflab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    modules = [m for m, cmds in COMMANDS.items() if only in cmds] if only else []
    for name in modules or COMMAND_MODULES:
        importlib.import_module(name).register(sub)  # a broken command module is a bug: it surfaces
    parser.subcommands = sub.choices  # name -> subparser: errors show the subcommand's usage
    return parser


def emit_json(obj) -> None:
    """Print one JSON object on stdout (the `--json` contract)."""
    print(json.dumps(obj, indent=2, sort_keys=False, default=_json_default))


def _json_default(o):
    import math

    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if hasattr(o, "__dict__"):
        return o.__dict__
    return str(o)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # dotted key=value overrides may come after options: `run X --config F --out D k=v`
            # (a word without `=` joins them too, so the config reports it by name beside any other problem)
            if hasattr(args, "overrides") and not any(x.startswith("-") for x in extra):
                args.overrides = list(args.overrides or []) + extra
            else:
                target = getattr(parser, "subcommands", {}).get(getattr(args, "command", None), parser)
                target.error(
                    f"unrecognized arguments: {' '.join(x for x in extra if x.startswith('-')) or ' '.join(extra)}"
                )
    except SystemExit as e:  # --help, --version, argparse errors (status 2)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except UserError as e:
        print(f"efflab: error: {e.message}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"efflab: run failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("efflab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `efflab cost ... | head`: the reader has what it wanted
        _silence_stdout()
        return 0
    return int(rc or 0)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout replaced (tests) or already closed
        pass


if __name__ == "__main__":
    sys.exit(main())
