"""Programmatic constraint checkers: a score in [0, 1] and a feedback text naming what was violated.

The design follows CORGI (Bezalel, Orgad & Globerson, "Learning from Natural Language Feedback for
Constrained Generation", arXiv 2411.01483): each task is a set of verifiable requirements; a checker grades
a response by the share of requirements it meets (partial credit) and says, in words a user would type,
which ones it missed, so a multi-turn session can feed the text back as the next user turn.

A response is read as a list of lowercase words (`words_in`). The word-list checkers ask for exactly `n`
*different* words: repeating one word ("lemon lemon lemon") is a violation of its own, since a greedy
policy otherwise learns to satisfy "3 words ending in 'n'" with one word. With `known_only` (the default)
every word must also come from the bundled list (`words.WORD_SET`), so made-up strings ("eee") do not pass.

Every checker is a frozen dataclass with `check(response) -> Check`, `prompt(variant=0)`, `to_dict()`
and `from_dict()`; `REGISTRY` maps the `kind` names to classes and `checker_from_dict` rebuilds any of
them (nested `all_of` included) from the JSON "task" column of the suite's files. `word_ok`, `arrange`
and `count_range` describe a correct answer, for the generators in `responses.py`.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .words import WORD_SET

_WORD_RE = re.compile(r"[a-z]+")

PROMPT_VARIANTS: tuple[str, ...] = (
    "List {n} different words {what}.",
    "Name {n} distinct words {what}.",
    "Give me {n} different words {what}, with no repeats.",
    "Write {n} words {what}. Do not repeat a word.",
    "Can you list {n} different words {what}?",
    "I need {n} distinct words {what}.",
)
"""Phrasings of a word-list task; `{what}` is the checker's constraint, e.g. "that end with 'e'"."""

FEEDBACK_CLOSING = "Please try again."

# Feedback order: unknown words, per-word rules, repeats, then the count ("... ; you gave 2 words, not 3").
_RANK = {"known": 0, "distinct": 2, "count": 3}


@dataclass(frozen=True)
class Check:
    """A checker's verdict: `score` in [0, 1] (1 = every requirement met) and feedback (None when passed)."""

    score: float
    feedback: str | None

    @property
    def passed(self) -> bool:
        return self.score == 1.0


@dataclass(frozen=True)
class Requirement:
    """One graded requirement. `key` identifies it ("count:3", "ends_with:e"), so `AllOf` merges repeats."""

    key: str
    score: float
    violation: str | None = None


def words_in(response: str) -> list[str]:
    """The response's words, lowercased, in order: runs of letters, so punctuation and numbering drop out."""
    return _WORD_RE.findall(response.lower())


def quoted(words: list[str], conjunction: str = "and") -> str:
    """"'a'", "'a' and 'b'", "'a', 'b' and 'c'"."""
    q = [f"'{w}'" for w in words]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + f" {conjunction} " + q[-1]


def _unique(words: list[str]) -> list[str]:
    return list(dict.fromkeys(words))


def per_word(key: str, words: list[str], ok, singular: str, plural: str) -> Requirement:
    """A rule every word must obey: scored by the share of words that do, naming the ones that do not."""
    bad = _unique([w for w in words if not ok(w)])
    score = sum(map(ok, words)) / len(words) if words else 0.0
    if not bad:
        return Requirement(key, score)
    return Requirement(key, score, f"{quoted(bad)} {singular if len(bad) == 1 else plural}")


def feedback_text(violations: list[str]) -> str:
    """Violations as one user turn: "'lemon' does not end with 'e'; you gave 2 words, not 3. Please try again."."""
    text = "; ".join(violations)
    return f"{text[0].upper()}{text[1:]}. {FEEDBACK_CLOSING}"


REGISTRY: dict[str, type[Checker]] = {}


def register(cls):
    """Class decorator: make `cls` rebuildable from its `kind` by `checker_from_dict`."""
    if cls.kind in REGISTRY:
        raise ValueError(f"checker kind {cls.kind!r} is registered twice")
    REGISTRY[cls.kind] = cls
    return cls


