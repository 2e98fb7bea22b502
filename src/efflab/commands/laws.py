"""`efflab laws`: published scaling laws, listed and evaluated.

    efflab laws list
    efflab laws eval besiroglu2024 --params 70e9 --tokens 1.4e12
    efflab laws eval krajewski2024 --params 1e9 --tokens 20e9 --granularity 8 --json
    efflab laws eval muennighoff2023 --params 1e9 --tokens 400e9 --unique-tokens 100e9
    efflab laws eval busbridge2025 --params 1.82e9 --tokens 36.4e9 --teacher-loss 2.0
    efflab laws optimal besiroglu2024 --flops 5.76e23

Losses are in nats/token on each paper's own corpus and tokenizer; budgets use C = 6ND.
"""

from __future__ import annotations

import math
import sys

from efflab.errors import Problems, UserError, parse_count, suggest


def register(sub) -> None:
    p = sub.add_parser("laws", help="published scaling laws (laws list|eval|optimal)", description=__doc__)
    inner = p.add_subparsers(dest="laws_command", metavar="SUBCOMMAND", parser_class=type(p))

    lp = inner.add_parser("list", help="every law: form, constants, source, fitted range, status")
    lp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    lp.set_defaults(func=cmd_list)

    ep = inner.add_parser("eval", help="loss of a law at N parameters and D tokens")
    ep.add_argument("law", metavar="LAW", help="law name (efflab laws list)")
    ep.add_argument("--params", required=True, metavar="N", help="parameters (as the law counts them)")
    ep.add_argument("--tokens", required=True, metavar="D", help="training tokens")
    ep.add_argument("--experts", metavar="E", help="experts (MoE laws; krajewski2024 is fitted at 64)")
    ep.add_argument("--granularity", metavar="G", help="expert granularity G (krajewski2024)")
    ep.add_argument("--unique-tokens", metavar="U", help="unique tokens U <= D (muennighoff2023)")
    ep.add_argument(
        "--teacher-loss",
        metavar="L_T",
        help="teacher cross-entropy, nats on the paper's corpus (busbridge2025)",
    )
    ep.add_argument("--json", action="store_true", help="print one JSON object on stdout (key `loss`)")
    ep.set_defaults(func=cmd_eval)

    op = inner.add_parser("optimal", help="compute-optimal N and D for a FLOP budget (C = 6ND)")
    op.add_argument("law", metavar="LAW", help="law name (efflab laws list)")
    op.add_argument("--flops", required=True, metavar="C", help="training budget, FLOPs")
    op.add_argument("--granularity", metavar="G", help="expert granularity G (krajewski2024)")
    op.add_argument("--json", action="store_true", help="print one JSON object (keys params, tokens, loss)")
    op.set_defaults(func=cmd_optimal)

    def _no_sub(args):
        p.print_help(sys.stderr)
        return 2

    p.set_defaults(func=_no_sub)


def _law(problems: Problems, name: str):
    from efflab.laws import LAWS

    law = LAWS.get(name.lower())
    if law is None:
        problems.add(f"unknown law {name!r}{suggest(name.lower(), LAWS)}; laws: {', '.join(LAWS)}")
        return None
    if not law.evaluable:
        problems.add(f"law {law.name} does not evaluate ({law.status}): {law.notes}")
        return None
    return law


def _pos(problems: Problems, text, what: str) -> float | None:
    if text is None:
        return None
    try:
        v = parse_count(text, what)
    except UserError as e:
        problems.extend(e.problems)
        return None
    if not (math.isfinite(v) and v > 0):
        problems.add(f"{what} must be a positive number, got {text!r}")
        return None
    return v


def _config(problems: Problems, law, args) -> dict:
    """The extra inputs this law takes; flags it does not take are reported as problems."""
    cfg = {}
    given = {
        "granularity": getattr(args, "granularity", None),
        "unique_tokens": getattr(args, "unique_tokens", None),
        "teacher_loss": getattr(args, "teacher_loss", None),
    }
    for key, text in given.items():
        if text is None:
            continue
        flag = "--" + key.replace("_", "-")
        if law is not None and key not in law.config_keys:
            problems.add(
                f"{flag} does not apply to {law.name} (it takes: {', '.join(law.config_keys) or 'none'})"
            )
            continue
        v = _pos(problems, text, flag)
        if v is not None:
            cfg[key] = v
    experts = _pos(problems, getattr(args, "experts", None), "--experts")
    if experts is not None and law is not None:
        if law.kind != "moe":
            problems.add(f"--experts does not apply to {law.name} (a {law.kind} law)")
        elif law.name == "krajewski2024" and experts != 64:
            cfg["_note"] = f"{law.name} is fitted at 64 experts; E = {experts:g} is outside its fitted range"
    return cfg


