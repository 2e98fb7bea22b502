"""Frontier figures for a suite's verdicts: measured, anchored on published laws, scenarios, what-if.

Reads SUITE_DIR/compare.json (the `efflab.compare/2` contract: the reference compute C_ref, the
baseline frontier, controls, and per technique M and delta-L at C_ref with their 90% intervals)
and writes SUITE_DIR/extrapolate.json. Per technique:

1. measured: M and delta-L at C_ref with intervals and the verdict, and how many decades of
   compute separate C_ref from each frontier budget. Nothing measured is carried anywhere.
2. anchored: each applicable published law (efflab.laws) evaluated for the user's configuration at
   C_ref and at each budget, flagged `in_range` only where the law was fitted there; the spread
   across laws per budget. Laws whose constants are not verified, or that only state a prior,
   appear with a null multiplier and a note.
3. scenarios: the measured M / delta-L carried to each budget under five mechanisms (constant M,
   constant delta-L, constant fraction of the reducible loss, effective-parameter multiplier,
   effective-data multiplier) on a dense law (Besiroglu et al. 2024 by default), at each budget's
   published tokens-per-parameter allocation where there is one, compute-optimal otherwise. Their
   spread is the real uncertainty of a frontier number.
4. what_if: GPU-hours, dollars and MWh saved at M = 1.1, 1.5, 2 and 4 for each budget at the chosen
   GPU, MFU, price and PUE: cost(C) - cost(C/M), with cost(C/M) exactly what `efflab cost --flops
   C/M` prints. Separate from any measurement.

No fitted trend of M over scales is evaluated here, at any budget. A backtest of the baseline
frontier's L(C) runs only on a frontier of at least 5 budgets spanning at least 1.5 decades.
FLOPs: C_ref and the frontier use the detailed count (compare.json's conventions); published
budgets use their developers' figures (mostly 6ND); the laws use C = 6ND.
"""

from __future__ import annotations

import math
from pathlib import Path

from efflab import scaling
from efflab.accounting import hardware, presets
from efflab.errors import Problems, UserError
from efflab.io import atomic_write_json, read_json
from efflab.laws import get_law, multiplier_at, optimal, scenario_multipliers
from efflab.laws.moe import EXPANSION, moe_multiplier

__all__ = [
    "DEFAULT_BUDGETS",
    "WHAT_IF_M",
    "BACKTEST_MIN_BUDGETS",
    "BACKTEST_MIN_DECADES",
    "extrapolate",
    "extrapolate_suite",
    "identifiable",
    "laws_for",
]

DEFAULT_BUDGETS = ("gpt3-175b", "gpt4-estimate", "llama-3.1-405b", "frontier-2026")
WHAT_IF_M = (1.1, 1.5, 2.0, 4.0)
BACKTEST_MIN_BUDGETS = 5
BACKTEST_MIN_DECADES = 1.5
M_SHOWN = (1e-3, 1e3)  # a multiplier outside this range is not a result
MAX_INTERVAL_RATIO = 100.0  # an interval wider than hi/lo = 100 is not a result
REFERENCE = "reference"  # the budget key for C_ref in `anchored[].multiplier`


# ---------------------------------------------------------------------------------------------
# inputs


def _budgets(names) -> dict:
    """name -> {flops, source, estimate, tokens_per_param} for frontier presets (FLOPs as published)."""
    p = Problems(header="bad --to")
    out = {}
    for name in names or DEFAULT_BUDGETS:
        try:
            pre = presets.get_preset(name)
        except UserError as e:
            p.extend(e.problems)
            continue
        if not pre.train_flops:
            p.add(f"preset {pre.name}: no published training FLOPs to use as a budget")
            continue
        dense = pre.params_active is None and pre.params and pre.tokens
        out[pre.name] = {
            "flops": float(pre.train_flops),
            "source": pre.sources.get("train_flops", ""),
            "estimate": bool(pre.estimate),
            # the run's own allocation (dense runs with published N and D); None: compute-optimal
            "tokens_per_param": (pre.tokens / pre.params) if dense else None,
        }
    p.raise_if_any()
    return out


