"""`efflab validate`: small experiments with known results, checked before anyone trusts the verdicts.

efflab validate --plan                      # validate every case's suite, print runs / FLOPs / time
efflab validate                             # run every CPU case -> runs/validate/validation.md
efflab validate --only B,C --out DIR        # some cases; the table covers every case DIR holds
efflab validate --gpu --plan                # the same cases at 5-20M parameters (configs/validate/gpu/)
"""

from __future__ import annotations

import sys
from pathlib import Path

from efflab.errors import Problems, UserError


def register(sub) -> None:
    p = sub.add_parser(
        "validate",
        help="reproduce known results (MoE, distillation, seq-len warmup, curriculum, controls) -> validation.md",
        description="Run small suites whose outcome is known (configs/validate/), check each against its "
        "published result and pass criterion, and write validation.md / validation.json. Idempotent: "
        "complete runs are reused. A failed case is a finding (exit status 0); the table says what it means.",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="CASES",
        help="cases by letter or name, comma-separated: A oversized, B moe_length, C distill_crossover, "
        "D seqlen_warmup, E curriculum_null, F aa (default: all)",
    )
    p.add_argument("--out", help="output directory (default runs/validate, or runs/validate-gpu with --gpu)")
    p.add_argument(
        "--plan",
        action="store_true",
        help="validate every case's suite and print runs, FLOPs and estimated time; trains nothing",
    )
    p.add_argument("--gpu", action="store_true", help="the GPU variants (configs/validate/gpu/)")
    p.add_argument(
        "--controls-from",
        metavar="SUITE_DIR",
        help="read A and F from this suite's compare.json (e.g. runs/suite-quick) instead of running them",
    )
    p.add_argument(
        "--table-only", action="store_true", help="rewrite the table from what --out holds; train nothing"
    )
    p.add_argument(
        "--workers", type=int, help="runs in parallel processes (default: each case file's `workers`)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print validation.json (or the plan) on stdout")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:
    from efflab import validate as VA
    from efflab.cli import emit_json

    probs = Problems(header="bad efflab validate arguments")
    if args.workers is not None and args.workers < 1:
        probs.add(f"--workers must be >= 1, got {args.workers}")
    if args.plan and args.table_only:
        probs.add("--plan and --table-only: give one")
    if (
        args.controls_from
        and not (Path(args.controls_from) / "compare.json").is_file()
        and not Path(args.controls_from).is_file()
    ):
        probs.add(
            f"--controls-from {args.controls_from}: no compare.json there (a suite directory, e.g. "
            f"runs/suite-quick after `efflab suite configs/suite/quick.yaml`)"
        )
    try:
        cases = VA.select(args.only)
    except UserError as e:  # merged into one message with the other problems
        probs.extend(e.problems)
        cases = []
    probs.raise_if_any()
    if args.plan:
        res = VA.plan_cases(cases, gpu=args.gpu)
        emit_json(res) if args.json else print(res["text"])
        return 0
    out = args.out or ("runs/validate-gpu" if args.gpu else "runs/validate")
    if args.table_only:
        doc = VA.write_table(
            out,
            controls_from=VA._controls_doc(args.controls_from) if args.controls_from else None,
            gpu=args.gpu,
        )
    else:
        log = (lambda *a, **k: print(*a, file=sys.stderr, **k)) if args.json else print
        doc = VA.run_validation(
            cases,
            out=out,
            gpu=args.gpu,
            controls_from=args.controls_from,
            workers=args.workers,
            progress=not args.no_progress,
            log=log,
        )
    if args.json:
        emit_json(doc)
    else:
        print(Path(doc["files"]["md"]).read_text(encoding="utf-8"))
        print(f"written: {doc['files']['md']}, {doc['files']['json']}")
    return 0
