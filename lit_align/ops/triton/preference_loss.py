"""Triton preference_loss: the DPO family and Bradley-Terry in one elementwise kernel per loss type.

The formulas are lit_align/losses/preference.py's table (loss_type is a constexpr, so each type compiles
to its own straight-line kernel). With margin m = (pc - pr) - rc + rr (refs 0 when absent) and
x = beta*m (sigmoid, robust), m (bt) or beta*m - gamma (simpo), the logistic losses are written with
softplus(-x) = -logsigmoid(x), and their derivative through sigmoid(x):
    sigmoid/bt/simpo  (1-e) softplus(-x) + e softplus(x)              dl/dx = sigmoid(x) - (1 - e)
    robust            ((1-e) softplus(-x) - e softplus(x)) / (1-2e)   dl/dx = sigmoid(x) - (1-e)/(1-2e)
    hinge             relu(1 - beta m)                                dl/dm = -beta where 1 - beta m > 0
    ipo               (m - 1/(2 beta))^2                              dl/dm = 2 (m - 1/(2 beta))
The forward writes the loss and the detached rewards (beta*(policy - ref); raw scores for bt); the backward
writes d loss / d margin (the C++ op's contract), which autograd hands to pc, pr, rc, rr with signs + - - +.

    triton_preference_loss(pc, pr, rc | None, rr | None, label_smoothing[B], beta, loss_type, gamma)
        -> (loss[B], chosen_rewards[B], rejected_rewards[B])
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_align.ops._autograd import register_autograd
from lit_align.ops.triton._common import compute_dtype, register_op, scalar, upcast, wrap_triton

BLOCK = 1024


@triton.jit
def _log1p(u):
    """log(1 + u) accurate for small u (Goldberg's trick; libdevice's log1p is unavailable in the interpreter)."""
    w = 1.0 + u
    rounded = w - 1.0  # u as 1 + u stores it
    exact = rounded == 0.0
    return tl.where(exact, u, tl.log(w) * (u / tl.where(exact, 1.0, rounded)))


@triton.jit
def _softplus(x):
    return tl.maximum(x, 0.0) + _log1p(tl.exp(-tl.abs(x)))


@triton.jit
def _sigmoid(x):
    e = tl.exp(-tl.abs(x))
    return tl.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def _loss_and_slope(m, eps, beta, gamma, LOSS_TYPE: tl.constexpr):
    """(loss, d loss / d margin) for margins m (the compute dtype) under LOSS_TYPE."""
    if LOSS_TYPE == "hinge":
        gap = 1.0 - beta * m
        return tl.maximum(gap, 0.0), tl.where(gap > 0.0, -beta, 0.0)
    elif LOSS_TYPE == "ipo":
        gap = m - 1.0 / (2.0 * beta)
        return gap * gap, 2.0 * gap
    else:
        if LOSS_TYPE == "bt":
            x, dx_dm = m, 1.0
        elif LOSS_TYPE == "simpo":
            x, dx_dm = beta * m - gamma, beta
        else:  # sigmoid, robust
            x, dx_dm = beta * m, beta
        if LOSS_TYPE == "robust":
            loss = ((1.0 - eps) * _softplus(-x) - eps * _softplus(x)) / (1.0 - 2.0 * eps)
            slope = _sigmoid(x) - (1.0 - eps) / (1.0 - 2.0 * eps)
        else:
            loss = (1.0 - eps) * _softplus(-x) + eps * _softplus(x)
            slope = _sigmoid(x) - (1.0 - eps)
        return loss, slope * dx_dm


@triton.jit
def _margin(pc_ptr, pr_ptr, rc_ptr, rr_ptr, offs, mask, HAS_REF: tl.constexpr, FP64: tl.constexpr):
    """(margin, policy_chosen - ref_chosen, policy_rejected - ref_rejected), in the reference's order of operations."""
    pc = upcast(tl.load(pc_ptr + offs, mask=mask, other=0.0), FP64)
    pr = upcast(tl.load(pr_ptr + offs, mask=mask, other=0.0), FP64)
    if HAS_REF:
        rc = upcast(tl.load(rc_ptr + offs, mask=mask, other=0.0), FP64)
        rr = upcast(tl.load(rr_ptr + offs, mask=mask, other=0.0), FP64)
        return pc - pr - rc + rr, pc - rc, pr - rr
    else:
        return pc - pr, pc, pr


