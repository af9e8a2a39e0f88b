"""Generators: determinism, disjoint splits, correct answers pass, near-misses fail, every mistake applies."""

import random

import pytest

from lit_align.tasks.responses import MISTAKES, bad_response, distinct_words, good_response
from lit_align.tasks.suite import SPLITS, make_tasks, split_pool
from lit_align.tasks.words import WORD_SET, WORDS


def test_word_list():
    assert 250 <= len(WORDS) <= 1000
    assert all(w.isalpha() and w.islower() for w in WORDS)
    assert len(WORDS) == len(set(WORDS))
    assert len({w[0] for w in WORDS}) >= 15 and len({w[-1] for w in WORDS}) >= 15


def test_splits_never_share_a_prompt():
    pools = {s: {t.prompt for t in split_pool(s)} for s in SPLITS}
    for i, a in enumerate(SPLITS):
        assert pools[a], a
        for b in SPLITS[i + 1 :]:
            assert not pools[a] & pools[b], (a, b)


def test_heldout_splits_ask_trained_cells_in_new_phrasings_transfer_a_new_combination():
    cells = {s: {(t.family, t.checker) for t in split_pool(s)} for s in ("train", "val", "test")}
    assert cells["train"] == cells["val"] == cells["test"]  # every cell is trained on
    phrasings = lambda s: {t.prompt.split()[0] for t in split_pool(s)}  # noqa: E731
    assert phrasings("train") == phrasings("test")  # every phrasing too, in other cells
    assert {t.family for t in split_pool("transfer")} == {"starts_and_ends"}
    assert not {t.family for t in split_pool("train")} & {"starts_and_ends"}
    assert all(t.checker.kind == "all_of" for t in split_pool("transfer"))


def test_make_tasks_is_deterministic_and_balanced():
    a = make_tasks(500, 7, "train")
    assert [t.prompt for t in a] == [t.prompt for t in make_tasks(500, 7, "train")]
    assert [t.prompt for t in a] != [t.prompt for t in make_tasks(500, 8, "train")]
    pool = len(split_pool("train"))
    assert len({t.prompt for t in a[:pool]}) == min(pool, 500)  # one full pass before any repeat
    with pytest.raises(ValueError, match="unknown split"):
        make_tasks(3, 0, "heldout-ish")


@pytest.mark.parametrize("split", SPLITS)
def test_good_responses_pass_and_use_known_distinct_words(split):
    rng = random.Random(0)
    for task in split_pool(split)[::5]:
        r = good_response(task.checker, rng)
        assert task.checker.check(r).passed, (task.prompt, r)
        words = r.split()
        assert set(words) <= WORD_SET and distinct_words(r) == len(words)


def test_bad_responses_fail_and_every_mistake_happens():
    rng = random.Random(0)
    seen = set()
    for task in split_pool("train"):
        r, mistake = bad_response(task.checker, rng)
        assert not task.checker.check(r).passed, (task.prompt, r, mistake)
        seen.add(mistake)
    assert seen == set(MISTAKES)
    task = split_pool("train")[0].checker
    for mistake in MISTAKES:
        r, m = bad_response(task, random.Random(1), mistake)
        assert m == mistake and task.check(r).score < 1


def test_generators_are_deterministic():
    task = split_pool("test")[3].checker
    assert good_response(task, random.Random(5)) == good_response(task, random.Random(5))
    assert bad_response(task, random.Random(5)) == bad_response(task, random.Random(5))
