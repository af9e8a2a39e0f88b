"""Preference losses: the DPO family and Bradley-Terry as pure functions of per-pair margins.

The margin of a pair is m = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected) (`preference_margin`;
refs 0 when absent: SimPO and BT are reference-free), beta b the KL-regularisation strength, and label_smoothing e
the probability that the pair's label is flipped (a float or one value per pair):

  dpo_loss            (1-e) * -logsig(b*m) + e * -logsig(-b*m)                       loss_type "sigmoid"
  robust_dpo_loss     ((1-e) * -logsig(b*m) - e * -logsig(-b*m)) / (1 - 2e)          loss_type "robust"
  hinge_loss          relu(1 - b*m)                                                  loss_type "hinge"
  ipo_loss            (m - 1/(2b))^2                                                 loss_type "ipo"
  bradley_terry_loss  (1-e) * -logsig(m) + e * -logsig(-m), m = chosen - rejected    loss_type "bt"
  simpo_loss          (1-e) * -logsig(b*m - g) + e * -logsig(-(b*m - g))             loss_type "simpo"

Each returns the per-pair loss (B,); reduce with .mean(). rpo_nll is the NLL term RPO adds to a DPO loss.
These are the ground truth of the fused op lit_align.ops.preference_loss (C++, Triton and CUDA kernels of the same
formulas, with their backward), whose torch reference calls them through LOSSES: train with the op, read the
formulas here.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Smoothing = float | torch.Tensor  # label_smoothing: one flip probability, or one per pair (B,)


def preference_margin(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                      ref_chosen: torch.Tensor | None = None, ref_rejected: torch.Tensor | None = None) -> torch.Tensor:
    """m = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected), (B,); an absent reference counts as 0.

    Computed as ((pc - pr) - rc) + rr, the order every kernel uses."""
    margin = policy_chosen - policy_rejected
    if ref_chosen is not None:
        margin = margin - ref_chosen
    if ref_rejected is not None:
        margin = margin + ref_rejected
    return margin


def _flip_smoothed_logistic(x: torch.Tensor, label_smoothing: Smoothing) -> torch.Tensor:
    """(1-e) * -logsig(x) + e * -logsig(-x): the logistic loss of x when the label is flipped with probability e."""
    return -(1 - label_smoothing) * F.logsigmoid(x) - label_smoothing * F.logsigmoid(-x)


def dpo_loss(margin: torch.Tensor, beta: float, label_smoothing: Smoothing = 0.0) -> torch.Tensor:
    """DPO: -logsig(beta * m). Rafailov et al., arXiv 2305.18290, Eq. 7.

    label_smoothing e > 0: conservative DPO (cDPO; Mitchell, "A note on DPO with noisy preferences", 2023);
    e_i = 1 - C_i from each pair's rank consistency C_i: CREAM, Wang et al., arXiv 2410.12735, Eq. 6."""
    return _flip_smoothed_logistic(beta * margin, label_smoothing)


def robust_dpo_loss(margin: torch.Tensor, beta: float, label_smoothing: Smoothing) -> torch.Tensor:
    """rDPO, unbiased under label flips with probability e < 1/2: Chowdhury et al., arXiv 2403.00409, Eq. 8."""
    x = beta * margin
    return (-(1 - label_smoothing) * F.logsigmoid(x) + label_smoothing * F.logsigmoid(-x)) / (1 - 2 * label_smoothing)


def hinge_loss(margin: torch.Tensor, beta: float) -> torch.Tensor:
    """SLiC's calibration hinge on the log-ratio margin: relu(1 - beta * m). Zhao et al., arXiv 2305.10425, Eq. 3."""
    return torch.relu(1 - beta * margin)


def ipo_loss(margin: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO: (m - 1/(2 beta))^2, on length-normalised log-probs in practice. Azar et al., arXiv 2310.12036, Eq. 17."""
    return (margin - 1 / (2 * beta)) ** 2


def bradley_terry_loss(margin: torch.Tensor, label_smoothing: Smoothing = 0.0) -> torch.Tensor:
    """Reward modelling on raw scores, m = r(chosen) - r(rejected): -logsig(m) (Bradley-Terry).
    Ouyang et al. (InstructGPT), arXiv 2203.02155, Eq. 1; label smoothing as in dpo_loss."""
    return _flip_smoothed_logistic(margin, label_smoothing)


def simpo_loss(margin: torch.Tensor, beta: float, gamma: float, label_smoothing: Smoothing = 0.0) -> torch.Tensor:
    """SimPO, reference-free on length-normalised log-probs with a target margin gamma: -logsig(beta * m - gamma).
    Meng et al., arXiv 2405.14734, Eq. 6."""
    return _flip_smoothed_logistic(beta * margin - gamma, label_smoothing)


def rpo_nll(chosen: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """RPO's NLL term on the chosen answer, -log pi(y_w | x) / |y_w| per pair (B,), added to a DPO loss with weight
    alpha: Pang et al., arXiv 2404.19733, Eq. 3. chosen: sequence log-probs (B,), sums over `lengths` (B,) tokens,
    or per-token means already (lengths None)."""
    return -chosen if lengths is None else -chosen / lengths


# loss_type -> loss(margin, beta, label_smoothing, gamma). The order is the kernels' (csrc/cuda/kernels.h LossType).
LOSSES: dict[str, Callable[[torch.Tensor, float, Smoothing, float], torch.Tensor]] = {
    "sigmoid": lambda m, beta, eps, gamma: dpo_loss(m, beta, eps),
    "robust": lambda m, beta, eps, gamma: robust_dpo_loss(m, beta, eps),
    "hinge": lambda m, beta, eps, gamma: hinge_loss(m, beta),
    "ipo": lambda m, beta, eps, gamma: ipo_loss(m, beta),
    "bt": lambda m, beta, eps, gamma: bradley_terry_loss(m, eps),
    "simpo": lambda m, beta, eps, gamma: simpo_loss(m, beta, gamma, eps),
}
REFERENCE_FREE = ("bt", "simpo")  # no reference scores
SMOOTHABLE = ("sigmoid", "robust", "bt", "simpo")  # label_smoothing is defined


def preference_rewards(policy: torch.Tensor, ref: torch.Tensor | None, beta: float, loss_type: str) -> torch.Tensor:
    """The implicit reward of each sequence, detached (for metrics): beta * (policy - ref) (DPO, arXiv 2305.18290
    Sec. 5), beta * policy for SimPO, the raw score for bt."""
    scale = 1.0 if loss_type == "bt" else beta
    return (scale * (policy if ref is None else policy - ref)).detach()
