"""RLOO: k samples per prompt, each judged against the mean reward of the other k - 1 (no value model).

Ahmadian et al., "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback
in LLMs", arXiv 2402.14740, Eq. 6 (the leave-one-out baseline; lit_align.losses.rloo). The KL to the
reference either enters the reward, R_i = score_i - beta * sum_t KL_t (the paper's choice), or is a loss
term beta * mean_t k3_t on the current policy (as GRPO does, arXiv 2402.03300 Eq. 3). The sequence advantage
weights every generated token's log-prob in PPO's clipped surrogate, which with one update epoch is
exactly REINFORCE with the leave-one-out baseline.
"""
from __future__ import annotations

from typing import Any

from lit_align.errors import UserError
from lit_align.losses import leave_one_out_advantages, masked_mean, masked_whiten, policy_loss, token_kl
from lit_align.modules.online import Experience, OnlineRLModule


class RLOOModule(OnlineRLModule):
    """RLOO.

    Args:
        kl_in_reward: True: KL penalty in the reward; False: a k3 KL loss term on the current policy.
        whiten_advantages: whiten the advantages over the rollout (off in the paper).
        (other arguments: see OnlineRLModule; RLOO defaults to k = 4 samples per prompt)
    """

    default_samples_per_prompt = 4

    def __init__(self, model: str, kl_in_reward: bool = True, whiten_advantages: bool = False, **kwargs: Any):
        super().__init__(model, **kwargs)
        if self.hparams.samples_per_prompt < 2:
            raise UserError(f"RLOO needs samples_per_prompt >= 2 (a leave-one-out baseline), "
                            f"got {self.hparams.samples_per_prompt}")

    def compute_advantages(self, exp: Experience) -> None:
        k = self.hparams.samples_per_prompt
        rewards = exp.scores
        if self.hparams.kl_in_reward:
            rewards = rewards - self.kl_ctl.value * exp.kl.sum(-1)  # (n,)
        advantages, has_baseline = leave_one_out_advantages(rewards.view(-1, k), exp.valid.view(-1, k))
        advantages, has_baseline = advantages.reshape(-1), has_baseline.reshape(-1)  # (n,)
        if self.hparams.whiten_advantages:
            advantages = masked_whiten(advantages, has_baseline)
        exp.mask = exp.mask * has_baseline[:, None].float()  # a sample without a baseline teaches nothing
        exp.advantages = advantages[:, None] * exp.mask  # (n, T-1)

    def minibatch_loss(self, mb: dict[str, Any]):
        logp, _ = self.policy_outputs(mb)
        loss, stats = policy_loss(logp, mb["old_logp"], mb["advantages"], mb["mask"], self.hparams.clip)
        stats["pg_loss"] = loss.detach()
        if not self.hparams.kl_in_reward:
            kl_loss = masked_mean(token_kl(logp, mb["ref_logp"], "k3"), mb["mask"])
            loss = loss + self.kl_ctl.value * kl_loss
            stats["kl_loss"] = kl_loss.detach()
        return loss, stats
