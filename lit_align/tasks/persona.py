"""A generated preference set in the shape of Anthropic's Persona data, with graded, known distinguishability.

Im & Li (arXiv 2403.18742) study DPO's learning dynamics on Persona: statements about a behaviour
("I think rules should always be followed."), answered " Yes" when the statement fits the behaviour and " No"
when it does not. Their finding: behaviours whose fitting and non-fitting statements are more *distinguishable*
are learned first. The real data cannot be downloaded here, so this file generates the same shape with a knob:

    I think <w_1> <w_2> ... <w_L>.    ->  " Yes" preferred (label 1) or " No" preferred (label 0)

Each behaviour owns disjoint word pools from the suite's word list (tasks/words.py, one token each): `topic`
words shared by both kinds of its statements, and `fit` / `unfit` marker words. A statement of behaviour b has
`markers[b]` of its L positions (random ones) filled with marker words of its kind and the rest with topic words,
so the two kinds differ in markers[b] / L of their word tokens: markers = L is strongly lexical, markers = 1 is
nearly identical (one word in L tells them apart). That fraction is the behaviour's design distinguishability,
written into each row ("level"); the callback (callbacks/dynamics.py) measures the model's own, d_b, on the final
hidden states.

Rows are TRL preference rows plus passthrough columns: {"id", "prompt", "chosen", "rejected", "group" (the
behaviour), "label" (1: the statement fits, " Yes" preferred), "level"}. `flip_labels` swaps chosen and rejected
(the misalignment experiment), keeping "label" as it was, so that a probe set still scores the original alignment.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from lit_align.tasks.words import WORDS

YES, NO = " Yes", " No"
STATEMENT_WORDS = 6
"""L, the word positions of a statement."""
DEFAULT_MARKERS = (6, 4, 3, 2, 1)
"""One behaviour per entry: how many of the L positions differ between fitting and non-fitting statements."""
TOPIC_WORDS, MARKER_WORDS = 10, 4
"""Pool sizes per behaviour: topic words (shared by both kinds) and marker words per kind."""


@dataclass(frozen=True)
class Behaviour:
    """One behaviour: its name, pools and how many marker words its statements carry."""

    name: str
    markers: int
    topic: tuple[str, ...]
    fit: tuple[str, ...]
    unfit: tuple[str, ...]

    @property
    def level(self) -> float:
        """The design distinguishability: the fraction of word positions that differ between the two kinds."""
        return self.markers / STATEMENT_WORDS

    def statement(self, fits: bool, rng: random.Random) -> str:
        words = [rng.choice(self.topic) for _ in range(STATEMENT_WORDS)]
        pool = self.fit if fits else self.unfit
        for position in rng.sample(range(STATEMENT_WORDS), self.markers):
            words[position] = rng.choice(pool)
        return "I think " + " ".join(words) + "."


def behaviours(markers: tuple[int, ...] = DEFAULT_MARKERS, seed: int = 0) -> list[Behaviour]:
    """Behaviours with the given marker counts (1..L each) and disjoint word pools drawn with `seed`."""
    per = TOPIC_WORDS + 2 * MARKER_WORDS
    if not markers or any(not 1 <= m <= STATEMENT_WORDS for m in markers):
        raise ValueError(f"persona markers {markers}: expected 1 to {STATEMENT_WORDS} per behaviour")
    if per * len(markers) > len(WORDS):
        raise ValueError(f"persona: {len(markers)} behaviours need {per * len(markers)} words; the list has "
                         f"{len(WORDS)}")
    words = list(WORDS)
    random.Random(f"lit_align.tasks.persona:{seed}").shuffle(words)
    out = []
    for b, m in enumerate(markers):
        pool = words[b * per:(b + 1) * per]
        out.append(Behaviour(f"b{b}_m{m}", m, tuple(pool[:TOPIC_WORDS]),
                             tuple(pool[TOPIC_WORDS:TOPIC_WORDS + MARKER_WORDS]),
                             tuple(pool[TOPIC_WORDS + MARKER_WORDS:])))
    return out


def persona_rows(per_behaviour: int, seed: int = 0, split: str = "train",
                 markers: tuple[int, ...] = DEFAULT_MARKERS) -> list[dict]:
    """`per_behaviour` rows for each behaviour (half fitting, half not, shuffled): the pools depend on `seed` only,
    the statements on `seed` and `split`, so a probe split shares the words but not (mostly) the statements."""
    if per_behaviour < 2 or per_behaviour % 2:
        raise ValueError(f"persona per_behaviour={per_behaviour}: expected an even number >= 2 (half of each kind)")
    rng = random.Random(f"lit_align.tasks.persona:{seed}:{split}")
    rows = []
    for behaviour in behaviours(markers, seed):
        for i in range(per_behaviour):
            fits = i % 2 == 0
            chosen, rejected = (YES, NO) if fits else (NO, YES)
            rows.append({"id": f"{split}-{behaviour.name}-{i}", "prompt": behaviour.statement(fits, rng),
                         "chosen": chosen, "rejected": rejected, "group": behaviour.name, "label": int(fits),
                         "level": round(behaviour.level, 4)})
    rng.shuffle(rows)
    return rows


def flip_labels(rows: list[dict]) -> list[dict]:
    """The same rows with chosen and rejected swapped ("label" keeps the original alignment; ids get a suffix)."""
    return [{**row, "id": f"{row['id']}-flipped", "chosen": row["rejected"], "rejected": row["chosen"]}
            for row in rows]
