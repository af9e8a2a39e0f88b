"""Fixtures for the rollout tests: the suite's offline tokenizer (chat template, EOS ends the turn) and a
randomly initialised tiny Llama (hidden 32, 2 layers, untied embeddings so greedy answers vary), saved to
a folder and loaded back by path; a ChatML-style tokenizer whose end-of-turn token differs from EOS; and
task rows from the suite.

The models here are tiny, so the tests run torch on one thread: a (B, 32) x (32, 64) matmul gains nothing
from a second thread, and on a loaded 2-core machine the thread hand-offs made generation ~50x slower.
"""
from __future__ import annotations

import pytest

from tests.threads import one_thread  # noqa: F401  (autouse, package scope)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    from lit_align.tasks.tiny_model import build_tiny_model
    from lit_align.tasks.tokenizer import build_tokenizer

    tokenizer_dir = tmp_path_factory.mktemp("rollout_tokenizer")
    build_tokenizer(tokenizer_dir)
    folder = tmp_path_factory.mktemp("rollout_model")
    build_tiny_model(folder, tokenizer_dir, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                     tie_word_embeddings=False, seed=0)
    return folder


@pytest.fixture(scope="session")
def tokenizer(model_dir):
    from lit_align.models.loading import load_tokenizer

    return load_tokenizer(str(model_dir))


@pytest.fixture(scope="session")
def model(model_dir):
    from lit_align.models.loading import load_causal_lm

    return load_causal_lm(str(model_dir)).eval()


@pytest.fixture(scope="session")
def other_model(model_dir, tokenizer):
    """A second tiny Llama with other weights and the same tokenizer (a 'reference' that differs)."""
    import torch
    from transformers import LlamaForCausalLM

    from lit_align.tasks.tiny_model import tiny_llama_config

    config = tiny_llama_config(tokenizer, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                               tie_word_embeddings=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def reward_model(tokenizer):
    import torch
    from transformers import LlamaForSequenceClassification

    from lit_align.tasks.tiny_model import tiny_llama_config

    config = tiny_llama_config(tokenizer, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
    config.num_labels = 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(2)
        return LlamaForSequenceClassification(config).eval()


@pytest.fixture(scope="session")
def task_rows():
    from lit_align.tasks.build import heldout_rows

    return heldout_rows("val", 6, seed=0)


@pytest.fixture(scope="session")
def chatml_tokenizer(tmp_path_factory):
    """An instruct-style tokenizer: EOS <|endoftext|>, assistant turns closed by <|im_end|>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    bpe.train_from_iterator(["hello there user assistant"] * 5, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    folder = tmp_path_factory.mktemp("chatml")
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", pad_token="<|pad|>",
                            chat_template=template).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)
