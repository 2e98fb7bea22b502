"""Corpus -> tokenizer -> packed token blocks, with a fixed, hashed held-out split.

The embedded default corpus (`corpus: stdlib`) is the Python standard library's own source files:
human-written code, docstrings and comments present on every machine that has Python, so the main
job runs offline. Selection: every `*.py` under `sysconfig.get_paths()["stdlib"]`, except test suites
(`test/`, `tests/`, `idle_test/`), vendored or generated trees (`site-packages/`, `ensurepip/_bundled/`,
`encodings/` code-page tables, `pydoc_data/` generated topics, `lib2to3/`, `turtledemo/`), and the
build `config-*` folder. Documents are whole files, ordered by a hash of their relative path;
`max_chars` keeps whole documents up to that many characters. The content hash of the selection is
recorded in every run's manifest, since a different Python version means a different corpus.

Split: a document goes to the held-out set when a hash of its id falls below `eval_fraction`,
so the split is by document, deterministic, and independent of order and of the tokenizer.

Caching: the trained tokenizer (saved as a Hugging Face tokenizer) and the tokenized corpus (a
`datasets` dataset saved to disk) are cached under `cache_dir` keyed by content hashes, so a
second run with the same corpus and tokenizer does no tokenization at all.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import re
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from efflab.errors import UserError
from efflab.hub import local_dir
from efflab.model_files import load_pretrained_config
from efflab.rundir import RunDir
from efflab.techniques.distill import vocabulary_problems

EOS = "<|endoftext|>"
STDLIB_SKIP = {
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "_bundled",
    "encodings",
    "lib2to3",
    "turtledemo",
    "pydoc_data",
}
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".py"}
TABLE_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def sha256(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, (bytes, bytearray, memoryview)) else str(p).encode())
        h.update(b"\x00")
    return h.hexdigest()


def cache_root(data_cfg) -> Path:
    root = (
        data_cfg.cache_dir or os.environ.get("EFFLAB_CACHE") or os.path.join(Path.home(), ".cache", "efflab")
    )
    p = Path(root).expanduser()
    p.mkdir(parents=True, exist_ok=True)
    return p


# ---------------------------------------------------------------------------------------------
# documents
# ---------------------------------------------------------------------------------------------
@dataclass
class Corpus:
    ids: list[str]
    texts: list[str]
    name: str
    hash: str

    @property
    def n_chars(self) -> int:
        return sum(len(t) for t in self.texts)


def _stdlib_documents() -> tuple[list[str], list[str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    items = []
    for p in root.rglob("*.py"):
        rel = p.relative_to(root)
        if any(part in STDLIB_SKIP or part.startswith("config-") for part in rel.parts):
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if text.strip():
            items.append((str(rel), text))
    return [i for i, _ in items], [t for _, t in items]


def _split_text_file(name: str, text: str) -> list[tuple[str, str]]:
    """One .txt file -> documents: on EOS markers if present, else on blank-line paragraphs grouped
    into ~4k-character documents (so a single-file corpus still splits by document)."""
    if EOS in text:
        parts = [p.strip() for p in text.split(EOS)]
    else:
        paras = [p for p in text.split("\n\n") if p.strip()]
        parts, cur = [], ""
        for para in paras:
            cur = f"{cur}\n\n{para}" if cur else para
            if len(cur) >= 4000:
                parts.append(cur)
                cur = ""
        if cur:
            parts.append(cur)
    return [(f"{name}#{i}", p) for i, p in enumerate(parts) if p]


def _table_documents(files: list[Path], kind: str, field_: str) -> list[tuple[str, str]]:
    import datasets

    _check_table_files(files, kind)
    try:
        ds = datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    except Exception as e:  # noqa: BLE001  (a user's file that datasets cannot parse: name it, no traceback)
        names = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
        raise UserError(f"corpus: could not read {names} as {kind} ({type(e).__name__})") from None
    return _dataset_documents(ds, field_, prefix=files[0].stem if len(files) == 1 else "table")


def _check_table_files(files: list[Path], kind: str) -> None:
    """Name a binary file, and every JSON-lines row that does not parse by file and line (first 10)."""
    bad = []
    for f in files:
        if kind == "parquet":
            continue
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            bad.append(f"{f}: not UTF-8 text (binary?)")
            continue
        if f.suffix == ".jsonl":
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        json.loads(line)
                    except json.JSONDecodeError as e:
                        bad.append(f"{f}:{n}: not JSON ({e.msg})")
    if bad:
        more = [f"corpus: {len(bad) - 10} more rows or files like these"] if len(bad) > 10 else []
        raise UserError([f"corpus: {b}" for b in bad[:10]] + more)


def _dataset_documents(ds, field_: str, prefix: str) -> list[tuple[str, str]]:
    if field_ not in ds.column_names:
        raise UserError(
            f"corpus: no text field {field_!r}; columns are {ds.column_names} (set data.text_field)"
        )
    return [(f"{prefix}#{i}", t) for i, t in enumerate(ds[field_]) if isinstance(t, str) and t.strip()]


def load_corpus(data_cfg) -> Corpus:
    """Read the corpus named by `data.corpus` into whole documents (ids and texts)."""
    spec = data_cfg.corpus
    if spec == "stdlib":
        ids, texts = _stdlib_documents()
        pairs = list(zip(ids, texts))
        name = f"stdlib (Python {sysconfig.get_python_version()})"
    elif spec.startswith("hf:"):
        import datasets

        parts = spec[3:].split(":")
        try:
            ds = datasets.load_dataset(parts[0], parts[1] if len(parts) > 1 else None, split=data_cfg.split)
        except Exception as e:  # network, unknown dataset: a user problem, not a bug
            raise UserError(
                f"corpus {spec}: could not load the hub dataset ({type(e).__name__}: {e})"
            ) from None
        pairs = _dataset_documents(ds, data_cfg.text_field, parts[0])
        name = spec
    else:
        p = Path(spec).expanduser()
        if not p.exists():
            raise UserError(f"corpus {spec}: no such file or directory")
        if p.is_dir() and (p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists():
            import datasets

            ds = datasets.load_from_disk(str(p))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[data_cfg.split] if data_cfg.split in ds else next(iter(ds.values()))
            pairs = _dataset_documents(ds, data_cfg.text_field, p.name)
        else:
            files = sorted(f for f in (p.rglob("*") if p.is_dir() else [p]) if f.is_file())
            pairs = []
            for suffix, kind in TABLE_SUFFIXES.items():
                group = [f for f in files if f.suffix == suffix]
                if group:
                    pairs += _table_documents(group, kind, data_cfg.text_field)
            texts = [f for f in files if f.suffix in TEXT_SUFFIXES]
            for f in texts:
                rel = str(f.relative_to(p)) if p.is_dir() else f.name
                try:
                    text = f.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise UserError(f"corpus: {f} is not UTF-8 text") from None
                pairs += (
                    _split_text_file(rel, text) if (len(texts) == 1 and len(pairs) == 0) else [(rel, text)]
                )
            if not files:
                raise UserError(f"corpus {spec}: the directory holds no files")
        name = str(p)
    pairs = [(i, t) for i, t in pairs if t and t.strip()]
    if not pairs:
        raise UserError(f"corpus {spec}: no non-empty documents found")
    # deterministic order independent of the file system: by hash of the document id
    pairs.sort(key=lambda it: sha256(it[0]))
    if data_cfg.max_chars:
        kept, total = [], 0
        for i, t in pairs:
            if total >= data_cfg.max_chars:
                break
            kept.append((i, t))
            total += len(t)
        pairs = kept
    h = hashlib.sha256()
    for i, t in pairs:
        h.update(i.encode())
        h.update(b"\x00")
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return Corpus([i for i, _ in pairs], [t for _, t in pairs], name, h.hexdigest())


IGNORE = -100  # label of a token that is processed (FLOPs spent) but not trained on


def load_chat_records(data_cfg) -> tuple[list[str], list[dict], str]:
    """Instruction/chat JSONL: each line {"prompt": ..., "response": ...} or {"messages": [{"role",
    "content"}, ...]}. Returns ids, records and a content hash. Problems name the line."""
    p = Path(data_cfg.corpus).expanduser()
    files = (
        sorted(f for f in (p.rglob("*.jsonl") if p.is_dir() else [p]) if f.is_file()) if p.exists() else []
    )
    if not files:
        raise UserError(f"chat corpus {data_cfg.corpus}: no .jsonl file found")
    ids, recs, bad = [], [], []
    h = hashlib.sha256()
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"chat corpus: {f} is not UTF-8 text (binary?)") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                bad.append(f"{f}:{n}: not JSON")
                continue
            ok_pr = (
                isinstance(r, dict)
                and isinstance(r.get("prompt"), str)
                and isinstance(r.get("response"), str)
            )
            msgs = r.get("messages") if isinstance(r, dict) else None
            ok_msg = (
                isinstance(msgs, list)
                and msgs
                and all(
                    isinstance(m, dict) and isinstance(m.get("content"), str) and m.get("role") for m in msgs
                )
                and any(m.get("role") == "assistant" for m in msgs)
            )
            if not (ok_pr or ok_msg):
                bad.append(f"{f.name}:{n}: needs prompt+response strings, or messages with an assistant turn")
                continue
            ids.append(f"{f.name}#{n}")
            recs.append(r)
            h.update(line.encode())
    if bad:
        raise UserError(
            bad[:10] + ([f"... and {len(bad) - 10} more"] if len(bad) > 10 else []),
            header=f"chat corpus {data_cfg.corpus}: {len(bad)} bad record(s)",
        )
    if not recs:
        raise UserError(f"chat corpus {data_cfg.corpus}: no records")
    return ids, recs, h.hexdigest()


def _chat_text(rec: dict) -> str:
    if "messages" in rec:
        return "\n".join(m["content"] for m in rec["messages"])
    return rec["prompt"] + "\n" + rec["response"]


def encode_chat(rec: dict, tok) -> tuple[list[int], list[int]]:
    """Token ids and labels of one record: the loss is on assistant/response tokens only.

    With a chat template (an open-weight instruct model's tokenizer) the template renders the whole
    conversation once, and the tokens of that one rendering are what the model sees:
    - a template with `{% generation %}` blocks marks the assistant tokens itself
      (`apply_chat_template(..., return_assistant_tokens_mask=True)`);
    - otherwise each turn's content is located, in order, in the rendered text, and the assistant
      contents (plus the end-of-turn special token that directly follows one) are trained. Rendering
      prefixes is not used: templates whose generation prompt adds text the turn lacks (`<think>\n`),
      or that rewrite earlier turns (Qwen3 drops earlier reasoning), break the prefix property.
    A template that drops, rewrites or reorders a turn so that it cannot be found is refused with a
    message naming the turn. Without a template, prompt and response are joined by a newline. Each
    record ends with EOS (trained), which separates records in the packed blocks.
    """
    eos = tok.eos_token_id
    turns = (
        rec["messages"]
        if "messages" in rec
        else [{"role": "user", "content": rec["prompt"]}, {"role": "assistant", "content": rec["response"]}]
    )
    template = getattr(tok, "chat_template", None)
    if isinstance(template, dict):  # several named templates: transformers uses "default"
        template = template.get("default")
    ids: list[int] = []
    labels: list[int] = []
    if template and _GENERATION_TAG.search(template):
        ids, labels = _encode_with_assistant_mask(turns, tok)
    elif template:
        ids, labels = _encode_by_location(turns, tok)
    else:
        for m in turns:
            piece = tok(m["content"] + "\n", add_special_tokens=False)["input_ids"]
            ids += piece
            labels += piece if m["role"] == "assistant" else [IGNORE] * len(piece)
    ids.append(eos)
    labels.append(eos)
    return ids, labels


_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


def _template_problem(tok, what: str) -> UserError:
    name = getattr(tok, "name_or_path", "") or type(tok).__name__
    return UserError(
        f"chat template of tokenizer {name}: {what}; efflab cannot tell which tokens are the "
        "assistant's, so it will not guess (fix the template, add {% generation %} blocks around "
        "assistant content, or use prompt/response records without a template)"
    )


def _encode_with_assistant_mask(turns: list[dict], tok) -> tuple[list[int], list[int]]:
    out = tok.apply_chat_template(turns, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = list(out["input_ids"]), list(out["assistant_masks"])
    labels = [t if m else IGNORE for t, m in zip(ids, mask)]
    trained = tok.decode([t for t in labels if t != IGNORE])
    pos = 0
    for k, m in enumerate(turns):  # every assistant content must lie, in order, inside the marked tokens
        if m["role"] != "assistant" or not m["content"].strip():
            continue
        at = trained.find(m["content"].strip(), pos)
        if at < 0:
            raise _template_problem(tok, f"its {{% generation %}} blocks do not cover assistant turn {k + 1}")
        pos = at + len(m["content"].strip())
    return ids, labels


def _encode_by_location(turns: list[dict], tok) -> tuple[list[int], list[int]]:
    try:
        text = tok.apply_chat_template(turns, tokenize=False)
    except Exception as e:  # templates raise for roles they do not support (Gemma: no system role)
        raise _template_problem(tok, f"rendering failed ({type(e).__name__}: {e})") from None
    specials = sorted(
        {t for t in tok.all_special_tokens + list(tok.get_added_vocab()) if t}, key=len, reverse=True
    )
    spans: list[tuple[int, int]] = []
    pos = 0
    for k, m in enumerate(turns):
        c = m["content"]
        if not c.strip():
            continue
        if m["role"] not in (
            "user",
            "assistant",
        ):  # system/tool text may be moved (Mistral: into a user turn)
            if c.strip() not in text:
                raise _template_problem(tok, f"the rendered conversation lacks the {m['role']} turn {k + 1}")
            continue
        at, n = text.find(c, pos), len(c)
        if at < 0:  # templates may trim turns (Llama 3, Gemma)
            at, n = text.find(c.strip(), pos), len(c.strip())
        if at < 0:
            raise _template_problem(
                tok,
                f"{m['role']} turn {k + 1} does not appear verbatim, in order, in the "
                f"rendered conversation (the template drops or rewrites it)",
            )
        end = at + n
        if m["role"] == "assistant":  # the end-of-turn token that follows the content is trained too
            end += next((len(sp) for sp in specials if text.startswith(sp, end)), 0)
            spans.append((at, end))
        pos = end
    if not getattr(tok, "is_fast", False):
        raise _template_problem(
            tok,
            "locating the assistant turns needs a fast tokenizer (character offsets); "
            "this one is a slow (Python) tokenizer",
        )
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    labels = []
    j = 0
    for t, (a, b) in zip(ids, enc["offset_mapping"]):  # a token is trained if it overlaps a trained span
        while j < len(spans) and spans[j][1] <= a:
            j += 1
        hit = j < len(spans) and a < spans[j][1] and b > spans[j][0]
        labels.append(t if hit else IGNORE)
    return ids, labels


def _as_ids(x) -> list[int]:
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    return list(x)


def _prepare_chat(data_cfg, eval_max_blocks: int, tok, root: Path, log) -> DataBundle:
    ids, recs, chash = load_chat_records(data_cfg)
    tr_idx, ev_idx = split_ids(ids, data_cfg.eval_fraction)
    if not ev_idx and len(ids) >= 2:
        ev_idx, tr_idx = tr_idx[-1:], tr_idx[:-1]
    if not tr_idx or not ev_idx:
        raise UserError(
            f"chat corpus {data_cfg.corpus}: {len(ids)} record(s); need one to train and one held out"
        )
    if tok is None:
        if data_cfg.tokenizer == "train":
            tdir = (
                root
                / "tokenizers"
                / sha256("bpe-chat-v1", chash, data_cfg.eval_fraction, data_cfg.vocab_size)[:20]
            )
            if not (tdir / "tokenizer.json").exists():
                train_tokenizer([_chat_text(recs[i]) for i in tr_idx], data_cfg.vocab_size, tdir)
            tok = load_tokenizer(str(tdir))
        else:
            tok = load_tokenizer(data_cfg.tokenizer)
    enc = [encode_chat(r, tok) for r in recs]
    T = data_cfg.seq_len

    def packed(idx):
        flat_ids = np.fromiter((t for i in idx for t in enc[i][0]), dtype=np.int32)
        flat_lab = np.fromiter((t for i in idx for t in enc[i][1]), dtype=np.int32)
        n = len(flat_ids) // T
        return flat_ids[: n * T].reshape(n, T), flat_lab[: n * T].reshape(n, T)

    train, train_lab = packed(tr_idx)
    held, held_lab = packed(ev_idx)
    if len(train) < 1 or len(held) < 1:
        raise UserError(
            f"chat corpus {data_cfg.corpus} is too small for blocks of seq_len={T} "
            f"(train blocks {len(train)}, held-out blocks {len(held)})"
        )
    held, held_lab = held[:eval_max_blocks], held_lab[:eval_max_blocks]
    thash = tokenizer_hash(tok)
    # bits per byte over the trained (response) tokens the eval loss predicts
    eval_bytes = sum(
        len(tok.decode([int(t) for t, lab in zip(b[1:], lb[1:]) if lab != IGNORE]).encode("utf-8"))
        for b, lb in zip(held, held_lab)
    )
    meta = {
        "corpus": str(data_cfg.corpus),
        "format": "chat",
        "corpus_hash": chash,
        "corpus_docs": len(ids),
        "tokenizer_hash": thash,
        "tokenization_cached": False,
        "vocab_size": len(tok),
        "seq_len": T,
        "train_blocks": int(len(train)),
        "train_tokens": int(train.size),
        "train_trained_tokens": int((train_lab[:, 1:] != IGNORE).sum()),
        "eval_blocks": int(len(held)),
        "eval_tokens": int(held.size),
        "eval_set_hash": sha256(thash, held.tobytes(), held_lab.tobytes())[:32],
        "eval_text_hash": sha256(*(json.dumps(recs[i], sort_keys=True) for i in ev_idx))[:32],
        "eval_docs": len(ev_idx),
        "eval_bytes": int(eval_bytes),
        "unigram_entropy_nats": unigram_entropy(train, len(tok)),
    }
    return DataBundle(
        tok, train, held, max(1, int(eval_bytes)), meta, train_labels=train_lab, eval_labels=held_lab
    )


def split_ids(ids: list[str], eval_fraction: float) -> tuple[list[int], list[int]]:
    """Indices of train and eval documents; eval when sha256(id) / 2^64 < eval_fraction."""
    train, held = [], []
    for k, i in enumerate(ids):
        u = int(sha256("split", i)[:16], 16) / 2**64
        (held if u < eval_fraction else train).append(k)
    return train, held


def split_valid(
    ids: list[str], train_idx: list[int], eval_fraction: float, valid_fraction: float
) -> tuple[list[int], list[int]]:
    """Carve a validation split out of the training documents: those whose hash falls in
    [eval_fraction, eval_fraction + valid_fraction). Returns (train, valid); never touches eval."""
    if valid_fraction <= 0:
        return train_idx, []
    train, valid = [], []
    for k in train_idx:
        u = int(sha256("split", ids[k])[:16], 16) / 2**64
        (valid if u < eval_fraction + valid_fraction else train).append(k)
    if not valid and len(train) >= 2:  # tiny corpora: the last training document by hash order
        valid, train = train[-1:], train[:-1]
    return train, valid


# ---------------------------------------------------------------------------------------------
# tokenizer
# ---------------------------------------------------------------------------------------------
def train_tokenizer(texts: list[str], vocab_size: int, out_dir: Path):
    """Byte-level BPE trained with `tokenizers` on the training documents; saved as a HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=None, pad_token=EOS
    )
    tmp = out_dir.with_name(out_dir.name + f".tmp{os.getpid()}")
    fast.save_pretrained(str(tmp))
    os.replace(tmp, out_dir) if not out_dir.exists() else None
    return fast


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    p = Path(local_dir(path, weights=False)).expanduser()  # a hub id: its tokenizer files, fetched
    if not p.is_dir():
        raise UserError(f"tokenizer {path}: no such directory")
    try:
        tok = AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except Exception as e:
        raise UserError(
            f"tokenizer {path}: could not load a tokenizer from it ({type(e).__name__}: {e})"
        ) from None
    if tok.eos_token_id is None:
        raise UserError(f"tokenizer {path}: has no end-of-sequence token to separate documents")
    return tok


