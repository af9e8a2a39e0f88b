"""Triton token_logprobs: log_softmax(logits / T)[label] per row, and its backward, from one saved lse per row.

Forward: one program per row streams the vocabulary in BLOCK_V chunks with an online max/sum (float32, or
float64 for float64 logits) and writes logp = z_label - lse and lse = logsumexp(z), z = logits / T.
Backward: one program per row re-reads the logits and writes, in the logits' dtype,
    grad_logits = (g_logp * onehot + (g_lse - g_logp) * exp(z - lse)) / T,
computed in float32 before the single rounding (so p_label - 1 never rounds through bf16). No [N, V]
float32 temporary exists besides the gradient itself. Rows whose label == ignore_index give logp = lse = 0
and a zero gradient, and their logits are never read.

Registered as "lit_align::triton_token_logprobs" (+ "_backward") with register_autograd: a triton_op on GPUs
so that torch.compile sees the kernels, a custom_op under the interpreter (see _common.register_op).

    triton_token_logprobs(logits[N, V], labels[N], ignore_index, temperature) -> (logp[N], lse[N])
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_align.ops.triton._common import (
    compute_dtype,
    logsumexp_rescale,
    register_op,
    scalar,
    upcast,
    wrap_triton,
    zeros_if_none,
)

MAX_BLOCK_V = 4096  # 16 float32 values per thread at 8 warps: one streaming pass, no spills


@triton.jit
def _token_logprobs_fwd_kernel(
    logits_ptr, labels_ptr, logp_ptr, lse_ptr,  # (N, V), (N,), (N,), (N,)
    V, stride_row, ignore_index, temperature: tl.float64,
    FP64: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(labels_ptr + row)
    if label == ignore_index:
        tl.store(logp_ptr + row, 0.0)
        tl.store(lse_ptr + row, 0.0)
        return
    t = scalar(temperature, FP64)
    row_ptr = logits_ptr + row * stride_row  # int64: N * V may exceed 2**31
    m = scalar(float("-inf"), FP64)
    s = scalar(0.0, FP64)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        z = upcast(tl.load(row_ptr + cols, mask=cols < V, other=float("-inf")), FP64) / t  # (BLOCK_V,)
        m, shift, s = logsumexp_rescale(m, s, tl.max(z, axis=0))
        s += tl.sum(tl.exp(z - shift), axis=0)
    lse = m + tl.log(s)
    target = upcast(tl.load(row_ptr + label), FP64) / t
    tl.store(logp_ptr + row, target - lse)
    tl.store(lse_ptr + row, lse)


@triton.jit
def _token_logprobs_bwd_kernel(
    grad_logp_ptr, grad_lse_ptr, logits_ptr, labels_ptr, lse_ptr, grad_logits_ptr,  # (N,) x2, (N, V), (N,) x2, (N, V)
    V, stride_row, stride_grad_row, ignore_index, temperature: tl.float64,
    FP64: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(labels_ptr + row)
    grad_row_ptr = grad_logits_ptr + row * stride_grad_row
    if label == ignore_index:
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            tl.store(grad_row_ptr + cols, tl.zeros([BLOCK_V], tl.float32), mask=cols < V)
        return
    t = scalar(temperature, FP64)
    row_ptr = logits_ptr + row * stride_row
    lse = upcast(tl.load(lse_ptr + row), FP64)
    g_logp = upcast(tl.load(grad_logp_ptr + row), FP64)
    g_softmax = upcast(tl.load(grad_lse_ptr + row), FP64) - g_logp  # weight of softmax in the gradient
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < V
        z = upcast(tl.load(row_ptr + cols, mask=mask, other=0.0), FP64) / t  # (BLOCK_V,)
        grad = g_softmax * tl.exp(z - lse) + tl.where(cols == label, g_logp, 0.0)
        tl.store(grad_row_ptr + cols, grad / t, mask=mask)  # one rounding, to the logits' dtype


def _block_v(vocab: int) -> int:
    return min(MAX_BLOCK_V, max(16, triton.next_power_of_2(vocab)))


def _num_warps(block_v: int) -> int:
    return 8 if block_v >= 2048 else 4


@register_op("triton_token_logprobs")
def _token_logprobs(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                    temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    n, vocab = logits.shape
    stat = compute_dtype(logits.dtype)
    logp = logits.new_empty(n, dtype=stat)  # (N,)
    lse = logits.new_empty(n, dtype=stat)  # (N,)
    if n:
        block_v = _block_v(vocab)
        wrap_triton(_token_logprobs_fwd_kernel)[(n,)](
            logits, labels, logp, lse, vocab, logits.stride(0), ignore_index, temperature,
            FP64=stat == torch.float64, BLOCK_V=block_v, num_warps=_num_warps(block_v))
    return logp, lse


@register_op("triton_token_logprobs_backward")
def _token_logprobs_backward(grad_logp: torch.Tensor, grad_lse: torch.Tensor, logits: torch.Tensor,
                             labels: torch.Tensor, lse: torch.Tensor, ignore_index: int,
                             temperature: float) -> torch.Tensor:
    n, vocab = logits.shape
    grad_logits = torch.empty_like(logits, memory_format=torch.contiguous_format)  # (N, V)
    if n:
        block_v = _block_v(vocab)
        wrap_triton(_token_logprobs_bwd_kernel)[(n,)](
            grad_logp, grad_lse, logits, labels, lse, grad_logits, vocab, logits.stride(0),
            grad_logits.stride(0), ignore_index, temperature,
            FP64=compute_dtype(logits.dtype) == torch.float64, BLOCK_V=block_v, num_warps=_num_warps(block_v))
    return grad_logits


def _setup_context(ctx, inputs, output):
    logits, labels, ctx.ignore_index, ctx.temperature = inputs
    ctx.save_for_backward(logits, labels, output[1])


def _backward(ctx, grad_logp, grad_lse):
    logits, labels, lse = ctx.saved_tensors
    grad_logits = _token_logprobs_backward(zeros_if_none(grad_logp, lse), zeros_if_none(grad_lse, lse), logits,
                                           labels, lse, ctx.ignore_index, ctx.temperature)
    return grad_logits, None, None, None


_token_logprobs.register_autograd(_backward, setup_context=_setup_context)


def triton_token_logprobs(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                          temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp [N], lse [N]) of contiguous logits [N, V] and int64 labels [N]; differentiable w.r.t. logits."""
    return _token_logprobs(logits.contiguous(), labels.contiguous(), int(ignore_index), float(temperature))
