"""compare.json for a suite directory: the baseline frontier, each arm's paired multiplier and delta-L
with pooled t-intervals, Holm-adjusted verdicts with the design's detectable effect, and the A/A and
oversized controls (the math lives in efflab.verdicts; this module reads run directories).

The contract (schema efflab.compare/2), read by extrapolate, the report and validate:
    reference {flops, params, non_embedding_params, embedding_params, tokens, tokens_per_param,
               tokens_per_total_param, seq_len, vocab_size, description}
    frontier {budgets, seeds, points, fit, loss_range}      noise {sigma_loss, n, rho}
    controls.aa / controls.oversized {multiplier, delta_loss, n_pairs, ...}; oversized.predicted {lo, hi}
    techniques.<T> {label, recipe, multiplier, delta_loss, n_pairs, verdict, detectable_multiplier,
                    p_holm, wallclock_multiplier, views {marginal, total_k1, total_kinf}, in_frontier, config}
    excluded [{run, reason}]      scales {<name>: the same keys, one per reference scale}
Multipliers are {value, lo, hi}; a value that cannot be computed is null, with a "note" saying why.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from efflab import verdicts as V
from efflab.accounting.flops import count_flops
from efflab.io import read_json
from efflab.rundir import RunDir, check_run

CONVENTIONS = (
    "FLOPs: multiply-add = 2; forward = 2 x active matmul parameters (LM head included, embedding lookup "
    "excluded) + attention scores and values in full; training = 3 x forward; eval never summed. Loss: "
    "final eval loss in nats/token on the shared held-out set. M = C_b^-1(L_technique) / C_technique on the "
    "baseline frontier of completed runs (paired seeds); intervals: t on paired log-ratios, pooled variance."
)


def _read_run(run_dir: Path) -> tuple[dict | None, str | None]:
    """(what the verdicts need, None) for a complete, sound run, else (None, why not)."""

    rd = RunDir(run_dir)
    if not rd.manifest_path.is_file():
        return None, "not started"
    problems = check_run(run_dir)  # not complete, failed (with its reason), or damaged (naming the file)
    if problems:
        return None, "; ".join(problems)
    try:
        m = rd.read_manifest()
    except (OSError, ValueError) as e:
        return None, f"manifest.json unreadable ({e})"
    if m.get("status") != "complete":
        return None, f"status {m.get('status')!r}, not complete"
    res = m.get("result") or {}
    loss = res.get("final_eval_loss")
    if not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return None, "no finite final eval loss"
    try:
        ledger = read_json(rd.ledger_path)
    except (OSError, ValueError) as e:
        return None, f"ledger.json unreadable ({e})"
    if any(float(v.get("flops", 0.0)) < 0 for v in (ledger.get("phases") or {}).values()):
        return None, "ledger.json has negative FLOPs"
    return {"manifest": m, "ledger": ledger, "loss": float(loss)}, None


def _params(run_dir: Path, seq_len: int) -> dict:
    c = count_flops(str(run_dir / "model" / "config.json"), seq_len)
    return {
        "params": c.params_total,
        "active": c.params_active,
        "embedding": c.params_embedding,
        "non_embedding": c.params_active - c.params_embedding,
    }


def _technique_config(run_dir: Path, info: dict, recipe: str, reference: dict) -> dict:
    """What the laws need to know of this arm's configuration (experts, teacher, synthetic mix)."""
    cfg = RunDir(run_dir).read_config()
    m = info["manifest"]
    out: dict = {}
    if recipe == "moe":
        mo = m.get("moe") or {}
        out.update(
            experts=mo.get("n_experts"),
            top_k=mo.get("top_k"),
            expert_width=mo.get("expert_width"),
            dense_ffn=mo.get("dense_ffn"),
        )
        if mo.get("expert_width") and mo.get("dense_ffn"):
            out["granularity"] = mo["dense_ffn"] / mo["expert_width"]  # Krajewski et al. 2024's G
        p = _params(run_dir, reference["seq_len"])
        out.update(total_params=p["params"], active_params=p["active"])
    elif recipe == "distill":
        d = m.get("distill") or {}
        out.update(
            teacher_loss=d.get("teacher_eval_loss"),
            alpha=d.get("alpha"),
            loss=d.get("loss"),
            temperature=d.get("temperature"),
        )
        teacher = (cfg.get("distill") or {}).get("teacher")
        if teacher and (Path(teacher) / "model" / "config.json").is_file():
            tp = _params(Path(teacher), reference["seq_len"])
            out.update(teacher_params=tp["params"], teacher_non_embedding_params=tp["non_embedding"])
    elif recipe == "synthetic":
        s = m.get("synthetic") or {}
        out.update(
            synthetic_fraction=(cfg.get("synthetic") or {}).get("mix_ratio"),
            synthetic_epochs=s.get("synthetic_epochs"),
            synthetic_tokens=s.get("kept_tokens"),
        )
    elif recipe == "curriculum":
        c = cfg.get("curriculum") or {}
        out.update({k: c.get(k) for k in ("scorer", "order", "pacing", "seq_len_warmup") if k in c})
    return {k: v for k, v in out.items() if v is not None}


