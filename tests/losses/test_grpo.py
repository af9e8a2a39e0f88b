"""lit_align.losses.grpo against values worked out by hand: group advantages (group / batch / no scaling, invalid
samples, zero-std groups), DAPO's overlong penalty, and the loss of every loss_type, clip-higher, GSPO's sequence
ratio and the k3 KL term on a 2 x 3 batch."""
import math

import pytest
import torch

from lit_align.losses import group_advantages, grpo_loss, overlong_penalty, policy_loss


def test_group_advantages_group_scaling():
    adv, zero_std = group_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)  # mean 0.5, unbiased std sqrt(1/3), TRL's eps 1e-4
    torch.testing.assert_close(adv, torch.tensor([[a, -a, -a, a], [0.0, 0.0, 0.0, 0.0]]))
    assert zero_std.tolist() == [False, True]


def test_group_advantages_invalid_samples_left_out():
    rewards = torch.tensor([[3.0, 1.0, float("nan"), 5.0], [2.0, 7.0, 4.0, 4.0]])
    valid = torch.tensor([[True, True, True, True], [True, False, False, False]])
    adv, zero_std = group_advantages(rewards, valid)
    # group 0: NaN dropped -> (3, 1, 5), mean 3, std 2; group 1: one valid sample, no baseline
    torch.testing.assert_close(adv, torch.tensor([[0.0, -2 / 2.0001, 0.0, 2 / 2.0001], [0.0, 0.0, 0.0, 0.0]]))
    assert zero_std.tolist() == [False, True]


def test_group_advantages_batch_and_no_scaling():
    rewards = torch.tensor([[1.0, 0.0], [3.0, 3.0]])
    adv, zero_std = group_advantages(rewards, scale_rewards="batch")
    # batch: mean 1.75, unbiased var (0.75^2 + 1.75^2 + 2 * 1.25^2) / 3 = 2.25, std 1.5; group means 0.5, 3
    torch.testing.assert_close(adv, torch.tensor([[0.5 / 1.5001, -0.5 / 1.5001], [0.0, 0.0]]))
    adv, _ = group_advantages(rewards, scale_rewards="none")  # Dr. GRPO: centred only
    torch.testing.assert_close(adv, torch.tensor([[0.5, -0.5], [0.0, 0.0]]))
    assert zero_std.tolist() == [False, True]


@pytest.mark.parametrize("bad", [dict(rewards=torch.ones(4)), dict(rewards=torch.ones(2, 1)),
                                 dict(rewards=torch.ones(2, 2), scale_rewards="std"),
                                 dict(rewards=torch.ones(2, 2), valid=torch.ones(2, 2))])
def test_group_advantages_bad_input(bad):
    with pytest.raises(ValueError):
        group_advantages(**bad)


def test_overlong_penalty():
    # L_max = 20, L_cache = 4: free up to 16, then a ramp down to -1 at 20, -1 beyond
    penalty = overlong_penalty(torch.tensor([10, 16, 18, 20, 25]), 20, 4)
    torch.testing.assert_close(penalty, torch.tensor([0.0, 0.0, -0.5, -1.0, -1.0]))
    with pytest.raises(ValueError):
        overlong_penalty(torch.tensor([1]), 20, 0)


