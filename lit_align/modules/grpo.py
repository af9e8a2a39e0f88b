"""GRPO on the online machinery: G samples per prompt, group-normalised advantages, clipped updates, no value model.

Shao et al., "DeepSeekMath", arXiv 2402.03300, §4.1 (Eq. 3; outcome supervision §4.1.2), with the 2025
refinements as options named after TRL's GRPOConfig (trl 1.16) so that a config moves between the two:

    lit_align GRPOModule         TRL GRPOConfig                 paper
    num_generations              num_generations                GRPO's G
    num_iterations               num_iterations                 GRPO's mu (update epochs per rollout)
    beta                         beta                           k3 KL to the reference as a loss term (Eq. 4)
    use_bias_correction_kl       use_bias_correction_kl         KL x ratio (arXiv 2512.02556); TRL's default: True
    epsilon, epsilon_high        epsilon, epsilon_high          DAPO clip-higher (arXiv 2503.14476, Eq. 10)
    loss_type                    loss_type                      grpo | bnpo | dr_grpo (arXiv 2503.20783) | dapo
    scale_rewards                scale_rewards                  group | batch | none (Dr. GRPO: none)
    importance_sampling_level    importance_sampling_level      token | sequence (GSPO, arXiv 2507.18071, Eq. 7)
    mask_truncated_completions   mask_truncated_completions     DAPO §3.4: truncated samples carry no loss
    soft_punish_cache            rewards.get_soft_overlong_...  DAPO Eq. 13, added to the reward here
    dynamic_sampling             (not in TRL)                   DAPO Eq. 11: drop groups whose rewards are equal

The formulas are in lit_align.losses.grpo. The base's names for the same things (samples_per_prompt, update_epochs,
kl_coef, clip) are refused here unless equal (as in a checkpoint's hparams), so that each setting has one name.
Dynamic sampling drops the all-equal groups (their advantages are 0 anyway; dropping takes them out of the KL term
and of the token normalisers) without sampling more groups to refill the batch as DAPO does: the rollout shrinks,
and the drops are counted (rollout/dropped_groups, frac_reward_zero_std). Under DDP each rank holds whole groups
(its own prompts, all G samples), so group statistics need no communication (scale_rewards="batch" takes the
std of the rank's rollout, TRL the global one); dapo's normaliser is summed over the ranks. The reference is built
and scored even with beta = 0 (objective/kl is logged), unlike TRL, which skips it.
"""
from __future__ import annotations

from typing import Any, Literal

import torch

from lit_align.losses.grpo import (
    IMPORTANCE_SAMPLING_LEVELS,
    LOSS_TYPES,
    SCALE_REWARDS,
    group_advantages,
    grpo_loss,
    overlong_penalty,
)
from lit_align.modules.online import Experience, OnlineRLModule

RENAMED = {"samples_per_prompt": "num_generations", "update_epochs": "num_iterations", "kl_coef": "beta",
           "clip": "epsilon"}