def checker_from_dict(d: dict[str, Any]) -> Checker:
    """Rebuild a checker from `to_dict()` output (the suite's "task" column)."""
    if not isinstance(d, dict) or "kind" not in d:
        raise ValueError(f"a task must be a dict with a 'kind' field, got {d!r}")
    if d["kind"] not in REGISTRY:
        raise ValueError(f"unknown checker kind {d['kind']!r}; known: {sorted(REGISTRY)}")
    return REGISTRY[d["kind"]].from_dict(d)


class Checker:
    """Base of all checkers (subclasses are frozen dataclasses with a `kind` class attribute)."""

    kind: ClassVar[str]
    arrange_last: ClassVar[bool] = False  # ordering constraints arrange after the others

    def requirements(self, words: list[str]) -> list[Requirement]:
        raise NotImplementedError

    def prompt(self, variant: int = 0) -> str:
        raise NotImplementedError

    def check(self, response: str) -> Check:
        reqs = self.requirements(words_in(response))
        score = sum(r.score for r in reqs) / len(reqs)
        violations = [r.violation for r in reqs if r.violation]
        return Check(score, feedback_text(violations) if violations else None)

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind}
        for f in sorted(dataclasses.fields(self), key=lambda f: f.kw_only):  # positional fields first
            v = getattr(self, f.name)
            d[f.name] = list(v) if isinstance(v, tuple) else v
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Checker:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names - {"kind"}
        if unknown:
            raise ValueError(f"{cls.kind}: unknown fields {sorted(unknown)} in {d!r}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names})

    # What a correct answer looks like (used by the generators).
    def word_ok(self, word: str) -> bool:
        return True

    def arrange(self, words: list[str], rng: random.Random) -> list[str]:
        return words

    def count_range(self) -> tuple[int, int] | None:
        return None


@dataclass(frozen=True)
class WordList(Checker):
    """Exactly `n` different (known) words, each obeying `rules`; subclasses add the rules and `what`."""

    n: int
    known_only: bool = field(default=True, kw_only=True)

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"{self.kind}: n must be >= 1, got {self.n}")

    def what(self) -> str:
        """The constraint as a relative clause, e.g. "that end with 'e'"."""
        raise NotImplementedError

    def rules(self, words: list[str]) -> list[Requirement]:
        return []

    def requirements(self, words: list[str]) -> list[Requirement]:
        if not words:
            return [Requirement(f"count:{self.n}", 0.0, f"you gave no words; I asked for {self.n}")]
        reqs = []
        if self.known_only:
            reqs.append(per_word("known", words, WORD_SET.__contains__, "is not a word I know", "are not words I know"))
        reqs += self.rules(words)
        repeated = _unique([w for i, w in enumerate(words) if w in words[:i]])
        reqs.append(
            Requirement("distinct", 0.0, f"{quoted(repeated)} {'is' if len(repeated) == 1 else 'are'} repeated")
            if repeated
            else Requirement("distinct", 1.0)
        )
        k = len(words)
        reqs.append(
            Requirement(f"count:{self.n}", 1.0)
            if k == self.n
            else Requirement(f"count:{self.n}", 0.0, f"you gave {k} word{'s' if k != 1 else ''}, not {self.n}")
        )
        return reqs

    def prompt(self, variant: int = 0) -> str:
        return PROMPT_VARIANTS[variant % len(PROMPT_VARIANTS)].format(n=self.n, what=self.what())

    def word_ok(self, word: str) -> bool:
        return not self.known_only or word in WORD_SET

    def count_range(self) -> tuple[int, int]:
        return (self.n, self.n)


@register
@dataclass(frozen=True)
class EndsWith(WordList):
    kind: ClassVar[str] = "ends_with"
    letter: str

    def what(self) -> str:
        return f"that end with '{self.letter}'"

    def rules(self, words):
        s = f"end with '{self.letter}'"
        return [per_word(f"ends_with:{self.letter}", words, self._ok, f"does not {s}", f"do not {s}")]

    def _ok(self, w: str) -> bool:
        return w.endswith(self.letter)

    def word_ok(self, word):
        return super().word_ok(word) and self._ok(word)


