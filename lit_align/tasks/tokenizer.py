"""A byte-level BPE tokenizer trained offline on the suite's own text, with a chat template.

No tokenizer can be downloaded here, so the tiny model gets one trained in a fraction of a second with
the `tokenizers` library (ByteLevel pre-tokenizer + BPE trainer) on the bundled words, the prompts in every
phrasing and the checkers' feedback phrasings. It is wrapped in `transformers.PreTrainedTokenizerFast`
and saved with `save_pretrained`, so recipes load it by path like any Hugging Face tokenizer.

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

from .checkers import PROMPT_VARIANTS
from .responses import bad_response, good_response
from .suite import split_pool
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


def suite_corpus(seed: int = 0, answers_per_task: int = 2) -> list[str]:
    """The text the tokenizer learns from: every word, every training-split prompt (all phrasings), and
    correct and near-miss answers with their feedback. Held-out prompts are left out; they reuse the same
    words and phrasings, so nothing in them is out of vocabulary."""
    rng = random.Random(f"lit_align.tasks.tokenizer:{seed}")
    texts = list(WORDS) + [v.format(n=n, what="") for v in PROMPT_VARIANTS for n in range(1, 7)]
    for task in split_pool("train"):
        texts.append(task.prompt)
        for _ in range(answers_per_task):
            texts.append(good_response(task.checker, rng))
            bad, _ = bad_response(task.checker, rng)
            texts += [bad, task.checker.check(bad).feedback]
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

