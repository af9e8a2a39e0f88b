"""Discriminator: a scalar model trained with binary cross-entropy to tell expert responses from generated ones.

RLGAF (Yu et al., arXiv 2305.06176) uses its logit as the reward; GAIL (Ho & Ermon, arXiv 1606.03476, Eq. 17)
is the same game. Data: preference-format pairs whose `chosen` is the expert response and `rejected` a
policy sample for the same prompt. One-sided label smoothing softens the expert targets to 1 - eps
(Salimans et al., arXiv 1606.03498, §3.4), which keeps the discriminator from saturating.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from lit_align.modules.reward import ScalarModule


class DiscriminatorModule(ScalarModule):
    """Expert-vs-generated discriminator (rows 0..B-1 expert, B..2B-1 generated).

    Args:
        label_smoothing: expert targets become 1 - label_smoothing (generated stay 0).
        (other arguments: see ScalarModule)
    """

    def __init__(self, model: str, label_smoothing: float = 0.1, **kwargs: Any):
        super().__init__(model, **kwargs)
        if not 0 <= label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")

    def step(self, batch, prefix: str):
        scores = self.member_scores(batch)  # (M, 2B) logits of "expert"
        b = scores.shape[1] // 2
        targets = torch.cat([scores.new_full((b,), 1 - self.hparams.label_smoothing), scores.new_zeros(b)])  # (2B,)
        loss = sum(F.binary_cross_entropy_with_logits(s, targets) for s in scores)
        mean = scores.mean(0).detach()
        acc_expert, acc_generated = (mean[:b] > 0).float().mean(), (mean[b:] < 0).float().mean()
        self.log_scalars({"loss": loss, "disc/acc_expert": acc_expert, "disc/acc_generated": acc_generated,
                          "disc/accuracy": (acc_expert + acc_generated) / 2,
                          "disc/logit_expert": mean[:b].mean(), "disc/logit_generated": mean[b:].mean()},
                         batch_size=b, prefix=prefix)
        return loss

    def training_step(self, batch, batch_idx):
        return self.step(batch, "")

    def validation_step(self, batch, batch_idx):
        self.step(batch, "val/")
