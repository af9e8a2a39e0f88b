"""The grammar of instructions: thousands of phrasings of one request, and a disjoint set kept for held-out prompts.

A request says how many words, and the constraint ("that end with 'e'"); everything else is phrasing. A
`Phrasing` picks one part for each slot:

    opener   "{}." / "Can you {}?" / "I need you to {}." ...      (frames the request, sets its punctuation)
    verb     "list" / "name" / "come up with" ...
    count    "{n} different words" / "exactly {n} different words" ...
    style    how the checker words its constraint: "rel" ("that end with 'e'"), "ing" ("ending with 'e'"),
             "with" ("with the last letter 'e'"); see `Checker.clause`
    suffix   "" / ", with no repeats" / ", nothing else" ...

    "Could you come up with 3 distinct words ending with 'e', nothing else?"

The parts in `HELD_OUT` are never used in training: a phrasing is "seen" when all its parts are in `SEEN`,
"unseen" when at least one is held out, so an unseen prompt's text cannot occur in any training file. The
held-out parts change nothing in what is asked and are close to trained ones ("exactly {n} words" composes
"exactly" and "{n} words", both trained; "Would you" is a sibling of "Could you"), so a model that learned
the request rather than the wording can answer them. The styles are all trained: a constraint worded in a
way never seen could not be understood, which would test vocabulary, not robustness.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

SLOTS = ("opener", "verb", "count", "style", "suffix")

SEEN: dict[str, tuple[str, ...]] = {
    "opener": ("{}.", "Please {}.", "Can you {}?", "Could you {}?", "I need you to {}.", "Your task: {}.",
               "Go ahead and {}.", "Try to {}."),
    "verb": ("list", "name", "give me", "write", "write down", "tell me", "come up with", "think of", "suggest"),
    "count": ("{n} different words", "{n} distinct words", "{n} words", "exactly {n} different words",
              "{n} unique words"),
    "style": ("rel", "ing", "with"),
    "suffix": ("", ", with no repeats", ", each used once", ", nothing else", ", if you can"),
}
HELD_OUT: dict[str, tuple[str, ...]] = {
    "opener": ("Would you {}?", "Kindly {}.", "Quick one: {}."),
    "verb": ("jot down", "provide", "pick"),
    "count": ("exactly {n} words", "a set of {n} different words"),
    "style": (),
    "suffix": (", no word twice", ", thank you"),
}
"""Parts used only in held-out prompts (val/test/transfer rows labelled "unseen")."""


@dataclass(frozen=True)
class Phrasing:
    """One part per slot (see the module docstring); the default is the canonical phrasing, used in feedback."""

    opener: str = "{}."
    verb: str = "list"
    count: str = "{n} different words"
    style: str = "rel"
    suffix: str = ""

    @property
    def seen(self) -> bool:
        """True when every part is trained on (`SEEN`)."""
        return all(getattr(self, s) in SEEN[s] for s in SLOTS)

    def template(self) -> str:
        """The phrasing with the count and the constraint left open: "Can you list {n} words {constraint:ing}?"."""
        return render(self, "{n}", f"{{constraint:{self.style}}}")


CANONICAL = Phrasing()


def render(p: Phrasing, n: int | str, constraint: str) -> str:
    """The instruction: `p` filled with the word count `n` and the constraint worded in `p.style`."""
    body = f"{p.verb} {p.count.format(n=n)} {constraint}{p.suffix}"
    text = p.opener.format(body)
    return text[0].upper() + text[1:]


def parts(slot: str, seen: bool | None = None) -> tuple[str, ...]:
    """The parts of `slot`: trained ones (`seen=True`), held-out ones (False) or all (None)."""
    if seen is None:
        return SEEN[slot] + HELD_OUT[slot]
    return SEEN[slot] if seen else HELD_OUT[slot]


def sample(rng: random.Random, seen: bool) -> Phrasing:
    """A phrasing drawn uniformly from the seen ones, or from the unseen ones (any with a held-out part)."""
    while True:
        p = Phrasing(**{s: rng.choice(parts(s, True if seen else None)) for s in SLOTS})
        if p.seen == seen:
            return p


def phrasings(seen: bool) -> list[Phrasing]:
    """Every seen (or every unseen) phrasing, in a fixed order."""
    every = (Phrasing(*combo) for combo in itertools.product(*(parts(s, True if seen else None) for s in SLOTS)))
    return [p for p in every if p.seen == seen]
