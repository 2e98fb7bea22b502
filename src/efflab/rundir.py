"""The run directory (docs/conventions.md section 1): what is in it, who holds it, and whether it can be trusted.

    runs/<name>/
      config.yaml      the resolved config (first line: CONFIG_HEADER)
      manifest.json    versions, hashes, seed, status: running | complete | failed (+ error)
      metrics.jsonl    one JSON object per log step, steps strictly increasing
      ledger.json      phases -> {flops, tokens, seconds}; matches the last metrics row
      model/           save_pretrained output
      checkpoint/      latest.json -> step-N/ (accelerate state + trainer_state_rank*.json)
      .efflab.lock     held (flock) by the process writing the run: {"pid", "host", "started", "command"}

`RunDir` reads and writes these; `check_run(path)` lists why a finished run cannot be used (compare,
suite); `RunDir.resume_problems()` lists why an interrupted one cannot be continued. A reader that finds
a torn last metrics line (a write cut short by a kill) drops it and says so; every other kind of damage
makes the run "damaged", and the problem names the file and what is wrong with it.

Weights files are checked without loading them (efflab.model_files). `source_problems(path, role)` and
`locate(path)` answer for a model a technique uses besides the one it trains (a finished run, a model
directory or a hub id): every problem with it, found at config time; efflab.runs.ModelSource resolves it.

The one reader and writer of these files: everything else goes through `RunDir`. Sits below the
technique modules (their config sections check model paths) and imports only errors, io, hub and
model_files.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import yaml

from efflab import hub
from efflab.errors import DamagedRun, RunFailed, UserError
from efflab.io import DamagedFile, atomic_write_json, read_json, read_jsonl_checked
from efflab.model_files import (
    check_pretrained_dir,
    pretrained_tokenizer_problems,
    weights_problems,
)

try:
    import fcntl
except ImportError:  # not POSIX: locks fall back to exclusive creation (see RunDir.lock)
    fcntl = None

LOCK_NAME = ".efflab.lock"
CONFIG_HEADER = "# resolved config: efflab run"
STATUSES = ("running", "complete", "failed")
HOST = socket.gethostname()

_HELD: dict[Path, RunDir] = {}  # run directories whose lock this process holds


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _close(a: float, b: float, rel: float = 1e-9) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b), 1.0)


def _finite_nonneg(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _json_file_problem(path: Path) -> str | None:
    try:
        read_json(path)
    except DamagedFile as e:
        return e.message
    except OSError as e:
        return f"{path}: unreadable ({e.strerror or e})"
    return None


# =============================================================================================
# the run directory
# =============================================================================================
class RunDir:
    """One run directory: paths, manifest and status, metrics and ledger readers that check what they
    read, the lock, and damage checks."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.notes: list[str] = []  # what a reader dropped or a lock took over, for the log
        self.owned = False  # this process started writing the run (its failure is recorded here)
        self._fd: int | None = None

    # ---- paths ---------------------------------------------------------------------------------
    manifest_path = property(lambda self: self.path / "manifest.json")
    config_path = property(lambda self: self.path / "config.yaml")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    ledger_path = property(lambda self: self.path / "ledger.json")
    model_dir = property(lambda self: self.path / "model")
    checkpoint_dir = property(lambda self: self.path / "checkpoint")
    lock_path = property(lambda self: self.path / LOCK_NAME)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def entries(self) -> list[str]:
        """Names in the directory, the lock and temporary files left aside."""
        if not self.path.is_dir():
            return []
        return sorted(
            p.name
            for p in self.path.iterdir()
            if p.name != LOCK_NAME and not (p.name.startswith(".") and p.name.endswith(".tmp"))
        )

    def is_run(self) -> bool:
        """Written by efflab: a manifest naming efflab or a status, or a config.yaml with efflab's header
        (either may be damaged, not both)."""
        try:
            m = read_json(self.manifest_path)
            if isinstance(m, dict) and ("efflab" in m or m.get("status") in STATUSES):
                return True
        except (OSError, ValueError):
            pass
        try:
            with open(self.config_path, "rb") as f:
                return f.read(len(CONFIG_HEADER)) == CONFIG_HEADER.encode()
        except OSError:
            return False

    def foreign_problem(self) -> str | None:
        """Why `--overwrite` must not empty this directory (it is not an efflab run), or None."""
        names = self.entries()
        if not names or self.is_run():
            return None
        shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
        return (
            f"--overwrite: {self.path} is not an efflab run directory (it holds {shown}; no manifest.json or "
            f"config.yaml written by efflab); --overwrite replaces only run directories: choose another --out"
        )

    # ---- manifest and status -------------------------------------------------------------------
    def read_manifest(self) -> dict:
        m = read_json(self.manifest_path)
        if not isinstance(m, dict):
            raise DamagedFile(self.manifest_path, "not a JSON object")
        return m

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def status(self) -> str | None:
        """running | complete | failed, 'damaged' (unreadable manifest), or None (no manifest)."""
        if not self.manifest_path.is_file():
            return None
        try:
            return str(self.read_manifest().get("status"))
        except (OSError, ValueError):
            return "damaged"

    def mark_failed(self, reason: str) -> None:
        """status: failed with the reason (a first recorded reason is kept)."""
        try:
            m = self.read_manifest()
        except (OSError, ValueError):
            m = {}
        if m.get("status") == "failed" and m.get("error"):
            return
        m.update(status="failed", error=reason, finished=_now())
        self.write_manifest(m)

    # ---- metrics and ledger --------------------------------------------------------------------
    def read_metrics(self) -> list[dict]:
        """Rows of metrics.jsonl. A torn last line is dropped (noted in `self.notes`); any other damage,
        a row without an integer step, or steps not strictly increasing raise DamagedFile."""
        rows, torn = read_jsonl_checked(self.metrics_path)
        if torn:
            self.notes.append(f"{self.metrics_path}: dropped a torn last line (a write cut short)")
        prob = metrics_order_problem(rows)
        if prob:
            raise DamagedFile(self.metrics_path, prob)
        return rows

    def read_ledger(self) -> dict:
        d = read_json(self.ledger_path)
        prob = ledger_problem(d)
        if prob:
            raise DamagedFile(self.ledger_path, prob)
        return d

    # ---- damage checks -------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Why this finished run cannot be compared ([] when it can): not complete, or damaged."""
        p = self.path
        if not p.is_dir():
            return [f"{p}: no such run directory"]
        if not self.manifest_path.is_file():
            return [f"{p}: not a run directory (no manifest.json)"]
        try:
            man = self.read_manifest()
        except DamagedFile as e:
            return [f"{p}: damaged run: {e.message}"]
        status = man.get("status")
        if status == "failed":
            return [
                f"{p}: failed run ({man.get('error') or 'no reason recorded'}); compare uses complete runs only"
            ]
        if status != "complete":
            hint = " (finish it with --resume)" if status == "running" else ""
            return [f"{p}: incomplete run (status: {status}){hint}; compare uses complete runs only"]
        return [f"{p}: damaged run: {d}" for d in self._complete_damage(man)]

    def _complete_damage(self, man: dict) -> list[str]:
        out = []
        for f in (self.ledger_path, self.metrics_path, self.config_path):
            if not f.is_file():
                out.append(f"{f.name} is missing")
        if out:
            return out
        out += self._config_damage()
        result = man.get("result")
        if not isinstance(result, dict):
            return out + ["manifest.json has no result"]
        fel = result.get("final_eval_loss")
        if not (isinstance(fel, (int, float)) and not isinstance(fel, bool) and math.isfinite(fel)):
            out.append(f"manifest.json has no final eval loss (final_eval_loss: {json.dumps(fel)})")
            fel = None
        led = rows = None
        try:
            led = self.read_ledger()
        except DamagedFile as e:
            out.append(e.message)
        try:
            rows = self.read_metrics()
        except DamagedFile as e:
            out.append(e.message)
        if rows is not None:
            out += _final_row_damage(rows, result, fel, led)
        if self.model_dir.is_dir():
            if (self.model_dir / "config.json").is_file():
                out += [x for x in [_json_file_problem(self.model_dir / "config.json")] if x]
            out += weights_problems(self.model_dir)
        return out

    def read_config(self) -> dict:
        """The resolved config the run was started with (config.yaml, safe loader); DamagedFile when it
        is not UTF-8, not YAML or not a mapping of sections."""
        try:
            cfg = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise DamagedFile(self.config_path, "not UTF-8 text (binary or corrupt)") from None
        except yaml.YAMLError:
            raise DamagedFile(self.config_path, "not valid YAML") from None
        if not isinstance(cfg, dict):
            raise DamagedFile(self.config_path, "not a mapping of sections")
        return cfg

    def _config_damage(self) -> list[str]:
        try:
            self.read_config()
        except DamagedFile as e:
            return [str(e)]
        return []

    def checkpoint_problems(self) -> list[str]:
        """Why checkpoint/ cannot be resumed from ([] when it can, or when there is no checkpoint)."""
        latest = self.checkpoint_dir / "latest.json"
        if not latest.exists():
            return []
        try:
            info = read_json(latest)
        except DamagedFile as e:
            return [e.message]
        if not (
            isinstance(info, dict) and isinstance(info.get("dir"), str) and isinstance(info.get("step"), int)
        ):
            return [f'{latest}: expected {{"step": N, "dir": "step-N"}}']
        step_dir = self.checkpoint_dir / info["dir"]
        if "/" in info["dir"] or not step_dir.is_dir():
            return [f"{latest}: points at {info['dir']}, which is not in {self.checkpoint_dir}"]
        out = []
        states = sorted(step_dir.glob("trainer_state_rank*.json"))
        if not states:
            out.append(f"{step_dir}: no trainer_state_rank0.json")
        for s in states:
            try:
                st = read_json(s)
            except DamagedFile as e:
                out.append(e.message)
                continue
            if not (
                isinstance(st, dict) and st.get("step") == info["step"] and isinstance(st.get("ledger"), dict)
            ):
                out.append(f"{s}: does not hold the state of step {info['step']}")
            elif (prob := ledger_problem(st["ledger"])) is not None:
                out.append(f"{s}: its ledger {prob}")
        out += weights_problems(step_dir)
        return out

    def resume_problems(self) -> list[str]:
        """Why `--resume` cannot continue this run ([] when it can, or when it is complete and sound)."""
        p = self.path
        if not self.manifest_path.is_file():
            return []  # nothing started yet: --resume starts from the beginning
        try:
            man = self.read_manifest()
        except DamagedFile as e:
            return [f"--resume: {p} is damaged: {e.message}; start it again with --overwrite"]
        status = man.get("status")
        if status == "failed":
            return [
                f"--resume: {p} failed ({man.get('error') or 'no reason recorded'}); a failed run is not "
                f"continued: fix the cause and start it again with --overwrite"
            ]
        if status == "complete":
            bad = self._complete_damage(man)
            return [
                f"--resume: {p} is complete but damaged: {b}; start it again with --overwrite" for b in bad
            ]
        out = []
        if self.config_path.is_file():
            out += self._config_damage()
        try:
            self.read_metrics()
        except DamagedFile as e:
            out.append(e.message)
        out += self.checkpoint_problems()
        return [f"--resume: {p} is damaged: {b}; start it again with --overwrite" for b in out]

    # ---- lock ----------------------------------------------------------------------------------
    def holder(self) -> dict | None:
        """The lock record of another live process holding this run, or None."""
        if self.path.resolve() in _HELD or not self.lock_path.is_file():
            return None
        if fcntl is None:
            info = _read_lock_file(self.lock_path)
            return info if info and _alive(info) else None
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            info = _read_lock_fd(fd) or {}
            os.close(fd)
            return info
        fcntl.flock(fd, fcntl.LOCK_UN)
        info = _read_lock_fd(fd)
        os.close(fd)
        if info and info.get("host") not in (None, HOST):
            return info  # left by a process on another machine: cannot tell whether it still runs
        return None

    def lock(self) -> str | None:
        """Take the run's lock for the life of this process (or until `unlock`). Raises UserError naming
        the holder when another live process has it; returns a note when a stale lock was taken over."""
        key = self.path.resolve()
        prev = _HELD.pop(key, None)
        if prev is not None:  # this process ran it before and stopped with an exception
            prev.unlock()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            if fcntl is None:
                return self._lock_excl(key)
            return self._lock_flock(key)
        except OSError as e:  # a directory that cannot be created or written (/proc/x, read-only media)
            raise UserError(
                f"output directory {self.path}: cannot create or write it ({e.strerror or e})"
            ) from None

    def _lock_flock(self, key: Path) -> str | None:
        for _ in range(5):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                info = _read_lock_fd(fd) or {}
                os.close(fd)
                raise UserError(held_message(self.path, info)) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.lock_path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and removed between our open and flock: try the new file
                os.close(fd)
                continue
            info = _read_lock_fd(fd)
            note = None
            if (
                info
                and info.get("pid") is not None
                and not (info.get("pid") == os.getpid() and info.get("host") == HOST)
            ):
                if info.get("host") not in (None, HOST):
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
                    raise UserError(held_message(self.path, info))
                note = (
                    f"took over a stale lock on {self.path}: pid {info['pid']} on {HOST} (started "
                    f"{info.get('started', '?')}) is no longer running"
                )
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_lock_record()).encode(), 0)
            os.fsync(fd)
            self._fd = fd
            _HELD[key] = self
            if note:
                self.notes.append(note)
            return note
        raise UserError(f"{self.path}: could not take its lock {self.lock_path} (it kept changing)")

    def _lock_excl(self, key: Path) -> str | None:
        note = None
        info = _read_lock_file(self.lock_path)
        if info:
            if _alive(info):
                raise UserError(held_message(self.path, info))
            note = f"took over a stale lock on {self.path}: pid {info.get('pid')} is no longer running"
            self.lock_path.unlink(missing_ok=True)
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise UserError(held_message(self.path, _read_lock_file(self.lock_path) or {})) from None
        os.write(fd, json.dumps(_lock_record()).encode())
        self._fd = fd
        _HELD[key] = self
        return note

    def unlock(self) -> None:
        """Release the lock (and remove its file) if this object holds it."""
        if self._fd is None:
            return
        try:
            if os.fstat(self._fd).st_ino == os.stat(self.lock_path).st_ino:
                os.unlink(self.lock_path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        _HELD.pop(self.path.resolve(), None)

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def clear(self) -> None:
        """Remove everything in the directory except the lock (what `--overwrite` does, under the lock)."""
        for child in self.path.iterdir():
            if child.name == LOCK_NAME:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()


def metrics_order_problem(rows: list[dict]) -> str | None:
    """'row 3 (step 10) repeats a step' style problem, or None: steps are integers, strictly increasing."""
    last = None
    for i, r in enumerate(rows, 1):
        s = r.get("step")
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            return f"row {i} has no step number (step: {json.dumps(s)})"
        if last is not None and s <= last:
            what = "repeats step" if s == last else f"goes back to step {s} after step"
            return f"row {i} {what} {last} (steps must increase: two writers, or a resume gone wrong)"
        last = s
    return None


def ledger_problem(d) -> str | None:
    """Why a ledger dict cannot be trusted (negative or non-finite FLOPs, sums that disagree), or None."""
    if not isinstance(d, dict) or not isinstance(d.get("phases", {}), dict):
        return 'is not a ledger (expected {"phases": {...}, ...})'
    for name, ph in d.get("phases", {}).items():
        if not isinstance(ph, dict):
            return f"phase {name} is not a mapping"
        for k in ("flops", "tokens", "seconds"):
            if k in ph and not _finite_nonneg(ph[k]):
                return f"phase {name} has {k} {json.dumps(ph[k])} (must be a finite number >= 0)"
    for k in ("marginal_flops", "total_flops"):
        if k in d and not _finite_nonneg(d[k]):
            return f"{k} is {json.dumps(d[k])} (must be a finite number >= 0)"
    books = d.get("_books")
    if books is not None:
        if not isinstance(books, dict) or not all(isinstance(b, dict) for b in books.values()):
            return "_books is not a mapping of books"
        for book in books.values():
            for name, ph in book.items():
                if not isinstance(ph, dict) or not all(
                    _finite_nonneg(ph.get(k, 0)) for k in ("flops", "tokens", "seconds")
                ):
                    return f"_books entry {name} holds a negative or non-finite number"
    return None


def _final_row_damage(rows: list[dict], result: dict, fel, led: dict | None) -> list[str]:
    """A complete run's last metrics row is its final eval; the ledger and manifest agree with it."""
    evals = [r for r in rows if r.get("eval_loss") is not None]
    if not rows or not evals:
        return ["metrics.jsonl holds no eval row"]
    last = rows[-1]
    out = []
    steps = result.get("steps")
    if isinstance(steps, int) and last["step"] != steps:
        out.append(f"metrics.jsonl ends at step {last['step']}, the manifest says the run took {steps} steps")
    if last.get("eval_loss") is None:
        out.append(f"metrics.jsonl's last row (step {last['step']}) has no final eval")
    elif fel is not None and not (
        isinstance(last["eval_loss"], (int, float)) and _close(last["eval_loss"], fel, 1e-9)
    ):
        out.append(f"manifest.json's final eval loss {fel} is not the last metrics row's {last['eval_loss']}")
    if led is not None and isinstance(last.get("flops"), dict):
        f = last["flops"]
        for key, lk in (("total", "total_flops"), ("marginal", "marginal_flops")):
            a, b = f.get(key), led.get(lk)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not _close(a, b):
                out.append(f"ledger.json's {lk} {b:.6g} does not match the last metrics row's {a:.6g}")
        tok, lt = last.get("tokens"), (led.get("phases", {}).get("train") or {}).get("tokens")
        if isinstance(tok, (int, float)) and isinstance(lt, (int, float)) and not _close(tok, lt):
            out.append(f"ledger.json's train tokens {lt:.6g} do not match the last metrics row's {tok:.6g}")
    return out


def check_run(path: str | os.PathLike) -> list[str]:
    """Why the run directory at `path` cannot be compared: missing, not a run, not complete (failed,
    running), or damaged (each problem names the file). [] when it is complete and sound."""
    return RunDir(path).problems()


def require_run(path: str | os.PathLike) -> RunDir:
    """A complete, sound run directory, or DamagedRun naming every problem."""
    rd = RunDir(path)
    probs = rd.problems()
    if probs:
        raise DamagedRun(probs)
    return rd


# =============================================================================================
# locks: records, holders, release at exit, failure of the runs this process holds
# =============================================================================================
def _lock_record() -> dict:
    return {"pid": os.getpid(), "host": HOST, "started": _now(), "command": " ".join(sys.argv)[:300]}


def _read_lock_fd(fd: int) -> dict | None:
    try:
        raw = os.pread(fd, 4096, 0)
        info = json.loads(raw.decode("utf-8")) if raw.strip() else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def _read_lock_file(path: Path) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_lock_fd(fd)
    finally:
        os.close(fd)


def _alive(info: dict) -> bool:
    if info.get("host") not in (None, HOST):
        return True  # another machine: cannot tell
    try:
        os.kill(int(info.get("pid")), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def held_message(path: Path, info: dict) -> str:
    pid, host = info.get("pid", "?"), info.get("host", "?")
    since = f" since {info['started']}" if info.get("started") else ""
    cmd = f" ({info['command']})" if info.get("command") else ""
    if host not in (HOST, "?"):
        return (
            f"{path} is in use by pid {pid} on host {host}{since}{cmd}; wait for it to finish, or, if that "
            f"process is no longer running, delete {path / LOCK_NAME}"
        )
    return f"{path} is in use by pid {pid} on host {host}{since}{cmd}; wait for it to finish (or stop it) and run again"


def fail_held(reason: str) -> list[Path]:
    """Mark every run this process started and still holds as failed with `reason`, release the locks.
    Returns the directories marked."""
    marked = []
    for rd in list(_HELD.values()):
        if rd.owned:
            try:
                rd.mark_failed(reason)
                marked.append(rd.path)
            except OSError:
                pass
        rd.unlock()
    return marked


def guarded(main, cfg, **kw):
    """`main(cfg, **kw)` (a recipe's entry point). A failure after its run directory was started marks the
    directory `failed` with the reason (so a rerun with --overwrite or a fixed config is possible, and
    --resume says why it cannot continue); an interruption leaves it resumable. Locks are released."""

    try:
        return main(cfg, **kw)
    except KeyboardInterrupt:
        release_held()
        raise
    except (UserError, RunFailed) as e:
        fail_held(getattr(e, "message", None) or str(e))
        raise
    except BaseException as e:
        fail_held(f"{type(e).__name__}: {e} (an efflab bug: please report it with this message)")
        raise


def release_held() -> None:
    """Release every lock this process holds, marking nothing (an interruption: the run stays resumable)."""
    for rd in list(_HELD.values()):
        rd.unlock()


atexit.register(release_held)


# =============================================================================================
# a model from somewhere: where its files are, and every problem with it (efflab.runs.ModelSource)
# =============================================================================================
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def locate(path: str | os.PathLike, *, weights: bool = True) -> tuple[Path, Path, bool]:
    """(local directory, model directory, is an efflab run) for a run directory, a model directory or a
    hub id (fetched into the hub cache; UserError when it cannot be). Checks nothing else."""
    p = Path(hub.local_dir(str(path), weights=weights)).expanduser()
    if (p / "manifest.json").is_file():
        return p, p / "model", True
    return p, p, False


def source_problems(path: str | os.PathLike, role: str, *, tokenizer: bool = False) -> list[str]:
    """Every problem with `path` as the model of config key `role`, each naming the key; found before
    any work starts. `tokenizer`: the model directory must also hold its tokenizer."""

    def named(probs: list[str], d) -> list[str]:
        return [f"{role} {path}: {q.replace(f'pretrained model {d}: ', '')}" for q in probs]

    if hub.is_hub_id(str(path)):  # config and tokenizer fetched here; weights when the model loads
        probs = check_pretrained_dir(str(path))
        if not probs and tokenizer:
            probs = pretrained_tokenizer_problems(str(path))
        return [f"{role} {q}" for q in probs]
    p = Path(path).expanduser()
    if not p.is_dir():
        return [
            f"{role} {path}: no such directory (a finished efflab run or a local Hugging Face model directory)"
        ]
    rd = RunDir(p)
    if rd.manifest_path.is_file():
        status = rd.status()
        if status == "damaged":
            return [f"{role} {path}: unreadable manifest.json"]
        if status != "complete":
            return [
                f"{role} {path}: the efflab run is not complete (status: {status}); finish it "
                f"(efflab run ... --resume) or point at another model"
            ]
        if not (p / "model" / "config.json").is_file():
            return [f"{role} {path}: complete run without a model/ directory"]
        probs = named(check_pretrained_dir(str(p / "model")), p / "model")
        if not rd.ledger_path.is_file():
            probs.append(f"{role} {path}: the run has no ledger.json")
        if not probs and tokenizer:
            probs = named(pretrained_tokenizer_problems(str(p / "model")), p / "model")
        return probs
    if (p / "config.json").is_file():
        probs = named(check_pretrained_dir(str(p)), p)
        if not probs and tokenizer:
            probs = named(pretrained_tokenizer_problems(str(p)), p)
        return probs
    return [
        f"{role} {path}: neither a finished efflab run (manifest.json) nor a model directory (config.json)"
    ]
