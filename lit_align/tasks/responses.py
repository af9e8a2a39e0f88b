"""Responses to a task: correct answers from the bundled words, and near-misses that make one named mistake.

`good_response` draws different words that satisfy every rule of the checker, common words first, and
arranges them (sorted for an ordering constraint). `bad_response` edits a correct answer with one mistake of
the kinds a small model makes: a word that breaks one rule, a repeated word, the first word repeated
throughout ("lemon lemon lemon"), stopping a word early or running on by one, a misspelt word, two words out
of order. Each mistake proposes candidate edits and the first one whose only failed requirement is the one
the mistake names is kept (`makes`), so a near-miss never passes by accident and never breaks two things at
once. Given the correct answer to start from (`base`), the near-miss differs from it by that one edit: a
minimal contrast for preference pairs, with a too-short or too-long answer differing at its end.
All randomness comes from the `rng` argument, so the suite's files are a function of its seed.

Three settings come from measurements with the suite's tiny 0.6M-parameter Llama (SFT then DPO):
`ZIPF_EXPONENT` and `COMMON_FIRST` make a correct answer a short, learnable chain of common words, and
`MISTAKE_WEIGHTS` makes most near-misses the loop a greedy policy falls into.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from functools import cache

from .checkers import AllOf, Checker, category, words_in
from .words import WORD_RANK, WORD_SET, WORDS

SEPARATOR = " "
"""Words in a response are joined by single spaces: one token per word for a small byte-level BPE."""

ZIPF_EXPONENT = 1.5
"""Correct answers draw the i-th candidate word (in `WORDS` order) with weight 1 / (i + 1) ** ZIPF_EXPONENT.

