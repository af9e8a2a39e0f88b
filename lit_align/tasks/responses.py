"""Responses to a task: correct answers from the bundled words, and realistic near-misses.

`good_response` samples different words that satisfy every rule of the checker and arranges them (sorted
for an ordering constraint); `bad_response` starts from a correct answer and makes one named mistake of
the kinds a small model makes: a word that breaks the rule, a repeated word, the first word repeated
throughout ("lemon lemon lemon"), stopping a word early or running on by one, a misspelt word. Each mistake is checked to lower the
checker's score, so a "bad" response never passes by accident. Given the correct answer to start from
(`base`), the near-miss differs from it by that one mistake: a minimal contrast for preference pairs.
All randomness comes from the `rng` argument, so the suite's files are a function of its seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .checkers import Checker, words_in
from .words import WORD_RANK, WORD_SET, WORDS

SEPARATOR = " "
"""Words in a response are joined by single spaces: one token per word for a small byte-level BPE."""

ZIPF_EXPONENT = 1.0
"""Correct answers draw the i-th candidate word (in `WORDS` order) with weight 1 / (i + 1) ** ZIPF_EXPONENT.

Measured on the tiny model: with uniform draws over ~20 valid words per letter, no single next word beats
repeating the last one, and greedy decoding loops ("lemon lemon lemon") whatever the training; with Zipf
draws the next distinct common word is the clear argmax. 0 gives uniform draws."""

COMMON_FIRST = True
"""Correct answers list their words in `WORDS` order (common words first), as people list typical examples
first; the answer to a task is then a short chain a small model can follow without tracking a set of used
words. Ordering constraints (`Alphabetical`) rearrange afterwards."""


def _pool(task: Checker, exclude=()) -> list[str]:
    return [w for w in WORDS if task.word_ok(w) and w not in exclude]


def _draw(pool: list[str], k: int, rng: random.Random, exponent: float) -> list[str]:
    """`k` different words of `pool`, the i-th drawn with weight 1 / (i + 1) ** exponent, in draw order."""
    cand, weights, out = list(pool), [1.0 / (i + 1) ** exponent for i in range(len(pool))], []
    for _ in range(k):
        i = rng.choices(range(len(cand)), weights)[0]
        out.append(cand.pop(i))
        weights.pop(i)
    return out


def good_words(task: Checker, rng: random.Random, tries: int = 20) -> list[str]:
    """The words of a correct answer (`task.check` scores it 1), common words more often (`ZIPF_EXPONENT`)."""
    lo, hi = task.count_range() or (3, 3)
    pool = _pool(task)
    for _ in range(tries):
        k = rng.randint(lo, hi)
        if k > len(pool):
            break
        words = _draw(pool, k, rng, ZIPF_EXPONENT)
        if COMMON_FIRST:
            words.sort(key=WORD_RANK.__getitem__)
        words = task.arrange(words, rng)
        if task.check(SEPARATOR.join(words)).passed:
            return words
    raise ValueError(f"cannot build a correct answer for {task.to_dict()}: {len(pool)} candidate words")


def good_response(task: Checker, rng: random.Random) -> str:
    """A correct completion for `task`, e.g. "grape stone lake" for 3 words ending with 'e'."""
    return SEPARATOR.join(good_words(task, rng))


# Each mistake maps (task, correct words, rng) to wrong words, or None where it does not apply. The edit sits
# where the error is made: an answer that stops early or runs on differs from the correct one at its end,
# so in a pair (correct, near-miss) the first differing token is the mistake itself, never a valid word.
def _wrong_word(task, words, rng):
    others = [w for w in WORDS if not task.word_ok(w) and w not in words]
    if not others:
        return None
    out = list(words)
    out[rng.randrange(len(out))] = rng.choice(others)
    return out


def _repeat(task, words, rng):
    if len(words) < 2:
        return None
    out = list(words)
    i = rng.randrange(1, len(out))
    out[i] = out[rng.randrange(i)]
    return out


def _same_word(task, words, rng):
    """The first word throughout ("lemon lemon lemon"), the way a greedy policy loops."""
    return [words[0]] * len(words) if len(words) >= 2 else None


def _too_few(task, words, rng):
    """Stops a word early."""
    return words[:-1] if len(words) >= 2 else None


def _too_many(task, words, rng):
    """Runs on by one more valid, different word."""
    extra = _pool(task, exclude=words)
    return words + [rng.choice(extra)] if extra else None


def _misspelt(task, words, rng):
    """Double an inner letter ("lemon" -> "lemmon"): first and last letters stay, the word is not known."""
    out = list(words)
    i = rng.randrange(len(out))
    w = out[i]
    if len(w) < 3:
        return None
    j = rng.randrange(1, len(w) - 1)
    out[i] = w[: j + 1] + w[j:]
    return None if out[i] in WORD_SET else out


MISTAKES: dict[str, Callable[[Checker, list[str], random.Random], list[str] | None]] = {
    "wrong_word": _wrong_word,
    "repeat": _repeat,
    "same_word": _same_word,
    "too_few": _too_few,
    "too_many": _too_many,
    "misspelt": _misspelt,
}
"""The near-miss kinds `bad_response` can make, by name (the "mistake" column of the suite's files)."""


def bad_response(
    task: Checker,
    rng: random.Random,
    mistake: str | None = None,
    base: list[str] | None = None,
    weights: dict[str, float] | None = None,
    tries: int = 20,
) -> tuple[str, str]:
    """A near-miss for `task`: (response, mistake name); the checker scores it below 1.

    `mistake` picks one of `MISTAKES`; otherwise one is drawn with `weights` (name -> weight; default all
    equal), redrawn when it does not apply to the task. `base` (a correct answer's words) makes the
    near-miss an edit of that answer, so a pair (base, near-miss) differs only by the mistake; otherwise
    a fresh correct answer is drawn.
    """
    weights = {mistake: 1.0} if mistake is not None else weights or dict.fromkeys(MISTAKES, 1.0)
    unknown = set(weights) - set(MISTAKES)
    if unknown:
        raise ValueError(f"unknown mistakes {sorted(unknown)}; known: {sorted(MISTAKES)}")
    names = [n for n, w in weights.items() if w > 0]
    if not names:
        raise ValueError(f"no mistake has a positive weight in {weights}")
    for _ in range(tries):
        name = rng.choices(names, [weights[n] for n in names])[0]
        words = MISTAKES[name](task, list(base) if base is not None else good_words(task, rng), rng)
        if words is not None and not task.check(SEPARATOR.join(words)).passed:
            return SEPARATOR.join(words), name
    raise ValueError(f"cannot make a {mistake or 'bad'} response for {task.to_dict()}")


def distinct_words(response: str) -> int:
    """How many different words a response uses (a diversity measure: "lemon lemon lemon" has 1)."""
    return len(set(words_in(response)))