def cmd_list(args) -> int:
    from efflab.laws import LAWS

    if args.json:
        from efflab.cli import emit_json

        emit_json({"laws": [law.to_dict() for law in LAWS.values()]})
        return 0
    for law in LAWS.values():
        print(f"{law.name:<17} [{law.status}] {law.kind}: {law.title}")
        print(f"  form: {law.form}")
        if law.constants:
            print(f"  constants: {_fmt_constants(law.constants)}")
        print(f"  source: {law.source}")
        print(f"  N counts: {law.n_counts}")
        if law.fitted_range:
            print(
                "  fitted on: "
                + ", ".join(f"{k} {lo:.3g}-{hi:.3g}" for k, (lo, hi) in law.fitted_range.items())
            )
        if law.printed_check:
            print(f"  reproduced in tests: {law.printed_check}")
        if law.notes:
            print(f"  note: {law.notes}")
    print("\nLosses are nats/token on each paper's own corpus; budgets use C = 6ND (multiply-add = 2).")
    return 0


def _fmt_constants(c: dict) -> str:
    parts = []
    for k, v in c.items():
        parts.append(f"{k}: ({_fmt_constants(v)})" if isinstance(v, dict) else f"{k} {v:g}")
    return ", ".join(parts)


def _range_note(law, N: float, D: float) -> str | None:
    if law.in_range(N, D):
        return None
    r = law.fitted_range
    return (
        "outside the fitted range (" + ", ".join(f"{k} {lo:.3g}-{hi:.3g}" for k, (lo, hi) in r.items()) + ")"
    )


def cmd_eval(args) -> int:
    problems = Problems(header="bad input to efflab laws eval")
    law = _law(problems, args.law)
    N = _pos(problems, args.params, "--params")
    D = _pos(problems, args.tokens, "--tokens")
    cfg = _config(problems, law, args)
    if D is not None and cfg.get("unique_tokens") is not None and cfg["unique_tokens"] > D:
        problems.add(f"--unique-tokens {cfg['unique_tokens']:g} exceeds --tokens {D:g}")
    problems.raise_if_any()
    notes = [n for n in (cfg.pop("_note", None), _range_note(law, N, D)) if n]
    if law.status != "verified":
        notes.append(f"{law.name} is {law.status}: {law.printed_check}")
    loss = law.loss(N, D, **cfg)
    res = {
        "law": law.name,
        "params": N,
        "tokens": D,
        **cfg,
        "loss": loss,
        "in_range": law.in_range(N, D),
        "unit": "nats/token on the paper's corpus",
        "notes": notes,
    }
    if args.json:
        from efflab.cli import emit_json

        emit_json(res)
        return 0
    print(f"{law.name}: L(N = {N:.4g}, D = {D:.4g}) = {loss:.4f} nats/token ({law.source})")
    for n in notes:
        print(f"note: {n}")
    return 0


def cmd_optimal(args) -> int:
    from efflab.laws import optimal

    problems = Problems(header="bad input to efflab laws optimal")
    law = _law(problems, args.law)
    C = _pos(problems, args.flops, "--flops")
    cfg = _config(problems, law, args)
    problems.raise_if_any()
    o = optimal(law, C, **cfg)
    notes = [n for n in (_range_note(law, o["params"], o["tokens"]),) if n]
    if law.status != "verified":
        notes.append(f"{law.name} is {law.status}: {law.printed_check}")
    res = {
        "law": law.name,
        **o,
        **cfg,
        "in_range": law.in_range(o["params"], o["tokens"]),
        "notes": notes,
        "convention": o.get("convention", "C = 6ND"),
    }
    if args.json:
        from efflab.cli import emit_json

        emit_json(res)
        return 0
    print(
        f"{law.name}, C = {C:.4g} FLOPs ({res['convention']}): N = {o['params']:.4g} parameters, D = {o['tokens']:.4g} "
        f"tokens ({o['tokens_per_param']:.1f} tokens/parameter), L = {o['loss']:.4f} nats/token"
    )
    if "active_params" in o:
        print(f"  MoE: {o['active_params']:.4g} active parameters, granularity G = {o['granularity']:g}")
    for n in notes:
        print(f"note: {n}")
    return 0
