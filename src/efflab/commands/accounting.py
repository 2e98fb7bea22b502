"""`efflab flops MODEL ...` and `efflab cost (--flops X | MODEL --tokens N) --gpu NAME ...`.

Both answer in about a second without building a model: torch and transformers are imported only
for `--measure`, for a config.json / model directory (transformers fills in config defaults), or
for `--gpu cpu` (its peak is timed on the spot).
"""

from __future__ import annotations

import math

from efflab.errors import Problems, UserError, parse_count

MEASURE_MAX_PARAMS = 2e9  # --measure builds the model with random weights on the CPU: refuse beyond this


def register(sub) -> None:
    p = sub.add_parser(
        "flops",
        help="parameters and FLOPs per token of a model (analytic; --measure cross-checks)",
        description="Parameters and FLOPs of MODEL: a preset name (efflab list), a HF config.json or model "
        "directory, or an efflab YAML config. Conventions: DESIGN.md section 5 (printed with every answer).",
    )
    p.add_argument("model", metavar="MODEL", help="preset name, config.json, model directory or efflab YAML")
    p.add_argument("--tokens", help="training tokens (e.g. 15.6e12): adds total train FLOPs and 6ND")
    p.add_argument(
        "--seq-len", dest="seq_len", help="context length T (default: the preset's or the config's)"
    )
    p.add_argument("--causal", action="store_true", help="halve attention FLOPs (flash-attention execution)")
    p.add_argument(
        "--measure",
        action="store_true",
        help="also measure one forward+backward with FlopCounterMode on random weights (CPU; <= 2e9 params)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser(
        "cost",
        help="GPU-hours, days, dollars and energy of a FLOP budget",
        description="Cost of a FLOP budget (--flops X) or of training MODEL on N tokens (MODEL --tokens N): "
        "GPU-hours = FLOPs / (dense BF16 peak x MFU) / 3600; dollars = GPU-hours x price; "
        "energy = TDP x GPU-hours x PUE.",
    )
    p.add_argument(
        "model", metavar="MODEL", nargs="?", help="preset name, config.json, model directory or YAML"
    )
    p.add_argument("--flops", help="training FLOPs (e.g. 2.1e25)")
    p.add_argument("--tokens", help="training tokens for MODEL (e.g. 15.6e12)")
    p.add_argument(
        "--gpu",
        required=True,
        help="accelerator: a100, h100, h100-pcie, h800, h200, b200, tpu-v4, tpu-v5e, tpu-v5p or cpu",
    )
    p.add_argument("--mfu", help="model FLOPs utilisation in (0, 1] (default 0.40)")
    p.add_argument("--price", help="$ per GPU-hour (default: the table's, see efflab list)")
    p.add_argument("--gpus", help="number of GPUs, for wall-clock days")
    p.add_argument("--pue", help="data-centre power usage effectiveness (default 1.2)")
    p.add_argument("--tdp", help="board power in W (default: the table's; TPUs have none published)")
    p.add_argument(
        "--seq-len", dest="seq_len", help="context length T for MODEL (default: preset's/config's)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_cost)


# ---- parsing helpers: collect every problem, raise once ----------------------------------------


def _num(problems: Problems, text, what: str, *, positive=False, whole=False, lo=None, hi=None):
    if text is None:
        return None
    try:
        x = parse_count(text, what)
    except UserError as e:
        problems.extend(e.problems)
        return None
    if not math.isfinite(x):
        problems.add(f"{what}: {text!r} is not a finite number")
        return None
    if positive and x <= 0:
        problems.add(f"{what} must be greater than zero, got {text}")
        return None
    if whole and x != int(x):
        problems.add(f"{what} must be a whole number, got {text}")
        return None
    if lo is not None and x < lo:
        problems.add(f"{what} must be at least {lo}, got {text}")
        return None
    if hi is not None and x > hi:
        problems.add(f"{what} must be at most {hi}, got {text}")
        return None
    return int(x) if whole else x


def _model_arg(problems: Problems, spec: str):
    """(kind, preset, config_source) for MODEL; records problems instead of raising."""
    from efflab.accounting import presets

    if presets.is_preset(spec):
        p = presets.get_preset(spec)
        return ("model" if p.config is not None else "run"), p
    path = _config_path(spec)
    from pathlib import Path

    if not Path(path).exists():
        try:
            presets.get_preset(spec)  # raises with close names
        except UserError as e:
            problems.add(e.problems[0] + " (or give a config.json, model directory or efflab YAML file)")
        return None, None
    return "config", path


def _config_path(spec: str) -> str:
    try:  # `configs/moe/tiny.yaml` resolves to the shipped configs from any directory
        from efflab.commands.run import resolve_config_path

        return resolve_config_path(spec) or spec
    except ImportError:
        return spec


def _count(kind, obj, seq_len, causal):
    from efflab.accounting import flops

    spec = obj.name if kind == "model" else obj
    return flops.count_flops(spec, seq_len, causal=causal)


# ---- efflab flops ---------------------------------------------------------------------------------


def cmd_flops(args) -> int:
    from efflab.accounting import flops

    problems = Problems(header="bad input to efflab flops")
    tokens = _num(problems, args.tokens, "--tokens", positive=True)
    seq_len = _num(problems, args.seq_len, "--seq-len", positive=True, whole=True)
    kind, obj = _model_arg(problems, args.model)
    count = None
    if kind in ("model", "config"):
        try:
            count = _count(kind, obj, seq_len, args.causal)
        except UserError as e:
            problems.extend(e.problems)
    if args.measure and kind == "run":
        problems.add(f"--measure needs an architecture; preset {obj.name} has published figures only")
    if args.measure and count is not None and count.params_total > MEASURE_MAX_PARAMS:
        problems.add(
            f"--measure builds the model with random weights on the CPU: {count.params_total:.3g} "
            f"parameters is too big (limit {MEASURE_MAX_PARAMS:.0e}); use a smaller config"
        )
    problems.raise_if_any()

    if kind == "run":
        out = _run_preset_summary(obj, tokens)
    else:
        out = {"model": obj.name if kind == "model" else str(obj), **count.to_dict()}
        if tokens is not None:
            out["tokens"] = tokens
            out["train_flops"] = count.train_flops_per_token * tokens
            out["train_flops_6nd"] = flops.flops_6nd(count.params_active, tokens)
        if kind == "model":
            out["published"] = _published(obj)
        if args.measure:
            out.update(_measure(kind, obj, count))
    if args.json:
        from efflab.cli import emit_json

        emit_json(out)
    else:
        print(_flops_table(out))
    return 0


def _published(p) -> dict:
    keys = ("params", "params_active", "tokens", "train_flops", "gpu", "gpu_hours", "estimate")
    d = {k: getattr(p, k) for k in keys if getattr(p, k) not in (None, False)}
    d["sources"] = dict(p.sources)
    return d


def _run_preset_summary(p, tokens) -> dict:
    from efflab.accounting import flops

    tokens = tokens if tokens is not None else p.tokens
    out = {
        "model": p.name,
        "model_type": None,
        "params_total": p.params,
        "params_active": p.params_active or p.params,
        "params_embedding": None,
        "forward_flops_per_token": None,
        "train_flops_per_token": None,
        "seq_len": p.seq_len,
        "convention": "published figures only (no architecture to count): 6ND = 6 x params x tokens "
        "is the quick estimate; the published FLOPs are the developer's (or an outside estimate)",
        "breakdown": {},
        "published": _published(p),
    }
    if tokens is not None:
        out["tokens"] = tokens
    if tokens is not None and out["params_active"]:
        out["train_flops_6nd"] = flops.flops_6nd(out["params_active"], tokens)
    if p.train_flops is not None:
        out["train_flops"] = p.train_flops if tokens in (None, p.tokens) else out.get("train_flops_6nd")
    elif "train_flops_6nd" in out:
        out["train_flops"] = out["train_flops_6nd"]
    return out


def _measure(kind, obj, count) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from efflab.accounting import flops, measure

    config = flops.resolve_config(obj.name if kind == "model" else obj)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    ids = torch.randint(0, config.vocab_size, (1, count.seq_len))
    res = measure.measure_train_flops(model, ids)
    return {
        "measured_train_flops_per_token": res["per_token"],
        "measured_forward_flops_per_token": res["forward_per_token"],
        "measured_ratio": res["per_token"] / count.train_flops_per_token,
        "measured_uncounted_modules": res["uncounted"],
        "measured_on": f"FlopCounterMode, one forward+backward, batch 1 x {count.seq_len} tokens, random "
        "weights, eager attention and experts, CPU",
    }


def _si(x) -> str:
    if x is None:
        return "-"
    for div, suf in ((1e12, " T"), (1e9, " B"), (1e6, " M"), (1e3, " K")):
        if abs(x) >= div:
            return f"{x / div:.4g}{suf}"
    return f"{x:.4g}"


def _e(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def _flops_table(o: dict) -> str:
    rows: list[tuple[str, str]] = []
    pub = o.get("published") or {}
    head = f"{o['model']}" + (f" ({o['model_type']})" if o.get("model_type") else "")
    params = f"{_si(o['params_total'])} total"
    if o.get("params_active") and o["params_active"] != o["params_total"]:
        params += f", {_si(o['params_active'])} active per token"
    if o.get("params_embedding"):
        params += f", {_si(o['params_embedding'])} embedding"
    rows.append(("parameters", params))
    if o.get("seq_len"):
        rows.append(
            ("context T", f"{o['seq_len']}" + (" (causal: attention halved)" if o.get("causal") else ""))
        )
    if o.get("forward_flops_per_token") is not None:
        fwd = o["forward_flops_per_token"]
        rows.append(("forward FLOPs/token", _e(fwd)))
        for part, v in o["breakdown"].items():
            rows.append((f"  {part}", f"{_e(v)}  ({100 * v / fwd:.1f}%)"))
        rows.append(("train FLOPs/token", f"{_e(o['train_flops_per_token'])}  (forward + backward)"))
    if o.get("tokens") is not None:
        rows.append(("tokens", _e(o["tokens"])))
    if o.get("train_flops") is not None:
        label = (
            "detailed count"
            if o.get("train_flops_per_token")
            else "published"
            if pub.get("train_flops")
            else "6ND"
        )
        rows.append(("train FLOPs", f"{_e(o['train_flops'])}  ({label})"))
    if o.get("train_flops_6nd") is not None:
        rows.append(
            ("train FLOPs, 6ND", f"{_e(o['train_flops_6nd'])}  (quick estimate: 6 x active params x tokens)")
        )
    if "measured_train_flops_per_token" in o:
        rows.append(
            (
                "measured FLOPs/token",
                f"{_e(o['measured_train_flops_per_token'])}  "
                f"(ratio {o['measured_ratio']:.4f}; {o['measured_on']})",
            )
        )
    for k, label in (
        ("params", "published params"),
        ("params_active", "published active"),
        ("tokens", "published tokens"),
        ("train_flops", "published FLOPs"),
    ):
        if pub.get(k) is not None:
            src = pub["sources"].get(k, "")
            est = "  ESTIMATE" if k == "train_flops" and pub.get("estimate") else ""
            rows.append((label, f"{_e(pub[k])}{est}" + (f"  (source: {src})" if src else "")))
    width = max(len(k) for k, _ in rows)
    lines = [head] + [f"  {k:<{width}}  {v}" for k, v in rows]
    for n in o.get("notes") or []:
        lines.append(f"  note: {n}")
    lines.append(f"convention: {o['convention']}")
    return "\n".join(lines)


# ---- efflab cost ----------------------------------------------------------------------------------


def cmd_cost(args) -> int:
    from efflab.accounting import flops, hardware

    problems = Problems(header="bad input to efflab cost")
    budget = _num(problems, args.flops, "--flops", positive=True)
    tokens = _num(problems, args.tokens, "--tokens", positive=True)
    mfu = _num(problems, args.mfu, "--mfu")
    if mfu is not None and not 0 < mfu <= 1:
        problems.add(
            f"--mfu must be in (0, 1], got {args.mfu} (typical 0.3-0.55; default {hardware.DEFAULT_MFU})"
        )
        mfu = None
    price = _num(problems, args.price, "--price", lo=0)
    gpus = _num(problems, args.gpus, "--gpus", positive=True, whole=True)
    pue = _num(problems, args.pue, "--pue", lo=1)
    tdp = _num(problems, args.tdp, "--tdp", positive=True)
    seq_len = _num(problems, args.seq_len, "--seq-len", positive=True, whole=True)
    if args.gpu.lower() != hardware.CPU_NAME:  # cpu: measured later, once the input is known good
        try:
            hardware.gpu(args.gpu)
        except UserError as e:
            problems.extend(e.problems)

    source = None
    extra: dict = {}
    if args.flops is not None and args.model:
        problems.add("give either --flops X or MODEL --tokens N, not both")
    elif args.flops is None and not args.model:
        problems.add("nothing to price: give --flops X, or MODEL --tokens N")
    elif args.model:
        kind, obj = _model_arg(problems, args.model)
        if kind in ("model", "config"):
            try:
                count = _count(kind, obj, seq_len, False)
            except UserError as e:
                problems.extend(e.problems)
                count = None
            p = obj if kind == "model" else None
            if count is not None:
                if tokens is None and p is not None and p.train_flops and args.tokens is None:
                    budget, source = p.train_flops, f"published: {p.sources.get('train_flops', '')}"
                elif tokens is None and p is not None and p.tokens and args.tokens is None:
                    tokens = p.tokens
                if budget is None and tokens is not None:
                    budget = count.train_flops_per_token * tokens
                    source = (
                        f"detailed count: {count.train_flops_per_token:.4g} train FLOPs/token at T={count.seq_len}"
                        f" x {tokens:.4g} tokens"
                    )
                    extra["train_flops_6nd"] = flops.flops_6nd(count.params_active, tokens)
                elif budget is None and args.tokens is None:
                    problems.add(f"{args.model}: give --tokens N (training tokens) to price it")
            if p is not None and p.gpu_hours and p.gpu and count is not None and (p.train_flops or p.tokens):
                # the MFU the published run implies: its FLOPs (published, else our count x its tokens)
                run_flops = p.train_flops or count.train_flops_per_token * p.tokens
                what = "published FLOPs" if p.train_flops else "detailed count x published tokens"
                extra["published_gpu_hours"] = p.gpu_hours
                extra["implied_mfu_published"] = hardware.implied_mfu(run_flops, p.gpu, p.gpu_hours)
                extra["implied_mfu_note"] = (
                    f"{run_flops:.3g} FLOPs ({what}) in {p.gpu_hours:.4g} {p.gpu} "
                    f"GPU-hours ({p.sources.get('gpu_hours', '')})"
                )
        elif kind == "run":
            if tokens is not None and obj.params:
                budget = flops.flops_6nd(obj.params_active or obj.params, tokens)
                source = "6ND with the published parameter count"
            elif obj.train_flops:
                budget = obj.train_flops
                source = ("ESTIMATE: " if obj.estimate else "published: ") + obj.sources.get(
                    "train_flops", ""
                )
            else:
                problems.add(f"{obj.name}: no published FLOPs; give --tokens N")
    else:
        source = "given"
    problems.raise_if_any()

    kw = {
        "mfu": mfu if mfu is not None else hardware.DEFAULT_MFU,
        "price": price,
        "gpus": gpus,
        "pue": pue if pue is not None else hardware.DEFAULT_PUE,
        "tdp_w": tdp,
    }
    out = hardware.cost(budget, args.gpu, **kw)
    out["flops_source"] = source
    if args.model:
        out["model"] = args.model
    out.update(extra)
    if args.json:
        from efflab.cli import emit_json

        emit_json(out)
    else:
        print(_cost_table(out))
    return 0


def _cost_table(o: dict) -> str:
    rows = [
        ("FLOPs", f"{o['flops']:.4g}" + (f"  ({o['flops_source']})" if o.get("flops_source") else "")),
        (
            "accelerator",
            f"{o['gpu']}: peak {o['peak_flops_per_s']:.4g} FLOP/s dense BF16"
            if o["gpu"] != "cpu"
            else f"cpu: {o['peak_flops_per_s']:.4g} FLOP/s fp32 (measured now)",
        ),
        ("MFU", f"{o['mfu']:.3g}"),
        ("GPU-hours", f"{o['gpu_hours']:.4g}"),
    ]
    if "wall_days" in o:
        rows.append(("wall-clock", f"{o['wall_days']:.4g} days on {o['gpus']:,} GPUs"))
    rows.append(
        (
            "cost",
            f"${o['cost_usd']:,.0f}  at ${o['price_per_gpu_hour']:.2f}/GPU-hour ({o['assumptions']['price']})"
            if o["cost_usd"] is not None
            else "- (no default price: pass --price)",
        )
    )
    rows.append(
        (
            "energy",
            f"{o['energy_mwh']:,.1f} MWh  (TDP {o['tdp_w']:.0f} W x GPU-hours x PUE {o['pue']:.2f})"
            if o["energy_mwh"] is not None
            else "- (no published TDP: pass --tdp)",
        )
    )
    if "train_flops_6nd" in o:
        rows.append(("6ND estimate", f"{o['train_flops_6nd']:.4g} FLOPs (quick estimate, active params)"))
    if "implied_mfu_published" in o:
        rows.append(
            ("published run", f"implied MFU {o['implied_mfu_published']:.3f}: {o['implied_mfu_note']}")
        )
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append(
        "convention: GPU-hours = FLOPs / (peak x MFU) / 3600; energy counts accelerator board power "
        "only; FLOPs: multiply-add = 2"
    )
    return "\n".join(lines)