def tokenizer_hash(tok) -> str:
    return sha256(json.dumps(tok.get_vocab(), sort_keys=True), tok.eos_token_id, type(tok).__name__)


# ---------------------------------------------------------------------------------------------
# tokenize (cached through datasets) and pack
# ---------------------------------------------------------------------------------------------
def _tokenized(texts: list[str], ids: list[str], tok, key: str, root: Path):
    """A `datasets.Dataset` of input_ids per document, cached on disk under `key`."""
    import datasets

    datasets.disable_progress_bars()  # the run has its own progress display

    path = root / "tokenized" / key
    if (path / "dataset_info.json").exists():
        return datasets.load_from_disk(str(path)), True
    ds = datasets.Dataset.from_dict({"id": ids, "text": texts})
    eos = tok.eos_token_id

    def encode(batch):
        enc = tok(batch["text"], add_special_tokens=False)["input_ids"]
        return {
            "input_ids": [e + [eos] for e in enc],
            "n_bytes": [len(t.encode("utf-8")) for t in batch["text"]],
        }

    ds = ds.map(encode, batched=True, remove_columns=["text"], desc="tokenizing", keep_in_memory=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    ds.save_to_disk(str(tmp))
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.replace(tmp, path)
    return datasets.load_from_disk(str(path)), False


def pack(token_lists, seq_len: int) -> np.ndarray:
    """Concatenate documents (each ends with EOS) and cut into [n_blocks, seq_len]; the tail is dropped."""
    flat = np.fromiter((t for doc in token_lists for t in doc), dtype=np.int32)
    n = len(flat) // seq_len
    return flat[: n * seq_len].reshape(n, seq_len)


@dataclass
class DataBundle:
    """Everything a recipe needs from the data: blocks, tokenizer, and the hashes that identify them."""

    tokenizer: object
    train: np.ndarray  # [n_train_blocks, seq_len] int32 token ids
    eval: np.ndarray  # [n_eval_blocks, seq_len]
    eval_bytes: int  # UTF-8 bytes of the tokens the eval loss predicts (for bits per byte)
    meta: dict = field(default_factory=dict)
    train_labels: np.ndarray | None = None  # chat data: -100 on prompt tokens (no loss), else = train
    eval_labels: np.ndarray | None = None

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def seq_len(self) -> int:
        return int(self.train.shape[1])


def unigram_entropy(blocks: np.ndarray, vocab_size: int) -> float:
    """Entropy (nats/token) of the unigram distribution of the tokens: the loss of a model that
    learned only token frequencies. A language model that learns anything ends far below it."""
    counts = np.bincount(blocks.reshape(-1), minlength=vocab_size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def eval_bytes_of(blocks: np.ndarray, tok) -> int:
    """UTF-8 bytes of the predicted tokens (positions 1..T-1) of each eval block."""
    total = 0
    for b in blocks:
        total += len(tok.decode(b[1:].tolist(), skip_special_tokens=False).encode("utf-8"))
    return total


def prepare(
    data_cfg, eval_max_blocks: int, *, tokenizer=None, log=print, eval_split: str = "eval"
) -> DataBundle:
    """Load corpus, tokenizer and packed blocks (all cached), and the fixed held-out eval blocks.

    `tokenizer`: an already-loaded tokenizer (a pretrained model's own) overriding `data.tokenizer`.
    `eval_split`: 'eval' (the held-out eval set) or 'valid' (documents carved out of training by
    `data.valid_fraction`, for choosing hyperparameters without looking at the eval set).
    """
    memo_key = None
    if tokenizer is None and data_cfg.format == "text" and data_cfg.corpus == "stdlib":
        # one process trains many runs on the same data (the suite's workers): read it once
        memo_key = (
            json.dumps(data_cfg.model_dump(mode="json"), sort_keys=True),
            eval_max_blocks,
            eval_split,
            str(cache_root(data_cfg)),
        )
        if memo_key in _PREPARED:
            b = _PREPARED[memo_key]
            return dataclasses.replace(b, meta={**copy.deepcopy(b.meta), "tokenization_cached": True})
    bundle = _prepare(data_cfg, eval_max_blocks, tokenizer=tokenizer, log=log, eval_split=eval_split)
    if memo_key is not None:
        for a in (bundle.train, bundle.eval, bundle.train_labels, bundle.eval_labels):
            if a is not None:
                a.flags.writeable = False  # shared between runs: nothing may change it in place
        _PREPARED.clear()
        _PREPARED[memo_key] = bundle
        return dataclasses.replace(bundle, meta=copy.deepcopy(bundle.meta))
    return bundle


_PREPARED: dict = {}


def _prepare(
    data_cfg, eval_max_blocks: int, *, tokenizer=None, log=print, eval_split: str = "eval"
) -> DataBundle:
    root = cache_root(data_cfg)
    if data_cfg.format == "chat":
        return _prepare_chat(data_cfg, eval_max_blocks, tokenizer, root, log)
    corpus = load_corpus(data_cfg)
    tr_idx, ev_idx = split_ids(corpus.ids, data_cfg.eval_fraction)
    if not ev_idx and len(corpus.ids) >= 2:  # tiny corpora: hold out the last document by hash order
        ev_idx, tr_idx = tr_idx[-1:], tr_idx[:-1]
    if not tr_idx or not ev_idx:
        raise UserError(
            f"corpus {data_cfg.corpus}: {len(corpus.ids)} document(s); need at least one for training "
            f"and one held out (eval_fraction={data_cfg.eval_fraction})"
        )
    tr_idx, va_idx = split_valid(corpus.ids, tr_idx, data_cfg.eval_fraction, data_cfg.valid_fraction)
    if eval_split == "valid":
        if not va_idx:
            raise UserError(
                f"eval.split=valid needs data.valid_fraction > 0 with at least one document in it "
                f"(data.valid_fraction={data_cfg.valid_fraction})"
            )
        ev_idx = va_idx
    train_texts = [corpus.texts[i] for i in tr_idx]
    if tokenizer is not None:
        tok = tokenizer
    elif data_cfg.tokenizer == "train":
        tdir = (
            root
            / "tokenizers"
            / sha256(
                "bpe-v1",
                corpus.hash,
                data_cfg.eval_fraction,
                data_cfg.vocab_size,
                # the tokenizer is trained on the training split: a validation carve-out changes it
                *([f"valid={data_cfg.valid_fraction}"] if data_cfg.valid_fraction else []),
            )[:20]
        )
        if (tdir / "tokenizer.json").exists():
            tok = load_tokenizer(str(tdir))
        else:
            log(
                f"training a {data_cfg.vocab_size}-token BPE tokenizer on {sum(map(len, train_texts)):,} characters"
            )
            tok = train_tokenizer(train_texts, data_cfg.vocab_size, tdir)
            tok = load_tokenizer(str(tdir))
    else:
        tok = load_tokenizer(data_cfg.tokenizer)
    thash = tokenizer_hash(tok)
    key = sha256("tok-v1", corpus.hash, thash)[:24]
    ds, hit = _tokenized(corpus.texts, corpus.ids, tok, key, root)
    all_ids = ds["input_ids"]
    train = pack((all_ids[i] for i in tr_idx), data_cfg.seq_len)
    held = pack((all_ids[i] for i in ev_idx), data_cfg.seq_len)
    problems = []
    if len(train) < 1:
        problems.append(f"the training split has fewer tokens than one block of seq_len={data_cfg.seq_len}")
    if len(held) < 1:
        problems.append(
            f"the held-out split has fewer tokens than one block of seq_len={data_cfg.seq_len} "
            f"(use a larger corpus, a larger data.eval_fraction or a shorter data.seq_len)"
        )
    if problems:
        raise UserError(problems, header=f"corpus {data_cfg.corpus} is too small")
    held = held[:eval_max_blocks]
    eval_text = "".join(corpus.texts[i] for i in ev_idx)
    meta = {
        "corpus": corpus.name,
        "corpus_hash": corpus.hash,
        "corpus_docs": len(corpus.ids),
        "corpus_chars": corpus.n_chars,
        "tokenizer_hash": thash,
        "tokenization_cached": hit,
        "vocab_size": len(tok),
        "seq_len": data_cfg.seq_len,
        "train_blocks": int(len(train)),
        "train_tokens": int(train.size),
        "eval_blocks": int(len(held)),
        "eval_tokens": int(held.size),
        "eval_set_hash": sha256(thash, held.tobytes())[:32],
        "eval_text_hash": sha256(eval_text)[:32],
        "eval_docs": len(ev_idx),
        "eval_split": eval_split,
        "valid_docs": len(va_idx),
    }
    bundle = DataBundle(tok, train, held, eval_bytes_of(held, tok), meta)
    meta["eval_bytes"] = bundle.eval_bytes
    meta["unigram_entropy_nats"] = unigram_entropy(train, len(tok))
    meta["bytes_per_token"] = bundle.eval_bytes / max(1, held[:, 1:].size)
    assert math.isfinite(meta["unigram_entropy_nats"])
    return bundle


# =============================================================================================
# tokenizers and blocks a technique shares with a helper model (teacher, generator, reference)
# =============================================================================================
def shared_tokenizer(cfg, info, teacher_vocab: int, teacher_tok):
    """The one tokenizer teacher and student share; UserError naming both sizes on any mismatch.

    `info`: the teacher (an efflab.runs.ModelSource). The student reads the data with the teacher's
    tokenizer; `data.tokenizer` (a directory), a pretrained student (`model.pretrained`) or an explicit
    `data.vocab_size` must agree with it.
    """
    student_tok = load_tokenizer(cfg.data.tokenizer) if cfg.data.tokenizer != "train" else None
    student_vocab = None
    if cfg.model.pretrained:
        student_vocab = load_pretrained_config(cfg.model.pretrained, cfg.model.trust_remote_code).vocab_size
        if student_tok is None:  # the data pipeline reads with the pretrained student's own tokenizer
            student_tok = load_tokenizer(cfg.model.pretrained)
    # data.vocab_size only sizes a tokenizer trained here: a pretrained student brings its own
    requested = (
        cfg.data.vocab_size
        if (
            "vocab_size" in cfg.data.model_fields_set
            and cfg.data.tokenizer == "train"
            and not cfg.model.pretrained
        )
        else None
    )
    if teacher_tok is None and student_tok is None:
        raise UserError(
            f"distill.teacher {info.path}: the model directory holds no tokenizer; set data.tokenizer "
            f"to the tokenizer the teacher was trained with"
        )
    where = f"the student (data.tokenizer {cfg.data.tokenizer})" if student_tok is not None else "the student"
    if cfg.model.pretrained:
        where = f"the student (model.pretrained {cfg.model.pretrained})"
    probs = vocabulary_problems(
        teacher_vocab,
        teacher_tok,
        student_tok,
        student_vocab=student_vocab,
        requested_vocab=requested,
        teacher_requested=info.requested_vocab,
        where=where,
    )
    if teacher_tok is None and len(student_tok) > teacher_vocab:
        probs.append(
            f"vocabulary mismatch: the teacher predicts {teacher_vocab} tokens, the student's tokenizer "
            f"(data.tokenizer {cfg.data.tokenizer}) has {len(student_tok)}"
        )
    if probs:
        raise UserError(probs, header=f"teacher {info.path} and the student cannot be distilled")
    return teacher_tok if teacher_tok is not None else student_tok


def reference_tokenizer_problem(model_dir: Path, run_dir: Path | None, data) -> str | None:
    """Why the reference cannot score these blocks (another tokenizer), or None.

    An efflab run records its tokenizer hash in manifest.json; a model directory with tokenizer files
    is hashed the same way; a directory without them is checked on vocabulary size only."""
    want = data.meta.get("tokenizer_hash")
    if run_dir is not None:
        got = (RunDir(run_dir).read_manifest().get("data") or {}).get("tokenizer_hash")
    elif any((model_dir / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        got = tokenizer_hash(load_tokenizer(str(model_dir)))
    else:
        got = None
    if got is not None and want is not None and got != want:
        return f"reference {model_dir} was trained with another tokenizer than this run's data"
    try:
        vocab = json.loads((model_dir / "config.json").read_text()).get("vocab_size")
    except (OSError, ValueError):
        vocab = None
    if vocab is not None and vocab < data.vocab_size:
        return f"reference {model_dir} has a vocabulary of {vocab}, smaller than this run's {data.vocab_size}"
    return None


def pack_documents(docs: list[list[int]], eos_id: int, seq_len: int) -> np.ndarray:
    """Token-id documents -> EOS-separated, packed blocks [n, seq_len] (int32), like the real data."""
    return pack(([*d, eos_id] for d in docs), seq_len)


def require_reference_tokenizer(ref, data) -> None:
    """UserError when the reference cannot score `data`'s blocks (`reference_tokenizer_problem`)."""
    problem = reference_tokenizer_problem(ref.model_dir, ref.path if ref.kind == "efflab-run" else None, data)
    if problem:
        raise UserError(problem)
