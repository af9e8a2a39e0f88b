"""PPO for language models: per-token KL penalty in the reward, GAE on a value head, clipped policy and value losses.

Rewards (Ziegler et al., arXiv 1909.08593, Eq. 2; Stiennon et al., arXiv 2009.01325): every generated token
is penalised by -beta * KL_t(pi || ref) and the sequence's score is added at its last token. GAE
(Schulman et al., arXiv 1506.02438) turns them into advantages with the value head's estimates; advantages
are whitened per rollout; the losses are PPO's clipped surrogate and clipped value loss (arXiv 1707.06347,
Eq. 7; lit_align.losses.ppo). Several epochs over each rollout in minibatches, the KL coefficient fixed or
adaptive (kl_target).
"""
from __future__ import annotations

from typing import Any

import torch

from lit_align.errors import UserError
from lit_align.losses import gae, masked_mean, masked_whiten, policy_loss, value_loss
from lit_align.models.causal_lm import disable_dropout, text_config
from lit_align.models.loading import resolve_dtype
from lit_align.models.value_head import Critic, ValueHead
from lit_align.modules.online import Experience, OnlineRLModule


class PPOModule(OnlineRLModule):
    """PPO with a value head on the policy's trunk, or a separate critic (`value_model`).

    Args:
        value_model: checkpoint of a separate critic's backbone (e.g. the reward model or the SFT model);
            None: a value head on the policy's own trunk.
        gamma: discount per token.
        lam: GAE's lambda.
        vf_coef: weight of the value loss in the total loss.
        vf_clip: clip range of the value loss (None: unclipped).
        whiten_rewards: whiten the scores over the rollout before adding the KL penalty.
        (other arguments: see OnlineRLModule; PPO defaults to 4 epochs over each rollout)
    """

    def __init__(self, model: str, value_model: str | None = None, gamma: float = 1.0, lam: float = 0.95,
                 vf_coef: float = 0.1,
                 vf_clip: float | None = 0.2, whiten_rewards: bool = False, update_epochs: int = 4, **kwargs: Any):
        super().__init__(model, update_epochs=update_epochs, **kwargs)
        self.critic = None
        if not 0 <= gamma <= 1 or not 0 <= lam <= 1:
            raise UserError(f"gamma and lam must lie in [0, 1], got {gamma}, {lam}")

    def build_extra_models(self) -> None:
        super().build_extra_models()
        if self.hparams.value_model:
            self.critic = Critic(self.hparams.value_model, dtype=resolve_dtype(self.hparams.dtype),
                                 trust_remote_code=self.hparams.trust_remote_code).train()
            if not self.hparams.keep_dropout:
                disable_dropout(self.critic)
            return
        self.value_head = ValueHead(text_config(self.model).hidden_size, dtype=self.model.dtype)

    def values(self, hidden, batch):
        return self.critic(batch) if self.critic is not None else super().values(hidden, batch)

    def compute_advantages(self, exp: Experience) -> None:
        h = self.hparams
        scores = exp.scores
        if h.whiten_rewards:
            scores = masked_whiten(scores, exp.valid, shift_mean=False)
        rewards = -self.kl_ctl.value * exp.kl  # (n, T-1)
        last = (exp.mask.cumsum(-1) * exp.mask).argmax(-1)  # (n,) position of each sequence's last generated token
        rewards[torch.arange(len(exp), device=rewards.device), last] += scores * exp.valid
        advantages, returns = gae(rewards, exp.values, exp.mask, h.gamma, h.lam)
        exp.advantages, exp.returns = masked_whiten(advantages, exp.mask), returns

    def minibatch_loss(self, mb: dict[str, Any]):
        h = self.hparams
        logp, values = self.policy_outputs(mb)
        pg_loss, stats = policy_loss(logp, mb["old_logp"], mb["advantages"], mb["mask"], h.clip)
        vf_loss, vstats = value_loss(values, mb["values"], mb["returns"], mb["mask"], h.vf_clip)
        loss = pg_loss + h.vf_coef * vf_loss
        return loss, {"pg_loss": pg_loss.detach(), "vf_loss": vf_loss.detach(), **stats, **vstats,
                      "value_mean": masked_mean(values.detach(), mb["mask"])}
