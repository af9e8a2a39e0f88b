"""Reductions over the generated tokens of a (B, T) batch: the mask is 1 on response tokens, 0 on prompt/padding.

Every RL loss averages over response tokens only, so prompt and padding positions never carry a gradient.
masked_groups does the same for the (prompts, samples) rewards of the group baselines (RLOO, GRPO).
"""
from __future__ import annotations

import torch


def masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x where mask is set, exactly 0 elsewhere (even where x is inf or NaN, which a multiply would keep)."""
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    return masked(x, mask).sum() if dim is None else masked(x, mask).sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x where mask is set (0 when nothing is set, rather than NaN)."""
    mask = mask.to(x.dtype)
    return masked_sum(x, mask, dim) / (mask.sum() if dim is None else mask.sum(dim)).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked entries (mean kept when shift_mean=False); 0 outside the mask.

    The variance is the unbiased one, as in the PPO implementations; a single entry is only centred.
    """
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = masked_sum((x - mean) ** 2, mask) / (n - 1).clamp(min=1)
    out = (x - mean) * torch.rsqrt(var + eps) if n > 1 else x - mean
    if not shift_mean:
        out = out + mean
    return masked(out, mask)


def masked_groups(rewards: torch.Tensor, valid: torch.Tensor | None, method: str
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rewards (P, k) of P groups (prompts) of k samples -> (valid (P, k) bool, rewards with 0 where invalid (P, k),
    valid count per group (P, 1)). `valid` marks samples with a usable reward (default: the finite ones); non-finite
    rewards are never valid. Shared by the group baselines (RLOO, GRPO); `method` names the caller in errors."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"{method} needs rewards of shape (prompts, k >= 2), got {tuple(rewards.shape)}")
    if valid is not None and (valid.shape != rewards.shape or valid.dtype != torch.bool):
        raise ValueError(f"valid must be a bool mask of the rewards' shape {tuple(rewards.shape)}, "
                         f"got {valid.dtype} {tuple(valid.shape)}")
    valid = torch.isfinite(rewards) if valid is None else valid & torch.isfinite(rewards)
    return valid, torch.where(valid, rewards, torch.zeros_like(rewards)), valid.sum(1, keepdim=True)
