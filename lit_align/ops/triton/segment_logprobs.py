"""Triton segment_logprobs: per-segment sums (or means) of token log-probs, the packed form of sequence scores.

values[N] with segment_ids[N] in [-1, S) (-1: excluded, e.g. prompt or padding) -> out[S] in values' dtype.
Forward: BLOCK tokens per program add their values (float32, float64 for float64) and, for a mean, a count
into per-segment accumulators with atomics (segments need not be sorted or contiguous); a second small
kernel divides by max(count, 1) (an empty segment scores 0) and casts. Backward: each token reads its
segment's gradient, divided by the segment's count for a mean (the counts are recomputed, as the C++ op does).

    triton_segment_logprobs(values[N], segment_ids[N], num_segments, mean) -> [S]
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_align.ops.triton._common import compute_dtype, register_op, upcast, wrap_triton

BLOCK = 1024


@triton.jit
def _segment_accumulate_kernel(
    values_ptr, ids_ptr, sums_ptr, counts_ptr,  # (N,), (N,) int64, (S,) compute dtype, (S,) int32
    N, S, ADD_VALUES: tl.constexpr, COUNT: tl.constexpr, FP64: tl.constexpr, BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ids = tl.load(ids_ptr + offs, mask=offs < N, other=-1)
    keep = (ids >= 0) & (ids < S)
    if ADD_VALUES:
        values = upcast(tl.load(values_ptr + offs, mask=keep, other=0.0), FP64)
        tl.atomic_add(sums_ptr + ids, values, mask=keep)
    if COUNT:
        tl.atomic_add(counts_ptr + ids, tl.full([BLOCK], 1, tl.int32), mask=keep)


@triton.jit
def _segment_finish_kernel(sums_ptr, counts_ptr, out_ptr, S, MEAN: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < S
    total = tl.load(sums_ptr + offs, mask=mask, other=0.0)  # (BLOCK,)
    if MEAN:
        total = total / tl.maximum(tl.load(counts_ptr + offs, mask=mask, other=1), 1).to(total.dtype)
    tl.store(out_ptr + offs, total, mask=mask)


@triton.jit
def _segment_backward_kernel(grad_ptr, ids_ptr, counts_ptr, grad_values_ptr, N, S, MEAN: tl.constexpr,
                             FP64: tl.constexpr, BLOCK: tl.constexpr):
    # grad (S,), ids (N,), counts (S,) int32 -> grad_values (N,)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < N
    ids = tl.load(ids_ptr + offs, mask=mask, other=-1)
    keep = (ids >= 0) & (ids < S)
    grad = upcast(tl.load(grad_ptr + ids, mask=keep, other=0.0), FP64)
    if MEAN:
        grad = grad / upcast(tl.maximum(tl.load(counts_ptr + ids, mask=keep, other=1), 1), FP64)
    tl.store(grad_values_ptr + offs, grad, mask=mask)


def _counts(segment_ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    counts = segment_ids.new_zeros(num_segments, dtype=torch.int32)  # (S,)
    n = segment_ids.numel()
    if n and num_segments:
        wrap_triton(_segment_accumulate_kernel)[(triton.cdiv(n, BLOCK),)](
            counts, segment_ids, counts, counts, n, num_segments, ADD_VALUES=False, COUNT=True, FP64=False,
            BLOCK=BLOCK)
    return counts


@register_op("triton_segment_logprobs")
def _segment_logprobs(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                      mean: bool) -> torch.Tensor:
    n = values.numel()
    stat = compute_dtype(values.dtype)
    sums = values.new_zeros(num_segments, dtype=stat)  # (S,) accumulators
    counts = segment_ids.new_zeros(num_segments if mean else 0, dtype=torch.int32)  # (S,) or unused
    out = values.new_empty(num_segments)  # (S,)
    if num_segments:
        if n:
            wrap_triton(_segment_accumulate_kernel)[(triton.cdiv(n, BLOCK),)](
                values, segment_ids, sums, counts, n, num_segments, ADD_VALUES=True, COUNT=mean,
                FP64=stat == torch.float64, BLOCK=BLOCK)
        wrap_triton(_segment_finish_kernel)[(triton.cdiv(num_segments, BLOCK),)](
            sums, counts if mean else sums, out, num_segments, MEAN=mean, BLOCK=BLOCK)
    return out


@register_op("triton_segment_logprobs_backward")
def _segment_logprobs_backward(grad: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                               mean: bool) -> torch.Tensor:
    n = segment_ids.numel()
    grad_values = grad.new_empty(n)  # (N,)
    if n:
        counts = _counts(segment_ids, num_segments) if mean else segment_ids.new_empty(0, dtype=torch.int32)
        wrap_triton(_segment_backward_kernel)[(triton.cdiv(n, BLOCK),)](
            grad, segment_ids, counts, grad_values, n, num_segments, MEAN=mean,
            FP64=compute_dtype(grad.dtype) == torch.float64, BLOCK=BLOCK)
    return grad_values


def _setup_context(ctx, inputs, output):
    _, segment_ids, ctx.num_segments, ctx.mean = inputs
    ctx.save_for_backward(segment_ids)


def _backward(ctx, grad):
    (segment_ids,) = ctx.saved_tensors
    return _segment_logprobs_backward(grad.contiguous(), segment_ids, ctx.num_segments, ctx.mean), None, None, None


_segment_logprobs.register_autograd(_backward, setup_context=_setup_context)


def triton_segment_logprobs(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                            mean: bool) -> torch.Tensor:
    """Per-segment sum (or mean over the included tokens) of values [N]; differentiable w.r.t. values."""
    return _segment_logprobs(values.contiguous(), segment_ids.long().contiguous(), int(num_segments), bool(mean))
