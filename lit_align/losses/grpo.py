"""GRPO and its 2025 refinements on (B, T) token tensors: group advantages, the clipped loss, its normalisations.

GRPO (Shao et al., "DeepSeekMath", arXiv 2402.03300): G samples per prompt; outcome supervision (§4.1.2) gives
every token of sample i the advantage A_i = (r_i - mean(r)) / std(r) over its group; the loss is PPO's clipped
surrogate on the token ratio pi/pi_old plus beta * k3 KL to the reference (Eq. 3 and Eq. 4), averaged over each
sequence's tokens, then over the sequences.

The refinements, each an option named as TRL's GRPOTrainer names it (trl 1.16, GRPOConfig):
  * scale_rewards="none" (Dr. GRPO, Liu et al., arXiv 2503.20783, §3.1 / Eq. 4: no division by the group's std,
    which biases toward too-easy and too-hard questions); "batch": one std over the whole rollout instead.
  * loss_type (how per-token losses become one number):
      grpo     mean over sequences of each sequence's token mean (GRPO Eq. 3; length-biased)
      bnpo     token mean over the minibatch
      dr_grpo  token sum / (B * max_completion_length), a constant (Dr. GRPO Eq. 4: no 1/|o_i|)
      dapo     token sum / the tokens per optimizer step of the whole rollout, all ranks (DAPO, Yu et al., arXiv
               2503.14476, Eq. 12: token-level, 1 / sum_i |o_i|); TRL's num_items_in_batch
  * epsilon_high > epsilon: DAPO's clip-higher (Eq. 10, eps_low = 0.2, eps_high = 0.28).
  * importance_sampling_level="sequence": GSPO (Zheng et al., arXiv 2507.18071, Eq. 7): one ratio per sequence,
    s_i = (pi(y_i) / pi_old(y_i)) ^ (1 / |y_i|) = exp(mean_t log ratio_t), clipped as a whole.
  * use_bias_correction_kl: the k3 KL term weighted by the (unclipped) ratio pi/pi_old, which makes its gradient
    the unbiased reverse-KL gradient on off-policy tokens (DeepSeek-V3.2, arXiv 2512.02556; TRL's default True,
    lit_align's default False: GRPO's Eq. 4 as written).
  * the soft overlong punishment of DAPO (Eq. 13) as a reward term: overlong_penalty().
  * dynamic sampling (DAPO Eq. 11, 0 < #correct < G): the groups whose rewards are all equal (zero_std here)
    have zero advantages; lit_align.modules.grpo drops them from the loss.

The exact aggregation of each loss_type is TRL's (trl/trainer/grpo_trainer.py, _compute_loss), checked against
TRL by benchmarks/bench_grpo_step.py.
"""
from __future__ import annotations

from typing import Literal

import torch

from lit_align.losses.kl import token_kl
from lit_align.losses.masked import masked, masked_groups, masked_mean
from lit_align.losses.ppo import clipped_surrogate

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")