def _num(x):
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _estimate(d) -> dict:
    d = d if isinstance(d, dict) else {}
    return {k: _num(d.get(k)) for k in ("value", "lo", "hi")}


def validate_compare(cmp: dict, where: str = "compare.json") -> None:
    """Raise one UserError naming every missing key extrapolate needs."""
    p = Problems(header=f"{where}: not the compare.json contract (efflab.compare/2)")
    if not isinstance(cmp, dict):
        raise UserError(f"{where}: expected a JSON object")
    ref = cmp.get("reference")
    if not isinstance(ref, dict) or _num(ref.get("flops")) is None or ref["flops"] <= 0:
        p.add("reference.flops (C_ref, FLOPs) is missing or not a positive number")
    techs = cmp.get("techniques")
    if not isinstance(techs, dict):
        p.add("techniques is missing (an object of technique -> verdict)")
    else:
        for t, e in techs.items():
            if not isinstance(e, dict) or "multiplier" not in e or "delta_loss" not in e:
                p.add(f"techniques.{t}: needs multiplier and delta_loss")
    p.raise_if_any()


def identifiable(m: dict) -> tuple[bool, str | None]:
    """Whether a measured multiplier {value, lo, hi} may be shown as a result, and why not."""
    v, lo, hi = m.get("value"), m.get("lo"), m.get("hi")
    if v is None:
        return False, "not identifiable from this data (no multiplier measured)"
    if not (M_SHOWN[0] <= v <= M_SHOWN[1]):
        return False, "not identifiable from this data (the measured M lies outside [1e-3, 1e3])"
    if lo is not None and hi is not None and lo > 0 and hi / lo > MAX_INTERVAL_RATIO:
        return False, "not identifiable from this data (its 90% interval spans over 100x)"
    return True, None


# ---------------------------------------------------------------------------------------------
# anchored: published laws for the user's configuration


def laws_for(name: str, entry: dict) -> list[str]:
    """Names of the published laws that speak to technique `name` (its recipe decides)."""
    recipe = str(entry.get("recipe") or name).lower()
    key = name.lower()
    if "seqlen" in key or "seq_len" in key or "warmup" in key:
        return ["li2022"]
    if recipe == "moe" or key.startswith("moe"):
        return ["krajewski2024", "clark2022", "fedus2021"]
    if recipe == "distill" or key.startswith("distill"):
        return ["busbridge2025"]
    if recipe == "synthetic" or key.startswith("synthetic"):
        return ["muennighoff2023"]
    if recipe == "curriculum" or "curriculum" in key or "pacing" in key:
        return ["wu2021"]
    return []


def _synthetic_data_multiplier(cfg: dict, r_star: float) -> tuple[float | None, str]:
    """Effective-data multiplier of a mix with fraction phi of synthetic text seen e times
    (Muennighoff et al. 2023, Eq. 5): (1 - phi) + phi (1 + R* (1 - e^-(e-1)/R*)) / e."""
    phi, ep = _num(cfg.get("synthetic_fraction")), _num(cfg.get("synthetic_epochs"))
    if phi is None or ep is None or not (0 <= phi <= 1) or ep < 1:
        return None, "needs config.synthetic_fraction (0-1) and config.synthetic_epochs (>= 1)"
    worth = (1 + r_star * (1 - math.exp(-(ep - 1) / r_star))) / ep
    k = (1 - phi) + phi * worth
    return k, (
        f"prices repetition only: {phi:.0%} synthetic text seen {ep:g} times is worth {k:.3f}x as much "
        "fresh data; whether synthetic text is better or worse than real text is not in the law"
    )


