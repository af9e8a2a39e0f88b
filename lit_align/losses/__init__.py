"""lit_align.losses: pure functions of log-probs, values and rewards (no models, no Lightning).

masked.py         masked mean / sum / whitening over (B, T) token tensors
kl.py             per-token KL estimators (k1, k2, k3) and the adaptive KL coefficient (Ziegler et al.)
ppo.py            GAE, the clipped policy loss and the clipped value loss (PPO, Schulman et al.)
rloo.py           the leave-one-out baseline of RLOO (Ahmadian et al.)
discriminator.py  binary cross-entropy of an expert-vs-generated discriminator with label smoothing

The preference losses (DPO family, Bradley-Terry) are fused kernels: lit_align.ops.preference_loss.
"""
from lit_align.losses.discriminator import discriminator_loss
from lit_align.losses.kl import KL_ESTIMATORS, AdaptiveKLController, token_kl
from lit_align.losses.masked import masked_mean, masked_sum, masked_whiten
from lit_align.losses.ppo import gae, policy_loss, value_loss
from lit_align.losses.rloo import leave_one_out_advantages

__all__ = ["KL_ESTIMATORS", "AdaptiveKLController", "discriminator_loss", "gae", "leave_one_out_advantages",
           "masked_mean", "masked_sum", "masked_whiten", "policy_loss", "token_kl", "value_loss"]
