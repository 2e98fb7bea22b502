"""train.compile on a CPU: the loop compiles with inductor, keeps inductor's cache in efflab's cache
directory, evaluates with the uncompiled module, and trains to the same place as eager. Slow (a cold
CPU compile takes about a minute on 2 cores): python -m pytest -q -m slow tests/recipes/test_compile_cpu.py"""

import json

import pytest

from efflab.recipes import baseline


@pytest.mark.slow
def test_compiled_run_matches_eager_and_caches_in_efflab_dir(tmp_path, tiny_cfg, cache_dir, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    over = {"train": {"steps": 6, "checkpoint_every": 0, "threads": 1}, "eval": {"every": 3}}
    eager = baseline.main(tiny_cfg(overrides=over), out=tmp_path / "eager")
    compiled_cfg = tiny_cfg(overrides={**over, "train": {**over["train"], "compile": True}})
    compiled = baseline.main(compiled_cfg, out=tmp_path / "compiled")
    inductor = cache_dir / "inductor"
    assert inductor.is_dir() and any(inductor.rglob("*")), "inductor's cache is not in efflab's cache dir"
    m = json.loads((tmp_path / "compiled" / "manifest.json").read_text())
    assert m["status"] == "complete"
    # the same math, fused differently: the losses agree to float32 rounding over a few steps
    assert compiled["final_eval_loss"] == pytest.approx(eager["final_eval_loss"], abs=2e-3)
