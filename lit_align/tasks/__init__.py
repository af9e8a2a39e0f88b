"""lit_align.tasks: the bundled, offline task suite and the tiny model recipe.

Word-list tasks with programmatic checkers in the style of CORGI (Bezalel et al., arXiv 2411.01483) —
"List 3 different words that end with 'e'." — each checker scoring a response in [0, 1] with a feedback
text naming what was violated; thirteen task families, eleven trained on and two held out for transfer;
instructions from a grammar of thousands of phrasings, some parts kept for held-out prompts only;
deterministic generators of correct answers and one-mistake near-misses; writers of TRL-style JSONL (SFT,
preference pairs, RL prompts, expert answers, held-out splits); a byte-level BPE tokenizer trained on the
suite and a ~0.6M-parameter Llama, both saved with `save_pretrained`.

    python -m lit_align.tasks build --out DIR [--seed S]     (= lit-align suite --out DIR)

Files: words (the word list), checkers, phrasing (the instruction grammar), responses (good answers,
near-misses), suite (families and splits), build (JSONL writers), evaluate (success and diversity, by group),
tokenizer, tiny_model, __main__.
"""

from .build import build_suite, heldout_rows, read_jsonl, write_jsonl
from .checkers import (
    REGISTRY,
    AllOf,
    Alphabetical,
    Avoid,
    AvoidLetter,
    Check,
    Checker,
    ContainsLetter,
    DoubleLetter,
    EndsWith,
    Include,
    MaxChars,
    StartsWith,
    WordCount,
    WordLength,
    checker_from_dict,
    words_in,
)
from .evaluate import score_by, score_responses
from .phrasing import CANONICAL, Phrasing
from .responses import MISTAKE_WEIGHTS, MISTAKES, bad_response, distinct_words, good_response
from .suite import SPLITS, Family, Task, families, make_tasks
from .words import WORDS

__all__ = [
    "CANONICAL", "MISTAKES", "MISTAKE_WEIGHTS", "REGISTRY", "SPLITS", "WORDS", "AllOf", "Alphabetical", "Avoid",
    "AvoidLetter", "Check", "Checker", "ContainsLetter", "DoubleLetter", "EndsWith", "Family", "Include",
    "MaxChars", "Phrasing", "StartsWith", "Task", "WordCount", "WordLength", "bad_response", "build_suite",
    "checker_from_dict", "distinct_words", "families", "good_response", "heldout_rows", "make_tasks",
    "read_jsonl", "score_by", "score_responses", "words_in", "write_jsonl",
]