Measured on the tiny model: with uniform draws over ~20 valid words per letter, no single next word beats
repeating the last one, and greedy decoding loops ("lemon lemon lemon") whatever the training; with Zipf
draws the next distinct common word is the clear argmax. The suite v2 experiment (+70/+52 points SFT -> DPO)
used 1.5. 0 gives uniform draws."""

COMMON_FIRST = True
"""Correct answers list their words in `WORDS` order (common words first), as people list typical examples
first; the answer to a task is then a short chain a small model can follow without tracking a set of used
words. Ordering constraints (`Alphabetical`) rearrange afterwards."""

MISTAKE_WEIGHTS: dict[str, float] = {"wrong_word": 1.0, "repeat": 1.0, "same_word": 12.0, "too_few": 1.0,
                                     "too_many": 1.0, "misspelt": 1.0, "unsorted": 1.0}
"""The default mix of near-misses: mostly loops ("lemon lemon lemon", weight 12 against 1), the failure of a
greedy tiny model after SFT; contrasting them with the correct chain is what DPO gained most from."""

BREAKS = {"wrong_word": "rule", "repeat": "distinct", "same_word": "distinct", "too_few": "count",
          "too_many": "count", "misspelt": "known", "unsorted": "order"}
"""The one requirement category (`checkers.category`) each mistake fails."""

CANDIDATES = 200
"""How many candidate edits a mistake proposes before it is given up for the task."""


@cache
def answers(task: Checker) -> tuple[str, ...]:
    """Every bundled word a correct answer to `task` may use, in `WORDS` order (common words first)."""
    if isinstance(task, AllOf):  # the parts' answers intersected (the same as word_ok, and cached per part)
        others = [set(answers(p)) for p in task.parts[1:]]
        return tuple(w for w in answers(task.parts[0]) if all(w in s for s in others))
    return tuple(w for w in WORDS if task.word_ok(w))


def zipf_order(pool: list[str] | tuple[str, ...], rng: random.Random, exponent: float) -> Iterator[str]:
    """The words of `pool` in a random order, the i-th drawn next with weight 1 / (i + 1) ** exponent."""
    cand, weights = list(pool), [1.0 / (i + 1) ** exponent for i in range(len(pool))]
    while cand:
        i = rng.choices(range(len(cand)), weights)[0]
        weights.pop(i)
        yield cand.pop(i)


def good_words(task: Checker, rng: random.Random, tries: int = 20) -> list[str]:
    """The words of a correct answer (`task.check` scores it 1), common words more often (`ZIPF_EXPONENT`)."""
    lo, hi = task.count_range() or (3, 3)
    pool = answers(task)
    for _ in range(tries):
        k = rng.randint(lo, hi)
        if k > len(pool):
            break
        words = list(itertools.islice(zipf_order(pool, rng, ZIPF_EXPONENT), k))
        if COMMON_FIRST:
            words.sort(key=WORD_RANK.__getitem__)
        words = task.arrange(words, rng)
        if task.check(SEPARATOR.join(words)).passed:
            return words
    raise ValueError(f"cannot build a correct answer for {task.to_dict()}: {len(pool)} candidate words")


def good_response(task: Checker, rng: random.Random) -> str:
    """A correct completion for `task`, e.g. "apple grape house" for 3 words ending with 'e'."""
    return SEPARATOR.join(good_words(task, rng))


# Each mistake maps (task, correct words, rng) to candidate wrong answers, best first; `bad_response` keeps the
# first that `makes` the mistake. The edit sits where the error is made: an answer that stops early or runs on
# differs from the correct one at its end, so in a pair (correct, near-miss) the first differing token is the
# mistake itself.
def _replaced(words: list[str], i: int, word: str) -> list[str]:
    return [word if j == i else w for j, w in enumerate(words)]


def _wrong_word(task, words, rng):
    """One word swapped for a known word that breaks one rule (of a conjunction: one part's rule)."""
    others = [w for w in WORDS if w not in words and not task.word_ok(w)]
    rng.shuffle(others)
    for w in others:
        for i in rng.sample(range(len(words)), len(words)):
            yield _replaced(words, i, w)


def _repeat(task, words, rng):
    """A later word replaced by an earlier one ("lemon melon lemon")."""
    pairs = [(i, j) for i in range(1, len(words)) for j in range(i)]
    for i, j in rng.sample(pairs, len(pairs)):
        yield _replaced(words, i, words[j])


def _same_word(task, words, rng):
    """The first word throughout ("lemon lemon lemon"), the way a greedy policy loops."""
    if len(words) >= 2:
        yield [words[0]] * len(words)


def _too_few(task, words, rng):
    """Stops a word early."""
    if len(words) >= 2:
        yield words[:-1]


def _too_many(task, words, rng):
    """Runs on by one more valid, different word, a common one as the answer's own words are."""
    for w in zipf_order([w for w in answers(task) if w not in words], rng, ZIPF_EXPONENT):
        yield words + [w]


def _misspellings(word: str) -> list[str]:
    """Inner-letter slips that keep the first and last letters: two swapped, one doubled or dropped ("lemon" ->
    "lmeon", "lemmon", "lmon"); known words are left out."""
    inner = range(1, len(word) - 1)
    out = [word[:j] + word[j + 1] + word[j] + word[j + 2:] for j in inner if j + 1 < len(word) - 1]
    out += [word[: j + 1] + word[j:] for j in inner] + [word[:j] + word[j + 1:] for j in inner]
    return [m for m in dict.fromkeys(out) if m not in WORD_SET]


def _misspelt(task, words, rng):
    """One word misspelt (`_misspellings`)."""
    for i in rng.sample(range(len(words)), len(words)):
        variants = _misspellings(words[i])
        for m in rng.sample(variants, len(variants)):
            yield _replaced(words, i, m)


def _unsorted(task, words, rng):
    """Two neighbouring words swapped, so an answer in alphabetical order is not."""
    for i in rng.sample(range(len(words) - 1), max(len(words) - 1, 0)):
        yield words[:i] + [words[i + 1], words[i]] + words[i + 2:]


MISTAKES: dict[str, Callable[[Checker, list[str], random.Random], Iterator[list[str]]]] = {
    "wrong_word": _wrong_word,
    "repeat": _repeat,
    "same_word": _same_word,
    "too_few": _too_few,
    "too_many": _too_many,
    "misspelt": _misspelt,
    "unsorted": _unsorted,
}
"""The near-miss kinds `bad_response` can make, by name (the "mistake" column of the suite's files)."""


def makes(task: Checker, response: str, mistake: str) -> bool:
    """True when `response` fails exactly one requirement of `task`, of the category `mistake` breaks."""
    failed = task.failed(response)
    return len(failed) == 1 and category(failed[0]) == BREAKS[mistake]


def bad_response(
    task: Checker,
    rng: random.Random,
    mistake: str | None = None,
    base: list[str] | None = None,
    weights: dict[str, float] | None = None,
) -> tuple[str, str]:
    """A near-miss for `task`: (response, mistake name); it fails exactly the one requirement the mistake names.

    `mistake` picks one of `MISTAKES`; otherwise one is drawn with `weights` (name -> weight; default
    `MISTAKE_WEIGHTS`), and another is drawn when it does not apply to the task. `base` (a correct answer's
    words) makes the near-miss an edit of that answer, so a pair (base, near-miss) differs only by the
    mistake; otherwise a fresh correct answer is drawn.
    """
    weights = {mistake: 1.0} if mistake is not None else weights or MISTAKE_WEIGHTS
    unknown = set(weights) - set(MISTAKES)
    if unknown:
        raise ValueError(f"unknown mistakes {sorted(unknown)}; known: {sorted(MISTAKES)}")
    names = [n for n, w in weights.items() if w > 0]
    if not names:
        raise ValueError(f"no mistake has a positive weight in {weights}")
    words = list(base) if base is not None else good_words(task, rng)
    while names:
        name = rng.choices(names, [weights[n] for n in names])[0]
        for edit in itertools.islice(MISTAKES[name](task, words, rng), CANDIDATES):
            if makes(task, SEPARATOR.join(edit), name):
                return SEPARATOR.join(edit), name
        names.remove(name)
    raise ValueError(f"cannot make a {mistake or 'bad'} response for {task.to_dict()} from {words}")


def distinct_words(response: str) -> int:
    """How many different words a response uses (a diversity measure: "lemon lemon lemon" has 1)."""
    return len(set(words_in(response)))
