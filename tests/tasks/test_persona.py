"""The Persona-shaped preference set: its shape, the known number of differing words per behaviour, determinism,
label flips, and the refusal of impossible settings."""
from __future__ import annotations

from collections import Counter

import pytest

from lit_align.tasks.persona import NO, STATEMENT_WORDS, YES, behaviours, flip_labels, persona_rows


def words(statement: str) -> list[str]:
    assert statement.startswith("I think ") and statement.endswith(".")
    return statement.removeprefix("I think ").removesuffix(".").split()


def test_rows_have_the_persona_shape():
    rows = persona_rows(6, seed=3, markers=(5, 2))
    assert len(rows) == 12 and len({r["id"] for r in rows}) == 12
    assert Counter((r["group"], r["label"]) for r in rows) == {("b0_m5", 1): 3, ("b0_m5", 0): 3,
                                                               ("b1_m2", 1): 3, ("b1_m2", 0): 3}
    for r in rows:
        assert (r["chosen"], r["rejected"]) == ((YES, NO) if r["label"] else (NO, YES))
        assert len(words(r["prompt"])) == STATEMENT_WORDS
    assert {r["level"] for r in rows if r["group"] == "b1_m2"} == {round(2 / STATEMENT_WORDS, 4)}


@pytest.mark.parametrize("markers", [1, 3, 6])
def test_statements_carry_exactly_the_marker_words(markers):
    """A statement holds `markers` words of its kind's pool and topic words elsewhere: the two kinds differ in exactly
    that many positions' vocabularies, the design distinguishability."""
    (b,) = behaviours((markers,), seed=1)
    assert not set(b.fit) & set(b.unfit) and not (set(b.fit) | set(b.unfit)) & set(b.topic)
    for row in persona_rows(40, seed=1, markers=(markers,)):
        pool = b.fit if row["label"] else b.unfit
        ws = words(row["prompt"])
        assert sum(w in pool for w in ws) == markers
        assert sum(w in b.topic for w in ws) == STATEMENT_WORDS - markers


def test_behaviours_use_disjoint_words_and_seeds_differ():
    first = behaviours(seed=0)
    used = [w for b in first for w in (*b.topic, *b.fit, *b.unfit)]
    assert len(used) == len(set(used))
    assert persona_rows(4, seed=0) == persona_rows(4, seed=0)
    assert persona_rows(4, seed=0) != persona_rows(4, seed=1)
    train, probe = persona_rows(8, seed=0), persona_rows(8, seed=0, split="probe")
    assert {r["prompt"] for r in train} != {r["prompt"] for r in probe}
    assert [b.fit for b in first] == [b.fit for b in behaviours(seed=0)]  # probes share the pools


def test_flip_labels_swaps_answers_and_keeps_the_label():
    rows = persona_rows(4, seed=0, markers=(2,))
    flipped = flip_labels(rows)
    for a, b in zip(rows, flipped, strict=True):
        assert (b["chosen"], b["rejected"]) == (a["rejected"], a["chosen"])
        assert b["label"] == a["label"] and b["prompt"] == a["prompt"] and b["id"] != a["id"]


@pytest.mark.parametrize("kwargs, match", [({"per_behaviour": 3}, "even"), ({"markers": (0,)}, "markers"),
                                           ({"markers": (STATEMENT_WORDS + 1,)}, "markers"),
                                           ({"markers": (1,) * 40}, "need")])
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        persona_rows(**{"per_behaviour": 4, **kwargs})
