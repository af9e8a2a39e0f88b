"""REINFORCE Leave-One-Out (RLOO): Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization
for Learning from Human Feedback in LLMs", arXiv 2402.14740, Eq. 6 (after Kool et al. 2019).

For k samples of one prompt the baseline of sample i is the mean reward of the other k - 1:
    A_i = R_i - 1/(k-1) * sum_{j != i} R_j = k/(k-1) * (R_i - mean_j R_j)
Samples whose reward is missing (a reward source failed) are left out of their group's baseline; a group
with fewer than two valid samples has no baseline, and its samples get no advantage (they are reported).
"""
from __future__ import annotations

import torch

from lit_align.losses.masked import masked_groups


def leave_one_out_advantages(rewards: torch.Tensor, valid: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages (P, k) of rewards (P prompts, k samples each) and the mask of samples that have one.

    `valid` (P, k) bool marks samples with a usable reward (default: the finite ones).
    """
    valid, r, count = masked_groups(rewards, valid, "RLOO")  # (P, k), (P, k), (P, 1)
    others = (r.sum(1, keepdim=True) - r) / (count - 1).clamp(min=1)  # (P, k) mean of the other valid samples
    has_baseline = valid & (count >= 2)
    return torch.where(has_baseline, r - others, torch.zeros_like(r)), has_baseline
