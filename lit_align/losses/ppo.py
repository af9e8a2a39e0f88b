"""PPO's pieces on (B, T) token tensors: GAE, the clipped policy loss and the clipped value loss.

Schulman et al., "Proximal Policy Optimization Algorithms", arXiv 1707.06347: Eq. 7 (clipped surrogate);
GAE: Schulman et al., arXiv 1506.02438, Eq. 16. The value clipping follows the OpenAI baselines / RLHF
implementations (Ziegler et al. arXiv 1909.08593; Huang et al., "The N+ Implementation Details of RLHF
with PPO", arXiv 2403.17031). `mask` is 1 on generated tokens; prompt and padding get no loss.
"""
from __future__ import annotations

import torch

from lit_align.losses.masked import masked, masked_mean


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns (B, T) from per-token rewards and values (B, T) on the masked positions.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V and A zero after
    a sequence's last generated token; returns = A + V. Positions outside the mask come out 0.
    """
    mask = mask.to(values.dtype)
    values, rewards = masked(values, mask), masked(rewards, mask)
    advantages = torch.zeros_like(values)
    next_value = next_advantage = torch.zeros_like(values[:, 0])  # (B,)
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = advantage
        # Outside the mask (padding after the response) the carried values must restart at zero.
        next_value = torch.where(mask[:, t] > 0, values[:, t], torch.zeros_like(next_value))
        next_advantage = advantage
    return advantages, masked(advantages + values, mask)


def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip_low: float, clip_high: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token -min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A) and where the clipped branch won.

    PPO's Eq. 7 when clip_low == clip_high; DAPO's clip-higher (arXiv 2503.14476, Eq. 10) when clip_high > clip_low.
    ratio and advantages broadcast: (B, T) token ratios or (B, 1) sequence ratios (GSPO), (B, T) or (B, 1) advantages.
    """
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    return torch.maximum(unclipped, clipped), clipped > unclipped


def policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate -min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A), averaged over masked tokens.

    Returns the loss and detached statistics: clipfrac (share of tokens where the clipped branch was taken)
    and approx_kl (k3 estimate of KL(old || new) on the batch, the usual early-stopping signal).
    """
    log_ratio = masked(logp - old_logp, mask)
    ratio = torch.exp(log_ratio)
    per_token, was_clipped = clipped_surrogate(ratio, advantages, clip, clip)
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean(was_clipped.float(), mask),
                 "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
                 "ratio": masked_mean(ratio, mask)}
    return loss, stats


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float | None = 0.2) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * max((V - R)^2, (clip(V, V_old +- clip) - R)^2) over masked tokens (no clipping when clip=None)."""
    error = (values - returns) ** 2
    if clip is not None:
        clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        clipped_error = (clipped - returns) ** 2
        with torch.no_grad():
            clipfrac = masked_mean((clipped_error > error).float(), mask)
        error = torch.maximum(error, clipped_error)
    else:
        clipfrac = torch.zeros((), device=values.device)
    return 0.5 * masked_mean(error, mask), {"vf_clipfrac": clipfrac}
