"""A value head for PPO: V(state) = Linear(H, 1) on the policy's final hidden states (a shared trunk).

The value of the state before token t is read from the same hidden state that predicts token t, so values
line up with the shifted token log-probs (B, T-1) of lit_align.models.causal_lm. Sharing the trunk costs one
Linear instead of a second model (TRL and OpenRLHF default to a separate critic; this trades some value
accuracy for half the memory). The head starts at zero: the first advantages are the rewards themselves.
"""
from __future__ import annotations

import torch
from torch import nn


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int, dtype: torch.dtype | None = None):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1, dtype=dtype)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) hidden states -> (B, T) float32 values."""
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1).float()
