"""Binary cross-entropy of a discriminator that tells expert responses (label 1) from generated ones (label 0).

GAIL (Ho & Ermon, arXiv 1606.03476, Eq. 17) and RLGAF (Yu et al., arXiv 2305.06176) train D this way; with
one-sided label smoothing (Salimans et al., arXiv 1606.03498, §3.4) the expert targets become 1 - eps,
which keeps D from saturating and its logits (the policy's reward) finite.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def discriminator_loss(expert_logits: torch.Tensor, generated_logits: torch.Tensor, label_smoothing: float = 0.0
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean BCE over the expert (E,) and generated (G,) logits of "expert", and detached accuracies."""
    if not 0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")
    logits = torch.cat([expert_logits, generated_logits])  # (E + G,)
    targets = torch.cat([torch.full_like(expert_logits, 1.0 - label_smoothing), torch.zeros_like(generated_logits)])
    loss = F.binary_cross_entropy_with_logits(logits, targets)
    with torch.no_grad():
        acc_expert = (expert_logits > 0).float().mean()
        acc_generated = (generated_logits < 0).float().mean()
        stats = {"acc_expert": acc_expert, "acc_generated": acc_generated,
                 "accuracy": (acc_expert * len(expert_logits) + acc_generated * len(generated_logits)) / len(logits),
                 "logit_expert": expert_logits.mean(), "logit_generated": generated_logits.mean()}
    return loss, stats