def _anchor(law_name: str, cfg: dict, c_ref: float, budgets: dict, ref: dict | None = None) -> dict:
    law = get_law(law_name)
    row = {
        "law": law.name,
        "source": law.source,
        "status": law.status,
        "in_range": False,
        "in_range_by_budget": {},
        "multiplier": {REFERENCE: None, **dict.fromkeys(budgets)},
        "note": law.notes,
    }
    if law.name == "muennighoff2023":
        k, why = _synthetic_data_multiplier(cfg, law.constants["R_D*"])
        row["note"] = why
        if k is None:
            return row
        row["effective_data_multiplier"] = k
        row["scope"] = "repetition only"
        points = {REFERENCE: c_ref, **{b: v["flops"] for b, v in budgets.items()}}
        for name, C in points.items():
            o = optimal(law, C)
            row["multiplier"][name] = multiplier_at(law, C, law.loss(o["params"], o["tokens"] * k))
            row["in_range_by_budget"][name] = law.in_range(o["params"], o["tokens"])
        row["in_range"] = all(row["in_range_by_budget"].values())
        return row
    if law.status == "prior" and law.name == "wu2021":
        row["multiplier"] = dict.fromkeys(row["multiplier"], 1.0)
        row["note"] = "prior, not a law: " + law.notes
        return row
    if law.name == "krajewski2024":
        return _anchor_krajewski(law, row, cfg, c_ref, budgets)
    if law.name == "busbridge2025":
        return _anchor_busbridge(law, row, cfg, c_ref, budgets, ref or {})
    row["note"] = f"not evaluated ({law.status}): {law.notes}"
    return row


def _anchor_krajewski(law, row: dict, cfg: dict, c_ref: float, budgets: dict) -> dict:
    """Krajewski et al. 2024: the compute-optimal MoE (E = 64, the configuration's G; N and D chosen
    for each budget under the paper's Eq. 10 FLOPs) over the same paper's compute-optimal dense law."""

    n_exp, G, k = _num(cfg.get("experts")), _num(cfg.get("granularity")), _num(cfg.get("top_k"))
    G = 1.0 if G is None else G
    why = []
    if G < 1:
        why.append(f"granularity {G:g} < 1 is outside the law (G >= 1)")
        G = 1.0
    E = None if n_exp is None else n_exp / G  # expansion rate: N_expert = G E (the paper's Eq. 3)
    if E != EXPANSION:
        have = "none stated" if E is None else f"{E:g} ({n_exp:g} experts at G = {G:g})"
        why.append(f"fitted at expansion rate E = 64 experts, this configuration has {have}")
    if k is not None and k != G:
        why.append(f"the law routes each token to G = {G:g} experts, this configuration to top-{k:g}")
    if why:
        row["note"] = "not evaluated: " + "; ".join(why)
        return row
    points = {REFERENCE: c_ref, **{b: v["flops"] for b, v in budgets.items()}}
    for name, C in points.items():
        r = moe_multiplier(law, C, G)
        row["multiplier"][name] = r["multiplier"]
        row["in_range_by_budget"][name] = law.in_range(r["moe"]["params"], r["moe"]["tokens"])
    row["in_range"] = all(row["in_range_by_budget"].values())
    row["granularity"] = G
    row["scope"] = f"a compute-optimal E = 64, G = {G:g} MoE vs the paper's dense law"
    row["note"] = (
        f"compute-optimal MoE (E = 64, G = {G:g}, FLOPs by the paper's Eq. 10, routing counted) over "
        "the same paper's compute-optimal dense law (6ND); both fitted on C4 below 4B parameters"
    )
    return row


