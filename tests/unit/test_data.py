import json

import numpy as np
import pytest

from efflab.config import DataConfig
from efflab.data import load_corpus, pack, prepare, split_ids
from efflab.errors import UserError


def test_stdlib_corpus_is_deterministic_real_text():
    a = load_corpus(DataConfig(max_chars=2e5))
    b = load_corpus(DataConfig(max_chars=2e5))
    assert a.hash == b.hash and a.ids == b.ids
    assert a.n_chars >= 2e5 and len(a.ids) >= 2
    assert not any("/test/" in i or i.startswith("test/") for i in a.ids)
    assert any('"""' in t for t in a.texts)  # docstrings: human-written prose lives here


def test_split_is_by_document_and_stable():
    ids = [f"doc{i}" for i in range(2000)]
    tr, ev = split_ids(ids, 0.1)
    assert set(tr).isdisjoint(ev) and len(tr) + len(ev) == 2000
    assert 120 < len(ev) < 280
    rev = ids[::-1]
    assert {rev[i] for i in split_ids(rev, 0.1)[1]} == {ids[i] for i in ev}  # independent of order


def test_pack_drops_tail():
    blocks = pack([[1, 2, 3], [4, 5, 6, 7, 8]], 3)
    assert blocks.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_prepare_caches_tokenization_and_hashes_eval(cache_dir):
    cfg = DataConfig(max_chars=2e5, vocab_size=300, seq_len=32, cache_dir=str(cache_dir))
    one = prepare(cfg, 8, log=lambda *_: None)
    two = prepare(cfg, 8, log=lambda *_: None)
    assert two.meta["tokenization_cached"] is True
    assert one.meta["eval_set_hash"] == two.meta["eval_set_hash"]
    assert np.array_equal(one.train, two.train)
    assert one.eval.shape == (8, 32) and one.train.dtype == np.int32
    assert one.eval_bytes > 8 * 31  # byte-level BPE: at least one byte per predicted token
    assert one.meta["unigram_entropy_nats"] > 3.0


def test_prepare_reads_the_stdlib_once_per_process_and_shares_read_only_arrays(cache_dir):
    import efflab.data as D

    cfg = DataConfig(max_chars=2e5, vocab_size=300, seq_len=32, cache_dir=str(cache_dir))
    D._PREPARED.clear()
    one = prepare(cfg, 8, log=lambda *_: None)
    two = prepare(cfg, 8, log=lambda *_: None)
    assert two.train is one.train and not two.train.flags.writeable  # no run can change another's data
    two.meta["x"] = 1
    assert "x" not in one.meta  # the metadata is each run's own
    other = prepare(cfg, 4, log=lambda *_: None)  # another eval size: prepared again
    assert other.eval.shape == (4, 32)
    with pytest.raises(ValueError):
        two.train[0, 0] = 0


def test_a_validation_carve_out_trains_its_own_tokenizer(cache_dir):
    # the tokenizer is trained on the training split only: a cached one from another split must not be used
    a = prepare(
        DataConfig(max_chars=2e5, vocab_size=300, seq_len=32, cache_dir=str(cache_dir)),
        4,
        log=lambda *_: None,
    )
    b = prepare(
        DataConfig(max_chars=2e5, vocab_size=300, seq_len=32, valid_fraction=0.2, cache_dir=str(cache_dir)),
        4,
        log=lambda *_: None,
    )
    assert a.meta["tokenizer_hash"] != b.meta["tokenizer_hash"]
    assert b.meta["valid_docs"] > 0 and a.meta["valid_docs"] == 0


def test_local_text_and_jsonl(tmp_path, cache_dir):
    d = tmp_path / "corpus"
    d.mkdir()
    for i in range(30):
        (d / f"f{i}.txt").write_text(f"Document number {i}. " * 40)
    (d / "extra.jsonl").write_text(
        "\n".join(json.dumps({"text": f"json line {i} " + "words " * 30}) for i in range(20))
    )
    cfg = DataConfig(corpus=str(d), vocab_size=300, seq_len=16, eval_fraction=0.2, cache_dir=str(cache_dir))
    b = prepare(cfg, 4, log=lambda *_: None)
    assert b.meta["corpus_docs"] == 50 and b.train.shape[1] == 16


@pytest.mark.parametrize(
    "setup,needle",
    [
        ("missing", "no such file or directory"),
        ("empty", "holds no files"),
        ("blank", "no non-empty documents"),
        ("short", "fewer tokens than one block"),
    ],
)
def test_bad_corpora(tmp_path, cache_dir, setup, needle):
    d = tmp_path / "c"
    if setup != "missing":
        d.mkdir()
    if setup == "blank":
        (d / "a.txt").write_text("   \n")
    if setup == "short":
        (d / "a.txt").write_text("tiny text one")
        (d / "b.txt").write_text("tiny text two")
    cfg = DataConfig(corpus=str(d), vocab_size=300, seq_len=512, cache_dir=str(cache_dir))
    with pytest.raises(UserError, match=needle):
        prepare(cfg, 4, log=lambda *_: None)
