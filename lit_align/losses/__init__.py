"""lit_align.losses: pure functions of log-probs, values and rewards (no models, no Lightning).

masked.py         masked mean / sum / whitening over (B, T) token tensors; the valid rewards of sample groups
kl.py             per-token KL estimators (k1, k2, k3) and the adaptive KL coefficient (Ziegler et al.)
ppo.py            GAE, the clipped policy loss and the clipped value loss (PPO, Schulman et al.)
grpo.py           GRPO's group advantages and loss normalisations (grpo/bnpo/dr_grpo/dapo), GSPO, DAPO's penalty
rloo.py           the leave-one-out baseline of RLOO (Ahmadian et al.)
discriminator.py  binary cross-entropy of an expert-vs-generated discriminator with label smoothing
preference.py     the DPO family (DPO, cDPO/CREAM smoothing, rDPO, SLiC hinge, IPO, SimPO) and Bradley-Terry

Training runs the preference losses through the fused op lit_align.ops.preference_loss (kernels of the same
formulas; lit_align.ops.fused_linear_preference_loss from hidden states); preference.py is their reference.
"""
from lit_align.losses.discriminator import discriminator_loss
from lit_align.losses.grpo import group_advantages, grpo_loss, overlong_penalty
from lit_align.losses.kl import KL_ESTIMATORS, AdaptiveKLController, token_kl
from lit_align.losses.masked import masked_mean, masked_sum, masked_whiten
from lit_align.losses.ppo import clipped_surrogate, gae, policy_loss, value_loss
from lit_align.losses.preference import (
    bradley_terry_loss,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    preference_margin,
    robust_dpo_loss,
    simpo_loss,
)
from lit_align.losses.rloo import leave_one_out_advantages

__all__ = ["KL_ESTIMATORS", "AdaptiveKLController", "bradley_terry_loss", "clipped_surrogate", "discriminator_loss",
           "dpo_loss", "gae", "group_advantages", "grpo_loss", "hinge_loss", "ipo_loss", "leave_one_out_advantages",
           "masked_mean", "masked_sum", "masked_whiten", "overlong_penalty", "policy_loss", "preference_margin",
           "robust_dpo_loss", "simpo_loss", "token_kl", "value_loss"]
