"""Regression harness for bad input (issue 18): every case is run through `efflab.cli.main` in-process and
must exit 2 with one message on stderr that names the key or the file, print no traceback, and change no
file outside a failed run directory (the workspace, and the data cache, are hashed before and after).

Kinds of case (see CASES): config values and overrides, config files, output directories, damaged
interrupted runs (`--resume`), damaged complete runs (`compare` and `--resume`), pretrained weights
under each model key, corpus files, suite files, and the `flops` / `cost` / `compare` commands.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from efflab import cli, loop
from efflab import rundir as runs

# a seconds-long run on the shared tiny data (same corpus, tokenizer and blocks as tests/conftest.py)
BASE = {
    "model": {"depth": 2, "aspect": 32, "head_dim": 32},
    "data": {"corpus": "stdlib", "max_chars": 4.0e5, "vocab_size": 512, "seq_len": 64},
    "train": {
        "steps": 8,
        "batch_size": 4,
        "lr": 3.0e-3,
        "warmup_steps": 1,
        "checkpoint_every": 2,
        "threads": 1,
    },
    "eval": {"every": 4, "max_blocks": 4, "batch_size": 4},
    "log": {"every": 1, "progress": False},
}


def _raw(cache_dir, extra: dict | None = None) -> dict:
    raw = json.loads(json.dumps(BASE))
    raw["data"]["cache_dir"] = str(cache_dir)
    for k, v in (extra or {}).items():
        if isinstance(v, dict):
            raw.setdefault(k, {}).update(v)
        else:
            raw[k] = v
    return raw


class _Killed(Exception):
    pass


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory, cache_dir):
    """Two complete twin runs, one run killed after its step-6 checkpoint, and the config file they used."""
    from efflab.config import config_from_dict
    from efflab.recipes import baseline

    root = tmp_path_factory.mktemp("harness-fixtures")
    cfg_path = root / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(_raw(cache_dir)))
    cfg = config_from_dict(_raw(cache_dir), recipe="baseline")
    baseline.main(cfg, out=root / "full_a")
    baseline.main(cfg, out=root / "full_b")
    real = loop.BlockSampler.batch

    def dying(self, step):
        if step == 6:  # killed during step 7, after the checkpoint at step 6
            raise _Killed
        return real(self, step)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(loop.BlockSampler, "batch", dying)
        with pytest.raises(_Killed):
            baseline.main(cfg, out=root / "killed")
    runs.release_held()  # a killed process holds no lock; its file is gone with a clean release
    assert runs.check_run(root / "full_a") == [] and runs.check_run(root / "full_b") == []
    assert runs.RunDir(root / "killed").resume_problems() == []
    return {"root": root, "config": cfg_path, "cache": Path(cache_dir)}


# =============================================================================================
# tree hashing
# =============================================================================================
def _tree(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        if not root.exists():
            continue
        for p in sorted(root.rglob("*")):
            if p.is_symlink() or p.is_file():
                if root.name == "cache" or "efflab-cache" in str(root):  # big cache files: size and mtime
                    st = p.stat()
                    out[str(p)] = f"{st.st_size}:{st.st_mtime_ns}"
                else:
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
            elif p.is_dir():
                out[str(p) + "/"] = "dir"
    return out


def _failed_dirs(ws: Path) -> list[str]:
    out = []
    for m in ws.rglob("manifest.json"):
        try:
            man = json.loads(m.read_text())
            if isinstance(man, dict) and man.get("status") == "failed":
                out.append(str(m.parent))
        except (OSError, ValueError):
            pass
    return out


# =============================================================================================
# helpers that build a case's workspace
# =============================================================================================
def _copy(fx, name: str, ws: Path, as_: str = "run") -> Path:
    dst = ws / as_
    shutil.copytree(fx["root"] / name, dst)
    return dst


def _write(path: Path, data: bytes | str) -> None:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _truncate(path: Path, frac: float = 0.5) -> None:
    b = path.read_bytes()
    path.write_bytes(b[: int(len(b) * frac)])


def _edit_json(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def _rows(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def _ckpt(run: Path) -> Path:
    return run / "checkpoint" / json.loads((run / "checkpoint" / "latest.json").read_text())["dir"]


BINARY = bytes(range(256)) * 4


def _garble_line(n: int):
    def f(run):
        rows = _rows(run / "metrics.jsonl")
        rows[n] = '{"step": 3, "tok' + "\n"
        _write(run / "metrics.jsonl", "".join(rows))

    return f


def _dup_line(n: int):
    def f(run):
        rows = _rows(run / "metrics.jsonl")
        rows.insert(n + 1, rows[n])
        _write(run / "metrics.jsonl", "".join(rows))

    return f


def _swap_lines(a: int, b: int):
    def f(run):
        rows = _rows(run / "metrics.jsonl")
        rows[a], rows[b] = rows[b], rows[a]
        _write(run / "metrics.jsonl", "".join(rows))

    return f


def _every_row_twice(run):  # what two writers into one directory leave
    rows = _rows(run / "metrics.jsonl")
    _write(run / "metrics.jsonl", "".join(r for r in rows for _ in range(2)))


def _drop_last_row(run):
    _write(run / "metrics.jsonl", "".join(_rows(run / "metrics.jsonl")[:-1]))


def _strip_last_eval(run):
    rows = _rows(run / "metrics.jsonl")
    last = json.loads(rows[-1])
    last.pop("eval_loss")
    rows[-1] = json.dumps(last) + "\n"
    _write(run / "metrics.jsonl", "".join(rows))


def _ledger(fn):
    return lambda run: _edit_json(run / "ledger.json", fn)


def _manifest(fn):
    return lambda run: _edit_json(run / "manifest.json", fn)


def _set_phase(name, key, value):
    def f(d):
        d["phases"][name][key] = value

    return f


def _double_train(d):
    d["phases"]["train"]["flops"] *= 2
    d["marginal_flops"] *= 2
    d["total_flops"] *= 2
    for book in d["_books"].values():
        if "train" in book:
            book["train"]["flops"] *= 2


def _trainer_state(fn):
    return lambda run: _edit_json(_ckpt(run) / "trainer_state_rank0.json", fn)


def _latest(obj):
    return lambda run: _write(
        run / "checkpoint" / "latest.json", obj if isinstance(obj, str) else json.dumps(obj)
    )


def _ckpt_file(name, how):
    def f(run):
        p = _ckpt(run) / name
        if how == "truncate":
            _truncate(p)
        elif how == "empty":
            _write(p, b"")
        elif how == "random":
            _write(p, os.urandom(4096))
        elif how == "delete":
            p.unlink()
        elif how == "header":  # a safetensors header that claims more data than the file holds
            b = p.read_bytes()
            (n,) = struct.unpack("<Q", b[:8])
            _write(p, b[: 8 + n + 16])

    return f


def _other_host_lock(run):
    _write(
        run / runs.LOCK_NAME,
        json.dumps({"pid": 1, "host": "elsewhere.example", "started": "2026-01-01T00:00:00"}),
    )


# =============================================================================================
# the cases: (id, setup(ws, fx) -> argv, needles that stderr must contain)
# =============================================================================================
def run_case(overrides, needles, recipe="baseline", extra=None):
    def setup(ws, fx):
        cfg = fx["config"]
        if extra is not None:
            cfg = ws / "cfg.yaml"
            cfg.write_text(yaml.safe_dump(_raw(fx["cache"], extra)))
        return ["run", recipe, "--config", str(cfg), "--out", str(ws / "out"), *overrides]

    return setup, needles


def resume_case(damage, needles, source="killed", extra_args=()):
    def setup(ws, fx):
        run = _copy(fx, source, ws)
        damage(run)
        return ["run", "baseline", "--config", str(fx["config"]), "--out", str(run), "--resume", *extra_args]

    return setup, needles


def compare_case(damage, needles):
    def setup(ws, fx):
        a = _copy(fx, "full_a", ws, "a")
        b = _copy(fx, "full_b", ws, "b")
        damage(b)
        return ["compare", str(a), str(b)]

    return setup, needles


def config_file_case(cmd, content: bytes | str, needles, name="bad.yaml"):
    def setup(ws, fx):
        p = ws / name
        _write(p, content)
        if cmd == "run":
            return ["run", "baseline", "--config", str(p), "--out", str(ws / "out")]
        if cmd == "suite":
            return ["suite", str(p), "--out", str(ws / "suite")]
        return ["flops", str(p)]

    return setup, [name, *needles]


def out_case(prepare, needles, flags=()):
    def setup(ws, fx):
        out = prepare(ws)
        return ["run", "baseline", "--config", str(fx["config"]), "--out", str(out), *flags]

    return setup, needles


def weights_case(recipe, key_over, needles, how="truncate", which="llama", file="model.safetensors"):
    def setup(ws, fx):
        src = fx["pretrained"][which]
        d = ws / "model"
        shutil.copytree(src, d)
        p = d / file
        if how == "truncate":
            _truncate(p)
        elif how == "empty":
            _write(p, b"")
        elif how == "random":
            _write(p, os.urandom(2048))
        elif how == "bin":
            p.unlink()
            _write(d / "pytorch_model.bin", os.urandom(2048))
        cfg = ws / "cfg.yaml"
        cfg.write_text(yaml.safe_dump(_raw(fx["cache"])))
        return [
            "run",
            recipe,
            "--config",
            str(cfg),
            "--out",
            str(ws / "out"),
            *[o.format(d=d) for o in key_over],
        ]

    return setup, needles


def corpus_case(files: dict[str, bytes | str], needles, fmt="text", field=None):
    def setup(ws, fx):
        c = ws / "corpus"
        c.mkdir()
        for name, content in files.items():
            _write(c / name, content)
        extra = {"data": {"corpus": str(c), "format": fmt, "max_chars": None}}
        if field:
            extra["data"]["text_field"] = field
        cfg = ws / "cfg.yaml"
        cfg.write_text(yaml.safe_dump(_raw(fx["cache"], extra)))
        return ["run", "baseline", "--config", str(cfg), "--out", str(ws / "out")]

    return setup, needles


SUITE_OK = {
    "name": "h",
    "seeds": 2,
    "data": {"corpus": "stdlib", "max_chars": 1.0e5, "vocab_size": 300, "seq_len": 32},
    "train": {"batch_size": 4, "threads": 1},
    "scales": [{"name": "s1", "model": {"depth": 1, "aspect": 16, "head_dim": 8}, "budget_flops": 1.5e9}],
    "lr_sweep": {"enabled": False},
    "controls": {"aa": False, "oversized": {"enabled": False}},
    "techniques": {"moe": {"recipe": "moe"}},
}


def suite_case(mutate, needles, overrides=()):
    def setup(ws, fx):
        raw = json.loads(json.dumps(SUITE_OK))
        mutate(raw)
        p = ws / "suite.yaml"
        p.write_text(yaml.safe_dump(raw))
        return ["suite", str(p), "--out", str(ws / "suite"), *overrides]

    return setup, needles


def argv_case(argv, needles):
    return (lambda ws, fx: [a.format(ws=ws, full=fx["root"] / "full_a") for a in argv]), needles


CASES: dict[str, tuple] = {}


def case(kind: str, name: str, spec) -> None:
    CASES[f"{kind}:{name}"] = spec


# ---- config values and overrides (each names its key) ----------------------------------------
for key, value in [
    ("train.budget_tokens", "nan"),
    ("train.budget_tokens", "inf"),
    ("train.budget_tokens", "-inf"),
    ("train.budget_tokens", "abc"),
    ("train.budget_tokens", "-5"),
    ("train.budget_tokens", "0"),
    ("train.budget_flops", "nan"),
    ("train.budget_flops", "1e400"),
    ("train.budget_flops", "-1e12"),
    ("train.lr", "-1"),
    ("train.lr", "0"),
    ("train.lr", "1.5"),
    ("train.lr", ".nan"),
    ("train.lr", "abc"),
    ("train.steps", "0"),
    ("train.steps", "-3"),
    ("train.steps", "2.5"),
    ("train.steps", "abc"),
    ("train.batch_size", "0"),
    ("train.warmup_steps", "-1"),
    ("train.beta1", "1"),
    ("train.beta2", "-0.1"),
    ("train.weight_decay", "-1"),
    ("train.grad_clip", "-1"),
    ("train.grad_clip", ".inf"),
    ("train.precision", "fp8"),
    ("train.seed", "abc"),
    ("train.threads", "0"),
    ("train.checkpoint_every", "-1"),
    ("train.min_lr_ratio", "2"),
    ("model.init_std", "2"),
    ("model.init_std", "0"),
    ("model.init_std", "-0.1"),
    ("model.init_std", ".nan"),
    ("model.rope_theta", "-1"),
    ("model.rope_theta", "0"),
    ("model.rope_theta", ".nan"),
    ("model.rope_theta", ".inf"),
    ("model.depth", "0"),
    ("model.depth", "1000"),
    ("model.ffn_mult", "0"),
    ("model.ffn_mult", ".inf"),
    ("model.arch", "gpt"),
    ("model.attn_implementation", "bogus"),
    ("model.head_dim", "2"),
    ("model.width", "4"),
    ("data.seq_len", "0"),
    ("data.vocab_size", "10"),
    ("data.eval_fraction", "0.7"),
    ("data.eval_fraction", ".nan"),
    ("data.format", "xml"),
    ("data.max_chars", "lots"),
    ("eval.every", "0"),
    ("eval.max_blocks", "0"),
    ("eval.batch_size", "0"),
    ("log.every", "0"),
    ("lora.r", "-1"),
    ("lora.dropout", "1"),
    ("lora.alpha", ".nan"),
    ("train.bogus", "1"),
    ("model.pretrained", "/nonexistent/model"),
]:
    case("override", f"{key}={value}", run_case([f"{key}={value}"], [key]))
case(
    "override", "micro batch does not divide", run_case(["train.micro_batch_size=3"], ["micro_batch_size=3"])
)
case("override", "heads do not divide the width", run_case(["model.n_head=5"], ["model", "n_head=5"]))
case(
    "override", "kv heads do not divide the heads", run_case(["model.n_kv_head=3"], ["model", "n_kv_head=3"])
)
case("override", "a misspelt section", run_case(["trian.lr=1"], ["trian"]))
case(
    "override",
    "a budget of 1e30 tokens",
    run_case(["train.steps=null", "train.budget_tokens=1e30"], ["train.budget_tokens", "10,000,000"]),
)
case("override", "memory: aspect 1e6", run_case(["model.aspect=1000000"], ["model.aspect", "GiB"]))
case(
    "override",
    "memory: width 3e5",
    run_case(["model.width=300000", "model.n_head=1", "model.head_dim=300000"], ["model.width", "GiB"]),
)
case(
    "override",
    "three at once",
    run_case(
        ["train.budget_tokens=abc", "train.lr=-1", "data.seq_len=0", "train.steps=null"],
        ["train.budget_tokens", "train.lr", "data.seq_len"],
    ),
)
case("override", "a word without =", run_case(["train.lr=1e-3", "foo", "train.lr=-1"], ["'foo'", "train.lr"]))
case("override", "=3", run_case(["=3"], ["'=3'"]))
case("override", "a section set to a number", run_case(["train=5"], ["train"]))
case(
    "override",
    "two budgets",
    run_case(["train.budget_tokens=1e5", "train.steps=5"], ["budget_tokens", "steps"]),
)  # both on the CLI
case("override", "moe section in baseline", run_case(["moe.n_experts=4"], ["moe"]))
case(
    "override",
    "unknown recipe",
    (lambda ws, fx: ["run", "baseliine", "--config", str(fx["config"])], ["baseliine"]),
)
case(
    "override",
    "moe top_k > n_experts",
    run_case(["moe.top_k=9", "moe.n_experts=4"], ["moe.top_k"], recipe="moe"),
)
case("override", "moe n_experts 0", run_case(["moe.n_experts=0"], ["moe.n_experts"], recipe="moe"))
case(
    "override",
    "moe capacity_factor nan",
    run_case(["moe.capacity_factor=.nan"], ["moe.capacity_factor"], recipe="moe"),
)
case("override", "distill without a teacher", run_case([], ["distill.teacher"], recipe="distill"))
case(
    "override",
    "distill temperature 0",
    run_case(["distill.temperature=0"], ["distill.temperature"], recipe="distill"),
)
case("override", "distill alpha 2", run_case(["distill.alpha=2"], ["distill.alpha"], recipe="distill"))
case(
    "override",
    "distill teacher missing",
    run_case(["distill.teacher=/nonexistent/t"], ["/nonexistent/t"], recipe="distill"),
)
case(
    "override",
    "curriculum scorer",
    run_case(["curriculum.scorer=bogus"], ["curriculum.scorer"], recipe="curriculum"),
)
case(
    "override",
    "curriculum start_fraction",
    run_case(["curriculum.start_fraction=2"], ["curriculum.start_fraction"], recipe="curriculum"),
)
case("override", "synthetic top_p", run_case(["synthetic.top_p=2"], ["synthetic.top_p"], recipe="synthetic"))
case(
    "override",
    "synthetic temperature",
    run_case(["synthetic.temperature=-1"], ["synthetic.temperature"], recipe="synthetic"),
)
case("override", "config file nan", run_case([], ["train.lr"], extra={"train": {"lr": float("nan")}}))
case(
    "override",
    "config file inf budget",
    run_case(["train.steps=null"], ["train.budget_tokens"], extra={"train": {"budget_tokens": float("inf")}}),
)

# ---- config files ----------------------------------------------------------------------------
for cmd in ("run", "suite", "flops"):
    case("config file", f"{cmd}: binary", config_file_case(cmd, BINARY, ["not"]))
for cmd in ("run", "suite"):
    case("config file", f"{cmd}: garbled YAML", config_file_case(cmd, "train: [1, 2\nmodel: {", ["YAML"]))
    case("config file", f"{cmd}: a list", config_file_case(cmd, "- 1\n- 2\n", ["mapping"]))
    case(
        "config file",
        f"{cmd}: not UTF-8 text",
        config_file_case(cmd, "model:\n  depth: 2 \xe9\n".encode("latin-1"), ["UTF-8"]),
    )
case(
    "config file",
    "flops: garbled config.json",
    config_file_case("flops", '{"hidden_size": 64,', ["config.json"], name="config.json"),
)
case(
    "config file", "run: missing", argv_case(["run", "baseline", "--config", "{ws}/nope.yaml"], ["nope.yaml"])
)
case("config file", "suite: missing", argv_case(["suite", "{ws}/nope.yaml"], ["nope.yaml"]))
case(
    "config file",
    "run: section not a mapping",
    config_file_case("run", "train: 5\nmodel: {depth: 2}\n", ["train"]),
)


# ---- output directories ----------------------------------------------------------------------
def _a_file(ws):
    _write(ws / "afile", "precious")
    return ws / "afile" / "run"


def _foreign(ws):
    d = ws / "photos"
    d.mkdir()
    _write(d / "holiday.jpg", BINARY)
    _write(d / "notes.txt", "keep me")
    return d


def _foreign_with_manifest(ws):  # a manifest.json that is not efflab's
    d = ws / "project"
    d.mkdir()
    _write(d / "manifest.json", '{"name": "my web app", "version": 3}')
    _write(d / "index.html", "<html></html>")
    return d


case("out", "under a file", out_case(_a_file, ["afile"]))
case(
    "out",
    "/proc/x",
    (
        lambda ws, fx: ["run", "baseline", "--config", str(fx["config"]), "--out", "/proc/efflab-x"],
        ["/proc/efflab-x"],
    ),
)
case(
    "out",
    "--overwrite a non-run directory",
    out_case(_foreign, ["photos", "holiday.jpg", "--overwrite"], ("--overwrite",)),
)
case(
    "out",
    "--overwrite a foreign manifest",
    out_case(_foreign_with_manifest, ["project", "--overwrite"], ("--overwrite",)),
)
case(
    "out",
    "--overwrite with a config error",
    (
        lambda ws, fx: [
            "run",
            "baseline",
            "--config",
            str(fx["config"]),
            "--out",
            str(_copy(fx, "full_a", ws)),
            "--overwrite",
            "train.lr=-1",
        ],
        ["train.lr"],
    ),
)
case(
    "out",
    "existing run without flags",
    (
        lambda ws, fx: [
            "run",
            "baseline",
            "--config",
            str(fx["config"]),
            "--out",
            str(_copy(fx, "full_a", ws)),
        ],
        ["--resume", "--overwrite"],
    ),
)
case(
    "out",
    "--resume and --overwrite",
    resume_case(lambda run: None, ["--resume and --overwrite"], extra_args=("--overwrite",)),
)
case(
    "out",
    "--resume with another config",
    (
        lambda ws, fx: [
            "run",
            "baseline",
            "--config",
            str(fx["config"]),
            "--out",
            str(_copy(fx, "killed", ws)),
            "--resume",
            "train.lr=1e-3",
        ],
        ["train.lr"],
    ),
)

# ---- damaged interrupted runs: --resume refuses by name ----------------------------------------
for name, damage, needles in [
    ("metrics line 2 garbled", _garble_line(1), ["metrics.jsonl", "line 2"]),
    ("metrics line 4 garbled", _garble_line(3), ["metrics.jsonl", "line 4"]),
    ("metrics duplicate row", _dup_line(2), ["metrics.jsonl", "repeats step"]),
    ("metrics out of order", _swap_lines(2, 3), ["metrics.jsonl", "step"]),
    ("metrics every row twice", _every_row_twice, ["metrics.jsonl", "repeats step"]),
    ("metrics binary", lambda r: _write(r / "metrics.jsonl", BINARY), ["metrics.jsonl", "UTF-8"]),
    (
        "metrics row not an object",
        lambda r: _write(r / "metrics.jsonl", "[1, 2]\n" + (r / "metrics.jsonl").read_text()),
        ["metrics.jsonl", "line 1"],
    ),
    (
        "metrics row without step",
        lambda r: _write(r / "metrics.jsonl", '{"loss": 1}\n' + (r / "metrics.jsonl").read_text()),
        ["metrics.jsonl", "step"],
    ),
    ("manifest truncated", lambda r: _truncate(r / "manifest.json"), ["manifest.json"]),
    ("manifest empty", lambda r: _write(r / "manifest.json", ""), ["manifest.json", "empty"]),
    ("manifest binary", lambda r: _write(r / "manifest.json", BINARY), ["manifest.json"]),
    ("manifest a list", lambda r: _write(r / "manifest.json", "[1]"), ["manifest.json"]),
    (
        "manifest failed",
        _manifest(lambda d: d.update(status="failed", error="the loss became nan at step 3")),
        ["failed", "loss became nan"],
    ),
    ("config.yaml garbled", lambda r: _write(r / "config.yaml", "train: [1,\n"), ["config.yaml"]),
    ("config.yaml binary", lambda r: _write(r / "config.yaml", BINARY), ["config.yaml"]),
    ("latest.json truncated", lambda r: _truncate(r / "checkpoint" / "latest.json"), ["latest.json"]),
    ("latest.json empty", _latest(""), ["latest.json", "empty"]),
    (
        "latest.json missing step",
        _latest({"step": 4, "dir": "step-00000004"}),
        ["latest.json", "step-00000004"],
    ),
    ("latest.json wrong types", _latest({"step": "six", "dir": 6}), ["latest.json"]),
    ("latest.json outside", _latest({"step": 6, "dir": "../../etc"}), ["latest.json", "../../etc"]),
    (
        "trainer state truncated",
        _ckpt_file("trainer_state_rank0.json", "truncate"),
        ["trainer_state_rank0.json"],
    ),
    ("trainer state missing", _ckpt_file("trainer_state_rank0.json", "delete"), ["trainer_state_rank0.json"]),
    (
        "trainer state wrong step",
        _trainer_state(lambda d: d.update(step=2)),
        ["trainer_state_rank0.json", "step 6"],
    ),
    (
        "trainer state negative flops",
        _trainer_state(lambda d: _set_phase("train", "flops", -1.0)(d["ledger"])),
        ["trainer_state_rank0.json", "flops"],
    ),
    (
        "trainer state NaN flops",
        _trainer_state(lambda d: _set_phase("train", "flops", float("nan"))(d["ledger"])),
        ["trainer_state_rank0.json", "NaN"],
    ),
    (
        "checkpoint weights truncated",
        _ckpt_file("model.safetensors", "truncate"),
        ["model.safetensors", "truncated"],
    ),
    (
        "checkpoint weights empty",
        _ckpt_file("model.safetensors", "empty"),
        ["model.safetensors", "truncated"],
    ),
    (
        "checkpoint weights cut after header",
        _ckpt_file("model.safetensors", "header"),
        ["model.safetensors", "truncated"],
    ),
    ("checkpoint weights random", _ckpt_file("model.safetensors", "random"), ["model.safetensors"]),
    ("optimizer random bytes", _ckpt_file("optimizer.bin", "random"), ["optimizer.bin"]),
    ("optimizer truncated", _ckpt_file("optimizer.bin", "truncate"), ["optimizer.bin"]),
    ("optimizer empty", _ckpt_file("optimizer.bin", "empty"), ["optimizer.bin"]),
    ("scheduler truncated", _ckpt_file("scheduler.bin", "truncate"), ["scheduler.bin"]),
    ("rng state truncated", _ckpt_file("random_states_0.pkl", "truncate"), ["random_states_0.pkl"]),
    ("lock from another host", _other_host_lock, ["elsewhere.example", runs.LOCK_NAME]),
]:
    case("resume", name, resume_case(damage, needles))

# ---- damaged complete runs: compare and --resume refuse by name --------------------------------
COMPLETE_DAMAGE = [
    ("metrics middle line garbled", _garble_line(3), ["metrics.jsonl", "line 4"]),
    ("metrics empty", lambda r: _write(r / "metrics.jsonl", ""), ["metrics.jsonl"]),
    ("metrics duplicate row", _dup_line(4), ["metrics.jsonl", "repeats step"]),
    ("metrics every row twice", _every_row_twice, ["metrics.jsonl", "repeats step"]),
    ("metrics out of order", _swap_lines(1, 2), ["metrics.jsonl", "goes back"]),
    ("metrics last row gone", _drop_last_row, ["metrics.jsonl", "step"]),
    ("metrics last eval gone", _strip_last_eval, ["metrics.jsonl", "final eval"]),
    ("ledger truncated", lambda r: _truncate(r / "ledger.json"), ["ledger.json"]),
    ("ledger empty", lambda r: _write(r / "ledger.json", ""), ["ledger.json", "empty"]),
    ("ledger missing", lambda r: (r / "ledger.json").unlink(), ["ledger.json", "missing"]),
    ("ledger negative FLOPs", _ledger(_set_phase("train", "flops", -5.0e9)), ["ledger.json", "flops"]),
    (
        "ledger NaN total",
        _ledger(lambda d: d.update(total_flops=float("nan"))),
        ["ledger.json", "total_flops"],
    ),
    ("ledger does not match metrics", _ledger(_double_train), ["ledger.json", "last metrics row"]),
    (
        "final eval null",
        _manifest(lambda d: d["result"].update(final_eval_loss=None)),
        ["final eval", "null"],
    ),
    ("final eval missing", _manifest(lambda d: d["result"].pop("final_eval_loss")), ["final eval"]),
    (
        "final eval differs",
        _manifest(lambda d: d["result"].update(final_eval_loss=1.234)),
        ["final eval loss 1.234"],
    ),
    ("manifest truncated", lambda r: _truncate(r / "manifest.json"), ["manifest.json"]),
    ("config.yaml garbled", lambda r: _write(r / "config.yaml", "{{{{\n"), ["config.yaml"]),
    (
        "model weights truncated",
        lambda r: _truncate(r / "model" / "model.safetensors"),
        ["model.safetensors", "truncated"],
    ),
    ("model config truncated", lambda r: _truncate(r / "model" / "config.json"), ["config.json"]),
]
for name, damage, needles in COMPLETE_DAMAGE:
    case("compare damaged", name, compare_case(damage, [str(Path("b")), *needles]))
    if name != "config.yaml garbled":  # --resume reads the saved config first: covered under resume above
        case("resume complete", name, resume_case(damage, needles, source="full_a"))
case(
    "compare damaged",
    "status running",
    compare_case(_manifest(lambda d: d.update(status="running")), ["incomplete"]),
)
case(
    "compare damaged",
    "status failed",
    compare_case(_manifest(lambda d: d.update(status="failed", error="diverged")), ["failed"]),
)
case("compare damaged", "not a run", argv_case(["compare", "{full}", "{ws}"], ["no manifest.json"]))
case("compare damaged", "no such dir", argv_case(["compare", "{full}", "{ws}/nope"], ["nope"]))

# ---- pretrained weights under each model key ---------------------------------------------------
for how in ("truncate", "empty", "random", "bin"):
    fname = "pytorch_model.bin" if how == "bin" else "model.safetensors"
    case(
        "weights",
        f"model.pretrained {how}",
        weights_case("baseline", ["model.pretrained={d}"], [fname], how=how),
    )
case(
    "weights",
    "distill.teacher truncated",
    weights_case("distill", ["distill.teacher={d}"], ["model.safetensors", "truncated"]),
)
case(
    "weights",
    "curriculum.reference truncated",
    weights_case(
        "curriculum",
        ["curriculum.scorer=reference", "curriculum.reference={d}"],
        ["model.safetensors", "truncated"],
    ),
)
case(
    "weights",
    "synthetic.generator truncated",
    weights_case("synthetic", ["synthetic.generator={d}"], ["model.safetensors", "truncated"]),
)
case(
    "weights",
    "moe.upcycle_from truncated",
    weights_case(
        "moe",
        [
            "moe.upcycle_from={d}",
            "moe.shared_expert_width=0",
            "model.width=64",
            "model.n_layer=2",
            "model.n_head=2",
            "model.n_kv_head=1",
            "model.head_dim=32",
            "moe.expert_width=160",
        ],
        ["model.safetensors", "truncated"],
    ),
)


def run_weights_case(recipe, key_over, needles):
    """A finished efflab run given as the model source, its model/ weights truncated."""

    def setup(ws, fx):
        src = _copy(fx, "full_a", ws, "source")
        _truncate(src / "model" / "model.safetensors")
        return [
            "run",
            recipe,
            "--config",
            str(fx["config"]),
            "--out",
            str(ws / "out"),
            *[o.format(d=src) for o in key_over],
        ]

    return setup, needles


for recipe, over in [
    ("distill", ["distill.teacher={d}"]),
    ("synthetic", ["synthetic.generator={d}"]),
    ("curriculum", ["curriculum.scorer=reference", "curriculum.reference={d}"]),
]:
    case(
        "weights",
        f"{over[-1].split('=')[0]} run truncated",
        run_weights_case(recipe, over, ["model.safetensors"]),
    )

# ---- corpus files ------------------------------------------------------------------------------
case(
    "corpus",
    "jsonl with a bad line",
    corpus_case({"a.jsonl": '{"text": "x"}\n{"text": oops}\n{"text": "y"}\n'}, ["a.jsonl:2"]),
)
case("corpus", "jsonl binary", corpus_case({"a.jsonl": BINARY}, ["a.jsonl", "UTF-8"]))
case("corpus", "csv binary", corpus_case({"a.csv": BINARY}, ["a.csv", "UTF-8"]))
case("corpus", "txt not UTF-8", corpus_case({"a.txt": "caf\xe9 ".encode("latin-1") * 50}, ["a.txt", "UTF-8"]))
case("corpus", "empty directory", corpus_case({}, ["corpus"]))
case("corpus", "no text field", corpus_case({"a.jsonl": '{"body": "x"}\n'}, ["text"]))
case("corpus", "chat binary", corpus_case({"c.jsonl": BINARY}, ["c.jsonl", "UTF-8"], fmt="chat"))
case(
    "corpus",
    "chat bad line",
    corpus_case({"c.jsonl": '{"prompt": "a", "response": "b"}\nnope\n'}, ["c.jsonl:2"], fmt="chat"),
)
case(
    "corpus",
    "missing path",
    run_case([], ["/nonexistent/corpus"], extra={"data": {"corpus": "/nonexistent/corpus"}}),
)

# ---- suite files -------------------------------------------------------------------------------
case("suite", "unknown key", suite_case(lambda r: r.update(bogus=1), ["bogus"]))
case(
    "suite",
    "scale model nan",
    suite_case(lambda r: r["scales"][0]["model"].update(init_std=float("nan")), ["init_std"]),
)
case("suite", "scale depth 0", suite_case(lambda r: r["scales"][0]["model"].update(depth=0), ["depth"]))
case("suite", "data seq_len 0", suite_case(lambda r: r["data"].update(seq_len=0), ["seq_len"]))
case(
    "suite", "override nan", suite_case(lambda r: None, ["data.max_chars"], overrides=("data.max_chars=nan",))
)
case("suite", "override without =", suite_case(lambda r: None, ["'oops'"], overrides=("oops",)))
case("suite", "unknown technique", suite_case(lambda r: r["techniques"].update(quantum={}), ["quantum"]))
case("suite", "no scales", suite_case(lambda r: r.update(scales=[]), ["scales"]))
case(
    "suite",
    "technique config problem",
    suite_case(
        lambda r: r["techniques"].update(
            moe={"recipe": "moe", "config": {"moe": {"top_k": 9, "n_experts": 4}}}
        ),
        ["moe.top_k"],
    ),
)
case(
    "suite",
    "problems in several sections at once",
    suite_case(
        lambda r: (
            r["data"].update(seq_len=0),
            r["train"].update(lr=-1),
            r["scales"][0]["model"].update(depth=0),
        ),
        ["seq_len", "lr", "depth"],
    ),
)
case(
    "suite",
    "train budget nan",
    suite_case(lambda r: r["scales"][0].update(budget_flops=float("nan")), ["budget_flops"]),
)

# ---- flops / cost / compare arguments ------------------------------------------------------------
for argv, needles in [
    (["flops", "gpt3-175b", "--tokens", "nan"], ["--tokens"]),
    (["flops", "gpt3-175b", "--tokens", "abc"], ["--tokens"]),
    (["flops", "gpt3-175b", "--tokens", "-1"], ["--tokens"]),
    (["flops", "no-such-model"], ["no-such-model"]),
    (["cost", "--flops", "nan", "--gpu", "h100"], ["--flops"]),
    (["cost", "--flops", "-1", "--gpu", "h100"], ["--flops"]),
    (["cost", "--flops", "1e24", "--gpu", "h100", "--mfu", "2"], ["--mfu"]),
    (["cost", "--flops", "1e24", "--gpu", "h1000"], ["h1000"]),
    (["compare", "{full}", "--level", "2"], ["--level"]),
]:
    case("args", " ".join(argv), argv_case(argv, needles))


def test_the_harness_has_at_least_150_cases():
    kinds: dict[str, int] = {}
    for k in CASES:
        kinds[k.split(":")[0]] = kinds.get(k.split(":")[0], 0) + 1
    assert len(CASES) >= 150, kinds


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, fixtures, pretrained_dirs, tmp_path, monkeypatch, capsys):
    setup, needles = CASES[name]
    fixtures = {**fixtures, "pretrained": pretrained_dirs}
    ws = tmp_path / "ws"
    ws.mkdir()
    monkeypatch.chdir(ws)
    argv = setup(ws, fixtures)
    before = _tree(ws, fixtures["cache"])
    capsys.readouterr()
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, f"{name}: exit {rc}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in err and "Traceback" not in out, err
    assert err.count("efflab: error") == 1, err
    for needle in needles:
        assert needle in err, f"{name}: {needle!r} not in:\n{err}"
    assert "weights_only=False" not in err
    failed = _failed_dirs(ws)
    after = _tree(ws, fixtures["cache"])

    def outside(tree):
        return {
            k: v for k, v in tree.items() if not any(k == f + "/" or k.startswith(f + "/") for f in failed)
        }

    assert outside(after) == outside(before), f"{name}: files changed outside a failed run directory"
    assert not runs._HELD, f"{name}: a lock is still held after the command ended"


# =============================================================================================
# the lock, exercised by another process
# =============================================================================================
HOLDER = """
import sys, time
from efflab.rundir import RunDir
RunDir(sys.argv[1]).lock()
print("locked", flush=True)
time.sleep(60)
"""


def _holder(path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(runs.__file__).parents[1])}
    p = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert p.stdout.readline().strip() == "locked"
    return p


@pytest.mark.parametrize("flags", [(), ("--resume",), ("--overwrite",)])
def test_a_locked_run_directory_is_refused_naming_its_holder(flags, fixtures, tmp_path, monkeypatch, capsys):
    run = shutil.copytree(fixtures["root"] / "killed", tmp_path / "run")
    holder = _holder(run)
    try:
        before = _tree(tmp_path)
        rc = cli.main(["run", "baseline", "--config", str(fixtures["config"]), "--out", str(run), *flags])
        err = capsys.readouterr().err
        assert rc == 2 and f"pid {holder.pid}" in err and "in use" in err, err
        assert _tree(tmp_path) == before
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_is_taken_over_and_said_so(fixtures, tmp_path, capsys):
    run = shutil.copytree(fixtures["root"] / "killed", tmp_path / "run")
    holder = _holder(run)
    holder.kill()  # kill -9: the lock file stays, naming a dead process
    holder.wait()
    assert json.loads((run / runs.LOCK_NAME).read_text())["pid"] == holder.pid
    rc = cli.main(["run", "baseline", "--config", str(fixtures["config"]), "--out", str(run), "--resume"])
    out = capsys.readouterr().out
    assert rc == 0 and "stale lock" in out and f"pid {holder.pid}" in out, out
    assert runs.check_run(run) == [] and not (run / runs.LOCK_NAME).exists()


def test_overwrite_replaces_a_run_only_after_the_new_config_validates(fixtures, tmp_path, capsys):
    run = shutil.copytree(fixtures["root"] / "full_a", tmp_path / "run")
    before = _tree(run)
    rc = cli.main(
        [
            "run",
            "baseline",
            "--config",
            str(fixtures["config"]),
            "--out",
            str(run),
            "--overwrite",
            "train.lr=-1",
        ]
    )
    assert rc == 2 and _tree(run) == before  # the complete run is still there
    rc = cli.main(
        [
            "run",
            "baseline",
            "--config",
            str(fixtures["config"]),
            "--out",
            str(run),
            "--overwrite",
            "train.steps=4",
        ]
    )
    assert rc == 0 and runs.RunDir(run).read_manifest()["result"]["steps"] == 4 and runs.check_run(run) == []
    capsys.readouterr()


def test_a_failure_after_start_marks_the_run_failed_and_resume_says_why(fixtures, tmp_path, capsys):
    c = tmp_path / "corpus"
    c.mkdir()
    _write(c / "a.jsonl", '{"text": "x"}\nnot json\n')
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_raw(fixtures["cache"], {"data": {"corpus": str(c), "max_chars": None}})))
    out = tmp_path / "out"
    assert cli.main(["run", "baseline", "--config", str(cfg), "--out", str(out)]) == 2
    man = runs.RunDir(out).read_manifest()
    assert man["status"] == "failed" and "a.jsonl:2" in man["error"] and not (out / runs.LOCK_NAME).exists()
    capsys.readouterr()
    assert cli.main(["run", "baseline", "--config", str(cfg), "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "failed" in err and "a.jsonl:2" in err and "--overwrite" in err
    _write(
        c / "a.jsonl",
        "".join(json.dumps({"text": "def f(x):\n    return x\n" * 40}) + "\n" for _ in range(60)),
    )
    # a fixed corpus and --overwrite: the failed directory is replaced
    rc = cli.main(
        [
            "run",
            "baseline",
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--overwrite",
            "train.steps=2",
            "eval.every=2",
            "data.vocab_size=300",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    assert runs.RunDir(out).status() == "complete"


def test_a_torn_last_metrics_line_is_dropped_and_said(fixtures, tmp_path, capsys):
    run = shutil.copytree(fixtures["root"] / "killed", tmp_path / "run")
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "tokens": 8')  # the write a kill cut short (no newline)
    rd = runs.RunDir(run)
    assert [r["step"] for r in rd.read_metrics()] == list(range(7)) and "torn" in rd.notes[0]
    assert rd.resume_problems() == []
    rc = cli.main(["run", "baseline", "--config", str(fixtures["config"]), "--out", str(run), "--resume"])
    out = capsys.readouterr().out
    assert rc == 0 and "torn last line" in out
    assert runs.check_run(run) == []
    ref = [
        json.loads(x)["eval_loss"]
        for x in _rows(fixtures["root"] / "full_a" / "metrics.jsonl")
        if "eval_loss" in x
    ]
    got = [json.loads(x)["eval_loss"] for x in _rows(run / "metrics.jsonl") if "eval_loss" in x]
    assert got == ref  # bitwise: the resumed run is the uninterrupted one


@pytest.mark.slow
def test_two_runs_started_together_into_one_directory(fixtures, tmp_path):
    """Two real processes: exactly one trains; the other exits 2 naming it; the run is sound."""
    env = {**os.environ, "PYTHONPATH": str(Path(runs.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "efflab",
        "run",
        "baseline",
        "--config",
        str(fixtures["config"]),
        "--out",
        str(out),
        "train.steps=40",
    ]
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    t0 = time.time()
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)
    assert "in use by pid" in loser[1] or "already exists" in loser[1], loser[1]
    assert runs.check_run(out) == [], time.time() - t0


def test_compare_of_a_suite_leaves_a_failed_run_out_and_says_so(fixtures, tmp_path, capsys):
    sdir = tmp_path / "suite"
    for name in ("a", "b", "c"):
        shutil.copytree(
            fixtures["root"] / ("killed" if name == "c" else f"full_{name}"), sdir / "runs" / name
        )
    runs.RunDir(sdir / "runs" / "c").mark_failed("the training loss became nan at step 3")
    entries = [
        {"name": n, "dir": f"runs/{n}", "technique": "baseline", "scale": "s", "state": st}
        for n, st in (("a", "complete"), ("b", "complete"), ("c", "failed"))
    ]
    entries[2]["message"] = "the training loss became nan at step 3"
    (sdir / "suite.json").write_text(json.dumps({"runs": entries}))
    rc = cli.main(["compare", str(sdir), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "runs/c left out: failed (the training loss became nan" in err
    assert len(json.loads(out)["runs"]) == 2
