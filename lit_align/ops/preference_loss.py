"""preference_loss: the DPO family and Bradley-Terry on per-sequence scores, one formula table.

With margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected) (refs 0 when absent), beta b,
and label_smoothing e (the probability that a pair's label is flipped; a float or one value per pair):

  sigmoid  (1-e) * -logsig(b*m) + e * -logsig(-b*m)     DPO, Rafailov et al. arXiv 2305.18290 Eq. 7;
                                                        e > 0: cDPO; e_i = 1 - C_i: CREAM arXiv 2410.12735 Eq. 6
  robust   ((1-e) * -logsig(b*m) - e * -logsig(-b*m)) / (1 - 2e)   rDPO, Chowdhury et al. arXiv 2403.00409 Eq. 8
  hinge    relu(1 - b*m)                                SLiC, Zhao et al. arXiv 2305.10425 Eq. 3
  ipo      (m - 1/(2b))^2                               IPO, Azar et al. arXiv 2310.12036 Eq. 17
  bt       (1-e) * -logsig(m) + e * -logsig(-m), m = chosen - rejected on raw reward scores (no refs, no beta)
  simpo    (1-e) * -logsig(b*m - g) + e * -logsig(-(b*m - g)), m on length-normalised log-probs, no refs
           SimPO, Meng et al. arXiv 2405.14734 Eq. 6 (g = gamma)

Rewards (detached, for metrics): b * (policy - ref) for the DPO types, the raw scores for bt, b * score for simpo.
Returns per-pair (loss[B], chosen_rewards[B], rejected_rewards[B]); reduce with .mean() for training.
The cpp, triton and cuda kernels are elementwise in one code path (batch invariant); batch_invariant=True only
rules out the torch backend, whose vectorised transcendental ops round differently in a vector and its tail.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_align.ops._dispatch import resolve_backend

LOSS_TYPES = ("sigmoid", "robust", "hinge", "ipo", "bt", "simpo")
REFERENCE_FREE = ("bt", "simpo")
SMOOTHABLE = ("sigmoid", "robust", "bt", "simpo")


def _margin(pc, pr, rc, rr):
    margin = pc - pr
    if rc is not None:
        margin = margin - rc
    if rr is not None:
        margin = margin + rr
    return margin


def preference_loss_reference(policy_chosen, policy_rejected, ref_chosen=None, ref_rejected=None, *,
                              beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing=0.0,
                              gamma: float = 0.0):
    """Plain PyTorch ground truth (autograd through it); arguments as in preference_loss."""
    m = _margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)  # (B,)
    eps = label_smoothing
    if loss_type == "sigmoid":
        loss = -(1 - eps) * F.logsigmoid(beta * m) - eps * F.logsigmoid(-beta * m)
    elif loss_type == "robust":
        loss = (-(1 - eps) * F.logsigmoid(beta * m) + eps * F.logsigmoid(-beta * m)) / (1 - 2 * eps)
    elif loss_type == "hinge":
        loss = torch.relu(1 - beta * m)
    elif loss_type == "ipo":
        loss = (m - 1 / (2 * beta)) ** 2
    elif loss_type == "bt":
        loss = -(1 - eps) * F.logsigmoid(m) - eps * F.logsigmoid(-m)
    elif loss_type == "simpo":
        z = beta * m - gamma
        loss = -(1 - eps) * F.logsigmoid(z) - eps * F.logsigmoid(-z)
    else:
        raise ValueError(f"loss_type={loss_type!r}; expected one of {LOSS_TYPES}")
    scale = 1.0 if loss_type == "bt" else beta
    chosen = policy_chosen if ref_chosen is None else policy_chosen - ref_chosen
    rejected = policy_rejected if ref_rejected is None else policy_rejected - ref_rejected
    return loss, (scale * chosen).detach(), (scale * rejected).detach()


def _check(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, loss_type, label_smoothing):
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type={loss_type!r}; expected one of {LOSS_TYPES}")
    for name, t in (("policy_chosen", policy_chosen), ("policy_rejected", policy_rejected),
                    ("ref_chosen", ref_chosen), ("ref_rejected", ref_rejected)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 1:
            raise ValueError(f"{name} must be a 1-d floating-point tensor [B], got "
                             f"{getattr(t, 'dtype', type(t).__name__)} {tuple(getattr(t, 'shape', ()))}")
        if t.shape != policy_chosen.shape:
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected {tuple(policy_chosen.shape)}")
    if (ref_chosen is None) != (ref_rejected is None):
        raise ValueError("pass both ref_chosen and ref_rejected, or neither")
    if loss_type in REFERENCE_FREE and ref_chosen is not None:
        raise ValueError(f"loss_type={loss_type!r} is reference-free; do not pass ref_chosen/ref_rejected")
    if loss_type != "bt" and not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    eps = torch.as_tensor(label_smoothing)
    if eps.dim() > 1 or (eps.dim() == 1 and eps.shape != policy_chosen.shape):
        raise ValueError(f"label_smoothing must be a float or a [B] tensor, got shape {tuple(eps.shape)}")
    if eps.numel() and (bool((eps < 0).any()) or bool((eps > 1).any())):
        raise ValueError("label_smoothing must lie in [0, 1]")
    if eps.numel() and bool((eps != 0).any()):
        if loss_type not in SMOOTHABLE:
            raise ValueError(f"label_smoothing is not defined for loss_type={loss_type!r}")
        if loss_type == "robust" and bool((eps >= 0.5).any()):
            raise ValueError("loss_type='robust' needs label_smoothing < 0.5")


def _run_kernel(backend, pc, pr, rc, rr, eps, beta, loss_type, gamma):
    if backend == "triton":
        from lit_align.ops.triton.preference_loss import triton_preference_loss
        return triton_preference_loss(pc, pr, rc, rr, eps, beta, loss_type, gamma)
    import lit_align.ops._library  # noqa: F401
    return torch.ops.lit_align.preference_loss(pc, pr, rc, rr, eps, beta, loss_type, gamma)


def preference_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
                    ref_chosen: torch.Tensor | None = None, ref_rejected: torch.Tensor | None = None, *,
                    beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing=0.0, gamma: float = 0.0,
                    backend: str = "auto", batch_invariant: bool = False):
    """Per-pair preference loss and detached rewards; see the module docstring for the formulas.

    policy_*/ref_*: (B,) sequence log-probs (or reward scores for bt). label_smoothing: float or (B,).
    Returns (loss (B,), chosen_rewards (B,), rejected_rewards (B,)).
    """
    _check(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, loss_type, label_smoothing)
    backend = resolve_backend(backend, "preference_loss", policy_chosen.device, batch_invariant)
    if backend == "torch":
        return preference_loss_reference(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=beta,
                                         loss_type=loss_type, label_smoothing=label_smoothing, gamma=gamma)
    dtype = policy_chosen.dtype
    eps = torch.as_tensor(label_smoothing, dtype=dtype, device=policy_chosen.device)
    eps = eps.expand(policy_chosen.shape).contiguous()  # (B,)
    refs = [None if r is None else r.to(dtype).contiguous() for r in (ref_chosen, ref_rejected)]
    loss, chosen, rejected = _run_kernel(backend, policy_chosen.contiguous(), policy_rejected.to(dtype).contiguous(),
                                         *refs, eps, float(beta), loss_type, float(gamma))
    return loss, chosen.detach(), rejected.detach()
