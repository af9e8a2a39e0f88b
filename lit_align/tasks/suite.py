"""The task families, which are trained on and which held out, and the four disjoint splits.

A family is one kind of request; its cells are the concrete checkers (letter, length, word count N):

    trained   ends_with        "List 3 different words that end with 'e'."
              starts_with      "... that start with 'b'."
              contains_letter  "... that contain the letter 'a'."                  (letter pattern)
              avoid_letter     "... that do not contain the letter 'e'."
              word_length      "... that have exactly 4 letters."                  (counting)
              double_letter    "... that have a double letter."                    (letter pattern)
              starts_length    "... that start with 'b' and have exactly 4 letters."
              ends_length      "... that end with 'e' and have exactly 4 letters."
              starts_contains  "... that start with 'b' and contain the letter 'a'."
              sorted_ends      "... that end with 'e', in alphabetical order."     (ordering)
              sorted_length    "... that have exactly 4 letters, in alphabetical order."
    held out  starts_ends      "... that start with 'b' and end with 'e'."
              sorted_contains  "... that contain the letter 'a', in alphabetical order."

Why these two are held out, and why a 0.6M-parameter model might transfer to them: each is a new
combination of skills that are all trained, in the same grammatical frame as trained combinations. The
model answers word by word, so a correct answer needs, at each step, a next-word distribution that puts its
mass on the words meeting every constraint. For one constraint that is a lookup from the constraint's
letter token to a set of words; a conjunction is the intersection, which a transformer can form by adding
the logit contributions of the two constraint tokens. Training on starts_length, ends_length and
starts_contains teaches that "X and Y" means "both", with the start letter and the end letter each
combined with other constraints; starts_ends asks for the one pairing never trained. Likewise the ordering
skill (each next word alphabetically after the last) is trained with two different word sets (sorted_ends,
sorted_length) and held out with a third that is trained unordered (contains_letter); a model that learned
"alphabetical order" as an operation on whatever words qualify transfers, one that memorised the sorted
answers per cell does not. What works against transfer: the tiny model may store each trained cell's answer
as a chain ("apple grape house") instead of composing features, and starts_ends has few answers per cell
(4 to 6 words), so a guess from one constraint alone rarely passes. Ordering by first letter is easier
than ordering words that share their first letter, which is why the held-out ordering family uses a letter
anywhere in the word (answers start with many letters) rather than a first letter. The demo measures it; a
negative result is a finding too.

A prompt is a cell in a phrasing (`phrasing.py`); "seen" phrasings use only trained parts, "unseen" ones a
held-out part. The split of a prompt follows from its text alone (a hash, independent of the seed, so
held-out numbers compare across seeds and no held-out text can occur in training):

- "train": trained families in seen phrasings, except a `HELDOUT_SHARE` of those texts;
- "val" and "test" (half each): trained families, that share of seen-phrasing texts (the cell and the
  phrasing are each trained, never together) and every unseen-phrasing text; rows say which ("phrasing");
- "transfer": the held-out families, in seen and unseen phrasings.

`make_tasks(n, seed, split)` draws distinct prompts in rounds over the split's (family, phrasing) streams
in a shuffled order, so the families (and seen/unseen phrasings) are balanced in every prefix of the list.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from . import phrasing as grammar
from .checkers import (
    AllOf,
    Alphabetical,
    AvoidLetter,
    Checker,
    ContainsLetter,
    DoubleLetter,
    EndsWith,
    StartsWith,
    WordLength,
)
from .responses import answers
from .words import WORDS

SPLITS = ("train", "val", "test", "transfer")
COUNTS = (2, 3, 4)
"""Word counts N of single constraints and orderings."""
PAIR_COUNTS = (2, 3)
"""Word counts N of two-constraint conjunctions (fewer words qualify)."""
SPARE = 2
"""A cell joins its family when at least N + SPARE bundled words answer it (room for choice and for a
'one word too many' near-miss)."""
LETTERS = "abcdefghijklmnopqrstuvwxyz"
LENGTHS = (3, 4, 5, 6)
AVOIDED = tuple(c for c in LETTERS if 5 * sum(c in w for w in WORDS) >= len(WORDS))
"""Letters avoid_letter asks about: those in at least a fifth of the words, so avoiding them rules out many."""
HELDOUT_SHARE = 0.1
"""The share of seen-phrasing prompt texts of trained families kept out of training for val and test."""


@dataclass(frozen=True)
class Family:
    """A kind of request: its name, whether it is held out (transfer only), and every cell (a checker)."""

    name: str
    held_out: bool
    cells: tuple[Checker, ...]


@dataclass(frozen=True)
class Task:
    """One prompt of the suite: its text, its checker, its family, split and phrasing ("seen"/"unseen")."""

    prompt: str
    checker: Checker
    family: str
    split: str
    phrasing: str = "seen"

    def row(self) -> dict[str, Any]:
        """The columns every file of the suite carries for a task."""
        return {"prompt": self.prompt, "task": self.checker.to_dict(), "family": self.family}


def _cells(make: Callable[..., Checker], params: Iterable[tuple], counts: tuple[int, ...]) -> tuple[Checker, ...]:
    """`make(n, *p)` for every p in `params` and n in `counts` that enough words answer (`SPARE`)."""
    cells = (make(n, *p) for p in params for n in counts)
    return tuple(c for c in cells if len(answers(c)) >= c.count_range()[0] + SPARE)


def _and(*kinds: type[Checker]) -> Callable[..., Checker]:
    """A conjunction maker: `_and(StartsWith, EndsWith)(n, 'b', 'e')`; `Alphabetical` takes no argument."""
    def make(n, *params):
        args = iter(params)
        return AllOf(tuple(k(n) if k is Alphabetical else k(n, next(args)) for k in kinds))
    return make


@cache
def families() -> dict[str, Family]:
    """Every family, trained ones first (see the module docstring)."""
    letters, lengths = [(c,) for c in LETTERS], [(k,) for k in LENGTHS]
    pairs = list(itertools.product(LETTERS, LETTERS))
    defs = [
        ("ends_with", False, EndsWith, letters, COUNTS),
        ("starts_with", False, StartsWith, letters, COUNTS),
        ("contains_letter", False, ContainsLetter, letters, COUNTS),
        ("avoid_letter", False, AvoidLetter, [(c,) for c in AVOIDED], COUNTS),
        ("word_length", False, WordLength, lengths, COUNTS),
        ("double_letter", False, DoubleLetter, [()], COUNTS),
        ("starts_length", False, _and(StartsWith, WordLength), itertools.product(LETTERS, LENGTHS), PAIR_COUNTS),
        ("ends_length", False, _and(EndsWith, WordLength), itertools.product(LETTERS, LENGTHS), PAIR_COUNTS),
        ("starts_contains", False, _and(StartsWith, ContainsLetter), [p for p in pairs if p[0] != p[1]], PAIR_COUNTS),
        ("sorted_ends", False, _and(EndsWith, Alphabetical), letters, COUNTS),
        ("sorted_length", False, _and(WordLength, Alphabetical), lengths, COUNTS),
        ("starts_ends", True, _and(StartsWith, EndsWith), pairs, PAIR_COUNTS),
        ("sorted_contains", True, _and(ContainsLetter, Alphabetical), letters, COUNTS),
    ]
    return {name: Family(name, held_out, _cells(make, params, counts)) for name, held_out, make, params, counts in defs}


def split_families(split: str) -> list[Family]:
    """The families a split asks about: the held-out ones for "transfer", the trained ones otherwise."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {SPLITS}")
    return [f for f in families().values() if f.held_out == (split == "transfer")]