@register
@dataclass(frozen=True)
class StartsWith(WordList):
    kind: ClassVar[str] = "starts_with"
    letter: str

    def what(self) -> str:
        return f"that start with '{self.letter}'"

    def rules(self, words):
        s = f"start with '{self.letter}'"
        return [per_word(f"starts_with:{self.letter}", words, self._ok, f"does not {s}", f"do not {s}")]

    def _ok(self, w: str) -> bool:
        return w.startswith(self.letter)

    def word_ok(self, word):
        return super().word_ok(word) and self._ok(word)


@register
@dataclass(frozen=True)
class WordLength(WordList):
    """Counting letters: every word has exactly `length` letters."""

    kind: ClassVar[str] = "word_length"
    length: int

    def what(self) -> str:
        return f"with exactly {self.length} letters"

    def rules(self, words):
        s = f"have {self.length} letters"
        return [per_word(f"length:{self.length}", words, self._ok, f"does not {s}", f"do not {s}")]

    def _ok(self, w: str) -> bool:
        return len(w) == self.length

    def word_ok(self, word):
        return super().word_ok(word) and self._ok(word)


@register
@dataclass(frozen=True)
class AvoidLetter(WordList):
    kind: ClassVar[str] = "avoid_letter"
    letter: str

    def what(self) -> str:
        return f"without the letter '{self.letter}'"

    def rules(self, words):
        s = f"'{self.letter}'"
        return [per_word(f"avoid_letter:{self.letter}", words, self._ok, f"contains {s}", f"contain {s}")]

    def _ok(self, w: str) -> bool:
        return self.letter not in w

    def word_ok(self, word):
        return super().word_ok(word) and self._ok(word)


@register
@dataclass(frozen=True)
class Include(WordList):
    """The answer must use every word of `words` (scored by the share used)."""

    kind: ClassVar[str] = "include"
    words: tuple[str, ...]

    def __post_init__(self):
        super().__post_init__()
        if not self.words or len(set(self.words)) > self.n:
            raise ValueError(f"include: need 1..n={self.n} different words, got {self.words!r}")

    def what(self) -> str:
        return f"including {quoted(list(self.words))}"

    def rules(self, words):
        missing = [w for w in self.words if w not in words]
        score = 1.0 - len(missing) / len(self.words)
        verb = "is" if len(missing) == 1 else "are"
        return [Requirement(f"include:{','.join(self.words)}", score, f"{quoted(missing)} {verb} missing" if missing else None)]

    def arrange(self, words, rng):
        out = list(words)
        for w in self.words:
            if w not in out:
                free = [i for i, x in enumerate(out) if x not in self.words]
                out[rng.choice(free)] = w
        return out


@register
@dataclass(frozen=True)
class Avoid(WordList):
    """The answer must not use any word of `words` (scored by the share of the answer's words allowed)."""

    kind: ClassVar[str] = "avoid"
    words: tuple[str, ...]

    def what(self) -> str:
        return f"without using {quoted(list(self.words), 'or')}"

    def rules(self, words):
        key = f"avoid:{','.join(self.words)}"
        return [per_word(key, words, self._ok, "is not allowed", "are not allowed")]

    def _ok(self, w: str) -> bool:
        return w not in self.words

    def word_ok(self, word):
        return super().word_ok(word) and self._ok(word)


@register
@dataclass(frozen=True)
class Alphabetical(WordList):
    """Ordering: the words in alphabetical order (scored by the share of neighbouring pairs in order)."""

    kind: ClassVar[str] = "alphabetical"
    arrange_last: ClassVar[bool] = True

    def what(self) -> str:
        return "in alphabetical order"

    def rules(self, words):
        pairs = list(zip(words, words[1:]))
        out_of_order = [(a, b) for a, b in pairs if a > b]
        score = 1.0 - len(out_of_order) / len(pairs) if pairs else 1.0
        if not out_of_order:
            return [Requirement("alphabetical", score)]
        a, b = out_of_order[0]
        return [Requirement("alphabetical", score, f"the words are not in alphabetical order: '{a}' comes before '{b}'")]

    def arrange(self, words, rng):
        return sorted(words)


