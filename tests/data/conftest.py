"""Fixtures for the data tests: a tiny byte-level BPE tokenizer trained offline (with and without a
ChatML-style chat template) saved to a folder, so AutoTokenizer.from_pretrained loads it like a real one,
and a helper that writes JSONL files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Write a short poem about cats and dogs.",
    "Hello there, how are you today? I am fine, thank you.",
    "List three words that end with the letter e: apple, grape, orange.",
    "system user assistant answer question",
]


def _build(folder: Path, *, chat: bool) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(CORPUS * 10, trainer)
    if chat:  # like an instruct model: eos ends the assistant turn, a dedicated pad token
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|pad|>",
                                      chat_template=CHAT_TEMPLATE)
    else:  # like a base model: no template, no pad token
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def chat_tokenizer_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("chat_tokenizer"), chat=True)


@pytest.fixture(scope="session")
def plain_tokenizer_dir(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("plain_tokenizer"), chat=False)


@pytest.fixture(scope="session")
def chat_tokenizer(chat_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(chat_tokenizer_dir, trust_remote_code=False)


@pytest.fixture(scope="session")
def plain_tokenizer(plain_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(plain_tokenizer_dir, trust_remote_code=False)
    tok.pad_token = tok.eos_token
    return tok


@pytest.fixture
def write_jsonl(tmp_path):
    """write_jsonl(name, rows) -> Path; a row that is a str is written verbatim (for malformed lines)."""

    def write(name: str, rows: list) -> Path:
        path = tmp_path / name
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
        return path

    return write
