"""ReST's Improve filter and reward weights, against values worked out by hand."""
from __future__ import annotations

import math

import pytest

from lit_align.errors import UserError
from lit_align.loops.rest import ImproveSettings, accept
from lit_align.loops.thresholds import check_thresholds, passing, quantile, reward_weights

REWARDS = [0.2, 0.9, 0.5, 1.0, 0.0, 0.0, 0.7, 0.3]
VALID = [True, True, True, True, True, True, False, True]
GROUPS = ["a", "a", "a", "a", "b", "b", "b", "c"]  # prompt a: 4 answers; b: 2 valid + 1 invalid; c: 1


def test_quantile_interpolates_linearly_between_order_statistics():
    # a sorted: 0.2, 0.5, 0.9, 1.0; q = 0.5 -> position 1.5 -> 0.5 + 0.5 * (0.9 - 0.5) = 0.7
    assert quantile([0.2, 0.9, 0.5, 1.0], 0.5) == pytest.approx(0.7)
    assert quantile([0.2, 0.9, 0.5, 1.0], 0.75) == pytest.approx(0.925)  # position 2.25: 0.9 + 0.25 * 0.1
    assert quantile([0.2, 0.9, 0.5, 1.0], 0.0) == 0.2 and quantile([0.2, 0.9, 0.5, 1.0], 1.0) == 1.0
    assert quantile([0.3], 0.9) == 0.3


def test_absolute_thresholds_keep_rewards_at_or_above():
    assert passing(REWARDS, VALID, GROUPS, 0.5, "absolute") == [False, True, True, True, False, False, False, False]
    # tau = 0 keeps every valid answer, the invalid 0.7 never
    assert passing(REWARDS, VALID, GROUPS, 0.0, "absolute") == [True, True, True, True, True, True, False, True]


def test_quantile_thresholds_are_per_prompt():
    # q = 0.5: a -> 0.7 (keeps 0.9, 1.0); b -> median of the valid 0.0, 0.0 = 0.0 (keeps both zeros, ties pass);
    # c -> its only answer (kept)
    assert passing(REWARDS, VALID, GROUPS, 0.5, "quantile") == [False, True, False, True, True, True, False, True]
    # the floor removes b's zeros (and c's 0.3 at 0.4)
    assert passing(REWARDS, VALID, GROUPS, 0.5, "quantile", min_reward=0.4) == \
        [False, True, False, True, False, False, False, False]
    # q = 1: the best of each prompt only
    assert passing(REWARDS, VALID, GROUPS, 1.0, "quantile") == [False, False, False, True, True, True, False, True]


def test_rows_outside_the_reference_do_not_set_levels():
    # c's 0.3 (an SFT row, say) sets no level; c has no reference row, so it meets the q-quantile of every valid
    # reference reward: sorted 0, 0, 0.2, 0.5, 0.9, 1.0 -> position 2.5 -> 0.2 + 0.5 * 0.3 = 0.35 > 0.3
    reference = [True] * 7 + [False]
    assert passing(REWARDS, VALID, GROUPS, 0.5, "quantile", reference=reference)[-1] is False
    assert passing(REWARDS, VALID, GROUPS, 0.4, "quantile", reference=reference)[-1] is True  # position 2.0: 0.2
    # a's levels ignore a non-reference member: with 1.0 out of the reference, a's median is 0.5 and 1.0 still passes
    a_only = [True, True, True, False, True, True, True, True]
    assert passing(REWARDS, VALID, GROUPS, 0.5, "quantile", reference=a_only)[:4] == [False, True, True, True]


def test_reward_weights_are_exponential_and_average_one():
    weights = reward_weights([0.0, 1.0, 2.0], temperature=1.0)
    expected = [1.0, math.e, math.e ** 2]
    mean = sum(expected) / 3
    assert weights == pytest.approx([e / mean for e in expected])
    assert sum(reward_weights([5.0, -3.0, 100.0], temperature=0.5)) == pytest.approx(3.0)  # no overflow at 100 / 0.5
    assert reward_weights([0.4, 0.4], temperature=2.0) == pytest.approx([1.0, 1.0])


def test_thresholds_must_rise_and_quantiles_lie_in_0_1():
    check_thresholds([0.0, 0.7, 0.7, 0.99], "absolute")
    with pytest.raises(UserError, match=r"rise.*\[1\] = 0.9 > \[2\] = 0.8"):
        check_thresholds([0.7, 0.9, 0.8], "absolute")
    with pytest.raises(UserError, match="quantile level"):
        check_thresholds([0.5, 1.5], "quantile")
    with pytest.raises(UserError, match="empty"):
        check_thresholds([], "absolute")


def test_early_stopping_keeps_a_step_no_worse_than_its_input():
    settings = ImproveSettings(early_stop_tolerance=0.01)
    assert accept(0.80, 0.80, settings) and accept(0.795, 0.80, settings) and not accept(0.78, 0.80, settings)
    assert accept(0.1, 0.8, ImproveSettings(early_stop=False))
