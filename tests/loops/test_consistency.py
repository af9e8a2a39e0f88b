"""CREAM's self-labelling (lit_align.loops.consistency): Kendall tau-b against scipy on hand-made rankings, ties and
the undefined case, the (argmax, argmin) pair, eps per variant keyed by prompt id, self-labelling accuracy."""
from __future__ import annotations

import pytest
from scipy.stats import kendalltau

from lit_align.loops.consistency import kendall_tau, labelling_accuracy, rank_prompt, smoothing


def test_tau_and_consistency_of_hand_rankings():
    same = rank_prompt("a", [0.1, 0.5, 0.3, 0.9], [1.0, 3.0, 2.0, 4.0])  # same order: tau 1, C 1
    assert same.tau == pytest.approx(1.0) and same.consistency == pytest.approx(1.0) and same.pair == (3, 0)
    reverse = rank_prompt("b", [0.1, 0.5, 0.3, 0.9], [4.0, 2.0, 3.0, 1.0])  # opposite: tau -1, C 0
    assert reverse.tau == pytest.approx(-1.0) and reverse.consistency == pytest.approx(0.0)
    one_swap = rank_prompt("c", [1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0])  # 5 concordant, 1 discordant of 6
    assert one_swap.tau == pytest.approx(4 / 6) and one_swap.consistency == pytest.approx(5 / 6)


def test_ties_use_tau_b_and_a_constant_ranking_is_undefined():
    current, previous = [1.0, 2.0, 2.0, 3.0, 0.5], [0.2, 0.4, 0.1, 0.9, 0.3]
    tau, undefined = kendall_tau(current, previous)
    assert tau == pytest.approx(kendalltau(current, previous, variant="b").statistic) and not undefined
    n0, n1 = 10, 10 - 1  # tau-b by hand: (concordant - discordant) / sqrt((n0 - ties_x) (n0 - ties_y))
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    sign = [(current[i] - current[j]) * (previous[i] - previous[j]) for i, j in pairs]
    assert tau == pytest.approx((sum(s > 0 for s in sign) - sum(s < 0 for s in sign)) / (n0 * n1) ** 0.5)
    flat = rank_prompt("d", [1.0, 2.0, 3.0], [5.0, 5.0, 5.0])  # previous reward constant: NaN -> tau 0, C 0.5
    assert flat.undefined_tau and flat.tau == 0.0 and flat.consistency == 0.5 and flat.pair == (2, 0)
    tied = rank_prompt("e", [4.0, 4.0, 4.0], [1.0, 2.0, 3.0])  # current reward tied everywhere: no pair
    assert tied.pair is None and tied.undefined_tau
    with pytest.raises(ValueError, match="same >= 2 responses"):
        kendall_tau([1.0], [1.0])


def test_smoothing_per_variant_is_keyed_by_prompt_id():
    rankings = [rank_prompt("p0", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]),  # C 1
                rank_prompt("p1", [2.0, 2.0, 2.0], [1.0, 3.0, 2.0]),  # no pair, but its C counts in the mean
                rank_prompt("p2", [1.0, 2.0, 3.0], [3.0, 2.0, 1.0])]  # C 0
    mean_c = sum(r.consistency for r in rankings) / 3
    assert smoothing(rankings, "dyn") == {"p0": pytest.approx(0.0), "p2": pytest.approx(1.0)}  # p1 skipped, no shift
    assert smoothing(rankings, "avg") == {"p0": pytest.approx(1 - mean_c), "p2": pytest.approx(1 - mean_c)}
    assert smoothing(rankings, "srlm") == {"p0": 0.0, "p2": 0.0}
    with pytest.raises(ValueError, match="variant"):
        smoothing(rankings, "cream")


def test_labelling_accuracy_counts_ties_apart():
    out = labelling_accuracy([(1.0, 0.5), (0.5, 1.0), (0.75, 0.75), (1.0, 0.0), (None, 1.0)])
    assert out == {"label_correct": 0.4, "label_wrong": 0.2, "label_tie": 0.4,
                   "label_accuracy_untied": pytest.approx(2 / 3)}