def _anchor_busbridge(law, row: dict, cfg: dict, c_ref: float, budgets: dict, ref: dict) -> dict:
    """Busbridge et al. 2025: at each budget the student is the supervised compute-optimal model
    (C = 6ND), the teacher k times its size trained at 20 tokens per parameter (the paper's fixed-M
    teachers), k = the configuration's teacher/student parameter ratio; M = supervised FLOPs to reach
    the distilled loss / C. The teacher's pretraining and logits are not charged (it exists)."""
    t, s = _num(cfg.get("teacher_non_embedding_params")), _num(ref.get("non_embedding_params"))
    if t is None or s is None:  # the paper's N is non-embedding; total counts only when that is all there is
        t, s = _num(cfg.get("teacher_params")), _num(ref.get("params"))
    if t is None or s is None or t <= 0 or s <= 0:
        row["note"] = (
            "not evaluated: needs config.teacher_params and the reference's (non-embedding) parameters "
            "for the teacher/student size ratio"
        )
        return row
    k = t / s
    points = {REFERENCE: c_ref, **{b: v["flops"] for b, v in budgets.items()}}
    row["multiplier_total"] = {}
    for name, C in points.items():
        o = optimal(law, C)
        n_t = k * o["params"]
        l_t = law.loss(n_t, 20.0 * n_t)
        l_s = law.loss(o["params"], o["tokens"], teacher_loss=l_t)
        m = multiplier_at(law, C, l_s)
        row["multiplier"][name] = m
        # Eq. 9 with F(N) = 2N: + teacher pretraining 6 N_T D_T + teacher logits 2 N_T D_S
        charged = C + 6.0 * n_t * 20.0 * n_t + 2.0 * n_t * o["tokens"]
        row["multiplier_total"][name] = None if m is None else m * C / charged
        row["in_range_by_budget"][name] = law.in_range(o["params"], o["tokens"]) and law.in_range(n_t)
    row["in_range"] = all(row["in_range_by_budget"].values())
    row["teacher_ratio"] = k
    row["scope"] = "an existing teacher (its training and logits not charged)"
    row["note"] = (
        f"a compute-optimal student distilled from a teacher {k:.3g}x its size trained at 20 tokens per parameter, over the paper's supervised law at equal "
        "student compute (6ND); the teacher's pretraining and logits are not charged (it exists); "
        "multiplier_total charges both (Eq. 9, 6 N_T D_T + 2 N_T D_S)"
    )
    return row


def _spread(anchored: list[dict], keys) -> dict:
    out = {}
    for b in keys:
        vals = [a["multiplier"][b] for a in anchored if a["multiplier"].get(b) is not None]
        out[b] = {"lo": min(vals), "hi": max(vals), "n_laws": len(vals)} if vals else None
    return out


# ---------------------------------------------------------------------------------------------
# scenarios and what-if


def _scenarios(law, m: dict, dl: dict, budgets: dict) -> tuple[dict, dict, dict]:
    """({scenario: {budget: M}}, {scenario: {budget: {lo, hi}}}, {budget: {lo, hi}} band)."""
    point, ivs = {}, {}
    for b, v in budgets.items():
        r = v["tokens_per_param"]
        mid = scenario_multipliers(law, v["flops"], M=m["value"], delta_loss=dl["value"], ratio=r)
        low = scenario_multipliers(law, v["flops"], M=m["lo"], delta_loss=dl["hi"], ratio=r)
        high = scenario_multipliers(law, v["flops"], M=m["hi"], delta_loss=dl["lo"], ratio=r)
        for s, x in mid.items():
            point.setdefault(s, {})[b] = x
            lo, hi = low[s], high[s]
            ivs.setdefault(s, {})[b] = (
                None if lo is None or hi is None else {"lo": min(lo, hi), "hi": max(lo, hi)}
            )
    band = {}
    for b in budgets:
        vals = [point[s][b] for s in point if point[s][b] is not None]
        band[b] = {"lo": min(vals), "hi": max(vals)} if vals else None
    return point, ivs, band


