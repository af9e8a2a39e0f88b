"""PPO pieces: GAE against hand-computed 3-token cases and a direct per-row sum over the masked span (prompt
and padding excluded, garbage outside the mask ignored); the clipped policy loss, its statistics and its
gradient by hand, masked tokens giving exactly zero gradient; the clipped value loss by hand."""
from __future__ import annotations

import math

import pytest
import torch

from lit_align.losses.ppo import gae, policy_loss, value_loss


def direct_gae(rewards, values, mask, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l}, delta_u = r_u + gamma V_{u+1} - V_u, V = 0 past the span end."""
    B, T = rewards.shape
    adv = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        idx = [t for t in range(T) if mask[b, t]]
        if not idx:
            continue
        s, e = idx[0], idx[-1]
        assert idx == list(range(s, e + 1))
        v = [float(values[b, u]) for u in range(s, e + 1)] + [0.0]  # V_s .. V_e, then V_{e+1} = 0
        delta = {u: float(rewards[b, u]) + gamma * v[u + 1 - s] - v[u - s] for u in range(s, e + 1)}
        for t in range(s, e + 1):
            adv[b, t] = sum((gamma * lam) ** (u - t) * delta[u] for u in range(t, e + 1))
    return adv


def test_gae_three_tokens_by_hand_with_prompt_and_padding():
    # row: 2 prompt tokens, 3 generated, 1 padding; garbage outside the mask
    mask = torch.tensor([[0, 0, 1, 1, 1, 0]])
    rewards = torch.tensor([[5.0, -7.0, 0.1, -0.2, 1.0, 3.0]], dtype=torch.float64)
    values = torch.tensor([[1e6, -1e6, 0.5, 0.4, 0.8, 1e6]], dtype=torch.float64)
    # gamma = lam = 1: delta = [0.1 + 0.4 - 0.5, -0.2 + 0.8 - 0.4, 1 - 0.8] = [0, 0.2, 0.2]
    #   A = [0.4, 0.4, 0.2] (= reward-to-go - V), returns = [0.9, 0.8, 1.0]
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0, 0, 0.4, 0.4, 0.2, 0]], dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor([[0, 0, 0.9, 0.8, 1.0, 0]], dtype=torch.float64))
    # gamma = 0.9, lam = 0.5 (gamma lam = 0.45):
    #   delta = [0.1 + 0.9*0.4 - 0.5, -0.2 + 0.9*0.8 - 0.4, 1 - 0.8] = [-0.04, 0.12, 0.2]
    #   A_2 = 0.2, A_1 = 0.12 + 0.45*0.2 = 0.21, A_0 = -0.04 + 0.45*0.21 = 0.0545
    #   returns = A + V = [0.5545, 0.61, 1.0]
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.5)
    torch.testing.assert_close(adv, torch.tensor([[0, 0, 0.0545, 0.21, 0.2, 0]], dtype=torch.float64))
    torch.testing.assert_close(ret, torch.tensor([[0, 0, 0.5545, 0.61, 1.0, 0]], dtype=torch.float64))


def _random_batch(seed):
    g = torch.Generator().manual_seed(seed)
    B, T = 5, 11
    spans = [(3, 9), (1, 11), (6, 7), (0, 4), (2, 10)]  # [start, end) of the generated tokens per row
    mask = torch.zeros(B, T)
    for b, (s, e) in enumerate(spans):
        mask[b, s:e] = 1
    rewards = torch.randn(B, T, generator=g, dtype=torch.float64)
    values = torch.randn(B, T, generator=g, dtype=torch.float64)
    return rewards, values, mask


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.5), (0.99, 1.0), (0.7, 0.0)])
def test_gae_random_rows_match_direct_sum(gamma, lam):
    rewards, values, mask = _random_batch(seed=int(gamma * 1000 + lam * 100))
    adv, ret = gae(rewards, values, mask, gamma=gamma, lam=lam)
    expect = direct_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, expect, rtol=1e-10, atol=1e-12)
    on = mask.bool()
    torch.testing.assert_close(ret[on], (expect + values)[on], rtol=1e-10, atol=1e-12)
    assert torch.equal(adv[~on], torch.zeros_like(adv[~on]))
    assert torch.equal(ret[~on], torch.zeros_like(ret[~on]))


def test_gae_ignores_garbage_outside_mask_and_accepts_bool_mask():
    rewards, values, mask = _random_batch(seed=31)
    adv, ret = gae(rewards, values, mask, gamma=0.95, lam=0.9)
    off = ~mask.bool()
    g = torch.Generator().manual_seed(32)
    junk_r = rewards.masked_fill(off, 1e6) + torch.randn(rewards.shape, generator=g, dtype=torch.float64) * off
    junk_v = values.masked_fill(off, -1e6)
    adv2, ret2 = gae(junk_r, junk_v, mask.bool(), gamma=0.95, lam=0.9)
    assert torch.equal(adv, adv2) and torch.equal(ret, ret2)


# ---------------------------------------------------------------------------------------------- policy loss
POLICY_CASES = [
    # ratios, advantages, loss, clipfrac, grad wrt logp (clip 0.2, 3 tokens)
    # t0 r=1.1 A=2 inside: -2.2 (grad -2*1.1/3); t1 r=1.5 A=1: max(-1.5, -1.2) = -1.2 clipped (grad 0);
    # t2 r=0.5 A=-3: max(1.5, 2.4) = 2.4 clipped (grad 0). loss = (-2.2 - 1.2 + 2.4)/3 = -1/3, clipfrac 2/3
    ([1.1, 1.5, 0.5], [2.0, 1.0, -3.0], -1 / 3, 2 / 3, [-2 * 1.1 / 3, 0.0, 0.0]),
    # t0 r=0.5 A=1.5: max(-0.75, -1.2) = -0.75 unclipped (grad -1.5*0.5/3 = -0.25);
    # t1 r=1.3 A=-0.5: max(0.65, 0.6) = 0.65 unclipped (grad 0.5*1.3/3); t2 r=0.95 A=-2 inside: 1.9 (grad 2*0.95/3)
    # loss = (-0.75 + 0.65 + 1.9)/3 = 0.6, clipfrac 0
    ([0.5, 1.3, 0.95], [1.5, -0.5, -2.0], 0.6, 0.0, [-0.25, 0.5 * 1.3 / 3, 2 * 0.95 / 3]),
]


@pytest.mark.parametrize("ratios,advs,loss_expect,clipfrac,grad", POLICY_CASES)
def test_policy_loss_by_hand(ratios, advs, loss_expect, clipfrac, grad):
    old = torch.tensor([[-1.3, -0.2, -2.7]], dtype=torch.float64)
    logp = (old + torch.log(torch.tensor([ratios], dtype=torch.float64))).requires_grad_(True)
    loss, stats = policy_loss(logp, old, torch.tensor([advs], dtype=torch.float64), torch.ones(1, 3), clip=0.2)
    assert loss.item() == pytest.approx(loss_expect, abs=1e-12)
    assert stats["clipfrac"].item() == pytest.approx(clipfrac, abs=1e-7)  # a float32 statistic
    assert stats["ratio"].item() == pytest.approx(sum(ratios) / 3, abs=1e-12)
    # approx_kl = mean of (r - 1) - log r
    assert stats["approx_kl"].item() == pytest.approx(sum(r - 1 - math.log(r) for r in ratios) / 3, abs=1e-12)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([grad], dtype=torch.float64), rtol=0, atol=1e-12)
    assert all(not v.requires_grad for v in stats.values())


def test_policy_loss_approx_kl_first_case_numbers():
    # (r - 1) - log r: 1.1 -> 0.0046898, 1.5 -> 0.0945349, 0.5 -> 0.1931472; mean 0.0974573
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[1.1, 1.5, 0.5]]))
    _, stats = policy_loss(logp, old, torch.ones(1, 3), torch.ones(1, 3))
    assert stats["approx_kl"].item() == pytest.approx(0.0974573, abs=1e-6)


def test_policy_loss_random_masked_gradient_and_value():
    g = torch.Generator().manual_seed(777)
    B, T, clip = 3, 7, 0.15
    mask = torch.tensor([[0, 0, 1, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]])
    on = mask.bool()
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 3
    logp = old + torch.randn(B, T, generator=g, dtype=torch.float64) * 0.3
    adv = torch.randn(B, T, generator=g, dtype=torch.float64)
    # huge values outside the mask: must not reach loss, stats or gradient
    logp = logp.masked_fill(~on, 1e6).requires_grad_(True)
    old_in, adv_in = old.masked_fill(~on, -1e6), adv.masked_fill(~on, 1e6)
    loss, stats = policy_loss(logp, old_in, adv_in, mask, clip=clip)
    loss.backward()

    r = torch.exp(logp.detach()[on] - old[on])
    a = adv[on]
    n = int(on.sum())
    surrogate = torch.stack([torch.maximum(-a_ * r_, -a_ * min(max(r_, 1 - clip), 1 + clip))
                             for r_, a_ in zip(r, a, strict=True)])
    assert loss.item() == pytest.approx(surrogate.mean().item(), rel=1e-12)
    clipped = ((a > 0) & (r > 1 + clip)) | ((a < 0) & (r < 1 - clip))  # clipped branch strictly larger
    assert 0 < int(clipped.sum()) < n  # both kinds present with this seed
    assert stats["clipfrac"].item() == pytest.approx(clipped.double().mean().item())
    assert stats["approx_kl"].item() == pytest.approx((r - 1 - torch.log(r)).mean().item(), rel=1e-10)
    assert torch.isfinite(loss)
    # gradient: -A * ratio / N where unclipped, 0 where clipped, exactly 0 outside the mask
    expect = torch.where(clipped, torch.zeros_like(r), -a * r / n)
    torch.testing.assert_close(logp.grad[on], expect, rtol=1e-10, atol=1e-14)
    assert torch.equal(logp.grad[~on], torch.zeros_like(logp.grad[~on]))


# ----------------------------------------------------------------------------------------------- value loss
V = torch.tensor([[1.0, 0.3, -1.0, 2.0, 1e3]], dtype=torch.float64)
V_OLD = torch.tensor([[0.5, 0.4, 0.0, 1.0, -1e3]], dtype=torch.float64)
RET = torch.tensor([[2.0, 0.0, -1.2, 1.5, 7.0]], dtype=torch.float64)
VMASK = torch.tensor([[1, 1, 1, 1, 0]])  # the last position is padding with garbage


def test_value_loss_clipped_by_hand():
    values = V.clone().requires_grad_(True)
    loss, stats = value_loss(values, V_OLD, RET, VMASK, clip=0.2)
    # t0: (1-2)^2 = 1 vs clipped V 0.5+0.2 = 0.7 -> (0.7-2)^2 = 1.69 -> 1.69 (clipped, grad 0)
    # t1: (0.3-0)^2 = 0.09 vs clipped 0.4-0.1 = 0.3 -> 0.09 (same; grad (0.3 - 0)/4)
    # t2: (-1+1.2)^2 = 0.04 vs clipped 0-0.2 = -0.2 -> (1.0)^2 = 1.0 -> 1.0 (clipped, grad 0)
    # t3: (2-1.5)^2 = 0.25 vs clipped 1.2 -> 0.09 -> 0.25 (unclipped, grad (2-1.5)/4)
    # loss = 0.5 * (1.69 + 0.09 + 1 + 0.25) / 4 = 0.37875; vf_clipfrac = 2/4
    assert loss.item() == pytest.approx(0.37875, abs=1e-12)
    assert stats["vf_clipfrac"].item() == pytest.approx(0.5)
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, 0.075, 0.0, 0.125, 0.0]], dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_value_loss_unclipped_by_hand():
    values = V.clone().requires_grad_(True)
    loss, stats = value_loss(values, V_OLD, RET, VMASK, clip=None)
    # 0.5 * (1 + 0.09 + 0.04 + 0.25) / 4 = 0.1725; gradient (V - R)/4 = [-0.25, 0.075, 0.05, 0.125, 0]
    assert loss.item() == pytest.approx(0.1725, abs=1e-12)
    assert stats["vf_clipfrac"].item() == 0.0
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([[-0.25, 0.075, 0.05, 0.125, 0.0]], dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_value_loss_large_clip_equals_unclipped_on_random():
    g = torch.Generator().manual_seed(4242)
    v, v_old, ret = (torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(3, 5, generator=g) > 0.3
    on = mask.bool()
    expect = 0.5 * ((v - ret)[on] ** 2).mean().item()
    assert value_loss(v, v_old, ret, mask, clip=100.0)[0].item() == pytest.approx(expect, rel=1e-12)
    assert value_loss(v, v_old, ret, mask, clip=None)[0].item() == pytest.approx(expect, rel=1e-12)
    # tiny clip: the value can move at most 1e-9 from old, so the loss is at least that of the old values
    tight = value_loss(v, v_old, ret, mask, clip=1e-9)[0].item()
    assert tight >= 0.5 * ((v_old - ret)[on] ** 2).mean().item() - 1e-6