class GRPOModule(OnlineRLModule):
    """GRPO (and Dr. GRPO, DAPO, GSPO through its options).

    Args:
        num_generations: G, samples per prompt (>= 2).
        loss_type: "grpo", "bnpo", "dr_grpo" or "dapo" (TRL's default): how token losses are averaged.
        beta: k3 KL coefficient (0: no KL term; the fixed value, or the start of the adaptive one with kl_target).
        use_bias_correction_kl: weight the KL term by the ratio pi/pi_old (off here, on by default in TRL).
        epsilon, epsilon_high: the ratio's clip range [1 - epsilon, 1 + epsilon_high] (None: epsilon).
        num_iterations: update epochs over each rollout.
        scale_rewards: "group" (GRPO), "batch" or "none" (Dr. GRPO).
        importance_sampling_level: "token" or "sequence" (GSPO).
        mask_truncated_completions: no loss on samples that ran out of max_new_tokens.
        soft_punish_cache: L_cache of DAPO's overlong penalty (0: off), with L_max = max_new_tokens.
        dynamic_sampling: drop the groups whose rewards are all equal.
        (other arguments: see OnlineRLModule; mini_batches is TRL's steps_per_generation)
    """

    default_samples_per_prompt = 4

    def __init__(self, model: str, num_generations: int = 4,
                 loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = "dapo", beta: float = 0.0,
                 epsilon: float = 0.2, epsilon_high: float | None = None, num_iterations: int = 1,
                 scale_rewards: Literal["group", "batch", "none"] = "group",
                 importance_sampling_level: Literal["token", "sequence"] = "token",
                 mask_truncated_completions: bool = False, soft_punish_cache: int = 0,
                 dynamic_sampling: bool = False, use_bias_correction_kl: bool = False, **kwargs: Any):
        given = dict(num_generations=num_generations, num_iterations=num_iterations, beta=beta, epsilon=epsilon)
        for ours, trl in RENAMED.items():  # a checkpoint's hparams hold both names, with the same values
            if ours in kwargs and kwargs.pop(ours) != given[trl]:
                raise ValueError(f"GRPOModule: set {trl} (TRL's name), not {ours}")
        for name, value, allowed in (("loss_type", loss_type, LOSS_TYPES), ("scale_rewards", scale_rewards,
                                     SCALE_REWARDS), ("importance_sampling_level", importance_sampling_level,
                                                      IMPORTANCE_SAMPLING_LEVELS)):
            if value not in allowed:
                raise ValueError(f"GRPOModule: {name}={value!r}; expected one of {allowed}")
        if num_generations < 2:
            raise ValueError(f"GRPOModule: num_generations must be >= 2 (a group baseline), got {num_generations}")
        if epsilon < 0 or (epsilon_high is not None and epsilon_high < 0):
            raise ValueError(f"GRPOModule: epsilon and epsilon_high must be >= 0, got {epsilon}, {epsilon_high}")
        super().__init__(model, samples_per_prompt=num_generations, update_epochs=num_iterations, kl_coef=beta,
                         clip=epsilon, **kwargs)
        # The base's names, for its own code (LightningCLI's hparams hold only the arguments of this signature).
        self.hparams.update(update_epochs=num_iterations, kl_coef=beta, clip=epsilon)
        if not 0 <= soft_punish_cache <= self.hparams.max_new_tokens:
            raise ValueError(f"GRPOModule: soft_punish_cache must lie in [0, max_new_tokens="
                             f"{self.hparams.max_new_tokens}], got {soft_punish_cache}")
        self.num_items: float | None = None  # dapo's normaliser for the current rollout (compute_advantages)
        self.rollout_stats: dict[str, float] = {}

    def compute_advantages(self, exp: Experience) -> None:
        h, g = self.hparams, self.hparams.num_generations
        gens = exp.generations
        scores = exp.scores
        if h.soft_punish_cache:
            lengths = torch.tensor([x.num_tokens for x in gens], device=scores.device)
            scores = scores + overlong_penalty(lengths, h.max_new_tokens, h.soft_punish_cache) * exp.valid
        advantages, zero_std = group_advantages(scores.view(-1, g), exp.valid.view(-1, g), h.scale_rewards)
        dropped = zero_std if h.dynamic_sampling else torch.zeros_like(zero_std)  # (P,)
        keep = exp.valid & ~dropped.repeat_interleave(g)  # (n,)
        truncated = torch.tensor([not x.finished for x in gens], device=keep.device)
        if h.mask_truncated_completions:
            keep = keep & ~truncated
        exp.mask = exp.mask * keep[:, None].float()  # (n, T-1)
        exp.advantages = advantages.reshape(-1)[:, None] * exp.mask  # (n, T-1): the sequence's advantage per token
        tokens = exp.mask.sum()
        world = 1
        if self._trainer is not None:
            tokens, world = self.trainer.strategy.reduce(tokens, reduce_op="sum"), self.trainer.world_size
        self.num_items = float(tokens) / (world * h.mini_batches)  # TRL's num_items_in_batch per optimizer step
        self.counts["dropped_groups"] += int(dropped.sum())
        rewards = scores[exp.valid].float()
        lengths = torch.tensor([float(x.num_tokens) for x in gens])
        self.rollout_stats = {
            "reward": float(rewards.mean()) if len(rewards) else 0.0,
            "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
            "frac_reward_zero_std": float(zero_std.float().mean()),
            "rollout/dropped_groups": float(dropped.sum()),
            "rollout/dropped_groups_total": float(self.counts["dropped_groups"]),
            "completions/mean_length": float(lengths.mean()),
            "completions/min_length": float(lengths.min()),
            "completions/max_length": float(lengths.max()),
            "completions/clipped_ratio": float(truncated.float().mean()),
        }

    def minibatch_loss(self, mb: dict[str, Any]):
        h = self.hparams
        logp, _ = self.policy_outputs(mb)
        mask = mb["mask"]
        advantages = mb["advantages"].sum(-1) / mask.sum(-1).clamp(min=1)  # (B,) constant on each row's tokens
        return grpo_loss(logp, mb["old_logp"], advantages, mask, loss_type=h.loss_type, epsilon=h.epsilon,
                         epsilon_high=h.epsilon_high, importance_sampling_level=h.importance_sampling_level,
                         ref_logp=mb["ref_logp"], beta=self.kl_ctl.value,
                         use_bias_correction_kl=h.use_bias_correction_kl, max_completion_length=h.max_new_tokens,
                         num_items=self.num_items)

    def after_update(self, exp: Experience) -> dict[str, float]:
        return dict(self.rollout_stats)
