"""Value functions for PPO: a head on the policy's own trunk, or a separate critic model.

V(state before token t) = Linear(H, 1) on the hidden state that predicts token t, so values line up with the
shifted token log-probs (B, T-1) of lit_align.models.causal_lm.
  * ValueHead on the policy's final hidden states (the default): one Linear instead of a second model; the
    value loss also trains the shared trunk.
  * Critic: its own backbone (any AutoModel checkpoint: a causal LM, or a reward model as in TRL and OpenRLHF)
    plus a ValueHead; twice the memory, but the policy's trunk only ever sees the policy loss.
The head starts at zero: the first advantages are the rewards themselves.
"""
from __future__ import annotations

import torch
from torch import nn

from lit_align.models.causal_lm import text_config


class ValueHead(nn.Module):
    def __init__(self, hidden_size: int, dtype: torch.dtype | None = None):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1, dtype=dtype)
        nn.init.zeros_(self.summary.weight)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, H) hidden states -> (B, T) float32 values."""
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1).float()


class Critic(nn.Module):
    """A separate value model: the backbone of `path` (AutoModel, no LM or score head) and a ValueHead."""

    def __init__(self, path: str, dtype: torch.dtype | None = None, trust_remote_code: bool = False):
        super().__init__()
        from transformers import AutoModel

        from lit_align.models.loading import check_source

        check_source(path)
        self.backbone = AutoModel.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code)
        self.head = ValueHead(text_config(self.backbone).hidden_size, dtype=dtype)

    def forward(self, batch: dict) -> torch.Tensor:
        """(B, T-1) float32 values for a lit_align batch (input_ids, attention_mask, ...)."""
        from lit_align.data.collate import model_inputs

        hidden = self.backbone(**model_inputs(batch, dtype=self.backbone.dtype)).last_hidden_state  # (B, T, H)
        return self.head(hidden[:, :-1])
