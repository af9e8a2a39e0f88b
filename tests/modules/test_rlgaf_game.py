"""RLGAF's discriminator game, model-free parts: the ReplayBuffer (FIFO capacity, uniform sampling with a
random.Random, state_dict round trip, bad capacity) and DiscriminatorGame.check_collapse (one-class, flat or
NaN statistics for `collapse_patience` checks in a row report a collapse and warn once; healthy ones reset)."""
from __future__ import annotations

import math
import random
import warnings
from collections import Counter

import pytest

from lit_align.modules.rlgaf_game import DiscriminatorGame, ReplayBuffer


def items(*names):
    return [((i, i + 1), n) for i, n in enumerate(names)]  # (prompt ids, response text)


def test_fifo_capacity():
    buf = ReplayBuffer(3)
    assert len(buf) == 0 and buf.sample(4, random.Random(0)) == []
    buf.add(items("a", "b"))
    assert len(buf) == 2
    buf.add(items("c", "d", "e"))  # a and b fall out (oldest first)
    assert len(buf) == 3
    assert [r for _, r in buf.items] == ["c", "d", "e"]
    buf.add(items("f"))
    assert [r for _, r in buf.items] == ["d", "e", "f"]


def test_uniform_sampling():
    buf = ReplayBuffer(8)
    buf.add(items("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"))  # keeps c..j
    n = 8000
    drawn = buf.sample(n, random.Random(12345))
    assert len(drawn) == n
    counts = Counter(r for _, r in drawn)
    assert set(counts) == set("cdefghij")  # only what the buffer holds, every item reachable
    # each count ~ Binomial(8000, 1/8): mean 1000, sd sqrt(8000 * 1/8 * 7/8) ~ 29.6; allow 5 sd
    assert all(abs(c - 1000) < 150 for c in counts.values()), counts
    # the same seed draws the same samples, another seed others
    assert buf.sample(50, random.Random(7)) == buf.sample(50, random.Random(7))
    assert buf.sample(50, random.Random(7)) != buf.sample(50, random.Random(8))


def test_state_dict_round_trip():
    buf = ReplayBuffer(4)
    buf.add(items("a", "b", "c", "d", "e"))
    state = buf.state_dict()
    assert state["capacity"] == 4 and [r for _, r in state["items"]] == ["b", "c", "d", "e"]
    buf.add(items("z"))  # the saved state is a copy
    assert [r for _, r in state["items"]] == ["b", "c", "d", "e"]
    other = ReplayBuffer(1)
    other.load_state_dict(state)
    assert len(other) == 4 and list(other.items) == state["items"]
    other.add(items("x", "y"))  # the restored capacity (4) applies
    assert [r for _, r in other.items] == ["d", "e", "x", "y"]
    assert {r for _, r in other.sample(40, random.Random(3))} <= {"d", "e", "x", "y"}


@pytest.mark.parametrize("capacity", [0, -1, -100])
def test_bad_capacity_raises(capacity):
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity)


# -------------------------------------------------------------------------------------------- collapse check
def game(patience=3):
    g = object.__new__(DiscriminatorGame)
    g.collapse_streak, g.collapse_patience, g.collapses = 0, patience, 0
    return g


def stats(acc_e, acc_g, logit_e, logit_g):
    return {"acc_expert": acc_e, "acc_generated": acc_g, "logit_expert": logit_e, "logit_generated": logit_g,
            "accuracy": (acc_e + acc_g) / 2}


HEALTHY = stats(0.7, 0.65, 1.2, -0.8)
ONE_CLASS = stats(1.0, 0.0, 3.1, 2.4)       # everything called "expert"
ONE_CLASS_B = stats(0.02, 0.97, -2.0, -3.5)  # everything called "generated"
FLAT = stats(0.6, 0.55, 0.5, 0.5004)         # |0.5 - 0.5004| < 1e-3
BROKEN = stats(0.6, 0.55, math.nan, -0.3)


@pytest.mark.parametrize("bad", [ONE_CLASS, ONE_CLASS_B, FLAT, BROKEN], ids=["expert", "generated", "flat", "nan"])
def test_collapse_after_patience_checks_warns_once(bad):
    g = game(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning before the third check
        assert g.check_collapse(bad) is False
        assert g.check_collapse(bad) is False
    with pytest.warns(UserWarning, match="collapsed for 3 checks"):
        assert g.check_collapse(bad) is True
    assert g.collapses == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert g.check_collapse(bad) is True  # still collapsed, not warned again
        assert g.check_collapse(bad) is True
    assert [w for w in caught if issubclass(w.category, UserWarning)] == []
    assert g.collapses == 1


def test_healthy_stats_reset_the_streak():
    g = game(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for s in (ONE_CLASS, FLAT, HEALTHY, ONE_CLASS, ONE_CLASS, HEALTHY, FLAT, HEALTHY):
            assert g.check_collapse(s) is False
        assert g.collapse_streak == 0 and g.collapses == 0
        # borderline statistics that are not a collapse: min accuracy 0.05 / max 0.95 (strict bounds),
        # logits 1e-3 + apart
        for s in (stats(0.95, 0.05, 1.0, -1.0), stats(0.99, 0.1, 1.0, 0.0), stats(0.5, 0.5, 0.2, 0.2015)):
            assert g.check_collapse(s) is False
    # a mixed run of bad kinds counts as one streak; a second collapse after recovery warns again
    with pytest.warns(UserWarning):
        assert [g.check_collapse(s) for s in (ONE_CLASS, FLAT, BROKEN)] == [False, False, True]
    assert g.check_collapse(HEALTHY) is False and g.collapse_streak == 0
    with pytest.warns(UserWarning):
        assert [g.check_collapse(s) for s in (FLAT, FLAT, FLAT)] == [False, False, True]
    assert g.collapses == 2


def test_patience_one():
    g = game(1)
    with pytest.warns(UserWarning, match="collapsed for 1 checks"):
        assert g.check_collapse(ONE_CLASS_B) is True
    assert g.check_collapse(HEALTHY) is False
