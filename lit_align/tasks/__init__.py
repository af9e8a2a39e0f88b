"""lit_align.tasks: the bundled, offline task suite and the tiny model recipe.

Word-list tasks with programmatic checkers in the style of CORGI (Bezalel et al., arXiv 2411.01483) —
"List 3 different words that end with 'e'." — each checker scoring a response in [0, 1] with a feedback
text naming what was violated; deterministic generators of correct answers and near-misses; writers of
TRL-style JSONL (SFT, preference pairs, RL prompts, expert answers, held-out splits); a byte-level BPE
tokenizer trained on the suite and a ~0.6M-parameter Llama, both saved with `save_pretrained`.

    python -m lit_align.tasks build --out DIR [--seed S]

Files: words (the word list), checkers, responses (good answers, near-misses), suite (families and
splits), build (JSONL writers), evaluate (success and diversity), tokenizer, tiny_model, __main__.
"""

from .build import build_suite, read_jsonl, write_jsonl
from .checkers import (
    REGISTRY,
    AllOf,
    Alphabetical,
    Avoid,
    AvoidLetter,
    Check,
    Checker,
    EndsWith,
    Include,
    MaxChars,
    StartsWith,
    WordCount,
    WordLength,
    checker_from_dict,
    words_in,
)
from .evaluate import score_responses
from .responses import MISTAKES, bad_response, distinct_words, good_response
from .suite import SPLITS, Task, make_tasks, split_pool
from .words import WORDS

__all__ = [
    "MISTAKES", "REGISTRY", "SPLITS", "WORDS", "AllOf", "Alphabetical", "Avoid", "AvoidLetter", "Check",
    "Checker", "EndsWith", "Include", "MaxChars", "StartsWith", "Task", "WordCount", "WordLength",
    "bad_response", "build_suite", "checker_from_dict", "distinct_words", "good_response", "make_tasks",
    "read_jsonl", "score_responses", "split_pool", "words_in", "write_jsonl",
]
