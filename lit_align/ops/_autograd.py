"""The autograd formulas of the lit_align ops, written once for both registrations of each op.

An op exists twice: the compiled lit_align::<op> (C++ CPU / CUDA kernels, registered in _library.py) and the
Triton op lit_align::triton_<op> (ops/triton/<op>.py). Both take the same inputs, return the same outputs and have
a backward kernel, so what autograd saves and how it calls that kernel is the same code: `register_autograd(op,
name, backward_op)` attaches FORMULAS[name] to `op` (an op name or a torch.library CustomOpDef) with the
backward kernel `backward_op` (a torch.ops overload or the Triton op) — Liger's kernel -> launcher ->
autograd.Function shape, without one Function body per file.

Conventions (csrc/ops.cpp): the log-prob ops return (logp, row_max, log_sum); row_max is the softmax shift, a
constant for autograd (marked non-differentiable); log_sum is differentiable. preference_loss's backward kernel
returns d loss / d margin, which autograd hands to (pc, pr, rc, rr) with the signs of the margin (+ - - +).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch


class Formula(NamedTuple):
    setup_context: Callable  # (ctx, inputs, output) -> None
    backward: Callable[[Callable], Callable]  # backward kernel -> backward(ctx, *grads)


def zeros_if_none(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Autograd passes None for an output that got no gradient; the kernels want zeros."""
    return torch.zeros_like(like) if grad is None else grad.contiguous()


# ---- token_logprobs(logits, labels, ignore_index, temperature) -> (logp, row_max, log_sum) -----------------
def _token_setup(ctx, inputs, output):
    logits, labels, ctx.ignore_index, ctx.temperature = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(logits, labels, output[1], output[2])


def _token_backward(backward_op):
    def backward(ctx, grad_logp, _grad_row_max, grad_log_sum):
        logits, labels, row_max, log_sum = ctx.saved_tensors
        grad_logits = backward_op(zeros_if_none(grad_logp, log_sum), zeros_if_none(grad_log_sum, log_sum), logits,
                                  labels, row_max, log_sum, ctx.ignore_index, ctx.temperature)
        return grad_logits, None, None, None
    return backward


# ---- linear_token_logprobs(hidden, weight, bias, labels, ignore_index, temperature, batch_invariant) ----------
# backward_op(grad_logp, grad_log_sum, hidden, weight, bias, labels, row_max, log_sum, ignore_index, temperature,
#             need_hidden, need_weight, need_bias, batch_invariant) -> (grad_hidden, grad_weight, grad_bias); the
# gradients not needed may come back empty.
def _linear_setup(ctx, inputs, output):
    hidden, weight, bias, labels, ctx.ignore_index, ctx.temperature, ctx.batch_invariant = inputs
    ctx.has_bias = bias is not None
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(hidden, weight, bias, labels, output[1], output[2])


def _linear_backward(backward_op):
    def backward(ctx, grad_logp, _grad_row_max, grad_log_sum):
        hidden, weight, bias, labels, row_max, log_sum = ctx.saved_tensors
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_bias = ctx.has_bias and need_bias
        grad_hidden, grad_weight, grad_bias = backward_op(
            zeros_if_none(grad_logp, log_sum), zeros_if_none(grad_log_sum, log_sum), hidden, weight, bias, labels,
            row_max, log_sum, ctx.ignore_index, ctx.temperature, need_hidden, need_weight, need_bias,
            ctx.batch_invariant)
        return (grad_hidden if need_hidden else None, grad_weight if need_weight else None,
                grad_bias if need_bias else None, None, None, None, None)
    return backward


# ---- sequence_logprobs(token_logp, segment_ids, num_segments, mean) -> (S,) -----------------------------------
def _sequence_setup(ctx, inputs, output):
    _, segment_ids, ctx.num_segments, ctx.mean = inputs
    ctx.save_for_backward(segment_ids)


def _sequence_backward(backward_op):
    def backward(ctx, grad):
        (segment_ids,) = ctx.saved_tensors
        return backward_op(grad.contiguous(), segment_ids, ctx.num_segments, ctx.mean), None, None, None
    return backward


# ---- preference_loss(pc, pr, rc, rr, label_smoothing, beta, loss_type, gamma) -> (loss, chosen, rejected) -----
def _preference_setup(ctx, inputs, output):
    pc, pr, rc, rr, eps, ctx.beta, ctx.loss_type, ctx.gamma = inputs
    ctx.has_ref = rc is not None
    ctx.save_for_backward(pc, pr, rc, rr, eps)


def _preference_backward(backward_op):
    def backward(ctx, grad_loss, _grad_chosen_rewards, _grad_rejected_rewards):
        pc, pr, rc, rr, eps = ctx.saved_tensors  # the rewards are detached: their gradients are ignored
        g = backward_op(zeros_if_none(grad_loss, pc), pc, pr, rc, rr, eps, ctx.beta, ctx.loss_type,
                        ctx.gamma)  # d loss / d margin, (B,)
        refs = (-g, g) if ctx.has_ref else (None, None)
        return g, -g, *refs, None, None, None, None
    return backward


FORMULAS = {
    "token_logprobs": Formula(_token_setup, _token_backward),
    "linear_token_logprobs": Formula(_linear_setup, _linear_backward),
    "sequence_logprobs": Formula(_sequence_setup, _sequence_backward),
    "preference_loss": Formula(_preference_setup, _preference_backward),
}


def register_autograd(op, name: str, backward_op: Callable) -> None:
    """Attach the autograd formula of op family `name` to `op`, calling the backward kernel `backward_op`."""
    formula = FORMULAS[name]
    torch.library.register_autograd(op, formula.backward(backward_op), setup_context=formula.setup_context)
