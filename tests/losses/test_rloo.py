"""leave_one_out_advantages: a hand-computed (P=2, k=3) case, the k/(k-1) (R - mean) identity on random rewards,
invalid samples (valid=False, NaN, inf) left out of the baseline, groups with fewer than two valid samples
(zero advantage, no baseline), and shape errors."""
from __future__ import annotations

import math

import pytest
import torch

from lit_align.losses.rloo import leave_one_out_advantages

NAN, INF = math.nan, math.inf


def test_by_hand_two_prompts_three_samples():
    rewards = torch.tensor([[1.0, 2.0, 6.0], [0.5, -1.5, 4.0]])
    # row 0: baselines (2+6)/2 = 4, (1+6)/2 = 3.5, (1+2)/2 = 1.5 -> A = [-3, -1.5, 4.5]
    # row 1: baselines (-1.5+4)/2 = 1.25, (0.5+4)/2 = 2.25, (0.5-1.5)/2 = -0.5 -> A = [-0.75, -3.75, 4.5]
    adv, has = leave_one_out_advantages(rewards)
    torch.testing.assert_close(adv, torch.tensor([[-3.0, -1.5, 4.5], [-0.75, -3.75, 4.5]]))
    assert has.dtype == torch.bool and has.all()


def test_identity_on_random_rewards():
    g = torch.Generator().manual_seed(8675309)
    for P, k in ((7, 5), (3, 2), (1, 9)):
        r = torch.randn(P, k, generator=g, dtype=torch.float64) * 2 + 1
        adv, has = leave_one_out_advantages(r)
        torch.testing.assert_close(adv, k / (k - 1) * (r - r.mean(1, keepdim=True)))
        torch.testing.assert_close(adv.sum(1), torch.zeros(P, dtype=torch.float64))
        assert has.all()


@pytest.mark.parametrize("bad", [100.0, NAN, INF, -INF])
def test_invalid_samples_are_left_out_of_the_baseline(bad):
    rewards = torch.tensor([[1.0, 2.0, bad, 6.0], [0.5, -1.5, 4.0, 2.0]])
    valid = torch.tensor([[True, True, False, True], [True, True, True, True]])
    # row 0 without its third sample is the hand case above: [-3, -1.5, 4.5]; the dropped one gets 0
    # row 1 (k = 4, mean 1.25): 4/3 * (R - 1.25) = [-1, -11/3, 11/3, 1]
    expect = torch.tensor([[-3.0, -1.5, 0.0, 4.5], [-1.0, -11 / 3, 11 / 3, 1.0]])
    adv, has = leave_one_out_advantages(rewards, valid)
    torch.testing.assert_close(adv, expect)
    assert torch.equal(has, valid)
    if not math.isfinite(bad):  # non-finite rewards are invalid without a mask too
        adv, has = leave_one_out_advantages(rewards)
        torch.testing.assert_close(adv, expect)
        assert torch.equal(has, valid)
    assert torch.isfinite(adv).all()


def test_valid_mask_and_nan_combine():
    g = torch.Generator().manual_seed(3)
    r = torch.randn(4, 6, generator=g, dtype=torch.float64)
    valid = torch.rand(4, 6, generator=g) > 0.25
    r[1, 0] = NAN
    valid[1, 0] = True  # marked valid but NaN -> still excluded
    adv, has = leave_one_out_advantages(r, valid)
    usable = valid & torch.isfinite(r)
    assert torch.equal(has, usable & (usable.sum(1, keepdim=True) >= 2))
    for p in range(4):
        idx = usable[p].nonzero().flatten().tolist()
        for i in range(6):
            if i in idx and len(idx) >= 2:
                others = [float(r[p, j]) for j in idx if j != i]
                assert adv[p, i].item() == pytest.approx(float(r[p, i]) - sum(others) / len(others), abs=1e-12)
            else:
                assert adv[p, i].item() == 0.0


def test_groups_with_fewer_than_two_valid_samples_get_nothing():
    rewards = torch.tensor([[3.0, NAN, NAN], [5.0, 7.0, -2.0], [NAN, NAN, NAN], [1.0, 2.0, 4.0]])
    valid = torch.tensor([[True, True, True], [False, True, False], [True, True, True], [True, True, True]])
    adv, has = leave_one_out_advantages(rewards, valid)
    assert torch.equal(has[:3], torch.zeros(3, 3, dtype=torch.bool))
    assert torch.equal(adv[:3], torch.zeros(3, 3))
    # the last row is unaffected by the others: 3/2 * ([1, 2, 4] - 7/3) = [-2, -0.5, 2.5]
    torch.testing.assert_close(adv[3], torch.tensor([-2.0, -0.5, 2.5]))
    assert has[3].all()


@pytest.mark.parametrize("shape", [(6,), (4, 1), (2, 3, 2), (0,)])
def test_shape_errors(shape):
    with pytest.raises(ValueError, match="RLOO"):
        leave_one_out_advantages(torch.ones(shape))


def test_valid_mask_of_the_wrong_shape_or_dtype_is_refused():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with pytest.raises(ValueError, match="valid"):
        leave_one_out_advantages(rewards, torch.tensor([True, False, True]))  # would broadcast over prompts
    with pytest.raises(ValueError, match="valid"):
        leave_one_out_advantages(rewards, torch.ones(2, 3))
