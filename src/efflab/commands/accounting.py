"""`efflab flops MODEL ...` and `efflab cost (--flops X | MODEL --tokens N) --gpu NAME ...`.

Both answer in about a second without building a model: torch and transformers are imported only
for `--measure`, for `--gpu cpu` (its peak is timed on the spot), for an efflab YAML config (the
recipe builds its transformers config), and for a config.json of a family whose defaults the light
reader (efflab.accounting.pricing.LightConfig) does not know. Which count is priced: one rule, in
efflab.accounting.pricing (the detailed count for a known architecture, with or without --tokens).
"""

from __future__ import annotations

import math
from pathlib import Path

from efflab.errors import Problems, UserError, parse_count

MEASURE_MAX_PARAMS = 2e9  # --measure builds the model with random weights on the CPU: refuse beyond this


def register(sub) -> None:
    p = sub.add_parser(
        "flops",
        help="parameters and FLOPs per token of a model (analytic; --measure cross-checks)",
        description="Parameters and FLOPs of MODEL: a preset name (efflab list), a HF config.json or model "
        "directory, or an efflab YAML config. Conventions: README, 'Counting FLOPs and pricing runs' (printed with every answer).",
    )
    p.add_argument("model", metavar="MODEL", help="preset name, config.json, model directory or efflab YAML")
    p.add_argument("--tokens", help="training tokens (e.g. 15.6e12 or 15.6T): adds total train FLOPs and 6ND")
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
    p.add_argument("--tokens", help="training tokens for MODEL (e.g. 15.6e12 or 15.6T)")
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
    p.add_argument(
        "--causal", action="store_true", help="price causal attention as flash attention runs it (halved)"
    )
    p.add_argument(
        "--published",
        action="store_true",
        help="price the preset's published FLOPs instead of efflab's count (shown beside it by default)",
    )
    p.add_argument(
        "--precision",
        choices=("bf16", "fp8"),
        help="matmul precision the MFU is stated against (default: the preset's, else bf16)",
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
    """(kind, obj) for MODEL: ("model"|"run", Preset), ("yaml", path) or ("config", path); records
    problems instead of raising."""
    from pathlib import Path

    from efflab.accounting import presets

    if presets.is_preset(spec):
        p = presets.get_preset(spec)
        return ("model" if p.config is not None else "run"), p
    path = _config_path(spec)
    if not Path(path).exists():
        try:
            presets.get_preset(spec)  # raises with close names
        except UserError as e:
            problems.add(e.problems[0] + " (or give a config.json, model directory or efflab YAML file)")
        return None, None
    if Path(path).suffix in (".yaml", ".yml"):
        return "yaml", path
    return "config", path


def _config_path(spec: str) -> str:
    from efflab.paths import (
        resolve_config_path,
    )  # `configs/moe/tiny.yaml`: the shipped configs, from anywhere

    return resolve_config_path(spec) or spec


def _spec(kind, obj):
    """What the accounting layer counts: a preset name, a light config (no transformers) or a path."""
    from efflab.accounting import pricing

    if kind == "model":
        return obj.name
    return pricing.read_config_json(obj)


def _price(problems: Problems, kind, obj, tokens, seq_len, causal) -> dict | None:
    """The one pricing rule (efflab.accounting.pricing.price), or for an efflab YAML the run's estimated
    ledger (efflab.estimate): its budget is read from the file; --tokens replaces it."""
    from efflab.accounting import pricing

    try:
        if kind == "yaml":
            return _price_yaml(obj, tokens, seq_len, causal)
        spec = obj.name if kind in ("model", "run") else _spec(kind, obj)
        return pricing.price(spec, tokens=tokens, seq_len=seq_len, causal=causal)
    except UserError as e:
        problems.extend(e.problems)
        return None


def _price_yaml(path, tokens, seq_len, causal) -> dict:
    from efflab.accounting import flops as F
    from efflab.estimate import estimate_config, load_run_config

    overrides = [f"data.seq_len={seq_len}"] if seq_len else None
    cfg = load_run_config(path, overrides)
    est = estimate_config(cfg, tokens=tokens)
    tr = est["train"]
    count = F.count_flops(
        tr["model_config"], cfg.data.seq_len, causal=causal, lora=cfg.lora if cfg.lora.r else None
    )
    key = "executed_flops" if causal else "flops"
    other = {n: ph for n, ph in est["phases"].items() if n != "train"}
    return {
        "preset": None,
        "count": count,
        "basis": f"detailed count of the {cfg.recipe} run's estimated ledger (efflab.estimate): "
        + ("marginal phases" if other else "train phase")
        + (", budget from --tokens" if tokens else f", budget from {Path(str(path)).name}"),
        "tokens": tr["tokens"],
        "steps": tr["steps"],
        "flops": est["marginal_executed_flops"] if causal else est["marginal_flops"],
        "model_flops_full": est["marginal_flops"],
        "executed_flops": est["marginal_executed_flops"],
        "total_flops": est["total_executed_flops"] if causal else est["total_flops"],
        "phases": {n: ph[key] for n, ph in est["phases"].items()},
        "recipe": cfg.recipe,
        "stages": [],
        "mtp_flops": None,
        "train_flops_6nd": F.flops_6nd(count.params_active, tr["tokens"]),
        "published_flops": None,
        "published_ratio": None,
        "convention": "",
        "seq_len_note": f"seq_len {cfg.data.seq_len}: data.seq_len of {Path(str(path)).name}",
        "model_config": tr["model_config"],
    }


# ---- efflab flops ---------------------------------------------------------------------------------


def cmd_flops(args) -> int:
    problems = Problems(header="bad input to efflab flops")
    tokens = _num(problems, args.tokens, "--tokens", positive=True)
    seq_len = _num(problems, args.seq_len, "--seq-len", positive=True, whole=True)
    kind, obj = _model_arg(problems, args.model)
    priced = None
    if kind is not None and not problems:
        priced = _price(problems, kind, obj, tokens, seq_len, args.causal)
    count = priced.get("count") if priced else None
    if args.measure and kind == "run":
        problems.add(f"--measure needs an architecture; preset {obj.name} has published figures only")
    if args.measure and count is not None and count.params_total > MEASURE_MAX_PARAMS:
        problems.add(
            f"--measure builds the model with random weights on the CPU: {count.params_total:.3g} "
            f"parameters is too big (limit {MEASURE_MAX_PARAMS:.0e}); use a smaller config"
        )
    problems.raise_if_any()

    if kind == "run":
        out = _run_preset_summary(obj, priced)
    else:
        out = {"model": obj.name if kind == "model" else str(obj), **count.to_dict()}
        if priced.get("seq_len_note"):
            out["notes"] = [n for n in out["notes"] if not n.startswith("seq_len")] + [priced["seq_len_note"]]
        _add_priced(out, priced)
        if kind == "model":
            out["published"] = _published(obj)
        if args.measure:
            out.update(_measure(kind, obj, count, priced))
    if args.json:
        from efflab.cli import emit_json

        emit_json(out)
    else:
        print(_flops_table(out))
    return 0


def _add_priced(out: dict, priced: dict) -> None:
    if priced.get("tokens") is None:
        return
    out["tokens"] = priced["tokens"]
    out["train_flops"] = priced["flops"]
    out["executed_flops"] = priced["executed_flops"]
    out["train_flops_basis"] = priced["basis"]
    out["train_flops_6nd"] = priced["train_flops_6nd"]
    for k in ("stages", "mtp_flops", "phases", "total_flops", "steps", "recipe", "appendix_f_flops"):
        if priced.get(k):
            out[k] = priced[k]


def _published(p) -> dict:
    keys = (
        "params",
        "params_active",
        "tokens",
        "train_flops",
        "gpu",
        "gpu_hours",
        "gpu_hours_total",
        "hardware_flops",
        "estimate",
    )
    d = {k: getattr(p, k) for k in keys if getattr(p, k) not in (None, False)}
    d["precision"] = p.precision
    if p.gpu_hours_scope:
        d["gpu_hours_scope"] = p.gpu_hours_scope
    d["sources"] = dict(p.sources)
    return d


def _run_preset_summary(p, priced) -> dict:
    out = {
        "model": p.name,
        "model_type": None,
        "params_total": p.params,
        "params_active": p.params_active or p.params,
        "params_embedding": None,
        "forward_flops_per_token": None,
        "train_flops_per_token": None,
        "seq_len": p.seq_len,
        "convention": priced["convention"],
        "breakdown": {},
        "published": _published(p),
    }
    if p.shape:
        from efflab.accounting import pricing

        out["shape"] = dict(p.shape)
        out["params_from_shape"] = pricing.shape_params(p.shape)
    _add_priced(out, priced)
    if "train_flops" not in out and priced.get("flops") is not None:
        out["train_flops"] = priced["flops"]
        out["train_flops_basis"] = priced["basis"]
    return out


def _measure(kind, obj, count, priced) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from efflab.accounting import flops, measure

    if kind == "yaml":  # the model the run config describes (built by efflab.estimate)
        config = priced["model_config"]
    else:
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
    if o.get("params_from_shape"):
        rows.append(
            ("params from shape", f"{_si(o['params_from_shape'])} (incl. relative-position projections)")
        )
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
        rows.append(("tokens", _e(o["tokens"]) + (f"  ({o['steps']:,} steps)" if o.get("steps") else "")))
    for st in o.get("stages") or []:
        if len(o["stages"]) > 1:
            rows.append(
                (
                    f"  stage T={st['seq_len']}",
                    f"{_e(st['tokens'])} tokens, {_e(st['flops'])} FLOPs  {st['note']}",
                )
            )
    if o.get("mtp_flops"):
        rows.append(("  MTP module(s)", f"{_e(o['mtp_flops'])} FLOPs (multi-token prediction, included)"))
    for name, v in (o.get("phases") or {}).items():
        rows.append((f"  {name}", _e(v)))
    if o.get("train_flops") is not None:
        rows.append(("train FLOPs", f"{_e(o['train_flops'])}  ({o.get('train_flops_basis', '')})"))
    if o.get("executed_flops") is not None:
        rows.append(
            ("executed FLOPs", f"{_e(o['executed_flops'])}  (causal attention as flash attention runs it)")
        )
    if o.get("total_flops") is not None:
        rows.append(("total with sunk", _e(o["total_flops"])))
    if o.get("train_flops_6nd") is not None:
        rows.append(
            ("train FLOPs, 6ND", f"{_e(o['train_flops_6nd'])}  (quick estimate: 6 x active params x tokens)")
        )
    if o.get("appendix_f_flops") is not None:
        rows.append(
            ("Appendix F count", f"{_e(o['appendix_f_flops'])}  (Hoffmann et al. 2022's own convention)")
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
        ("hardware_flops", "published hw FLOPs"),
        ("gpu_hours", "published GPU-hours"),
        ("gpu_hours_total", "  whole run"),
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
    from efflab.accounting import hardware

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

    source, preset, priced, extra = "given", None, None, {}
    if args.flops is not None and args.model:
        problems.add("give either --flops X or MODEL [--tokens N], not both")
    elif args.flops is None and not args.model:
        problems.add("nothing to price: give --flops X, or MODEL [--tokens N]")
    elif args.model:
        budget, source, preset, priced, extra = _model_budget(problems, args, tokens, seq_len)
    precision = args.precision or (preset.precision if preset is not None else "bf16")
    if args.gpu.lower() != hardware.CPU_NAME and not problems:
        try:
            hardware.gpu(args.gpu).peak(precision)
        except UserError as e:
            problems.extend(e.problems)
    problems.raise_if_any()

    kw = {
        "mfu": mfu if mfu is not None else hardware.DEFAULT_MFU,
        "price": price,
        "gpus": gpus,
        "pue": pue if pue is not None else hardware.DEFAULT_PUE,
        "tdp_w": tdp,
        "precision": precision if args.gpu.lower() != hardware.CPU_NAME else "bf16",
    }
    out = hardware.cost(budget, args.gpu, **kw)
    out["flops_source"] = source
    out["flops_convention"] = "multiply-add = 2; " + (
        "attention halved (causal, --causal)" if args.causal else "attention counted in full"
    )
    if args.model:
        out["model"] = args.model
    out.update(extra)
    if preset is not None:
        out.update(_published_run(preset, priced if not args.published else None))
    if args.json:
        from efflab.cli import emit_json

        emit_json(out)
    else:
        print(_cost_table(out))
    return 0


def _model_budget(problems: Problems, args, tokens, seq_len):
    """(FLOPs, source, preset, priced, extras) for `cost MODEL`: the pricing rule's count, or with
    --published the preset's published figure."""
    budget = source = preset = priced = None
    extra: dict = {}
    kind, obj = _model_arg(problems, args.model)
    preset = obj if kind in ("model", "run") else None
    if kind is not None:
        priced = _price(problems, kind, obj, tokens, seq_len, args.causal)
    if priced is not None and args.published:
        if preset is None or not preset.train_flops:
            problems.add(f"--published: {args.model} has no published training FLOPs")
        else:
            budget = preset.train_flops
            source = ("ESTIMATE: " if preset.estimate else "published: ") + preset.sources.get(
                "train_flops", ""
            )
    elif priced is not None and priced.get("flops") is None:
        problems.add(f"{args.model}: no published training tokens; give --tokens N (e.g. 1T)")
    elif priced is not None:
        budget, source = priced["flops"], priced["basis"]
        extra = _priced_extras(priced)
    return budget, source, preset, priced, extra


def _priced_extras(priced: dict) -> dict:
    out = {}
    for k in (
        "tokens",
        "executed_flops",
        "model_flops_full",
        "train_flops_6nd",
        "published_flops",
        "published_ratio",
        "mtp_flops",
        "total_flops",
        "phases",
        "steps",
    ):
        if priced.get(k) is not None:
            out[k] = priced[k]
    if len(priced.get("stages") or []) > 1:
        out["stages"] = priced["stages"]
    return out


def _published_run(p, priced) -> dict:
    """The MFU the published run implies: efflab's count over the tokens the GPU-hours cover, against the
    dense peak of the precision the run used."""
    from efflab.accounting import hardware

    if not (p.gpu_hours and p.gpu and (priced or p.train_flops)):
        return {}
    run_flops = (priced or {}).get("flops") or p.train_flops
    if priced is not None and priced.get("tokens") != p.tokens:
        from efflab.accounting import pricing

        run_flops = pricing.price(p.name)["flops"]
    out = {
        "published_gpu_hours": p.gpu_hours,
        "published_gpu_hours_scope": p.gpu_hours_scope,
        "implied_mfu_published": hardware.implied_mfu(run_flops, p.gpu, p.gpu_hours, p.precision),
        "implied_mfu_note": (
            f"{run_flops:.3g} FLOPs over the published tokens in {p.gpu_hours:.4g} {p.gpu} GPU-hours "
            f"({p.gpu_hours_scope or 'scope not stated'}; {p.sources.get('gpu_hours', '')}), against the dense "
            f"{p.precision.upper()} peak"
        ),
    }
    if p.gpu_hours_total:
        out["published_gpu_hours_total"] = p.gpu_hours_total
    return out


def _cost_table(o: dict) -> str:
    prec = o.get("precision", "bf16").upper()
    rows = [
        ("FLOPs", f"{o['flops']:.4g}" + (f"  ({o['flops_source']})" if o.get("flops_source") else "")),
    ]
    if o.get("executed_flops") is not None and o["executed_flops"] != o["flops"]:
        rows.append(
            ("executed FLOPs", f"{o['executed_flops']:.4g}  (causal attention as flash attention runs it)")
        )
    for st in o.get("stages") or []:
        rows.append(
            (
                f"  stage T={st['seq_len']}",
                f"{st['tokens']:.4g} tokens, {st['flops']:.4g} FLOPs  {st['note']}",
            )
        )
    if o.get("mtp_flops"):
        rows.append(("  MTP module(s)", f"{o['mtp_flops']:.4g} FLOPs (multi-token prediction, included)"))
    for name, v in (o.get("phases") or {}).items():
        rows.append((f"  {name}", f"{v:.4g}"))
    if o.get("total_flops") is not None:
        rows.append(("total with sunk", f"{o['total_flops']:.4g} FLOPs (priced: the marginal figure above)"))
    rows += [
        (
            "accelerator",
            f"{o['gpu']}: peak {o['peak_flops_per_s']:.4g} FLOP/s dense {prec}"
            if o["gpu"] != "cpu"
            else f"cpu: {o['peak_flops_per_s']:.4g} FLOP/s fp32 (measured now)",
        ),
        ("MFU", f"{o['mfu']:.3g}" + (f" of the dense {prec} peak" if o["gpu"] != "cpu" else "")),
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
    if o.get("published_flops"):
        rows.append(
            (
                "published FLOPs",
                f"{o['published_flops']:.4g}  (efflab / published = "
                f"{o['published_ratio']:.3f}; --published prices it instead)",
            )
        )
    if "implied_mfu_published" in o:
        rows.append(
            ("published run", f"implied MFU {o['implied_mfu_published']:.3f}: {o['implied_mfu_note']}")
        )
    if "published_gpu_hours_total" in o:
        rows.append(("  whole run", f"{o['published_gpu_hours_total']:.4g} GPU-hours"))
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k:<{width}}  {v}" for k, v in rows]
    lines.append(
        f"convention: FLOPs {o['flops_convention']}; GPU-hours = FLOPs / (dense peak x MFU) / 3600; energy "
        "counts accelerator board power only"
        if o.get("flops_convention")
        else "convention: GPU-hours = FLOPs / (peak x MFU) / 3600; energy counts accelerator board power only"
    )
    return "\n".join(lines)