CONTROL_ARMS = ("aa", "oversized")  # the controls every suite runs beside its techniques


def compare_scale(sdir: Path, sc, scale, tasks) -> dict:
    excluded = []
    runs: dict[str, dict] = {}
    eval_hash = {}
    for t in tasks:
        if t.scale != scale.name or t.kind not in ("frontier", "arm"):
            continue
        info, why = _read_run(sdir / t.dir)
        if info is None:
            excluded.append({"run": t.name, "reason": why})
            continue
        h = (info["manifest"].get("data") or {}).get("eval_set_hash")
        eval_hash.setdefault(h, []).append(t.name)
        runs[t.name] = {"task": t, **info}
    if len(eval_hash) > 1:  # every run must be scored on the same held-out tokens
        major = max(eval_hash, key=lambda h: len(eval_hash[h]))
        for h, names in eval_hash.items():
            if h != major:
                for n in names:
                    excluded.append(
                        {"run": n, "reason": "evaluated on another eval set (eval_set_hash differs)"}
                    )
                    runs.pop(n)

    c_ref = scale.budget_flops
    frontier = [r for r in runs.values() if r["task"].kind == "frontier"]
    points = [(V.spend(r["ledger"], "marginal"), r["loss"]) for r in frontier]
    out: dict = {"scale": scale.name, "excluded": excluded}
    base_runs = {r["task"].seed: r for r in frontier if r["task"].budget_mult == 1.0}
    if not base_runs:
        out["note"] = "no complete baseline run at C_ref: nothing to compare against"
        return out
    any_base = next(iter(base_runs.values()))
    bdir = sdir / any_base["task"].dir
    seq_len = int((any_base["manifest"].get("data") or {}).get("seq_len") or sc.data.seq_len)
    p = _params(bdir, seq_len)
    tokens = float(np.mean([r["ledger"]["phases"]["train"]["tokens"] for r in base_runs.values()]))
    shape = scale.model.resolved()
    out["reference"] = {
        "flops": c_ref,
        "params": p["params"],
        "non_embedding_params": p["non_embedding"],
        "embedding_params": p["embedding"],
        "tokens": tokens,
        "tokens_per_param": tokens / p["non_embedding"],
        "tokens_per_total_param": tokens / p["params"],
        "seq_len": seq_len,
        "vocab_size": (any_base["manifest"].get("data") or {}).get("vocab_size"),
        "description": f"{shape['n_layer']} layers x {shape['width']}, {shape['n_head']} heads, "
        f"{'tied' if scale.model.tie_embeddings else 'untied'} embeddings, T = {seq_len}",
    }
    budgets = sorted({r["task"].budget_mult * c_ref for r in frontier})
    out["frontier"] = {
        "budgets": budgets,
        "seeds": sc.frontier.seeds,
        "points": [
            {"flops": c, "loss": loss, "seed": r["task"].seed, "run": r["task"].name}
            for (c, loss), r in zip(points, frontier)
        ],
    }
    try:
        fr = V.fit_frontier(points, c_ref)
    except ValueError as e:
        out["frontier"]["note"] = str(e)
        out["note"] = f"no frontier: {e}"
        return out
    out["frontier"]["fit"] = fr.to_dict()
    out["frontier"]["loss_range"] = list(fr.loss_range)

    base = {s: V.RunResult(r["task"].name, s, r["loss"], r["ledger"]) for s, r in base_runs.items()}
    arm_specs = sc.arms()
    arms = {}
    for a in arm_specs:
        got = {
            r["task"].seed: V.RunResult(r["task"].name, r["task"].seed, r["loss"], r["ledger"])
            for r in runs.values()
            if r["task"].kind == "arm" and r["task"].arm == a
        }
        if got:
            arms[a] = got
    primary = [a for a, s in arm_specs.items() if s.primary and a in arms]
    res = V.compare_arms(fr, base, arms, primary=primary, level=sc.level)
    sigma = V.sigma_loss(list(base.values()))
    sd_dl = res["pooled"]["delta_loss"]["sd"]
    out["noise"] = {
        "sigma_loss": sigma,
        "n": len(base),
        "rho": (1 - sd_dl**2 / (2 * sigma**2)) if sigma and math.isfinite(sd_dl) else None,
        "sd_delta_loss_pooled": sd_dl,
        "df": res["pooled"]["delta_loss"]["df"],
        "note": "rho: the correlation within a pair that pairing buys, from the pooled delta-L variance "
        "(var = 2 sigma^2 (1 - rho))",
    }
    out["level"] = sc.level
    out["holm_family"] = primary
    out["techniques"], out["controls"] = {}, {}
    for a, r in res["arms"].items():
        spec = arm_specs[a]
        row = {
            "label": spec.label or a,
            "recipe": spec.recipe,
            **r,
            "wallclock_multiplier": V.wallclock_multiplier(fr, base, arms[a]),
            "primary": spec.primary,
            "control_of": spec.control_of,
            "runs": sorted(x.name for x in arms[a].values()),
        }
        if row["n_pairs"] < 2:
            row["verdict"] = "inconclusive"
            row["note"] = (row.get("note", "") + " one seed pair: no interval, no verdict").strip()
        if a in CONTROL_ARMS:
            out["controls"][a] = row
        else:
            first = next(iter(arms[a].values())).name
            row["config"] = _technique_config(
                sdir / "runs" / first, runs[first], spec.recipe, out["reference"]
            )
            out["techniques"][a] = row
    for c, spec in arm_specs.items():  # a technique against its own control (e.g. ordering vs random pacing)
        t = spec.control_of
        if t in out["techniques"] and c in arms and t in arms:
            lt = dict(zip(V.pair(base, arms[t]), V.log_ratios(fr, base, arms[t], "marginal")))
            lc = dict(zip(V.pair(base, arms[c]), V.log_ratios(fr, base, arms[c], "marginal")))
            d = [lt[s] - lc[s] for s in sorted(set(lt) & set(lc)) if math.isfinite(lt[s] - lc[s])]
            sd = float(np.std(d, ddof=1)) if len(d) > 1 else float("nan")
            lo, hi = V.t_interval(float(np.mean(d)) if d else float("nan"), sd, len(d), len(d) - 1, sc.level)
            m = float(np.mean(d)) if d else float("nan")
            out["techniques"][t]["vs_control"] = {
                "control": c,
                "n_pairs": len(d),
                "multiplier": {
                    "value": math.exp(m) if d else None,
                    "lo": math.exp(lo) if math.isfinite(lo) else None,
                    "hi": math.exp(hi) if math.isfinite(hi) else None,
                },
                "note": f"M of {t} over M of {c}, paired by seed; t-interval on its own {len(d) - 1} df",
            }
    aa = out["controls"].get("aa")
    if aa:
        m = aa["multiplier"]
        aa["covers_one"] = bool(m["lo"] is not None and m["lo"] <= 1 <= m["hi"])
    ov = out["controls"].get("oversized")
    if ov:
        first = next(iter(arms["oversized"].values())).name
        po = _params(sdir / "runs" / first, seq_len)
        k = po["non_embedding"] / p["non_embedding"]
        pred = V.oversized_prediction(k, "fixed")
        ov.update(
            size_ratio=k,
            predicted={"lo": pred["lo"], "hi": pred["hi"]},
            prediction=pred,
            prediction_envelope=V.oversized_prediction(k, "optimal"),
            detected=bool(ov["multiplier"]["hi"] is not None and ov["multiplier"]["hi"] < 1),
        )
        ov["prediction_note"] = (
            f"a model {k:.2f}x the reference's non-embedding parameters at the same compute, read off a "
            "frontier of the reference shape, under L = E + A/N^alpha + B/D^beta with Hoffmann et al. 2022 "
            "(approach 3) and Besiroglu et al. 2024 exponents; assumes the reference is compute-optimal"
        )
    return out