@triton.jit
def _load_block(pc_ptr, pr_ptr, rc_ptr, rr_ptr, eps_ptr, B, HAS_REF: tl.constexpr, FP64: tl.constexpr,
                BLOCK: tl.constexpr):
    """This program's block of pairs: (offs, mask, margin, chosen - ref, rejected - ref, label_smoothing)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < B
    m, chosen, rejected = _margin(pc_ptr, pr_ptr, rc_ptr, rr_ptr, offs, mask, HAS_REF, FP64)
    eps = upcast(tl.load(eps_ptr + offs, mask=mask, other=0.0), FP64)
    return offs, mask, m, chosen, rejected, eps


@triton.jit
def _preference_fwd_kernel(
    pc_ptr, pr_ptr, rc_ptr, rr_ptr, eps_ptr, loss_ptr, chosen_ptr, rejected_ptr,  # all (B,)
    B, beta: tl.float64, gamma: tl.float64,
    LOSS_TYPE: tl.constexpr, HAS_REF: tl.constexpr, FP64: tl.constexpr, BLOCK: tl.constexpr,
):
    offs, mask, m, chosen, rejected, eps = _load_block(pc_ptr, pr_ptr, rc_ptr, rr_ptr, eps_ptr, B, HAS_REF, FP64,
                                                       BLOCK)
    b = scalar(beta, FP64)
    loss, _ = _loss_and_slope(m, eps, b, scalar(gamma, FP64), LOSS_TYPE)
    if LOSS_TYPE != "bt":  # bt's rewards are the raw scores
        chosen = b * chosen
        rejected = b * rejected
    tl.store(loss_ptr + offs, loss, mask=mask)
    tl.store(chosen_ptr + offs, chosen, mask=mask)
    tl.store(rejected_ptr + offs, rejected, mask=mask)


@triton.jit
def _preference_bwd_kernel(
    grad_loss_ptr, pc_ptr, pr_ptr, rc_ptr, rr_ptr, eps_ptr, grad_margin_ptr,  # all (B,)
    B, beta: tl.float64, gamma: tl.float64,
    LOSS_TYPE: tl.constexpr, HAS_REF: tl.constexpr, FP64: tl.constexpr, BLOCK: tl.constexpr,
):
    offs, mask, m, _, _, eps = _load_block(pc_ptr, pr_ptr, rc_ptr, rr_ptr, eps_ptr, B, HAS_REF, FP64, BLOCK)
    _, slope = _loss_and_slope(m, eps, scalar(beta, FP64), scalar(gamma, FP64), LOSS_TYPE)
    grad = upcast(tl.load(grad_loss_ptr + offs, mask=mask, other=0.0), FP64) * slope
    tl.store(grad_margin_ptr + offs, grad, mask=mask)


def _launch_args(pc, rc, rr, loss_type: str) -> tuple[tuple, dict]:
    """The grid and the constexprs shared by both kernels; refs are replaced by pc when absent (never read)."""
    grid = (triton.cdiv(pc.numel(), BLOCK),)
    meta = dict(LOSS_TYPE=loss_type, HAS_REF=rc is not None, FP64=compute_dtype(pc.dtype) == torch.float64,
                BLOCK=BLOCK)
    return grid, meta


@register_op("triton_preference_loss")
def _preference_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor | None, rr: torch.Tensor | None,
                     label_smoothing: torch.Tensor, beta: float, loss_type: str,
                     gamma: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    loss, chosen, rejected = (torch.empty_like(pc) for _ in range(3))  # (B,) each
    if pc.numel():
        grid, meta = _launch_args(pc, rc, rr, loss_type)
        wrap_triton(_preference_fwd_kernel)[grid](
            pc, pr, pc if rc is None else rc, pc if rr is None else rr, label_smoothing, loss, chosen, rejected,
            pc.numel(), beta, gamma, **meta)
    return loss, chosen, rejected


@register_op("triton_preference_loss_backward")
def _preference_loss_backward(grad_loss: torch.Tensor, pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor | None,
                              rr: torch.Tensor | None, label_smoothing: torch.Tensor, beta: float, loss_type: str,
                              gamma: float) -> torch.Tensor:
    grad_margin = torch.empty_like(pc)  # (B,)
    if pc.numel():
        grid, meta = _launch_args(pc, rc, rr, loss_type)
        wrap_triton(_preference_bwd_kernel)[grid](
            grad_loss, pc, pr, pc if rc is None else rc, pc if rr is None else rr, label_smoothing, grad_margin,
            pc.numel(), beta, gamma, **meta)
    return grad_margin


register_autograd(_preference_loss, "preference_loss", _preference_loss_backward)


def triton_preference_loss(pc: torch.Tensor, pr: torch.Tensor, rc: torch.Tensor | None, rr: torch.Tensor | None,
                           label_smoothing: torch.Tensor, beta: float, loss_type: str, gamma: float):
    """(loss [B], chosen_rewards [B], rejected_rewards [B]); rewards detached; differentiable w.r.t. pc, pr, rc, rr."""
    refs = [None if r is None else r.contiguous() for r in (rc, rr)]
    loss, chosen_rewards, rejected_rewards = _preference_loss(pc.contiguous(), pr.contiguous(), *refs,
                                                              label_smoothing.contiguous(), float(beta), loss_type,
                                                              float(gamma))
    return loss, chosen_rewards.detach(), rejected_rewards.detach()