def group_advantages(rewards: torch.Tensor, valid: torch.Tensor | None = None,
                     scale_rewards: Literal["group", "batch", "none"] = "group", eps: float = 1e-4
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages (P, G) of rewards (P prompts, G samples each), and which groups have all-equal rewards (P,).

    A = (r - group mean) / (std + eps), std the unbiased one of the group ("group", GRPO), of every valid reward of
    the rollout ("batch"), or no division ("none", Dr. GRPO); eps = 1e-4 as in TRL. `valid` (P, G) bool marks
    samples with a usable reward (default: the finite ones): the others are left out of the mean and std and get
    advantage 0. A group with fewer than two valid samples counts as zero-std.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards={scale_rewards!r}; expected one of {SCALE_REWARDS}")
    valid, r, count = masked_groups(rewards, valid, "GRPO")  # (P, G), (P, G), (P, 1)
    mean = r.sum(1, keepdim=True) / count.clamp(min=1)  # (P, 1)
    centred = torch.where(valid, r - mean, torch.zeros_like(r))  # (P, G)
    std = (centred.pow(2).sum(1, keepdim=True) / (count - 1).clamp(min=1)).sqrt()  # (P, 1)
    std = torch.where(count >= 2, std, torch.zeros_like(std))
    zero_std = torch.isclose(std, torch.zeros_like(std)).squeeze(1)  # (P,)
    if scale_rewards == "group":
        centred = centred / (std + eps)
    elif scale_rewards == "batch":
        flat = r[valid]
        batch_std = flat.std() if flat.numel() > 1 else torch.zeros((), dtype=r.dtype, device=r.device)
        centred = centred / (batch_std + eps)
    return torch.where(valid, centred, torch.zeros_like(centred)), zero_std


def overlong_penalty(lengths: torch.Tensor, max_completion_len: int, soft_punish_cache: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476, Eq. 13) of completion lengths (n,), a reward term:

        0 for |y| <= L_max - L_cache, ((L_max - L_cache) - |y|) / L_cache up to L_max, -1 beyond L_max

    (TRL: trl.rewards.get_soft_overlong_punishment(max_completion_len, soft_punish_cache)).
    """
    if not 0 < soft_punish_cache <= max_completion_len:
        raise ValueError(f"soft_punish_cache must lie in [1, max_completion_len={max_completion_len}], "
                         f"got {soft_punish_cache}")
    lengths = lengths.to(torch.float32)
    start = max_completion_len - soft_punish_cache
    ramp = (start - lengths) / soft_punish_cache
    return torch.where(lengths <= start, torch.zeros_like(ramp),
                       torch.where(lengths <= max_completion_len, ramp, torch.full_like(ramp, -1.0)))


def grpo_loss(logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
              loss_type: str = "dapo", epsilon: float = 0.2, epsilon_high: float | None = None,
              importance_sampling_level: str = "token", ref_logp: torch.Tensor | None = None, beta: float = 0.0,
              use_bias_correction_kl: bool = False, max_completion_length: int | None = None,
              num_items: float | torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The GRPO loss of a minibatch and its detached statistics (TRL's metric names).

    logp, old_logp, ref_logp, mask: (B, T) log-probs of the sampled tokens now, at sampling time and under the
    reference; mask 1 on the completion tokens that carry loss. advantages: (B,) per sequence (or (B, T)).
    epsilon / epsilon_high: the clip range [1 - epsilon, 1 + epsilon_high] (epsilon_high None: epsilon).
    beta: weight of the k3 KL to the reference, added to every token's loss (needs ref_logp);
    use_bias_correction_kl: that KL times the ratio (the sequence ratio with importance_sampling_level="sequence").
    max_completion_length: dr_grpo's constant. num_items: dapo's normaliser, the completion tokens per optimizer
    step over the whole rollout and every rank (default: this minibatch's, which makes dapo equal to bnpo).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r}; expected one of {LOSS_TYPES}")
    if importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
        raise ValueError(f"importance_sampling_level={importance_sampling_level!r}; "
                         f"expected one of {IMPORTANCE_SAMPLING_LEVELS}")
    if beta != 0.0 and ref_logp is None:
        raise ValueError("beta != 0 needs ref_logp (the reference's log-probs)")
    if loss_type == "dr_grpo" and not max_completion_length:
        raise ValueError("loss_type='dr_grpo' needs max_completion_length (its constant normaliser)")
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    mask = mask.to(logp.dtype)
    advantages = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages  # (B, 1) or (B, T)
    token_log_ratio = masked(logp - old_logp, mask)  # (B, T)
    log_ratio = token_log_ratio
    if importance_sampling_level == "sequence":  # GSPO Eq. 7: the length-normalised sequence ratio
        if advantages.shape[1] != 1:
            raise ValueError(f"importance_sampling_level='sequence' needs one advantage per sequence (B,), "
                             f"got {tuple(advantages.shape)}")
        log_ratio = token_log_ratio.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)  # (B, 1)
    ratio = torch.exp(log_ratio)  # (B, T) or (B, 1)
    per_token, _ = clipped_surrogate(ratio, advantages, epsilon, epsilon_high)  # (B, T) or (B, 1)
    kl = None
    if beta != 0.0:
        kl = token_kl(logp, ref_logp, "k3")  # (B, T)
        if use_bias_correction_kl:
            kl = kl * ratio
        per_token = per_token + beta * kl
    per_token = masked(per_token.expand_as(mask), mask)  # (B, T)
    if loss_type == "grpo":
        loss = (per_token.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    elif loss_type == "bnpo":
        loss = per_token.sum() / mask.sum().clamp(min=1)
    elif loss_type == "dr_grpo":
        loss = per_token.sum() / (mask.shape[0] * max_completion_length)
    else:  # dapo
        normaliser = mask.sum() if num_items is None else torch.as_tensor(num_items, dtype=logp.dtype)
        loss = per_token.sum() / normaliser.clamp(min=1)
    with torch.no_grad():
        low = ((ratio < 1 - epsilon) & (advantages < 0)).to(logp.dtype)
        high = ((ratio > 1 + epsilon_high) & (advantages > 0)).to(logp.dtype)
        def mean(x: torch.Tensor) -> torch.Tensor:  # sequence level: over sequences (TRL's global_masked_mean)
            return x.mean() if x.shape[1] == 1 else masked_mean(x.expand_as(mask), mask)

        stats = {"clip_ratio/low_mean": mean(low), "clip_ratio/high_mean": mean(high),
                 "clip_ratio/region_mean": mean(torch.maximum(low, high)),
                 "policy/approxkl_avg": masked_mean(torch.expm1(token_log_ratio) - token_log_ratio, mask)}
        if kl is not None:
            stats["kl"] = masked_mean(kl, mask)
    return loss, stats
