"""discriminator_loss: the BCE with one-sided label smoothing (expert targets 1 - eps, generated 0) against
hand and independent computations, its gradient, the accuracy statistics by hand, invalid smoothing."""
from __future__ import annotations

import math

import pytest
import torch

from lit_align.losses.discriminator import discriminator_loss


def bce(x: float, y: float) -> float:
    """-(y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))), written out."""
    s = 1.0 / (1.0 + math.exp(-x))
    return -(y * math.log(s) + (1.0 - y) * math.log(1.0 - s))


def test_by_hand_small():
    e = torch.tensor([2.0, -0.5], dtype=torch.float64)
    g = torch.tensor([-1.0, 0.3, 1.5], dtype=torch.float64)
    loss, stats = discriminator_loss(e, g, label_smoothing=0.1)
    # targets: expert 0.9, generated 0; BCE(x, y) = softplus(x) - y x
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expect = (sp(2.0) - 0.9 * 2.0 + sp(-0.5) + 0.9 * 0.5 + sp(-1.0) + sp(0.3) + sp(1.5)) / 5
    assert loss.item() == pytest.approx(expect, rel=1e-12)
    # accuracies: expert 2.0 > 0 right, -0.5 wrong -> 1/2; generated -1.0 < 0 right, 0.3 and 1.5 wrong -> 1/3
    # overall (1 + 1) / 5 = 0.4; mean logits 0.75 and 0.8 / 3
    assert stats["acc_expert"].item() == pytest.approx(0.5)
    assert stats["acc_generated"].item() == pytest.approx(1 / 3)
    assert stats["accuracy"].item() == pytest.approx(0.4)
    assert stats["logit_expert"].item() == pytest.approx(0.75)
    assert stats["logit_generated"].item() == pytest.approx(0.8 / 3)


@pytest.mark.parametrize("eps,seed", [(0.0, 11), (0.1, 12), (0.3, 13), (0.49, 14)])
def test_random_matches_independent_bce_and_gradient(eps, seed):
    g = torch.Generator().manual_seed(seed)
    e = (torch.randn(7, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    gen = (torch.randn(4, generator=g, dtype=torch.float64) * 2).requires_grad_(True)
    loss, stats = discriminator_loss(e, gen, label_smoothing=eps)
    ev, gv = e.detach().tolist(), gen.detach().tolist()
    expect = (sum(bce(x, 1 - eps) for x in ev) + sum(bce(x, 0.0) for x in gv)) / 11
    assert loss.item() == pytest.approx(expect, rel=1e-10)
    loss.backward()
    # d BCE / dx = sigmoid(x) - y, averaged over the 11 logits
    torch.testing.assert_close(e.grad, (torch.sigmoid(e.detach()) - (1 - eps)) / 11)
    torch.testing.assert_close(gen.grad, torch.sigmoid(gen.detach()) / 11)
    acc_e = sum(x > 0 for x in ev) / 7
    acc_g = sum(x < 0 for x in gv) / 4
    assert stats["acc_expert"].item() == pytest.approx(acc_e)
    assert stats["acc_generated"].item() == pytest.approx(acc_g)
    assert stats["accuracy"].item() == pytest.approx((acc_e * 7 + acc_g * 4) / 11)
    assert all(not v.requires_grad for v in stats.values())


def test_smoothing_only_touches_expert_targets():
    # the generated part of the loss is the same with and without eps (only expert targets move)
    g = torch.Generator().manual_seed(21)
    e, gen = torch.randn(3, generator=g), torch.randn(5, generator=g)
    a = discriminator_loss(e, gen, 0.2)[0] * 8 - sum(bce(float(x), 0.8) for x in e)
    b = discriminator_loss(e, gen, 0.0)[0] * 8 - sum(bce(float(x), 1.0) for x in e)
    assert a.item() == pytest.approx(b.item(), rel=1e-5)
    assert a.item() == pytest.approx(sum(bce(float(x), 0.0) for x in gen), rel=1e-5)


@pytest.mark.parametrize("eps", [-0.01, 0.5, 0.7, 1.0])
def test_invalid_smoothing_raises(eps):
    with pytest.raises(ValueError, match="label_smoothing"):
        discriminator_loss(torch.tensor([1.0]), torch.tensor([-1.0]), label_smoothing=eps)
