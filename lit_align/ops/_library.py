"""Fake (meta) kernels and autograd formulas for the compiled lit_align::* ops (schemas: csrc/ops.cpp).

The fakes let torch.compile(fullgraph=True) trace the ops; the autograd formulas call the backward
kernels (never autograd through a reference). Imported only when lit_align._C loaded.
"""
from __future__ import annotations

import torch

from lit_align.ops._extension import extension_loaded

if not extension_loaded():  # pragma: no cover - the dispatcher never routes here without the extension
    raise ImportError("lit_align._C is not built")

lib = torch.library


def _stat_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


# ---- token_logprobs -------------------------------------------------------------------------------
# Outputs (logp, row_max, log_sum): row_max is the shift of the softmax statistics, a constant for autograd
# (marked non-differentiable); log_sum carries the gradient of logsumexp = row_max / T + log_sum.
def _row_stats(t: torch.Tensor, n) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(t.new_empty(n, dtype=_stat_dtype(t)) for _ in range(3))


@lib.register_fake("lit_align::token_logprobs")
def _(logits, labels, ignore_index, temperature):
    return _row_stats(logits, logits.shape[0])


@lib.register_fake("lit_align::token_logprobs_backward")
def _(grad_logp, grad_log_sum, logits, labels, row_max, log_sum, ignore_index, temperature):
    return torch.empty_like(logits)


def _token_setup(ctx, inputs, output):
    logits, labels, ctx.ignore_index, ctx.temperature = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(logits, labels, output[1], output[2])


def _token_backward(ctx, grad_logp, _grad_row_max, grad_log_sum):
    logits, labels, row_max, log_sum = ctx.saved_tensors
    grad = torch.ops.lit_align.token_logprobs_backward(
        _zeros_if_none(grad_logp, log_sum), _zeros_if_none(grad_log_sum, log_sum), logits, labels, row_max, log_sum,
        ctx.ignore_index, ctx.temperature)
    return grad, None, None, None


def _zeros_if_none(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad.contiguous()


lib.register_autograd("lit_align::token_logprobs", _token_backward, setup_context=_token_setup)


# ---- linear_token_logprobs ------------------------------------------------------------------------
@lib.register_fake("lit_align::linear_token_logprobs")
def _(hidden, weight, bias, labels, ignore_index, temperature, batch_invariant):
    return _row_stats(hidden, hidden.shape[0])


@lib.register_fake("lit_align::linear_token_logprobs_backward")
def _(grad_logp, grad_log_sum, hidden, weight, bias, labels, row_max, log_sum, ignore_index, temperature,
      compute_weight_grad, batch_invariant):
    grad_weight = torch.empty_like(weight) if compute_weight_grad else weight.new_empty(0)
    has_bias = compute_weight_grad and bias is not None
    grad_bias = weight.new_empty(weight.shape[0]) if has_bias else weight.new_empty(0)
    return torch.empty_like(hidden), grad_weight, grad_bias


def _linear_setup(ctx, inputs, output):
    hidden, weight, bias, labels, ctx.ignore_index, ctx.temperature, ctx.batch_invariant = inputs
    ctx.has_bias = bias is not None
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(hidden, weight, bias, labels, output[1], output[2])


def _linear_backward(ctx, grad_logp, _grad_row_max, grad_log_sum):
    hidden, weight, bias, labels, row_max, log_sum = ctx.saved_tensors
    weight_grad = ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2])
    grad_hidden, grad_weight, grad_bias = torch.ops.lit_align.linear_token_logprobs_backward(
        _zeros_if_none(grad_logp, log_sum), _zeros_if_none(grad_log_sum, log_sum), hidden, weight, bias, labels,
        row_max, log_sum, ctx.ignore_index, ctx.temperature, weight_grad, ctx.batch_invariant)
    return (grad_hidden, grad_weight if ctx.needs_input_grad[1] else None,
            grad_bias if ctx.has_bias and ctx.needs_input_grad[2] else None, None, None, None, None)


lib.register_autograd("lit_align::linear_token_logprobs", _linear_backward, setup_context=_linear_setup)


# ---- segment_logprobs -----------------------------------------------------------------------------
@lib.register_fake("lit_align::segment_logprobs")
def _(token_logp, segment_ids, num_segments, mean):
    return token_logp.new_empty(num_segments)


@lib.register_fake("lit_align::segment_logprobs_backward")
def _(grad, segment_ids, num_segments, mean):
    return grad.new_empty(segment_ids.shape)


def _segment_setup(ctx, inputs, output):
    _, segment_ids, ctx.num_segments, ctx.mean = inputs
    ctx.save_for_backward(segment_ids)


def _segment_backward(ctx, grad):
    (segment_ids,) = ctx.saved_tensors
    grad_values = torch.ops.lit_align.segment_logprobs_backward(grad.contiguous(), segment_ids, ctx.num_segments,
                                                                ctx.mean)
    return grad_values, None, None, None


lib.register_autograd("lit_align::segment_logprobs", _segment_backward, setup_context=_segment_setup)


# ---- preference_loss ------------------------------------------------------------------------------
@lib.register_fake("lit_align::preference_loss")
def _(pc, pr, rc, rr, eps, beta, loss_type, gamma):
    return torch.empty_like(pc), torch.empty_like(pc), torch.empty_like(pc)


@lib.register_fake("lit_align::preference_loss_backward")
def _(grad_loss, pc, pr, rc, rr, eps, beta, loss_type, gamma):
    return torch.empty_like(pc)


def _preference_setup(ctx, inputs, output):
    pc, pr, rc, rr, eps, ctx.beta, ctx.loss_type, ctx.gamma = inputs
    ctx.has_ref = rc is not None
    ctx.save_for_backward(pc, pr, rc, rr, eps)


def _preference_backward(ctx, grad_loss, _grad_chosen_rewards, _grad_rejected_rewards):
    pc, pr, rc, rr, eps = ctx.saved_tensors  # rewards are detached: their gradients are ignored
    grad_loss = torch.zeros_like(pc) if grad_loss is None else grad_loss.contiguous()
    g = torch.ops.lit_align.preference_loss_backward(grad_loss, pc, pr, rc, rr, eps, ctx.beta, ctx.loss_type,
                                                     ctx.gamma)  # d loss / d margin, (B,)
    ref = (-g, g) if ctx.has_ref else (None, None)
    return g, -g, *ref, None, None, None, None


lib.register_autograd("lit_align::preference_loss", _preference_backward, setup_context=_preference_setup)