# A 2 x 3 batch: ratios pi / pi_old per token, the last token of row 0 is padding (and its log-prob is garbage).
OLD = torch.tensor([[-1.0, -1.5, -2.0], [-2.0, -0.5, -1.0]])
RATIOS = torch.tensor([[1.5, 0.9, 1.0], [0.7, 1.1, 1.25]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
ADV = torch.tensor([1.0, -2.0])


def logp():
    out = OLD + RATIOS.log()
    out[0, 2] = float("-inf")  # outside the mask: must not reach the loss
    return out


# Per-token losses -min(r A, clip(r, 0.8, 1.28) A): row 0 (A = 1): r 1.5 -> -1.28 (clipped high), r 0.9 -> -0.9;
# row 1 (A = -2): r 0.7 -> 1.6 (clipped low), 1.1 -> 2.2, 1.25 -> 2.5. Sum 4.12 over 5 tokens.
@pytest.mark.parametrize("loss_type, kwargs, expected", [
    ("grpo", {}, ((-1.28 - 0.9) / 2 + (1.6 + 2.2 + 2.5) / 3) / 2),  # mean of the sequences' token means
    ("bnpo", {}, 4.12 / 5),  # token mean of the minibatch
    ("dr_grpo", dict(max_completion_length=4), 4.12 / (2 * 4)),  # B * L_max
    ("dapo", dict(num_items=8), 4.12 / 8),  # the rollout's tokens per step
    ("dapo", {}, 4.12 / 5),  # without num_items: this minibatch's tokens
])
def test_loss_types(loss_type, kwargs, expected):
    x = logp().requires_grad_()
    loss, stats = grpo_loss(x, OLD, ADV, MASK, loss_type=loss_type, epsilon=0.2, epsilon_high=0.28, **kwargs)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    assert float(stats["clip_ratio/low_mean"]) == pytest.approx(1 / 5)
    assert float(stats["clip_ratio/high_mean"]) == pytest.approx(1 / 5)
    assert float(stats["clip_ratio/region_mean"]) == pytest.approx(2 / 5)
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad[0, 2] == 0
    assert x.grad[0, 0] == 0 and x.grad[1, 0] == 0, "clipped tokens carry no gradient"


def test_symmetric_clip_is_ppo():
    """epsilon_high = epsilon: r 1.5 clips at 1.2 and r 1.25 (A < 0) stays; bnpo equals PPO's policy_loss."""
    loss, stats = grpo_loss(logp(), OLD, ADV, MASK, loss_type="bnpo", epsilon=0.2)
    assert float(loss) == pytest.approx((-1.2 - 0.9 + 1.6 + 2.2 + 2.5) / 5, rel=1e-5)
    ppo, _ = policy_loss(logp(), OLD, ADV[:, None] * MASK, MASK, clip=0.2)
    torch.testing.assert_close(loss, ppo)


def test_sequence_level_ratio_gspo():
    """GSPO: s_i = exp(mean_t log r_t); row 0: sqrt(1.5 * 0.9), row 1: (0.7 * 1.1 * 1.25) ** (1/3)."""
    s0, s1 = math.sqrt(1.35), 0.9625 ** (1 / 3)
    loss, stats = grpo_loss(logp(), OLD, ADV, MASK, loss_type="grpo", epsilon=0.2, epsilon_high=0.28,
                            importance_sampling_level="sequence")
    assert float(loss) == pytest.approx((-s0 + 2 * s1) / 2, rel=1e-5)
    assert float(stats["clip_ratio/region_mean"]) == 0
    # epsilon_high 0.1: s0 = 1.16 clips at 1.1, one sequence of two
    loss, stats = grpo_loss(logp(), OLD, ADV, MASK, loss_type="grpo", epsilon=0.2, epsilon_high=0.1,
                            importance_sampling_level="sequence")
    assert float(loss) == pytest.approx((-1.1 + 2 * s1) / 2, rel=1e-5)
    assert float(stats["clip_ratio/high_mean"]) == 0.5
    # token-normalised with a sequence ratio: every token of a row weighs its row's loss
    loss, _ = grpo_loss(logp(), OLD, ADV, MASK, loss_type="bnpo", epsilon=0.2, epsilon_high=0.28,
                        importance_sampling_level="sequence")
    assert float(loss) == pytest.approx((-2 * s0 + 3 * 2 * s1) / 5, rel=1e-5)


def test_k3_kl_term():
    """ref = pi * 2 on every token: k3 = 2 - log 2 - 1 per token, beta * k3 added to every token's loss."""
    ref = logp() + math.log(2)
    k3 = 1 - math.log(2)
    loss, stats = grpo_loss(logp(), OLD, ADV, MASK, loss_type="bnpo", epsilon=0.2, epsilon_high=0.28, beta=0.1,
                            ref_logp=ref)
    assert float(loss) == pytest.approx(4.12 / 5 + 0.1 * k3, rel=1e-5)
    assert float(stats["kl"]) == pytest.approx(k3, rel=1e-5)
    # use_bias_correction_kl (arXiv 2512.02556, TRL's default): k3 times the unclipped token ratio
    loss, stats = grpo_loss(logp(), OLD, ADV, MASK, loss_type="bnpo", epsilon=0.2, epsilon_high=0.28, beta=0.1,
                            ref_logp=ref, use_bias_correction_kl=True)
    assert float(loss) == pytest.approx(4.12 / 5 + 0.1 * k3 * (1.5 + 0.9 + 0.7 + 1.1 + 1.25) / 5, rel=1e-5)
    assert float(stats["kl"]) == pytest.approx(k3 * (1.5 + 0.9 + 0.7 + 1.1 + 1.25) / 5, rel=1e-5)
    with pytest.raises(ValueError, match="ref_logp"):
        grpo_loss(logp(), OLD, ADV, MASK, beta=0.1)


@pytest.mark.parametrize("bad", [dict(loss_type="ppo"), dict(importance_sampling_level="word"),
                                 dict(loss_type="dr_grpo"),
                                 dict(importance_sampling_level="sequence", advantages=ADV[:, None] * MASK)])
def test_bad_options(bad):
    advantages = bad.pop("advantages", ADV)
    with pytest.raises(ValueError):
        grpo_loss(logp(), OLD, advantages, MASK, **bad)
