"""Programmatic constraint checkers: a score in [0, 1] and a feedback text naming what was violated.

The design follows CORGI (Bezalel, Orgad & Globerson, "Learning from Natural Language Feedback for
Constrained Generation", arXiv 2411.01483): each task is a set of verifiable requirements; a checker grades
a response by the share of requirements it meets (partial credit) and says, in words a user would type,
which ones it missed and what was asked, so a multi-turn session can feed the text back as the next user
turn: "'apple' does not end with 'e'. Please list 3 different words that end with 'e'."

A response is read as a list of lowercase words (`words_in`). The word-list checkers ask for exactly `n`
*different* words: repeating one word ("lemon lemon lemon") is a violation of its own, since a greedy
policy otherwise learns to satisfy "3 words ending in 'n'" with one word. With `known_only` (the default)
every word must also come from the bundled list (`words.WORD_SET`), so made-up strings ("eee") do not pass.

Every checker is a frozen dataclass with `check(response) -> Check`, `prompt(phrasing=None)` (the
instruction in a `phrasing.Phrasing`, canonical by default), `to_dict()` and `from_dict()`; `REGISTRY` maps
the `kind` names to classes and `checker_from_dict` rebuilds any of them (nested `all_of` included) from the
JSON "task" column of the suite's files. A rule every word must obey (ends with, contains, has k letters ...)
is a `PerWordRule`: its `ok(word)`, its wording per phrasing style (`clauses`) and how a word breaks it
(`broken`). `word_ok`, `arrange` and `count_range` describe a correct answer, for the generators in
`responses.py`; `failed` names the requirements a response misses (their `category`), so a generated
near-miss can be checked to make exactly the mistake it is labelled with.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .phrasing import CANONICAL, Phrasing, render
from .words import WORD_SET

_WORD_RE = re.compile(r"[a-z]+")

# Feedback order: unknown words, per-word rules, repeats, then the count ("... ; you gave 2 words, not 3").
_RANK = {"known": 0, "distinct": 2, "count": 3}
_CATEGORY = {"known": "known", "distinct": "distinct", "count": "count", "alphabetical": "order"}
_PLURAL = {"does": "do", "is": "are", "has": "have", "contains": "contain"}


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


def category(key: str) -> str:
    """What a requirement is about: "known", "distinct", "count", "order", or "rule" (a rule on the words)."""
    return _CATEGORY.get(key.split(":")[0], "rule")


def words_in(response: str) -> list[str]:
    """The response's words, lowercased, in order: runs of letters, so punctuation and numbering drop out."""
    return _WORD_RE.findall(response.lower())


def quoted(words: list[str], conjunction: str = "and") -> str:
    """"'a'", "'a' and 'b'", "'a', 'b' and 'c'"."""
    q = [f"'{w}'" for w in words]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + f" {conjunction} " + q[-1]


def _unique(words: list[str]) -> list[str]:
    return list(dict.fromkeys(words))


def _plural(singular: str) -> str:
    """"does not end with 'e'" -> "do not end with 'e'" (the verb comes first)."""
    verb, _, rest = singular.partition(" ")
    return f"{_PLURAL.get(verb, verb)} {rest}".rstrip()


def per_word(key: str, words: list[str], ok, broken: str, plural: str | None = None) -> Requirement:
    """A rule every word must obey: scored by the share of words that do, naming the ones that do not.
    `broken` says in the singular how a word breaks it ("does not end with 'e'"); `plural` defaults to it with
    the verb in the plural."""
    bad = _unique([w for w in words if not ok(w)])
    score = sum(map(ok, words)) / len(words) if words else 0.0
    if not bad:
        return Requirement(key, score)
    return Requirement(key, score, f"{quoted(bad)} {broken if len(bad) == 1 else plural or _plural(broken)}")


