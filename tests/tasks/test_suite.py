"""Families and splits: held-out families composed of trained skills, disjoint splits, balance, determinism,
and the generators on every cell: correct answers pass, each near-miss makes exactly its named mistake."""

import random
from collections import Counter

import pytest

from lit_align.tasks.checkers import AllOf, category
from lit_align.tasks.phrasing import phrasings
from lit_align.tasks.responses import BREAKS, MISTAKES, answers, bad_response, distinct_words, good_response, good_words
from lit_align.tasks.suite import SPARE, SPLITS, families, make_tasks, split_families, split_of
from lit_align.tasks.words import WORD_SET, WORDS


def kinds(checker):
    return frozenset(p.kind for p in checker.parts) if isinstance(checker, AllOf) else frozenset({checker.kind})


def test_word_list():
    assert 250 <= len(WORDS) <= 1000
    assert all(w.isalpha() and w.islower() for w in WORDS)
    assert len(WORDS) == len(set(WORDS))
    assert len({w[0] for w in WORDS}) >= 15 and len({w[-1] for w in WORDS}) >= 15


def test_held_out_families_combine_trained_skills_in_new_ways():
    trained, held = split_families("train"), split_families("transfer")
    assert len(held) >= 2 and len(trained) >= 8
    assert {f.name for f in held} == {"starts_ends", "sorted_contains"}
    trained_combos = {kinds(c) for f in trained for c in f.cells}
    trained_kinds = set().union(*trained_combos)
    conjunction_kinds = Counter(k for combo in trained_combos if len(combo) > 1 for k in combo)
    for family in held:
        combo = kinds(family.cells[0])
        assert {kinds(c) for c in family.cells} == {combo}, family.name
        assert combo not in trained_combos, family.name  # the combination is new ...
        assert combo <= trained_kinds, family.name  # ... each skill is trained alone ...
        assert all(conjunction_kinds[k] >= 1 for k in combo), family.name  # ... and in a trained conjunction
    assert conjunction_kinds["alphabetical"] >= 2  # ordering trained on two word sets before a third


def test_every_cell_leaves_room_and_families_are_distinct():
    for family in families().values():
        assert family.cells, family.name
        assert len(set(family.cells)) == len(family.cells)
        for cell in family.cells:
            assert len(answers(cell)) >= cell.count_range()[0] + SPARE, (family.name, cell)
    cells = [c for f in families().values() for c in f.cells]
    assert len(cells) == len(set(cells)) >= 300  # no cell in two families


def test_splits_are_disjoint_balanced_and_labelled():
    tasks = {s: make_tasks(660 if s == "train" else 220, 0, s) for s in SPLITS}
    texts = {s: {t.prompt for t in ts} for s, ts in tasks.items()}
    for i, a in enumerate(SPLITS):
        assert len(texts[a]) == len(tasks[a]), a  # distinct prompts
        for b in SPLITS[i + 1:]:
            assert not texts[a] & texts[b], (a, b)
    trained = {f.name for f in split_families("train")}
    for split, ts in tasks.items():
        assert {t.split for t in ts} == {split}
        names = trained if split != "transfer" else {f.name for f in split_families("transfer")}
        streams = Counter((t.family, t.phrasing) for t in ts)
        kinds_ = {"seen"} if split == "train" else {"seen", "unseen"}
        assert set(streams) == {(f, k) for f in names for k in kinds_}, split
        assert max(streams.values()) - min(streams.values()) <= 1, split  # balanced
        first = Counter((t.family, t.phrasing) for t in ts[: len(streams)])
        assert set(first) == set(streams), split  # and so is every prefix (a round of all streams)
        assert all(split_of(families()[t.family], t.phrasing == "seen", t.prompt) == split for t in ts)


def test_unseen_prompts_are_in_no_seen_phrasing():
    seen = phrasings(True)
    for task in [t for t in make_tasks(40, 1, "test") if t.phrasing == "unseen"][:8]:
        assert task.prompt not in {task.checker.prompt(p) for p in seen}


def test_make_tasks_is_deterministic_per_seed():
    a = [t.prompt for t in make_tasks(300, 7, "train")]
    assert a == [t.prompt for t in make_tasks(300, 7, "train")]
    assert a != [t.prompt for t in make_tasks(300, 8, "train")]
    assert [t.prompt for t in make_tasks(50, 7, "transfer")] == [t.prompt for t in make_tasks(50, 7, "transfer")]
    with pytest.raises(ValueError, match="unknown split"):
        make_tasks(3, 0, "heldout-ish")


def test_good_responses_pass_on_every_cell_and_use_known_distinct_common_words():
    rng = random.Random(0)
    for family in families().values():
        for cell in family.cells:
            r = good_response(cell, rng)
            assert cell.check(r).passed, (family.name, cell, r)
            words = r.split()
            assert set(words) <= WORD_SET and distinct_words(r) == len(words)
    firsts = Counter(good_words(families()["ends_with"].cells[4], rng)[0] for _ in range(200))
    assert firsts.most_common(1)[0][1] >= 100  # Zipf: the most common answer word leads most answers


def minimal_edit(mistake: str, base: list[str], bad: list[str]) -> bool:
    """The near-miss is `base` with one edit of the kind `mistake` names."""
    if mistake == "too_few":
        return bad == base[:-1]
    if mistake == "too_many":
        return bad[:-1] == base and bad[-1] not in base
    if mistake == "same_word":
        return bad == [base[0]] * len(base)
    differ = [i for i, (a, b) in enumerate(zip(base, bad, strict=True)) if a != b]
    if mistake == "unsorted":
        return len(differ) == 2 and differ[1] == differ[0] + 1
    return len(differ) == 1


def test_every_near_miss_fails_exactly_its_named_mistake_on_every_cell():
    rng = random.Random(0)
    made = Counter()
    for family in families().values():
        for cell in family.cells:
            base = good_words(cell, rng)
            for mistake in MISTAKES:
                try:
                    bad, name = bad_response(cell, rng, mistake, base=base)
                except ValueError:
                    continue  # does not apply here (e.g. unsorted on an unordered task)
                failed = cell.failed(bad)
                assert name == mistake and len(failed) == 1, (cell, bad, failed)
                assert category(failed[0]) == BREAKS[mistake], (cell, bad, failed)
                assert minimal_edit(mistake, base, bad.split()), (mistake, base, bad)
                made[family.name, mistake] += 1
    for family in families():
        for mistake in set(MISTAKES) - {"unsorted"}:
            assert made[family, mistake] > 0, (family, mistake)
    assert {f for f, m in made if m == "unsorted"} == {"sorted_ends", "sorted_length", "sorted_contains"}


def test_bad_response_draws_mostly_loops_and_rejects_unknown_mistakes():
    rng = random.Random(0)
    task = families()["ends_with"].cells[0]
    drawn = Counter(bad_response(task, rng)[1] for _ in range(300))
    assert drawn["same_word"] > 150 and len(drawn) >= 4
    assert bad_response(task, random.Random(5)) == bad_response(task, random.Random(5))
    with pytest.raises(ValueError, match="unknown mistakes"):
        bad_response(task, rng, weights={"typo": 1.0})
