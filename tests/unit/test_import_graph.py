"""efflab's own imports (module-level and inside functions alike, read with `ast`) point one way: from
a module to one at the same or a lower layer of LAYERS, and never round a cycle. An import against that
order fails here, naming the module and what it imports; the few upward imports still to be taken apart
are listed, each with its reason, in PENDING (which may only shrink)."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "efflab"

# The dependency order, lowest first (a name stands for the module and its submodules; the longest
# matching name places a module). A module imports modules of its own layer or lower ones only.
LAYERS = [
    # L0: knows nothing of efflab but its neighbours here (the package root holds the recipe names)
    [
        "efflab",
        "efflab.errors",
        "efflab.io",
        "efflab.paths",
        "efflab.preflight",
        "efflab.trackers",
        "efflab.hub",
        "efflab.model_files",
        "efflab.scaling",
        "efflab.compare_math",
        "efflab.verdicts",
        "efflab.laws",
        "efflab.sections",
    ],
    # L1: FLOP math from a model config object, never a YAML run config; the run directory (its files,
    # checks and lock: the one reader and writer of manifest, metrics, ledger) and model-path checks
    ["efflab.accounting", "efflab.rundir"],
    ["efflab.techniques", "efflab.samplers"],  # L2: pure functions, samplers, method cards, sections
    ["efflab.config"],  # L3: the run config, technique sections as typed fields
    ["efflab.data", "efflab.moe_model", "efflab.models", "efflab.runs"],  # L4 (in this order: WITHIN)
    ["efflab.loop"],  # L5
    ["efflab.recipes", "efflab.estimate"],  # L6
    [  # L7
        "efflab.suite",
        "efflab.compare",
        "efflab.compare_suite",
        "efflab.extrapolate",
        "efflab.report",
        "efflab.validate",
        "efflab.integrations",
    ],
    ["efflab.commands", "efflab.cli", "efflab.__main__"],  # L8: the command line
]

# Within a layer imports form no cycle; where a layer's modules have an order of their own, it is listed
# here (a module imports only those before it): runs may import models, models the MoE model, not back.
WITHIN = [["efflab.data", "efflab.moe_model", "efflab.models", "efflab.runs"]]

# Upward imports still to be taken apart (importer, imported), each with the change that removes it.
# Empty: every import follows LAYERS. Kept so that an exception has to be written down, with its reason.
PENDING: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = ("efflab", *p.relative_to(SRC).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("efflab"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    edges[name].add(full if full in mods else node.module)
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name.startswith("efflab"))
    return {k: {v for v in vs if v in mods and v != k} for k, vs in edges.items()}


def _cycles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


@functools.cache
def _graph() -> dict[str, set[str]]:
    return _edges(_modules())


def _layer(module: str) -> int | None:
    best = None  # (layer, length of the matching name)
    for i, names in enumerate(LAYERS):
        for n in names:
            if (module == n or module.startswith(n + ".")) and (best is None or len(n) > best[1]):
                best = (i, len(n))
    return None if best is None else best[0]


def _edges_against_the_order(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for m in sorted(edges):
        for d in sorted(edges[m]):
            if _layer(d) > _layer(m) and (m, d) not in PENDING:
                bad.append(f"{m} (L{_layer(m)}) imports {d} (L{_layer(d)})")
    return bad


def test_every_module_has_a_layer():
    missing = sorted(m for m in _modules() if _layer(m) is None)
    assert not missing, f"place these modules in LAYERS: {missing}"


def test_imports_follow_the_layers():
    bad = _edges_against_the_order(_graph())
    assert not bad, "imports against the dependency order (LAYERS):\n  " + "\n  ".join(bad)


def _against_within(g: dict[str, set[str]]) -> list[str]:
    return [
        f"{m} imports {d} (listed after it in WITHIN)"
        for order in WITHIN
        for i, m in enumerate(order)
        for d in sorted(g.get(m, ()))
        if d in order[i + 1 :]
    ]


def test_imports_within_a_layer_follow_its_order():
    bad = _against_within(_graph())
    assert not bad, "\n".join(bad)
    assert _against_within({"efflab.models": {"efflab.runs"}}) == [
        "efflab.models imports efflab.runs (listed after it in WITHIN)"
    ]


def test_pending_upward_imports_still_exist():
    """PENDING lists imports that are there: one taken apart is removed from the list too."""
    edges = _graph()
    gone = sorted(f"{m} -> {d}" for m, d in PENDING if d not in edges.get(m, ()))
    assert not gone, f"no longer imported, remove from PENDING: {gone}"


def test_no_import_cycle():
    edges = _graph()
    pruned = {m: {d for d in ds if (m, d) not in PENDING} for m, ds in edges.items()}
    cycles = [sorted(c) for c in _cycles(pruned)]
    assert not cycles, f"import cycle(s) among efflab's modules: {cycles}"


def test_the_layer_check_names_an_upward_import():
    assert _edges_against_the_order({"efflab.io": {"efflab.config"}, "efflab.config": {"efflab.io"}}) == [
        "efflab.io (L0) imports efflab.config (L3)"
    ]
    assert _layer("efflab.accounting.flops") == 1 and _layer("efflab") == 0
    assert _layer("efflab.commands.run") == 8


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _cycles({"a": {"b"}, "b": set()}) == []


# Where efflab's own modules may be imported inside a function, and why. Anywhere else an import inside
# a function would hide a dependency from the module's header (and, before this test, hid a cycle).
LAZY_ALLOWED = {
    # the command line answers `efflab --help`, `efflab laws` and `efflab flops <preset>` without
    # importing torch and transformers (0.4 s instead of 7-9 s on a 2-core machine): each command
    # module imports the layers it drives inside the command that drives them
    "efflab.commands": "the command line loads a command's layers only when that command runs",
}


def _function_level_imports() -> list[str]:
    out = []
    for name, path in _modules().items():
        if any(name == k or name.startswith(k + ".") for k in LAZY_ALLOWED):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                mods = []
                if isinstance(n, ast.ImportFrom) and n.module:
                    mods = [n.module]
                elif isinstance(n, ast.Import):
                    mods = [a.name for a in n.names]
                if any(m == "efflab" or m.startswith("efflab.") for m in mods):
                    out.append(f"{name}:{n.lineno} in {fn.name}(): {ast.unparse(n)}")
    return out


def test_efflab_modules_are_imported_at_module_level():
    found = _function_level_imports()
    assert not found, (
        "efflab imports inside functions (move them to the module header, or document the reason in "
        "LAZY_ALLOWED):\n  " + "\n  ".join(found)
    )


def test_the_function_level_check_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    pkg = tmp_path / "efflab"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from efflab import b\n    return b\n")
    (pkg / "b.py").write_text("import os\n")
    monkeypatch.setattr(__import__(__name__), "SRC", pkg)
    assert _function_level_imports() == ["efflab.a:2 in f(): from efflab import b"]