def feedback_text(violations: list[str], request: str) -> str:
    """Violations and the request as one user turn: "'lemon' does not end with 'e'; you gave 2 words, not 3.
    Please list 3 different words that end with 'e'."."""
    text = "; ".join(violations)
    return f"{text[0].upper()}{text[1:]}. Please {request[0].lower()}{request[1:]}"


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
    ordering: ClassVar[bool] = False  # an ordering constraint: arranged after the others, worded after them

    def requirements(self, words: list[str]) -> list[Requirement]:
        raise NotImplementedError

    def evaluate(self, response: str) -> list[Requirement]:
        """Every requirement, graded on `response`."""
        return self.requirements(words_in(response))

    def prompt(self, phrasing: Phrasing | None = None) -> str:
        raise NotImplementedError

    def check(self, response: str) -> Check:
        reqs = self.evaluate(response)
        score = sum(r.score for r in reqs) / len(reqs)
        violations = [r.violation for r in reqs if r.violation]
        return Check(score, feedback_text(violations, self.prompt()) if violations else None)

    def failed(self, response: str) -> list[str]:
        """The keys of the requirements `response` misses."""
        return [r.key for r in self.evaluate(response) if r.score < 1.0]

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
    """Exactly `n` different (known) words, each obeying `rules`; subclasses add the rules and the `clause`."""

    n: int
    known_only: bool = field(default=True, kw_only=True)

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"{self.kind}: n must be >= 1, got {self.n}")

    def clause(self, style: str = "rel") -> str:
        """The constraint in a phrasing style, e.g. "that end with 'e'" ("rel"), "ending with 'e'" ("ing")."""
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

    def prompt(self, phrasing: Phrasing | None = None) -> str:
        p = phrasing or CANONICAL
        return render(p, self.n, self.clause(p.style))

    def word_ok(self, word: str) -> bool:
        return not self.known_only or word in WORD_SET

    def count_range(self) -> tuple[int, int]:
        return (self.n, self.n)


