"""A byte-level BPE tokenizer trained offline on the suite's own text, with a chat template.

No tokenizer can be downloaded here, so the tiny model gets one trained in a fraction of a second with
the `tokenizers` library (ByteLevel pre-tokenizer + BPE trainer) on the bundled words and a sample of the
training split: prompts in seen phrasings, correct and near-miss answers, the checkers' feedback. It is
wrapped in `transformers.PreTrainedTokenizerFast` and saved with `save_pretrained`, so recipes load it by
path like any Hugging Face tokenizer.

Every text segment gets a leading space (`add_prefix_space`), so a word is the same token at the start of
an answer as in its middle. The chat template writes `<|bos|>` and then each turn as `<|role|>content<|eos|>`;
`add_generation_prompt` appends `<|assistant|>`, and generation stops at `<|eos|>`. Assistant content is
wrapped in `{% generation %}` so `return_assistant_tokens_mask=True` marks the tokens a multi-turn loss
(CORGI) trains on.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from .responses import bad_response, good_response
from .suite import make_tasks
from .words import WORDS

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
ROLES = ("system", "user", "assistant")
ROLE_TOKENS = tuple(f"<|{r}|>" for r in ROLES)
SPECIAL_TOKENS = (PAD, BOS, EOS, *ROLE_TOKENS)

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|>' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}"
    "{% else %}"
    "{{ '<|' + message['role'] + '|>' + message['content'] + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)


WORD_REPEATS = 20
"""The word list enters the corpus this many times, so that nearly every bundled word becomes one token (94% at
vocabulary 1024; 79% with the list once, where rare answer words lose their merges to the prompts' words)."""


def suite_corpus(seed: int = 0, tasks: int = 1500) -> list[str]:
    """The text the tokenizer learns from: the word list (`WORD_REPEATS` times), and for `tasks` training
    prompts the prompt, a correct answer, a near-miss and its feedback. Held-out prompts are left out: their
    held-out phrasing parts fall back to smaller tokens, as rare words do in any tokenizer."""
    rng = random.Random(f"lit_align.tasks.tokenizer:{seed}")
    texts = list(WORDS) * WORD_REPEATS
    for task in make_tasks(tasks, f"tokenizer:{seed}", "train"):
        bad, _ = bad_response(task.checker, rng)
        texts += [task.prompt, good_response(task.checker, rng), bad, task.checker.check(bad).feedback]
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts` and wrap it with the special tokens and the chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=list(ROLE_TOKENS),
        chat_template=CHAT_TEMPLATE,
        model_max_length=256,
        clean_up_tokenization_spaces=False,
    )


def build_tokenizer(out_dir: str | os.PathLike, seed: int = 0, vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """Train on `suite_corpus(seed)` and `save_pretrained` into `out_dir` (AutoTokenizer loads it back)."""
    tokenizer = train_tokenizer(suite_corpus(seed), vocab_size)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    return tokenizer

