"""Triton token_logprobs: log_softmax(logits / T)[label] per row, and its backward, from two statistics per row.

Forward: one program per row streams the vocabulary in BLOCK_V chunks with an online max/sum (float32, or
float64 for float64 logits) and writes logp, the raw row max m and log_sum = log sum_j exp((x_j - m) / T).
Backward: one program per row re-reads the logits and writes, in the logits' dtype,
    grad_logits = (g_logp * onehot + (g_log_sum - g_logp) * p) / T,   p = exp((x - m) / T - log_sum),
computed in float32 before the single rounding; the label's entry is (g_log_sum * p_y + g_logp * (1 - p_y)) / T
with 1 - p_y from one_minus_p (no cancellation when p_y is close to 1). No [N, V] float32 temporary exists
besides the gradient itself. Rows whose label == ignore_index give zeros and a zero gradient, and their
logits are never read. Batch invariant: a row's program, block size (from V only) and reduction order do not
depend on the other rows.

Registered as "lit_align::triton_token_logprobs" (+ "_backward") with register_autograd: a triton_op on GPUs
so that torch.compile sees the kernels, a custom_op under the interpreter (see _common.register_op).

    triton_token_logprobs(logits[N, V], labels[N], ignore_index, temperature) -> (logp, row_max, log_sum) [N]
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_align.ops._autograd import register_autograd
from lit_align.ops.triton._common import (
    compute_dtype,
    logsumexp_rescale,
    one_minus_p,
    register_op,
    scalar,
    upcast,
    wrap_triton,
)

MAX_BLOCK_V = 4096  # 16 float32 values per thread at 8 warps: one streaming pass, no spills


@triton.jit
def _token_logprobs_fwd_kernel(
    logits_ptr, labels_ptr, logp_ptr, max_ptr, log_sum_ptr,  # (N, V), (N,) x4
    V, stride_row, ignore_index, inv_temperature: tl.float64,
    FP64: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(labels_ptr + row)
    if label == ignore_index:
        tl.store(logp_ptr + row, 0.0)
        tl.store(max_ptr + row, 0.0)
        tl.store(log_sum_ptr + row, 0.0)
        return
    scale = scalar(inv_temperature, FP64)
    row_ptr = logits_ptr + row * stride_row  # int64: N * V may exceed 2**31
    m = scalar(float("-inf"), FP64)
    s = scalar(0.0, FP64)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = upcast(tl.load(row_ptr + cols, mask=cols < V, other=float("-inf")), FP64)  # (BLOCK_V,) raw
        m, shift, s = logsumexp_rescale(m, s, tl.max(x, axis=0), scale)
        s += tl.sum(tl.exp((x - shift) * scale), axis=0)
    log_sum = tl.log(s)
    target = upcast(tl.load(row_ptr + label), FP64)
    tl.store(logp_ptr + row, (target - m) * scale - log_sum)
    tl.store(max_ptr + row, m)
    tl.store(log_sum_ptr + row, log_sum)


@triton.jit
def _token_logprobs_bwd_kernel(
    grad_logp_ptr, grad_log_sum_ptr, logits_ptr, labels_ptr, max_ptr, log_sum_ptr, grad_logits_ptr,
    V, stride_row, stride_grad_row, ignore_index, inv_temperature: tl.float64,
    FP64: tl.constexpr, BLOCK_V: tl.constexpr,
):
    # (N,) x2, (N, V), (N,) x3, (N, V)
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(labels_ptr + row)
    grad_row_ptr = grad_logits_ptr + row * stride_grad_row
    if label == ignore_index:
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            tl.store(grad_row_ptr + cols, tl.zeros([BLOCK_V], tl.float32), mask=cols < V)
        return
    scale = scalar(inv_temperature, FP64)
    row_ptr = logits_ptr + row * stride_row
    m = upcast(tl.load(max_ptr + row), FP64)
    log_sum = upcast(tl.load(log_sum_ptr + row), FP64)
    g_logp = upcast(tl.load(grad_logp_ptr + row), FP64)
    g_log_sum = upcast(tl.load(grad_log_sum_ptr + row), FP64)
    coef = (g_log_sum - g_logp) * scale  # weight of softmax in the gradient
    log_p_label = (upcast(tl.load(row_ptr + label), FP64) - m) * scale - log_sum
    p_label = tl.exp(log_p_label)
    label_grad = (g_log_sum * p_label + g_logp * one_minus_p(p_label, log_p_label, FP64)) * scale
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        x = upcast(tl.load(row_ptr + cols, mask=mask, other=float("-inf")), FP64)  # (BLOCK_V,)
        grad = tl.where(cols == label, label_grad, coef * tl.exp((x - m) * scale - log_sum))
        tl.store(grad_row_ptr + cols, grad, mask=mask)  # one rounding, to the logits' dtype


def _block_v(vocab: int) -> int:
    return min(MAX_BLOCK_V, max(16, triton.next_power_of_2(vocab)))


def _num_warps(block_v: int) -> int:
    return 8 if block_v >= 2048 else 4


@register_op("triton_token_logprobs")
def _token_logprobs(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, vocab = logits.shape
    stat = compute_dtype(logits.dtype)
    logp, row_max, log_sum = (logits.new_empty(n, dtype=stat) for _ in range(3))  # (N,) each
    if n:
        block_v = _block_v(vocab)
        wrap_triton(_token_logprobs_fwd_kernel)[(n,)](
            logits, labels, logp, row_max, log_sum, vocab, logits.stride(0), ignore_index, 1.0 / temperature,
            FP64=stat == torch.float64, BLOCK_V=block_v, num_warps=_num_warps(block_v))
    return logp, row_max, log_sum


@register_op("triton_token_logprobs_backward")
def _token_logprobs_backward(grad_logp: torch.Tensor, grad_log_sum: torch.Tensor, logits: torch.Tensor,
                             labels: torch.Tensor, row_max: torch.Tensor, log_sum: torch.Tensor, ignore_index: int,
                             temperature: float) -> torch.Tensor:
    n, vocab = logits.shape
    grad_logits = torch.empty_like(logits, memory_format=torch.contiguous_format)  # (N, V)
    if n:
        block_v = _block_v(vocab)
        wrap_triton(_token_logprobs_bwd_kernel)[(n,)](
            grad_logp, grad_log_sum, logits, labels, row_max, log_sum, grad_logits, vocab, logits.stride(0),
            grad_logits.stride(0), ignore_index, 1.0 / temperature,
            FP64=compute_dtype(logits.dtype) == torch.float64, BLOCK_V=block_v, num_warps=_num_warps(block_v))
    return grad_logits


register_autograd(_token_logprobs, "token_logprobs", _token_logprobs_backward)


def triton_token_logprobs(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                          temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logp, row_max, log_sum) [N] of contiguous logits [N, V] and int64 labels [N]; differentiable w.r.t. logits
    through logp and log_sum (row_max is the constant shift: lse = row_max / T + log_sum)."""
    return _token_logprobs(logits.contiguous(), labels.contiguous(), int(ignore_index), float(temperature))
