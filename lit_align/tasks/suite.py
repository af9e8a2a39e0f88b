"""The task families and their disjoint splits; `make_tasks(n, seed, split)` samples tasks deterministically.

Two families are trained on: "List N different words that end with 'W'." (`EndsWith`) and "... that start
with 'L'." (`StartsWith`), for N in `COUNTS` and every letter with at least `MIN_ANSWERS` bundled answers.
A cell (family, letter, N) is asked in the phrasings of `checkers.PROMPT_VARIANTS`; a prompt is a
(cell, phrasing) pair, and the splits never share a prompt text:

- "train": `TRAIN_VARIANTS` phrasings of every cell;
- "val" and "test": the same families and cells in phrasings that cell never has in training (one for
  val, the others for test; which ones rotates from cell to cell, so every phrasing is trained on
  somewhere): in-distribution held-out prompts;
- "transfer": an unseen combination of the two constraints, "List N different words that start with 'L'
  and end with 'W'." (`AllOf`), for CORGI-style transfer.

The split assignment is fixed (independent of the seed), so held-out numbers compare across seeds; the
seed only drives which tasks are drawn and in what order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .checkers import PROMPT_VARIANTS, AllOf, Checker, EndsWith, StartsWith
from .words import letters_with, words_by

SPLITS = ("train", "val", "test", "transfer")
COUNTS = (2, 3, 4)
TRANSFER_COUNTS = (2, 3)
MIN_ANSWERS = 10
"""A letter joins a family when at least this many bundled words start (or end) with it."""
TRAIN_VARIANTS = 3
"""Phrasings per cell in "train"; of the rest, one goes to "val" and the others to "test"."""

FAMILIES = {"ends_with": (EndsWith, "end"), "starts_with": (StartsWith, "start")}


@dataclass(frozen=True)
class Task:
    """One prompt of the suite: its text, its checker, and where it comes from."""

    prompt: str
    checker: Checker
    family: str
    split: str

    def row(self) -> dict[str, Any]:
        """The columns every file of the suite carries for a task."""
        return {"prompt": self.prompt, "task": self.checker.to_dict()}


def _cells():
    """(family, checker, offset) for every trained-family cell; `offset` rotates its phrasings over splits."""
    for fi, (family, (cls, position)) in enumerate(FAMILIES.items()):
        for li, letter in enumerate(letters_with(position, MIN_ANSWERS)):
            for n in COUNTS:
                yield family, cls(n, letter), fi + 2 * li + 3 * n


def _split_of(variant: int, offset: int) -> str:
    k = (variant + offset) % len(PROMPT_VARIANTS)
    return "train" if k < TRAIN_VARIANTS else "val" if k == TRAIN_VARIANTS else "test"


@lru_cache(maxsize=None)
def split_pool(split: str) -> tuple[Task, ...]:
    """Every distinct task of `split`, in a fixed order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    tasks = []
    if split == "transfer":
        for a in letters_with("start", MIN_ANSWERS):
            for b in letters_with("end", MIN_ANSWERS):
                answers = set(words_by("start", a)) & set(words_by("end", b))
                for n in TRANSFER_COUNTS:
                    if len(answers) >= n + 2:
                        checker = AllOf((StartsWith(n, a), EndsWith(n, b)))
                        tasks += [Task(checker.prompt(v), checker, "starts_and_ends", split) for v in range(len(PROMPT_VARIANTS))]
        return tuple(tasks)
    for family, checker, offset in _cells():
        for v in range(len(PROMPT_VARIANTS)):
            if _split_of(v, offset) == split:
                tasks.append(Task(checker.prompt(v), checker, family, split))
    return tuple(tasks)


def make_tasks(n: int, seed: int | str, split: str = "train") -> list[Task]:
    """`n` tasks of `split`, drawn without replacement in shuffled passes over the split (so each prompt
    appears once before any appears twice), the same for the same (`seed`, `split`)."""
    pool = list(split_pool(split))
    rng = random.Random(f"lit_align.tasks:{split}:{seed}")
    out: list[Task] = []
    while len(out) < n:
        rng.shuffle(pool)
        out += pool[: n - len(out)]
    return out
