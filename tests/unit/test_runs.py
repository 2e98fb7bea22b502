"""efflab.runs: the readers that check what they read, weights files checked without loading them,
the lock's records, and the efflab-run test that guards --overwrite."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from efflab import rundir as runs
from efflab.io import DamagedFile, read_jsonl_checked
from efflab.model_files import weights_file_problem


def test_only_a_torn_last_line_is_tolerated(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "lo')
    assert read_jsonl_checked(p) == ([{"step": 0}, {"step": 1}], True)
    p.write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "lo\n')  # ends with a newline: not a cut write
    with pytest.raises(DamagedFile, match="line 3 is not valid JSON"):
        read_jsonl_checked(p)
    p.write_text('{"step": 0}\n{"st\n{"step": 2}\n')
    with pytest.raises(DamagedFile, match="line 2"):
        read_jsonl_checked(p)


@pytest.mark.parametrize(
    "steps, problem",
    [
        ([0, 1, 2], None),
        ([0, 1, 1, 2], "row 3 repeats step 1"),
        ([0, 2, 1], "row 3 goes back to step 1 after step 2"),
        ([0, None], "row 2 has no step number"),
    ],
)
def test_steps_must_increase(steps, problem):
    got = runs.metrics_order_problem([{"step": s} for s in steps])
    assert (got is None) if problem is None else got.startswith(problem)


def test_ledger_problems():
    ok = {
        "phases": {"train": {"flops": 1.0, "tokens": 2.0, "seconds": 0.1}},
        "marginal_flops": 1.0,
        "total_flops": 1.0,
    }
    assert runs.ledger_problem(ok) is None
    assert "flops -1" in runs.ledger_problem({"phases": {"train": {"flops": -1}}})
    assert "NaN" in runs.ledger_problem({"phases": {}, "total_flops": float("nan")})
    assert "not a ledger" in runs.ledger_problem([1, 2])


def test_weights_files_are_checked_without_loading(tmp_path):
    st = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(64, 64)}, str(st))
    assert weights_file_problem(st) is None
    full = st.read_bytes()
    st.write_bytes(full[:-100])
    assert f"{len(full) - 100} of {len(full)} bytes" in weights_file_problem(st)
    st.write_bytes(full[:4])
    assert "truncated" in weights_file_problem(st)
    st.write_bytes(b"\xff" * 8 + b"x" * 20)
    assert "truncated" in weights_file_problem(st)  # a header longer than the file
    pt = tmp_path / "optimizer.bin"
    torch.save({"state": torch.ones(1000)}, pt)
    assert weights_file_problem(pt) is None
    b = pt.read_bytes()
    pt.write_bytes(b[: len(b) // 2])
    assert "truncated or not a torch file" in weights_file_problem(pt)
    pt.write_bytes(os.urandom(500))
    assert "truncated or not a torch file" in weights_file_problem(pt)
    assert len(runs.weights_problems(tmp_path)) == 2


def test_what_counts_as_an_efflab_run(tmp_path):
    rd = runs.RunDir(tmp_path / "r")
    (tmp_path / "r").mkdir()
    assert rd.foreign_problem() is None  # empty: nothing to lose
    (tmp_path / "r" / "index.html").write_text("x")
    (tmp_path / "r" / "manifest.json").write_text('{"name": "web app"}')
    assert "index.html" in rd.foreign_problem() and not rd.is_run()
    (tmp_path / "r" / "manifest.json").write_text("{trunc")  # a damaged manifest: the config header decides
    (tmp_path / "r" / "config.yaml").write_text(
        runs.CONFIG_HEADER + " baseline --config this file\nmodel: {}\n"
    )
    assert rd.is_run() and rd.foreign_problem() is None


def test_lock_records_holder_and_releases(tmp_path):
    rd = runs.RunDir(tmp_path / "r")
    assert rd.lock() is None and rd.locked
    rec = json.loads((tmp_path / "r" / runs.LOCK_NAME).read_text())
    assert rec["pid"] == os.getpid() and rec["host"] == runs.HOST
    # another open file of the lock: a second holder conflicts with the flock
    fd = os.open(tmp_path / "r" / runs.LOCK_NAME, os.O_RDONLY)
    try:
        import fcntl

        with pytest.raises(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    rd.unlock()
    assert not (tmp_path / "r" / runs.LOCK_NAME).exists() and not runs._HELD
    (tmp_path / "r" / runs.LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 7, "host": runs.HOST}))
    note = runs.RunDir(tmp_path / "r").lock()
    assert "stale lock" in note and str(2**22 + 7) in note
    runs.release_held()


def test_mark_failed_keeps_the_first_reason(tmp_path):
    rd = runs.RunDir(tmp_path)
    rd.write_manifest({"efflab": "x", "status": "running"})
    rd.mark_failed("first")
    rd.mark_failed("second")
    assert rd.read_manifest()["error"] == "first" and rd.status() == "failed"
