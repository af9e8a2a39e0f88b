"""Per-token KL(pi || ref) estimators from sampled tokens, and the adaptive KL coefficient.

With y_t ~ pi and log r_t = log ref(y_t) - log pi(y_t) (Schulman, "Approximating KL divergence", 2020):
  k1 = -log r            unbiased, can be negative (the usual PPO reward penalty)
  k2 = (log r)^2 / 2     biased, low variance
  k3 = (r - 1) - log r   unbiased and never negative (the GRPO / RLOO loss-term choice)

AdaptiveKLController: Ziegler et al., "Fine-Tuning Language Models from Human Preferences", arXiv 1909.08593,
§2.2: beta <- beta * (1 + K * e), e = clip(KL / target - 1, -0.2, 0.2), K = n_steps / horizon.
"""
from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def token_kl(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """(B, T) per-token KL estimate from the policy's and the reference's log-probs of the sampled tokens."""
    log_r = ref_logp - logp
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r ** 2
    if estimator == "k3":
        return torch.expm1(log_r) - log_r
    raise ValueError(f"kl estimator={estimator!r}; expected one of {KL_ESTIMATORS}")


class AdaptiveKLController:
    """The KL coefficient beta: fixed (target=None) or steered toward a target KL per sequence."""

    def __init__(self, beta: float, target: float | None = None, horizon: int = 10000):
        if beta < 0:
            raise ValueError(f"the KL coefficient must be >= 0, got {beta}")
        if target is not None and target <= 0:
            raise ValueError(f"the KL target must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"the KL horizon must be > 0, got {horizon}")
        self.value, self.target, self.horizon = float(beta), target, horizon

    def update(self, kl: float, n_steps: int) -> float:
        """Move beta after a rollout batch of `n_steps` samples whose mean sequence KL was `kl`."""
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])
