"""Discriminator: a scalar model trained with binary cross-entropy to tell expert responses from generated ones.

RLGAF (Yu et al., arXiv 2305.06176) uses its logit as the reward; GAIL (Ho & Ermon, arXiv 1606.03476, Eq. 17)
is the same game. Data: preference-format pairs whose `chosen` is the expert response and `rejected` a
policy sample for the same prompt. One-sided label smoothing softens the expert targets to 1 - eps
(Salimans et al., arXiv 1606.03498, §3.4), which keeps the discriminator from saturating (the loss:
lit_align.losses.discriminator). Online, against the policy's own samples: lit_align.modules.RLGAFModule.
"""
from __future__ import annotations

from typing import Any

from lit_align.errors import UserError
from lit_align.losses.discriminator import discriminator_loss
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
            raise UserError(f"label_smoothing must lie in [0, 0.5), got {label_smoothing}")

    def step(self, batch, prefix: str):
        scores = self.member_scores(batch)  # (M, 2B) logits of "expert"
        b = scores.shape[1] // 2
        smoothing = self.hparams.label_smoothing
        loss = sum(discriminator_loss(s[:b], s[b:], smoothing)[0] for s in scores)
        mean = scores.mean(0).detach()
        _, stats = discriminator_loss(mean[:b], mean[b:], smoothing)
        self.log_scalars({"loss": loss, **{f"disc/{k}": v for k, v in stats.items()}}, batch_size=b, prefix=prefix)
        return loss