def _bucket(text: str) -> float:
    """A stable pseudo-random number in [0, 1) for a prompt text (the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") / 2**64


def split_of(family: Family, seen: bool, prompt: str) -> str:
    """The split a prompt of `family` in a seen (or unseen) phrasing belongs to (see the module docstring)."""
    if family.held_out:
        return "transfer"
    b = _bucket(prompt)
    if not seen:
        return "val" if b < 0.5 else "test"
    return "val" if b < HELDOUT_SHARE / 2 else "test" if b < HELDOUT_SHARE else "train"


def _draw(family: Family, seen: bool, split: str, rng: random.Random, taken: set[str], tries: int = 10_000) -> Task:
    """A task of `family` in `split`, in a seen (or unseen) phrasing, whose prompt is not in `taken` yet."""
    for _ in range(tries):
        checker = rng.choice(family.cells)
        prompt = checker.prompt(grammar.sample(rng, seen))
        if prompt not in taken and split_of(family, seen, prompt) == split:
            taken.add(prompt)
            return Task(prompt, checker, family.name, split, "seen" if seen else "unseen")
    raise ValueError(f"no new {split} prompt of family {family.name!r} in {tries} draws")


def make_tasks(n: int, seed: int | str, split: str = "train") -> list[Task]:
    """`n` different tasks of `split`, balanced over its families (and, held out, seen and unseen phrasings)
    in every prefix; the same for the same (`seed`, `split`)."""
    streams = [(f, seen) for f in split_families(split) for seen in ((True,) if split == "train" else (True, False))]
    rng = random.Random(f"lit_align.tasks:{split}:{seed}")
    out: list[Task] = []
    taken: set[str] = set()
    while len(out) < n:
        for family, seen in rng.sample(streams, len(streams))[: n - len(out)]:
            out.append(_draw(family, seen, split, rng, taken))
    return out


def describe() -> dict[str, Any]:
    """The families and the phrasing grammar, for the manifest."""
    fams = {
        name: {"held_out": f.held_out, "cells": len(f.cells), "kinds": sorted(_kinds(f.cells[0])),
               "example": f.cells[0].prompt()}
        for name, f in families().items()
    }
    return {
        "families": fams,
        "trained_families": [n for n, f in families().items() if not f.held_out],
        "held_out_families": [n for n, f in families().items() if f.held_out],
        "phrasing": {"seen_templates": len(grammar.phrasings(True)), "unseen_templates": len(grammar.phrasings(False)),
                     "held_out_parts": {s: list(p) for s, p in grammar.HELD_OUT.items() if p}},
        "heldout_share": HELDOUT_SHARE,
    }


def _kinds(checker: Checker) -> set[str]:
    return {p.kind for p in checker.parts} if isinstance(checker, AllOf) else {checker.kind}
