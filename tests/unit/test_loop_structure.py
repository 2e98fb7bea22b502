"""The loop's shape and where LoRA goes on.

`efflab.loop` reads as named steps: no function longer than a screen (60 lines, counted from the
`def` line to the last line of the body, docstring included, decorators not). LoRA adapters are put
on where the trained model is built (`efflab.models.build_model`), never
inside the loop, and the ledger's train FLOPs per token are the accounting layer's LoRA count for the
base model's config: the numbers the loop charged when it applied LoRA itself.
"""

import ast
from pathlib import Path

import pytest

from efflab import loop
from efflab.accounting import flops as flop_math
from efflab.accounting.ledger import Ledger
from efflab.models import build_model, build_model_config, load_pretrained

LOOP = Path(loop.__file__)
MAX_LINES = 60
LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_function_in_loop_is_longer_than_a_screen():
    fns = _functions(ast.parse(LOOP.read_text(encoding="utf-8")))
    assert len(fns) >= 20  # the module was read (train and its steps among them)
    long = {f.name: f.end_lineno - f.lineno + 1 for f in fns if f.end_lineno - f.lineno + 1 > MAX_LINES}
    assert not long, f"functions over {MAX_LINES} lines in {LOOP.name}: {long}"
    train = next(f for f in fns if f.name == "train")
    assert train.end_lineno - train.lineno + 1 <= MAX_LINES


def test_loop_applies_no_lora():
    tree = ast.parse(LOOP.read_text(encoding="utf-8"))
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    wrappers = {"apply_lora", "get_peft_model", "LoraConfig", "prepare_model_for_kbit_training"}
    assert not (names | imported) & wrappers
    assert not {m for m in modules if m and (m == "peft" or m.startswith("peft."))}
    train = next(f for f in _functions(tree) if f.name == "train")
    assert not [n for n in ast.walk(train) if isinstance(n, (ast.Import, ast.ImportFrom))]  # builds nothing


def _lora_cfg(tiny_cfg):
    return tiny_cfg(
        overrides={
            "lora": dict(LORA),
            "train": {"steps": 2, "checkpoint_every": 0},
            "eval": {"every": 2, "max_blocks": 2},
        }
    )


def test_build_model_puts_lora_on_and_the_ledger_counts_it_as_before(tmp_path, tiny_cfg):
    cfg = _lora_cfg(tiny_cfg)
    run = loop.start_run(cfg, out=tmp_path / "lora")
    data = loop.prepare_data(run)
    model = build_model(cfg, data.vocab_size)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert frozen and not any("lora_" in n for n in frozen)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == {"q_proj", "v_proj"}
    # the bare model on request (a caller that copies weights in first, then applies LoRA)
    assert all(p.requires_grad for p in build_model(cfg, data.vocab_size, lora=False).parameters())

    loop.train(run, model, data)
    led = Ledger.load(tmp_path / "lora" / "ledger.json")
    T = data.seq_len
    base = build_model_config(cfg, data.vocab_size)  # the base model's shape, built independently
    want = flop_math.train_flops_per_token(base, T, lora=cfg.lora)
    assert led.tokens("train") == 2 * cfg.train.batch_size * T
    assert led.flops("train") / led.tokens("train") == pytest.approx(want, rel=1e-12)
    assert want < flop_math.train_flops_per_token(base, T)  # LoRA counted: no weight grads of the base


def test_the_loop_refuses_lora_config_with_a_bare_model(tmp_path, tiny_cfg):
    """The loop never wraps a model itself: a LoRA config with no adapters on the model is a recipe error."""
    cfg = _lora_cfg(tiny_cfg)
    run = loop.start_run(cfg, out=tmp_path / "bare")
    data = loop.prepare_data(run)
    try:
        with pytest.raises(ValueError, match="no LoRA adapters"):
            loop.train(run, build_model(cfg, data.vocab_size, lora=False), data)
    finally:  # called outside a recipe's `guarded`: release the run's lock here
        run.rundir.unlock()


def test_a_helper_loads_bare_and_the_trained_pretrained_model_gets_lora(pretrained_dir, tiny_cfg):
    """A teacher, generator or reference scorer loads bare (load_pretrained); the trained model, built
    from the same directory by build_model, gets the adapters when lora.r > 0 and none when r = 0."""
    bare = load_pretrained(str(pretrained_dir))
    assert not hasattr(bare, "peft_config") and all(p.requires_grad for p in bare.parameters())
    model = {"pretrained": str(pretrained_dir)}
    wrapped = build_model(tiny_cfg(overrides={"model": model, "lora": dict(LORA)}), bare.config.vocab_size)
    trainable = [n for n, p in wrapped.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    plain = build_model(tiny_cfg(overrides={"model": model}), bare.config.vocab_size)  # r = 0: off
    assert not hasattr(plain, "peft_config")