def what_if(budgets: dict, *, gpu: str, mfu: float, price: float | None, pue: float) -> dict:
    """{M: {budget: saved gpu_hours / cost_usd / energy_mwh, and `needed` = efflab cost at C/M}}."""
    out = {}
    for M in WHAT_IF_M:
        row = {}
        for b, v in budgets.items():
            full = hardware.cost(v["flops"], gpu, mfu=mfu, price=price, pue=pue)
            need = hardware.cost(v["flops"] / M, gpu, mfu=mfu, price=price, pue=pue)

            def saved(k, full=full, need=need):
                return None if full[k] is None or need[k] is None else full[k] - need[k]

            row[b] = {
                "flops_saved": v["flops"] - v["flops"] / M,
                "gpu_hours": saved("gpu_hours"),
                "cost_usd": saved("cost_usd"),
                "energy_mwh": saved("energy_mwh"),
                "needed": {k: need[k] for k in ("flops", "gpu_hours", "cost_usd", "energy_mwh")},
            }
        out[f"{M:g}"] = row
    return out


# ---------------------------------------------------------------------------------------------
# backtest: only on a frontier long enough to judge extrapolation


def backtest(cmp: dict) -> dict:
    """Fit L(C) on every frontier budget but the largest, predict the largest (or say why not)."""

    fr = cmp.get("frontier") or {}
    budgets = sorted(float(b) for b in fr.get("budgets") or [] if _num(b))
    span = math.log10(budgets[-1] / budgets[0]) if len(budgets) >= 2 else 0.0
    gate = (
        f"a backtest needs a frontier of at least {BACKTEST_MIN_BUDGETS} budgets spanning at least "
        f"{BACKTEST_MIN_DECADES:g} decades of compute (the GPU suite's ladder)"
    )
    if len(budgets) < BACKTEST_MIN_BUDGETS or span < BACKTEST_MIN_DECADES:
        return {
            "available": False,
            "note": f"no backtest: this frontier has {len(budgets)} budgets spanning {span:.2f} decades; {gate}",
        }
    pts = [p for p in fr.get("points") or [] if _num(p.get("flops")) and _num(p.get("loss"))]
    bt = scaling.backtest_power_law(
        [p["flops"] for p in pts],
        [p["loss"] for p in pts],
        groups=[p.get("seed", i) for i, p in enumerate(pts)],
        n_bootstrap=200,
    )
    return {
        "available": True,
        "note": f"frontier of {len(budgets)} budgets over {span:.2f} decades",
        "loss": bt.to_dict(),
    }


# ---------------------------------------------------------------------------------------------
# the whole thing


def _measured(e: dict, c_ref: float, budgets: dict) -> dict:
    m = _estimate(e.get("multiplier"))
    ok, why = identifiable(m)
    return {
        "multiplier": m,
        "delta_loss": _estimate(e.get("delta_loss")),
        "verdict": e.get("verdict"),
        "detectable_multiplier": _num(e.get("detectable_multiplier")),
        "n_pairs": e.get("n_pairs"),
        "p_holm": _num(e.get("p_holm")),
        "wallclock_multiplier": _num(e.get("wallclock_multiplier")),
        "in_frontier": e.get("in_frontier"),
        "identifiable": ok,
        "note": why or e.get("note"),
        "decades": {b: math.log10(v["flops"] / c_ref) for b, v in budgets.items()},
    }