@register
@dataclass(frozen=True)
class WordCount(Checker):
    """Length limit in words (any words): between `min_words` and `max_words`."""

    kind: ClassVar[str] = "word_count"
    min_words: int
    max_words: int

    def prompt(self, variant: int = 0) -> str:
        if self.min_words == self.max_words:
            return f"Answer in exactly {self.min_words} words."
        return f"Answer in {self.min_words} to {self.max_words} words."

    def requirements(self, words):
        k = len(words)
        if self.min_words <= k <= self.max_words:
            return [Requirement("word_count", 1.0)]
        want = str(self.min_words) if self.min_words == self.max_words else f"{self.min_words} to {self.max_words}"
        return [Requirement("word_count", 0.0, f"you gave {k} word{'s' if k != 1 else ''}, not {want}")]

    def count_range(self):
        return (self.min_words, self.max_words)


@register
@dataclass(frozen=True)
class MaxChars(Checker):
    """Length limit in characters of the stripped response. Needs the raw text, so it overrides `check`."""

    kind: ClassVar[str] = "max_chars"
    limit: int

    def prompt(self, variant: int = 0) -> str:
        return f"Answer in at most {self.limit} characters."

    def check(self, response: str) -> Check:
        k = len(response.strip())
        if k <= self.limit:
            return Check(1.0, None)
        return Check(0.0, feedback_text([f"your answer has {k} characters, more than {self.limit}"]))


@register
@dataclass(frozen=True)
class AllOf(Checker):
    """A conjunction: the union of the parts' requirements (shared ones, like the count, counted once)."""

    kind: ClassVar[str] = "all_of"
    parts: tuple[Checker, ...]

    def __post_init__(self):
        if not self.parts or any(isinstance(p, (AllOf, MaxChars)) for p in self.parts):
            raise ValueError("all_of: needs one or more parts, none of them all_of or max_chars")
        ranges = {p.count_range() for p in self.parts} - {None}
        if len(ranges) > 1:
            raise ValueError(f"all_of: the parts ask for different word counts {sorted(ranges)}")

    def requirements(self, words):
        merged: dict[str, Requirement] = {}
        for part in self.parts:
            for r in part.requirements(words):
                merged.setdefault(r.key, r)
        return sorted(merged.values(), key=lambda r: _RANK.get(r.key.split(":")[0], 1))

    def prompt(self, variant: int = 0) -> str:
        if not all(isinstance(p, WordList) for p in self.parts):
            return " ".join(p.prompt(variant) for p in self.parts)
        whats = [p.what() for p in self.parts]
        # "that start with 's' and end with 'e'": one "that" for the clause.
        whats = whats[:1] + [w.removeprefix("that ") if whats[0].startswith("that ") else w for w in whats[1:]]
        what = whats[0] if len(whats) == 1 else ", ".join(whats[:-1]) + " and " + whats[-1]
        return PROMPT_VARIANTS[variant % len(PROMPT_VARIANTS)].format(n=self.parts[0].n, what=what)

    def to_dict(self):
        return {"kind": self.kind, "parts": [p.to_dict() for p in self.parts]}

    @classmethod
    def from_dict(cls, d):
        return cls(parts=tuple(checker_from_dict(p) for p in d["parts"]))

    def word_ok(self, word):
        return all(p.word_ok(word) for p in self.parts)

    def arrange(self, words, rng):
        for p in sorted(self.parts, key=lambda p: p.arrange_last):
            words = p.arrange(words, rng)
        return words

    def count_range(self):
        return next((r for p in self.parts if (r := p.count_range()) is not None), None)
