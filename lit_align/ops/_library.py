"""Fake (meta) kernels and autograd for the compiled lit_align::* ops (schemas: csrc/ops.cpp).

The fakes let torch.compile(fullgraph=True) trace the ops; the autograd formulas (_autograd.py, shared with the
Triton ops) call the backward kernels, never autograd through a reference. Imported only when lit_align._C loaded.
"""
from __future__ import annotations

import torch

from lit_align.ops._autograd import register_autograd
from lit_align.ops._extension import extension_loaded

if not extension_loaded():  # pragma: no cover - the dispatcher never routes here without the extension
    raise ImportError("lit_align._C is not built")

lib = torch.library
ops = torch.ops.lit_align


def _stat_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _row_stats(t: torch.Tensor, n) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logp, row_max, log_sum), (n,) each in the statistics dtype."""
    return tuple(t.new_empty(n, dtype=_stat_dtype(t)) for _ in range(3))


# ---- token_logprobs -------------------------------------------------------------------------------
@lib.register_fake("lit_align::token_logprobs")
def _(logits, labels, ignore_index, temperature):
    return _row_stats(logits, logits.shape[0])


@lib.register_fake("lit_align::token_logprobs_backward")
def _(grad_logp, grad_log_sum, logits, labels, row_max, log_sum, ignore_index, temperature):
    return torch.empty_like(logits)


register_autograd("lit_align::token_logprobs", "token_logprobs", ops.token_logprobs_backward)


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


def _linear_backward(grad_logp, grad_log_sum, hidden, weight, bias, labels, row_max, log_sum, ignore_index,
                     temperature, need_hidden, need_weight, need_bias, batch_invariant):
    """The compiled backward always writes grad_hidden, and the weight and bias gradients together."""
    return ops.linear_token_logprobs_backward(grad_logp, grad_log_sum, hidden, weight, bias, labels, row_max, log_sum,
                                              ignore_index, temperature, need_weight or need_bias, batch_invariant)


register_autograd("lit_align::linear_token_logprobs", "linear_token_logprobs", _linear_backward)


# ---- sequence_logprobs ----------------------------------------------------------------------------
@lib.register_fake("lit_align::sequence_logprobs")
def _(token_logp, segment_ids, num_segments, mean):
    return token_logp.new_empty(num_segments)


@lib.register_fake("lit_align::sequence_logprobs_backward")
def _(grad, segment_ids, num_segments, mean):
    return grad.new_empty(segment_ids.shape)


register_autograd("lit_align::sequence_logprobs", "sequence_logprobs", ops.sequence_logprobs_backward)


# ---- preference_loss ------------------------------------------------------------------------------
@lib.register_fake("lit_align::preference_loss")
def _(pc, pr, rc, rr, eps, beta, loss_type, gamma):
    return torch.empty_like(pc), torch.empty_like(pc), torch.empty_like(pc)


@lib.register_fake("lit_align::preference_loss_backward")
def _(grad_loss, pc, pr, rc, rr, eps, beta, loss_type, gamma):
    return torch.empty_like(pc)


register_autograd("lit_align::preference_loss", "preference_loss", ops.preference_loss_backward)
