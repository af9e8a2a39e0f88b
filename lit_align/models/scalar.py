"""Scalar-output models: reward models, discriminators and their ensembles.

A reward model or discriminator is any AutoModelForSequenceClassification with one label
(`loading.load_sequence_classifier` builds one from a causal-LM checkpoint or an encoder such as MiniLM); its
score for a sequence is the logit at the model's own pooling position (the last non-pad token for decoders,
[CLS] for encoders).
"""
from __future__ import annotations

import torch
from torch import nn

REDUCTIONS = ("mean", "min", "mean_minus_std")


def sequence_scalar(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B,) float32 score of each sequence from a one-label sequence classifier, or from a module that returns
    the (B,) scores itself (a RewardEnsemble)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask)
    if isinstance(out, torch.Tensor):
        return out.float()  # (B,)
    logits = out.logits  # (B, 1)
    if logits.shape[-1] != 1:
        raise ValueError(f"a scalar model must have num_labels=1, got logits of shape {tuple(logits.shape)}")
    return logits[:, 0].float()


class RewardEnsemble(nn.Module):
    """Several reward models scored together: mean, min (pessimistic), or mean - k * std (uncertainty-penalised;
    Coste et al., arXiv 2310.02743, Eq. 3-5)."""

    def __init__(self, models: list[nn.Module], reduction: str = "mean", k: float = 1.0):
        super().__init__()
        if not models:
            raise ValueError("RewardEnsemble needs at least one model")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction={reduction!r}; expected one of {REDUCTIONS}")
        self.members = nn.ModuleList(models)
        self.reduction, self.k = reduction, k

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        scores = torch.stack([sequence_scalar(m, input_ids, attention_mask) for m in self.members])  # (M, B)
        if self.reduction == "mean":
            return scores.mean(0)
        if self.reduction == "min":
            return scores.min(0).values
        spread = scores.std(0, unbiased=False) if len(self.members) > 1 else torch.zeros_like(scores[0])
        return scores.mean(0) - self.k * spread