def compare_suite(sdir, sc, state: dict | None = None, *, tasks) -> dict:
    """compare.json for a suite directory; `tasks`: the suite's plan (efflab.suite.plan), which names
    every run and its role."""
    sdir = Path(sdir)
    per_scale = {s.name: compare_scale(sdir, sc, s, tasks) for s in sc.scales}
    primary = per_scale[sc.primary_scale().name]
    doc = {
        "schema": "efflab.compare/2",
        "suite": sc.name,
        "conventions": CONVENTIONS,
        "views": V.VIEW_HELP,
        "reference_scale": sc.primary_scale().name,
        **primary,
        "lr": (state or {}).get("lr", {}),
        "excluded": [e for s in per_scale.values() for e in s.get("excluded", [])],
    }
    if len(per_scale) > 1:
        doc["scales"] = per_scale
    return _finite(doc)


def _finite(o):
    """JSON has no NaN or infinity: such values become null."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, np.floating):
        return _finite(float(o))
    if isinstance(o, np.integer):
        return int(o)
    return o


# =============================================================================================
# words and a table (the CLI headline; the report leads with the same sentences)
# =============================================================================================
def _m(x) -> str:
    if x is None:
        return "n/a"
    if not 1e-3 <= x <= 1e3:
        return "not identifiable"
    return f"{x:.3g}x"


def _ci(d: dict | None, fmt=_m) -> str:
    if not d or d.get("value") is None:
        return "n/a"
    lo, hi = d.get("lo"), d.get("hi")
    if lo is None or hi is None:
        return f"{fmt(d['value'])} (no interval)"
    if fmt is _m and lo > 0 and hi / lo > 100:
        return f"{fmt(d['value'])} [interval wider than 100x: not identifiable]"
    return f"{fmt(d['value'])} [{fmt(lo)}, {fmt(hi)}]"


def _nats(x) -> str:
    return "n/a" if x is None else f"{x:+.4f}"


def sentence(name: str, row: dict, c_ref: float) -> str:
    """One sentence per technique: what it saves (or costs), how sure, and what the design can see."""
    m, v = row.get("multiplier") or {}, row.get("verdict")
    label = row.get("label") or name
    n = row.get("n_pairs", 0)
    where = f"at C_ref = {c_ref:.3g} FLOPs, {n} seed pairs"
    if v == "saves":
        s, lo, hi = (1 - 1 / m["value"]), 1 - 1 / m["lo"], 1 - 1 / m["hi"]
        txt = f"{label}: saves {s:.0%} of compute [{lo:.0%}, {hi:.0%}] {where} (M = {_ci(m)})"
    elif v == "costs":
        txt = (
            f"{label}: costs compute: M = {_ci(m)} {where}; the baseline reaches its loss with "
            f"{m['value']:.2f}x the compute it spent"
        )
    else:
        det = row.get("detectable_multiplier")
        txt = (
            f"{label}: inconclusive: M = {_ci(m)} {where}; this design detects M >= {_m(det)} "
            f"(or <= {_m(1 / det) if det else 'n/a'}) with 80% power"
        )
    if row.get("in_frontier") is False:
        txt += " [outside the frontier: extrapolated]"
    return txt


def format_verdicts(doc: dict) -> str:
    ref = doc.get("reference")
    if not ref:
        return f"no verdicts: {doc.get('note', 'no complete baseline at C_ref')}"
    fr, noise = doc["frontier"], doc["noise"]
    lines = [
        f"Reference: {ref['description']}; {ref['params']:,} parameters ({ref['non_embedding_params']:,} "
        f"non-embedding), {ref['tokens']:.3g} tokens ({ref['tokens_per_param']:.1f} per non-embedding "
        f"parameter), C_ref = {ref['flops']:.3g} FLOPs.",
        f"Frontier: {len(fr['budgets'])} budgets {', '.join(f'{b:.3g}' for b in fr['budgets'])} FLOPs "
        f"({max(fr['budgets']) / min(fr['budgets']):.0f}x), {fr.get('fit', {}).get('form', 'no fit')}; "
        f"slope {fr.get('fit', {}).get('slope_at_ref', float('nan')):.3f} nats per e-fold at C_ref.",
        f"Noise: sigma_loss = {noise['sigma_loss']:.4f} nats over {noise['n']} baseline seeds"
        + (f"; pairing correlation rho = {noise['rho']:.2f}" if noise.get("rho") is not None else "")
        + f"; intervals {doc.get('level', 0.9):.0%} t, pooled over {noise.get('df') or 0:.1f} df; Holm over "
        f"{', '.join(doc.get('holm_family', []))}.",
        "",
    ]
    head = (
        "arm",
        "M (marginal) [90% CI]",
        "delta-L nats [90% CI]",
        "pairs",
        "p Holm",
        "verdict",
        "detects M>=",
        "wall-clock M",
        "total K=1",
        "total K=inf",
    )
    rows = []
    for name, row in list(doc.get("techniques", {}).items()) + [
        (f"control: {k}", v) for k, v in doc.get("controls", {}).items()
    ]:
        rows.append(
            (
                name,
                _ci(row.get("multiplier")),
                _ci(row.get("delta_loss"), _nats),
                str(row.get("n_pairs")),
                "-" if row.get("p_holm") is None else f"{row['p_holm']:.3g}",
                row.get("verdict", "-"),
                _m(row.get("detectable_multiplier")),
                _m(row.get("wallclock_multiplier")),
                _m((row.get("views") or {}).get("total_k1", {}).get("value")),
                _m((row.get("views") or {}).get("total_kinf", {}).get("value")),
            )
        )
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    lines.append("")
    for name, row in doc.get("techniques", {}).items():
        lines.append("- " + sentence(name, row, ref["flops"]))
    aa, ov = doc.get("controls", {}).get("aa"), doc.get("controls", {}).get("oversized")
    if aa:
        lines.append(
            f"- A/A control: M = {_ci(aa['multiplier'])}: "
            + (
                "covers 1, as it must"
                if aa.get("covers_one")
                else "DOES NOT cover 1: the intervals "
                "are too narrow for this noise; treat every verdict above with suspicion"
            )
        )
    if ov:
        p = ov.get("predicted") or {}
        lines.append(
            f"- Oversized control ({ov.get('size_ratio', float('nan')):.2f}x parameters at C_ref): "
            f"M = {_ci(ov['multiplier'])}, predicted {p.get('lo', float('nan')):.2f}-"
            f"{p.get('hi', float('nan')):.2f} by the Chinchilla form: "
            + (
                "detected as costing compute"
                if ov.get("detected")
                else "NOT detected as costing compute: this design cannot see an effect of that size"
            )
        )
    for e in doc.get("excluded", []):
        lines.append(f"- left out: {e['run']}: {e['reason']}")
    return "\n".join(lines)