@dataclass(frozen=True)
class PerWordRule(WordList):
    """A word list whose every word obeys one rule, `ok(word)`. `clauses` words the rule per phrasing style and
    `broken` says (singular) how a word breaks it; both are formatted with the checker's own fields."""

    clauses: ClassVar[dict[str, str]]
    broken: ClassVar[str]

    def ok(self, word: str) -> bool:
        raise NotImplementedError

    def _own(self) -> dict[str, Any]:
        """The rule's own fields (not n, known_only)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("n", "known_only")}

    def _fields(self) -> dict[str, Any]:
        """The own fields for the texts, word tuples quoted: "'apple' or 'moon'"."""
        return {k: quoted(list(v), "or") if isinstance(v, tuple) else v for k, v in self._own().items()}

    def key(self) -> str:
        """"ends_with:e", "word_length:4", "double_letter"."""
        return ":".join([self.kind, *(",".join(v) if isinstance(v, tuple) else str(v) for v in self._own().values())])

    def clause(self, style: str = "rel") -> str:
        return self.clauses[style].format(**self._fields())

    def rules(self, words):
        return [per_word(self.key(), words, self.ok, self.broken.format(**self._fields()))]

    def word_ok(self, word):
        return super().word_ok(word) and self.ok(word)


@register
@dataclass(frozen=True)
class EndsWith(PerWordRule):
    kind: ClassVar[str] = "ends_with"
    clauses: ClassVar = {"rel": "that end with '{letter}'", "ing": "ending with '{letter}'",
                         "with": "with the last letter '{letter}'"}
    broken: ClassVar = "does not end with '{letter}'"
    letter: str

    def ok(self, word):
        return word.endswith(self.letter)


@register
@dataclass(frozen=True)
class StartsWith(PerWordRule):
    kind: ClassVar[str] = "starts_with"
    clauses: ClassVar = {"rel": "that start with '{letter}'", "ing": "starting with '{letter}'",
                         "with": "with the first letter '{letter}'"}
    broken: ClassVar = "does not start with '{letter}'"
    letter: str

    def ok(self, word):
        return word.startswith(self.letter)


@register
@dataclass(frozen=True)
class ContainsLetter(PerWordRule):
    """A letter pattern: every word contains `letter` (anywhere)."""

    kind: ClassVar[str] = "contains_letter"
    clauses: ClassVar = {"rel": "that contain the letter '{letter}'", "ing": "containing the letter '{letter}'",
                         "with": "with the letter '{letter}' in them"}
    broken: ClassVar = "does not contain '{letter}'"
    letter: str

    def ok(self, word):
        return self.letter in word


@register
@dataclass(frozen=True)
class AvoidLetter(PerWordRule):
    kind: ClassVar[str] = "avoid_letter"
    clauses: ClassVar = {"rel": "that do not contain the letter '{letter}'",
                         "ing": "not containing the letter '{letter}'", "with": "without the letter '{letter}'"}
    broken: ClassVar = "contains '{letter}'"
    letter: str

    def ok(self, word):
        return self.letter not in word


@register
@dataclass(frozen=True)
class WordLength(PerWordRule):
    """Counting letters: every word has exactly `length` letters."""

    kind: ClassVar[str] = "word_length"
    clauses: ClassVar = {"rel": "that have exactly {length} letters", "ing": "having exactly {length} letters",
                         "with": "with exactly {length} letters"}
    broken: ClassVar = "does not have {length} letters"
    length: int

    def ok(self, word):
        return len(word) == self.length


@register
@dataclass(frozen=True)
class DoubleLetter(PerWordRule):
    """A letter pattern: every word has the same letter twice in a row ("apple", "ball")."""

    kind: ClassVar[str] = "double_letter"
    clauses: ClassVar = {"rel": "that have a double letter", "ing": "having a double letter",
                         "with": "with a double letter"}
    broken: ClassVar = "has no double letter"

    def ok(self, word):
        return any(a == b for a, b in itertools.pairwise(word))


@register
@dataclass(frozen=True)
class Avoid(PerWordRule):
    """The answer must not use any word of `words` (scored by the share of the answer's words allowed)."""

    kind: ClassVar[str] = "avoid"
    clauses: ClassVar = {"rel": "other than {words}", "ing": "excluding {words}", "with": "without using {words}"}
    broken: ClassVar = "is not allowed"
    words: tuple[str, ...]

    def ok(self, word):
        return word not in self.words


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

    def clause(self, style: str = "rel") -> str:
        return f"{'with' if style == 'with' else 'including'} {quoted(list(self.words))}"

    def rules(self, words):
        missing = [w for w in self.words if w not in words]
        score = 1.0 - len(missing) / len(self.words)
        verb = "is" if len(missing) == 1 else "are"
        violation = f"{quoted(missing)} {verb} missing" if missing else None
        return [Requirement(f"include:{','.join(self.words)}", score, violation)]

    def arrange(self, words, rng):
        out = list(words)
        for w in self.words:
            if w not in out:
                free = [i for i, x in enumerate(out) if x not in self.words]
                out[rng.choice(free)] = w
        return out


@register
@dataclass(frozen=True)
class Alphabetical(WordList):
    """Ordering: the words in alphabetical order (scored by the share of neighbouring pairs in order)."""

    kind: ClassVar[str] = "alphabetical"
    ordering: ClassVar[bool] = True
    clauses: ClassVar = {"rel": "in alphabetical order", "ing": "sorted alphabetically", "with": "in order from A to Z"}

    def clause(self, style: str = "rel") -> str:
        return self.clauses[style]

    def rules(self, words):
        pairs = list(itertools.pairwise(words))
        out_of_order = [(a, b) for a, b in pairs if a > b]
        score = 1.0 - len(out_of_order) / len(pairs) if pairs else 1.0
        if not out_of_order:
            return [Requirement("alphabetical", score)]
        a, b = out_of_order[0]
        violation = f"the words are not in alphabetical order: '{a}' comes before '{b}'"
        return [Requirement("alphabetical", score, violation)]

    def arrange(self, words, rng):
        return sorted(words)


@register
@dataclass(frozen=True)
class WordCount(Checker):
    """Length limit in words (any words): between `min_words` and `max_words`."""

    kind: ClassVar[str] = "word_count"
    min_words: int
    max_words: int

    def prompt(self, phrasing: Phrasing | None = None) -> str:
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
    """Length limit in characters of the stripped response. Needs the raw text, so it overrides `evaluate`."""

    kind: ClassVar[str] = "max_chars"
    limit: int

    def prompt(self, phrasing: Phrasing | None = None) -> str:
        return f"Answer in at most {self.limit} characters."

    def evaluate(self, response: str) -> list[Requirement]:
        k = len(response.strip())
        if k <= self.limit:
            return [Requirement("max_chars", 1.0)]
        return [Requirement("max_chars", 0.0, f"your answer has {k} characters, more than {self.limit}")]


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

    def clause(self, style: str = "rel") -> str:
        """The parts' clauses: "that start with 's' and end with 'e'" (one "that"), orderings last after a comma."""
        rules = [p.clause(style) for p in self.parts if not p.ordering]
        orders = [p.clause(style) for p in self.parts if p.ordering]
        lead = rules[0].split(" ")[0] + " " if rules else ""
        if lead in ("that ", "with ") and all(r.startswith(lead) for r in rules):
            rules = rules[:1] + [r.removeprefix(lead) for r in rules[1:]]
        joined = ", ".join(rules[:-1]) + " and " + rules[-1] if len(rules) > 1 else "".join(rules)
        return ", ".join([joined, *orders] if joined else orders)

    def prompt(self, phrasing: Phrasing | None = None) -> str:
        if not all(isinstance(p, WordList) for p in self.parts):
            return " ".join(p.prompt() for p in self.parts)
        p = phrasing or CANONICAL
        return render(p, self.parts[0].n, self.clause(p.style))

    def to_dict(self):
        return {"kind": self.kind, "parts": [p.to_dict() for p in self.parts]}

    @classmethod
    def from_dict(cls, d):
        return cls(parts=tuple(checker_from_dict(p) for p in d["parts"]))

    def word_ok(self, word):
        return all(p.word_ok(word) for p in self.parts)

    def arrange(self, words, rng):
        for p in sorted(self.parts, key=lambda p: p.ordering):
            words = p.arrange(words, rng)
        return words

    def count_range(self):
        return next((r for p in self.parts if (r := p.count_range()) is not None), None)
