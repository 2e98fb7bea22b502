"""Small file helpers: atomic writes (temporary file, then rename), JSON lines."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import yaml

from efflab.errors import UserError


class DamagedFile(UserError, ValueError):
    """A file efflab wrote (or reads) that is truncated, garbled or binary; the message names it.
    Also a ValueError, so callers that already treat an unparsable file as absent keep doing so."""

    def __init__(self, path, what: str):
        self.path, self.what = Path(path), what
        super().__init__(f"{path}: {what}")


def _clean(o):
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if hasattr(o, "item") and callable(o.item):
        return o.item()
    return o


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` so that a reader sees either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the mode open() would
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # read the process umask (only settable), then put it back
    os.umask(mask)
    return mask


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2) + "\n")


def read_json(path: str | os.PathLike):
    """Parse a JSON file. A file that is not UTF-8 or not JSON raises DamagedFile naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except UnicodeDecodeError:
        raise DamagedFile(path, "not UTF-8 text (binary or corrupt)") from None
    except json.JSONDecodeError as e:
        what = "empty" if e.pos == 0 and not e.doc.strip() else f"not valid JSON ({e.msg} at line {e.lineno})"
        raise DamagedFile(path, what) from None


def append_jsonl(path: str | os.PathLike, obj) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(_clean(obj)) + "\n")
        f.flush()


def read_jsonl_checked(path: str | os.PathLike) -> tuple[list[dict], bool]:
    """(rows, torn) of a JSON-lines file. A last line without its newline that does not parse is
    what a killed writer leaves: it is dropped and `torn` is True. Any other line that does not
    parse, or a row that is not an object, raises DamagedFile naming the file and the line."""
    p = Path(path)
    if not p.exists():
        return [], False
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DamagedFile(p, "not UTF-8 text (binary or corrupt)") from None
    lines = text.split("\n")  # the element after the last newline is "" unless the last line is torn
    rows, torn = [], False
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == len(lines):  # no newline after it: a write cut short
                torn = True
                break
            raise DamagedFile(p, f"line {n} is not valid JSON") from None
        if not isinstance(row, dict):
            raise DamagedFile(p, f"line {n} is not a JSON object")
        rows.append(row)
    return rows, torn


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSON-lines file; a torn last line is dropped, any other damage raises DamagedFile."""
    return read_jsonl_checked(path)[0]


def read_yaml_mapping(path, kind: str) -> dict:
    """A user's YAML file (a `kind`: "config", "suite") read with the safe loader: its top-level mapping,
    or a UserError naming the file and what is wrong with it (missing, binary, not YAML, not a mapping)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{kind} file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a YAML {kind} file (binary or not UTF-8 text)") from None
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{p}: the top level must be a mapping of sections")
    return raw
