"""preference_loss: the DPO family and Bradley-Terry on per-sequence scores, as one fused op.

The formulas, each with its paper, are lit_align/losses/preference.py (sigmoid = DPO / cDPO / CREAM, robust = rDPO,
hinge = SLiC, ipo, bt = Bradley-Terry, simpo); this file checks the inputs and dispatches to the kernels (C++ CPU,
Triton, CUDA: the same formulas with their backward), or to preference_loss_reference, which composes the formulas
of lit_align.losses.preference with torch autograd.

Rewards (detached, for metrics): b * (policy - ref) for the DPO types, the raw scores for bt, b * score for simpo.
Returns per-pair (loss[B], chosen_rewards[B], rejected_rewards[B]); reduce with .mean() for training.
The cpp, triton and cuda kernels are elementwise in one code path (batch invariant); batch_invariant=True only
rules out the torch backend, whose vectorised transcendental ops round differently in a vector and its tail.
"""
from __future__ import annotations

import torch

from lit_align.losses.preference import LOSSES, REFERENCE_FREE, SMOOTHABLE, preference_margin, preference_rewards
from lit_align.ops._dispatch import resolve_backend

LOSS_TYPES = tuple(LOSSES)  # the kernels' order (csrc/cuda/kernels.h LossType)


def preference_loss_reference(policy_chosen, policy_rejected, ref_chosen=None, ref_rejected=None, *,
                              beta: float = 0.1, loss_type: str = "sigmoid", label_smoothing=0.0,
                              gamma: float = 0.0):
    """Plain PyTorch ground truth (autograd through lit_align.losses.preference); arguments as in preference_loss."""
    if loss_type not in LOSSES:
        raise ValueError(f"loss_type={loss_type!r}; expected one of {LOSS_TYPES}")
    margin = preference_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)  # (B,)
    loss = LOSSES[loss_type](margin, beta, label_smoothing, gamma)
    return (loss, preference_rewards(policy_chosen, ref_chosen, beta, loss_type),
            preference_rewards(policy_rejected, ref_rejected, beta, loss_type))


def check_preference_inputs(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, loss_type,
                            label_smoothing) -> None:
    """One clear ValueError for bad preference_loss inputs (also used by the chunked fused path)."""
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
    """Per-pair preference loss and detached rewards; the formulas: lit_align/losses/preference.py.

    policy_*/ref_*: (B,) sequence log-probs (or reward scores for bt). label_smoothing: float or (B,).
    Returns (loss (B,), chosen_rewards (B,), rejected_rewards (B,)).
    """
    check_preference_inputs(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, loss_type,
                            label_smoothing)
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
