"""Supervised fine-tuning: mean negative log-likelihood of the completion tokens (prompt tokens masked).

The log-probs come from lit_align.ops.linear_token_logprobs on the final hidden states and the LM head, so the
(B, T, V) logits never exist; packed batches (lit_align.data.packing) work unchanged. An optional per-row weight
column turns the mean NLL into a weighted one (reward-weighted regression, for ReST's reward-weighted Improve).
"""
from __future__ import annotations

import math
from typing import Any

import torch

from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.errors import UserError
from lit_align.models.causal_lm import token_logprobs
from lit_align.modules.base import AlignModule


class SFTModule(AlignModule):
    """SFT recipe; arguments as AlignModule, and

    Args:
        weight_column: a numeric column of the training rows (passed through to the batches) that weights each
            example's NLL, e.g. ReST's reward-weighted Improve (lit_align.loops.thresholds.reward_weights); every row
            needs a finite value >= 0. None (the default): plain NLL.
    """

    def __init__(self, model: str, weight_column: str | None = None, **kwargs: Any):
        super().__init__(model, **kwargs)

    def nll(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean NLL over every completion token of the global batch (all ranks), and the local token count; with
        weight_column, each example's token log-probs are multiplied by its weight first (sum_i w_i sum_t -log p,
        over the same token count).

        Under DDP the gradients are averaged over ranks, so each rank divides its sum by the global token
        count and multiplies by the world size: the result is the single-process token mean, not a mean of
        per-rank means (which would weight tokens of short batches more).
        """
        token_logp = token_logprobs(self.model, batch, backend=self.hparams.backend,
                                    batch_invariant=self.hparams.batch_invariant)  # (B, T-1)
        labels = batch["labels"][:, 1:]  # (B, T-1)
        if self.hparams.weight_column is not None:
            token_logp = token_logp * self.example_weights(batch, token_logp)[:, None]  # (B, T-1)
        tokens = (labels != IGNORE_INDEX).sum()
        world = self.trainer.world_size if self._trainer is not None else 1
        total = self.all_gather(tokens).sum() if world > 1 else tokens
        return -token_logp.sum() * world / total.clamp(min=1), tokens

    def example_weights(self, batch, like: torch.Tensor) -> torch.Tensor:
        """(B,) the weight_column values of the batch's examples, checked: present, finite and >= 0."""
        column = self.hparams.weight_column
        values = batch.get(column)
        if values is None or len(values) != like.shape[0]:
            found = "no such column" if values is None else f"{len(values)} values"
            raise UserError(f"weight_column={column!r}: the batch has {found} for {like.shape[0]} examples (each SFT "
                            f"row needs a {column!r} field; packing is not supported with weights)")
        for example, value in zip(batch["ids"], values, strict=True):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise UserError(f"row {example!r}: field {column!r} must be a finite number >= 0, got {value!r}")
        return torch.tensor(values, dtype=like.dtype, device=like.device)  # (B,)

    def training_step(self, batch, batch_idx):
        loss, tokens = self.nll(batch)
        self.log_scalars({"loss": loss, "tokens": tokens.float()}, batch_size=len(batch["ids"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, _ = self.nll(batch)
        self.log_scalars({"loss": loss, "ppl": loss.exp()}, batch_size=len(batch["ids"]), prefix="val/")