def extrapolate(
    cmp: dict,
    *,
    to=None,
    gpu: str = "h100",
    mfu: float = hardware.DEFAULT_MFU,
    price: float | None = None,
    pue: float = hardware.DEFAULT_PUE,
    law: str = "besiroglu2024",
) -> dict:
    """extrapolate.json (as a dict) for a compare.json dict. See the module docstring."""
    validate_compare(cmp)
    p = Problems(header="bad extrapolation input")
    if not (0 < mfu <= 1):
        p.add(f"--mfu must be in (0, 1], got {mfu}")
    if pue < 1:
        p.add(f"--pue must be >= 1, got {pue}")
    try:
        hardware.gpu(gpu)
    except UserError as e:
        p.extend(e.problems)
    try:
        dense = get_law(law)
        if dense.kind != "dense":
            p.add(f"--law {law}: scenarios need a dense law (hoffmann2022 or besiroglu2024)")
    except KeyError as e:
        p.add(str(e.args[0]))
    try:
        budgets = _budgets(to)
    except UserError as e:
        p.extend(e.problems)
    p.raise_if_any()

    c_ref = float(cmp["reference"]["flops"])
    techniques = {}
    for name, e in cmp["techniques"].items():
        measured = _measured(e, c_ref, budgets)
        anchored = [
            _anchor(n, e.get("config") or {}, c_ref, budgets, cmp.get("reference")) for n in laws_for(name, e)
        ]
        entry = {
            "label": e.get("label", name),
            "recipe": e.get("recipe"),
            "measured": measured,
            "anchored": anchored,
            "anchored_spread": _spread(anchored, [REFERENCE, *budgets]),
        }
        if measured["identifiable"]:
            pt, ivs, band = _scenarios(dense, measured["multiplier"], measured["delta_loss"], budgets)
        else:
            pt, ivs, band = {}, {}, dict.fromkeys(budgets)
        entry.update(scenarios=pt, scenario_intervals=ivs, scenario_band=band)
        techniques[name] = entry

    return {
        "schema": "efflab.extrapolate/2",
        "suite": cmp.get("suite"),
        "conventions": (
            "C_ref and the baseline frontier: detailed FLOP count of compare.json (2 FLOPs per "
            "multiply-add, attention in full, training = 3x forward); frontier budgets: their "
            "developers' published figures (6ND for most); laws: C = 6ND. Losses in nats/token; "
            "delta-L < 0 is better. M = baseline compute to reach the technique's loss / its compute."
        ),
        "reference": dict(cmp["reference"]),
        "budgets": budgets,
        "hardware": {"gpu": gpu, "mfu": mfu, "price_per_gpu_hour": price, "pue": pue},
        "scenario_law": {"name": dense.name, "source": dense.source},
        "scenario_allocation": "each budget's published tokens per parameter where known, else compute-optimal",
        "controls": cmp.get("controls"),
        "techniques": techniques,
        "what_if": what_if(budgets, gpu=gpu, mfu=mfu, price=price, pue=pue),
        "backtest": backtest(cmp),
        "notes": [
            "No fitted trend of M over scales is evaluated outside the measured compute range: frontier "
            "numbers are scenarios and published laws, never a trend carried forward.",
        ],
    }


def suite_defaults(suite_dir) -> dict:
    """to / gpu / mfu / price / pue from SUITE_DIR/suite.yaml's `extrapolate` section, where there is one."""
    import yaml

    p = Path(suite_dir) / "suite.yaml"
    if not p.is_file():
        return {}
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, OSError):
        return {}
    ex = raw.get("extrapolate") if isinstance(raw, dict) else None
    if not isinstance(ex, dict):
        return {}
    return {k: ex[k] for k in ("to", "gpu", "mfu", "price", "pue") if ex.get(k) is not None}


def extrapolate_suite(suite_dir, **kw) -> dict:
    """Read SUITE_DIR/compare.json, write SUITE_DIR/extrapolate.json, return it.

    Settings not given in `kw` come from the suite file's `extrapolate` section (suite_defaults),
    then from the defaults of `extrapolate`.
    """

    sdir = Path(suite_dir)
    kw = {**suite_defaults(sdir), **kw}
    path = sdir / "compare.json"
    if not path.is_file():
        raise UserError(
            f"{sdir}: no compare.json; run `efflab suite FILE --out {sdir}` (or `efflab compare {sdir}`) first"
        )
    try:
        cmp = read_json(path)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    validate_compare(cmp, str(path))
    res = extrapolate(cmp, **kw)
    atomic_write_json(sdir / "extrapolate.json", res)
    return res
