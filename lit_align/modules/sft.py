"""Supervised fine-tuning: mean negative log-likelihood of the completion tokens (prompt tokens masked).

The log-probs come from lit_align.ops.linear_token_logprobs on the final hidden states and the LM head, so the
(B, T, V) logits never exist; packed batches (lit_align.data.packing) work unchanged.
"""
from __future__ import annotations

import torch

from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.models.causal_lm import shifted_logps
from lit_align.modules.base import AlignModule


class SFTModule(AlignModule):
    """SFT recipe; arguments as AlignModule."""

    def nll(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean NLL over every completion token of the global batch (all ranks), and the local token count.

        Under DDP the gradients are averaged over ranks, so each rank divides its sum by the global token
        count and multiplies by the world size: the result is the single-process token mean, not a mean of
        per-rank means (which would weight tokens of short batches more).
        """
        token_logp, labels = shifted_logps(self.model, batch, backend=self.hparams.backend)  # (B, T-1)
        tokens = (labels != IGNORE_INDEX).sum()
        world = self.trainer.world_size if self._trainer is not None else 1
        total = self.all_gather(tokens).sum() if world > 1 else tokens
        return -token_logp.sum() * world / total.clamp(min=1), tokens

    def training_step(self, batch, batch_idx):
        loss, tokens = self.nll(batch)
        self.log_scalars({"loss": loss, "tokens": tokens.float()}, batch_size=len(batch["ids"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, _ = self.nll(batch)
        self.log_scalars({"loss": loss, "ppl": loss.exp()}, batch_size=len(batch["ids"]), prefix="val/")
