"""masked_sum / masked_mean / masked_whiten: hand-computed values, per-dimension reductions, empty masks
(0, never NaN), whitening statistics (mean 0, unbiased std 1 on the mask, exactly 0 off it), shift_mean=False."""
from __future__ import annotations

import math

import pytest
import torch

from lit_align.losses.masked import masked_mean, masked_sum, masked_whiten

X = torch.tensor([[1.5, -2.0, 4.0], [3.0, 0.5, -1.0]])
M = torch.tensor([[1, 0, 1], [0, 1, 1]])


@pytest.mark.parametrize("mask", [M, M.bool(), M.float()], ids=["long", "bool", "float"])
def test_masked_sum_and_mean_by_hand(mask):
    # kept entries: 1.5, 4.0 (row 0); 0.5, -1.0 (row 1)
    assert masked_sum(X, mask).item() == pytest.approx(5.0)                              # 1.5 + 4 + 0.5 - 1
    torch.testing.assert_close(masked_sum(X, mask, dim=1), torch.tensor([5.5, -0.5]))    # 1.5+4 ; 0.5-1
    torch.testing.assert_close(masked_sum(X, mask, dim=0), torch.tensor([1.5, 0.5, 3.0]))  # col 2: 4 - 1
    assert masked_mean(X, mask).item() == pytest.approx(1.25)                            # 5 / 4
    torch.testing.assert_close(masked_mean(X, mask, dim=1), torch.tensor([2.75, -0.25]))  # 5.5/2 ; -0.5/2
    torch.testing.assert_close(masked_mean(X, mask, dim=0), torch.tensor([1.5, 0.5, 1.5]))  # 1.5/1, 0.5/1, 3/2


def test_masked_mean_random_matches_direct_selection():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(5, 7, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 7, generator=g) > 0.4
    mask[2] = False  # an empty row
    x_garbage = torch.where(mask, x, torch.full_like(x, 1e6))
    assert masked_mean(x_garbage, mask).item() == pytest.approx(x[mask].mean().item(), rel=1e-12)
    rows = masked_mean(x_garbage, mask, dim=1)
    for b in range(5):
        expect = x[b][mask[b]].mean().item() if mask[b].any() else 0.0
        assert rows[b].item() == pytest.approx(expect, rel=1e-12, abs=1e-15)


def test_empty_mask_gives_zero_not_nan():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 5, generator=g) + 2.0
    empty = torch.zeros(3, 5)
    assert masked_mean(x, empty).item() == 0.0
    assert torch.equal(masked_mean(x, empty, dim=1), torch.zeros(3))
    assert masked_sum(x, empty).item() == 0.0
    out = masked_whiten(x, empty)
    assert torch.equal(out, torch.zeros(3, 5))
    assert torch.equal(masked_whiten(x, empty, shift_mean=False), torch.zeros(3, 5))


def test_whiten_by_hand():
    x = torch.tensor([[1.0, 99.0, 2.0], [4.0, -7.0, -7.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 0, 1], [1, 0, 0]])
    # entries 1, 2, 4: mean 7/3, deviations -4/3, -1/3, 5/3, sum of squares 42/9 = 14/3,
    # unbiased variance 14/3 / 2 = 7/3, std sqrt(7/3)
    std = math.sqrt(7 / 3)
    expect = torch.tensor([[-4 / 3 / std, 0.0, -1 / 3 / std], [5 / 3 / std, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(masked_whiten(x, mask, eps=0.0), expect)
    # shift_mean=False adds the mean 7/3 back on the mask
    torch.testing.assert_close(masked_whiten(x, mask, shift_mean=False, eps=0.0),
                               (expect + 7 / 3) * mask)


def test_whiten_random_statistics_and_zero_off_mask():
    g = torch.Generator().manual_seed(99)
    x = torch.randn(4, 9, generator=g, dtype=torch.float64) * 3.0 + 5.0
    mask = torch.rand(4, 9, generator=g) > 0.3
    x = torch.where(mask, x, torch.full_like(x, -1e6))  # garbage off the mask
    out = masked_whiten(x, mask)
    vals = out[mask]
    assert vals.mean().item() == pytest.approx(0.0, abs=1e-12)
    assert vals.std(unbiased=True).item() == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    # independent whitening of the selected entries
    sel = x[mask]
    torch.testing.assert_close(vals, (sel - sel.mean()) / sel.std(unbiased=True), rtol=1e-6, atol=1e-9)

    kept = masked_whiten(x, mask, shift_mean=False)
    assert kept[mask].mean().item() == pytest.approx(sel.mean().item(), rel=1e-10)
    assert kept[mask].std(unbiased=True).item() == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(kept[~mask], torch.zeros_like(kept[~mask]))


def test_whiten_single_entry_is_only_centred():
    x = torch.tensor([[3.5, 8.0, -2.0]])
    mask = torch.tensor([[0, 1, 0]])
    # one entry: mean 8, centred to 0 (no division by a 0/0 std); shift_mean=False gives 8 back
    assert torch.equal(masked_whiten(x, mask), torch.zeros(1, 3))
    assert torch.equal(masked_whiten(x, mask, shift_mean=False), torch.tensor([[0.0, 8.0, 0.0]]))


def test_non_finite_values_off_the_mask_do_not_leak():
    x = torch.tensor([[1.0, float("inf"), 3.0], [float("nan"), 2.0, -float("inf")]])
    mask = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)  # (1 + 3 + 2) / 3
    assert masked_sum(x, mask, dim=1).tolist() == [4.0, 2.0]
    assert torch.isfinite(masked_whiten(x, mask)).all()
