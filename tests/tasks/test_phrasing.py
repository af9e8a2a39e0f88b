"""The instruction grammar: hundreds of templates, held-out parts never in a seen phrasing, sampling, rendering."""

import random

from lit_align.tasks.checkers import EndsWith
from lit_align.tasks.phrasing import CANONICAL, HELD_OUT, SEEN, SLOTS, Phrasing, phrasings, render, sample


def test_thousands_of_distinct_templates_seen_and_unseen_disjoint():
    seen = {p.template() for p in phrasings(True)}
    unseen = {p.template() for p in phrasings(False)}
    assert len(seen) == len(phrasings(True)) >= 1000  # every combination of parts reads differently
    assert len(unseen) == len(phrasings(False)) >= 1000
    assert not seen & unseen
    assert all("{n}" in t and "{constraint:" in t for t in seen | unseen)


def test_held_out_parts_are_new_and_cover_several_slots():
    assert sum(bool(HELD_OUT[s]) for s in SLOTS) >= 3
    for slot in SLOTS:
        assert not set(HELD_OUT[slot]) & set(SEEN[slot]), slot
    assert CANONICAL.seen and not Phrasing(verb=HELD_OUT["verb"][0]).seen


def test_sample_keeps_seen_and_unseen_apart_and_reaches_every_part():
    rng = random.Random(0)
    seen = [sample(rng, True) for _ in range(3000)]
    unseen = [sample(rng, False) for _ in range(3000)]
    assert all(p.seen for p in seen) and not any(p.seen for p in unseen)
    for slot in SLOTS:
        assert {getattr(p, slot) for p in seen} == set(SEEN[slot])
        assert set(HELD_OUT[slot]) <= {getattr(p, slot) for p in unseen}
    assert sample(random.Random(4), False) == sample(random.Random(4), False)


def test_render():
    p = Phrasing("{}.", "come up with", "{n} unique words", "with", ", nothing else")
    text = "Come up with 3 unique words with the last letter 'e', nothing else."
    assert render(p, 3, EndsWith(3, "e").clause(p.style)) == text
    assert Phrasing("Can you {}?", style="ing").template() == "Can you list {n} different words {constraint:ing}?"
    assert CANONICAL.template() == "List {n} different words {constraint:rel}."
