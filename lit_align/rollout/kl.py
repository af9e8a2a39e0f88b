"""Monte-Carlo estimates of KL(pi || ref) from responses sampled from the policy pi.

The per-token estimators are lit_align.losses.token_kl's (Schulman, "Approximating KL divergence", 2020), with
y ~ pi(.|x) and log r_t = log ref(y_t|x,y_<t) - log pi(y_t|x,y_<t):

  k1 = sum_t -log r_t                 unbiased for the sequence KL, high variance, can be negative
  k3 = sum_t (r_t - 1) - log r_t      unbiased too (E_pi[r_t] = 1 at every step), never negative, lower variance

Both are reported per sequence (summed over its tokens, averaged over samples: the KL a PPO/RLOO penalty
uses) as "kl" (k1) and "kl_k3", and per token (summed over all sampled tokens, divided by their number) as
"kl_per_token" and "kl_k3_per_token". The samples must come from pi at temperature 1 with no truncation
(top-p 1, no top-k), else the estimates are biased.
"""
from __future__ import annotations

from typing import Any

import torch

from lit_align.losses.kl import token_kl
from lit_align.rollout.generate import Generation
from lit_align.rollout.score import completion_token_logprobs


def kl_estimates(policy_logps: list[torch.Tensor], reference_logps: list[torch.Tensor]) -> dict[str, float]:
    """k1/k3 KL estimates from per-sample token log-probs (each a (num_tokens,) tensor) of pi and ref."""
    if len(policy_logps) != len(reference_logps) or not policy_logps:
        raise ValueError(f"need matching, non-empty samples; got {len(policy_logps)} and {len(reference_logps)}")
    pairs = list(zip(policy_logps, reference_logps, strict=True))

    def per_sample(estimator: str) -> torch.Tensor:  # (S,) the estimate summed over each sample's tokens
        return torch.stack([token_kl(pi.double(), ref.double(), estimator).sum() for pi, ref in pairs])

    k1, k3 = per_sample("k1"), per_sample("k3")
    tokens = max(1, sum(pi.numel() for pi, _ in pairs))
    return {"kl": k1.mean().item(), "kl_k3": k3.mean().item(),
            "kl_per_token": k1.sum().item() / tokens, "kl_k3_per_token": k3.sum().item() / tokens}


def kl_to_reference(policy, reference, tokenizer: Any, samples: list[Generation], batch_size: int = 64
                    ) -> dict[str, float]:
    """KL(pi || ref) estimates on `samples` drawn from `policy` (both models share `tokenizer`)."""
    pi = completion_token_logprobs(policy, tokenizer, samples, batch_size)
    ref = completion_token_logprobs(reference, tokenizer, samples, batch_size)
    return kl_estimates(pi, ref)
