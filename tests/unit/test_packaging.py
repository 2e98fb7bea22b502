"""Package hygiene: LICENSE matches pyproject, py.typed ships, the transformers bound holds the cache API."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_license_file_is_apache_2_as_pyproject_says():
    assert 'license = "Apache-2.0"' in _pyproject()
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_py_typed_ships():
    assert (ROOT / "src" / "efflab" / "py.typed").is_file()
    assert '"py.typed"' in _pyproject()


def _bound() -> tuple[tuple[int, ...], tuple[int, ...]]:
    m = re.search(r'"transformers>=([\d.]+),<([\d.]+)"', _pyproject())
    assert m, "transformers must carry a lower and an upper bound"
    return tuple(map(int, m.group(1).split("."))), tuple(map(int, m.group(2).split(".")))


def test_installed_transformers_inside_the_tested_bound():
    import transformers

    lo, hi = _bound()
    have = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:3])
    assert lo <= have[: len(lo)] and have[: len(hi)] < hi, (transformers.__version__, lo, hi)


def test_generation_loop_cache_api_exists():
    """The calls efflab.techniques.synthetic.generate_batch makes: DynamicCache(config=...), a causal LM
    forward taking past_key_values, use_cache and logits_to_keep, and the cache's batch selection."""
    import torch  # noqa: F401  (a dependency: a broken import fails, never skips)
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=16,
    )

    model = LlamaForCausalLM(cfg).eval()
    cache = DynamicCache(config=cfg)
    with torch.no_grad():
        out = model(
            input_ids=torch.ones(2, 3, dtype=torch.long),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        assert out.logits.shape == (2, 1, 32) and cache.get_seq_length() == 3
        out = model(input_ids=torch.ones(2, 1, dtype=torch.long), past_key_values=cache, use_cache=True)
    assert cache.get_seq_length() == 4
    cache.batch_select_indices(torch.tensor([1]))  # a row that ended leaves the batch
    with torch.no_grad():
        out = model(input_ids=torch.ones(1, 1, dtype=torch.long), past_key_values=cache, use_cache=True)
    assert out.logits.shape == (1, 1, 32) and cache.get_seq_length() == 5
