"""Chat masking with the chat templates of the open-weight families, written out as tokenizer files.

The templates in tests/data/chat_templates/ are those of SmolLM2-Instruct (ChatML), Llama 3 Instruct,
Qwen3 (thinking; earlier reasoning dropped from history), Gemma, Mistral Instruct, a ChatML variant
with `{% generation %}` blocks (the assistant-mask path) and a ChatML whose generation prompt adds
`<think>\n` (DeepSeek-R1 style). The tokenizers are byte-level BPE trained here with each family's
special tokens. Checks: the trained tokens decode exactly to the responses, and no user turn is lost.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from efflab.data import IGNORE, encode_chat, load_tokenizer
from efflab.errors import UserError

TEMPLATES = Path(__file__).parent.parent / "data" / "chat_templates"
FAMILIES = {  # template file -> (special tokens, bos, eos)
    "chatml_smollm2.jinja": (["<|im_start|>", "<|im_end|>", "<|endoftext|>"], "<|im_start|>", "<|im_end|>"),
    "llama3.jinja": (
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|begin_of_text|>",
        "<|eot_id|>",
    ),
    "qwen3.jinja": (
        ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>"],
        None,
        "<|im_end|>",
    ),
    "gemma.jinja": (["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"], "<bos>", "<eos>"),
    "mistral.jinja": (["<s>", "</s>"], "<s>", "</s>"),
    "chatml_generation.jinja": (["<|im_start|>", "<|im_end|>"], None, "<|im_end|>"),
    "think_prompt.jinja": (["<|im_start|>", "<|im_end|>", "<think>"], None, "<|im_end|>"),
}
TEXT = (
    "What is two plus two? The answer is four. Tell me about the sea. The sea is large and blue. "
    "Why do birds sing? Birds sing to call their mates and to mark their ground. "
) * 20
CONVERSATION = [
    {"role": "user", "content": "What is two plus two?"},
    {"role": "assistant", "content": "The answer is four."},
    {"role": "user", "content": "Tell me about the sea."},
    {"role": "assistant", "content": "The sea is large and blue."},
]


def make_tokenizer(root: Path, template_file: str):
    """A byte-level BPE tokenizer with the family's special tokens and chat template, saved as files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials, bos, eos = FAMILIES[template_file]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([TEXT], trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=eos)
    fast.chat_template = (TEMPLATES / template_file).read_text()
    out = root / template_file.split(".")[0]
    fast.save_pretrained(str(out))
    return load_tokenizer(str(out))


def trained_spans(ids, labels):
    spans, cur = [], []
    for t, lab in zip(ids, labels):
        if lab != IGNORE:
            cur.append(t)
        elif cur:
            spans.append(cur)
            cur = []
    return spans + ([cur] if cur else [])


@pytest.mark.parametrize("template", sorted(FAMILIES))
def test_trained_tokens_are_exactly_the_responses(tmp_path, template):
    tok = make_tokenizer(tmp_path, template)
    ids, labels = encode_chat({"messages": CONVERSATION}, tok)
    assert len(ids) == len(labels) and ids[-1] == tok.eos_token_id
    texts = [tok.decode(s, skip_special_tokens=True) for s in trained_spans(ids, labels)]
    texts = [t for t in texts if t]  # the record-final EOS decodes to nothing
    responses = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
    assert texts == responses, (template, texts)
    # every trained span ends with the family's end-of-turn token (the model learns to stop)
    eot = tok.convert_tokens_to_ids("<end_of_turn>" if template == "gemma.jinja" else FAMILIES[template][2])
    assert sum(1 for s in trained_spans(ids, labels) if s[-1] == eot) >= len(responses)
    # no user turn lost: every user content is in the processed (untrained) tokens, in order
    shown = tok.decode([t for t, lab in zip(ids, labels) if lab == IGNORE], skip_special_tokens=True)
    pos = 0
    for m in CONVERSATION:
        if m["role"] == "user":
            pos = shown.index(m["content"], pos) + len(m["content"])


def test_qwen3_history_without_reasoning_and_prompt_response_records(tmp_path):
    # Qwen3 renders the last assistant turn with an (empty) think block but earlier ones without:
    # rendered prefixes are not prefixes of the whole conversation. The second user turn must survive.
    tok = make_tokenizer(tmp_path, "qwen3.jinja")
    ids, labels = encode_chat({"messages": CONVERSATION}, tok)
    full = tok.decode(ids)
    assert full.count("<|im_start|>user") == 2 and "<think>" in full
    assert tok.decode([t for t in labels if t != IGNORE], skip_special_tokens=True) == (
        "The answer is four.The sea is large and blue."
    )
    ids, labels = encode_chat({"prompt": "What is two plus two?", "response": "The answer is four."}, tok)
    assert tok.decode([t for t in labels if t != IGNORE], skip_special_tokens=True) == "The answer is four."


def test_templates_that_rewrite_or_drop_turns_are_refused(tmp_path):
    tok = make_tokenizer(tmp_path, "chatml_smollm2.jinja")
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | upper }}<|im_end|>\n"
        "{% endfor %}"
    )
    with pytest.raises(UserError, match="user turn 1 does not appear verbatim"):
        encode_chat({"messages": CONVERSATION}, tok)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' or loop.last %}<|im_start|>"
        "{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
    )
    with pytest.raises(UserError, match="user turn 1 does not appear"):
        encode_chat({"messages": CONVERSATION}, tok)
    gemma = make_tokenizer(tmp_path, "gemma.jinja")  # no system role: the template raises, we say so
    with pytest.raises(UserError, match="System role not supported"):
        encode_chat({"messages": [{"role": "system", "content": "Be brief."}, *CONVERSATION]}, gemma)
    gen = make_tokenizer(tmp_path, "chatml_generation.jinja")
    gen.chat_template = gen.chat_template.replace("message['content'] + '<|im_end|>'", "'<|im_end|>'")
    with pytest.raises(UserError, match="generation %} blocks do not cover assistant turn 2"):
        encode_chat({"messages": CONVERSATION}, gen)
