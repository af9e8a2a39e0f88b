"""Triton sequence_logprobs: per-segment sums (or means) of token log-probs (the op's packed segment form).

values[N] with segment_ids[N] in [-1, S) (-1: excluded, e.g. prompt or padding) -> out[S] in values' dtype.
Forward, deterministic and batch invariant (float atomics would add a segment's tokens in a different order
on every run): a stable argsort groups each segment's tokens in token order (segments need not be sorted or
contiguous), integer atomics count them, and one program per segment sums its tokens in BLOCK-wide lanes
(token k of the segment in lane k % BLOCK, in float32, float64 for float64), reduces the lanes with a fixed
tree and divides by max(count, 1) for a mean (an empty segment scores 0). A segment's score so depends on its
own tokens only. Backward: each token reads its segment's gradient, divided by the segment's count for a
mean (the counts are recomputed, as the C++ op does).

    triton_sequence_logprobs(values[N], segment_ids[N], num_segments, mean) -> [S]
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from lit_align.ops._autograd import register_autograd
from lit_align.ops.triton._common import compute_dtype, register_op, upcast, wrap_triton

BLOCK = 1024


@triton.jit
def _segment_count_kernel(ids_ptr, counts_ptr, N, S, BLOCK: tl.constexpr):
    # ids (N,) int64 -> counts (S,) int32 += tokens per segment (integer atomics: exact in any order)
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ids = tl.load(ids_ptr + offs, mask=offs < N, other=-1)
    keep = (ids >= 0) & (ids < S)
    tl.atomic_add(counts_ptr + ids, tl.full([BLOCK], 1, tl.int32), mask=keep)


@triton.jit
def _segment_sum_kernel(values_ptr, order_ptr, starts_ptr, counts_ptr, out_ptr, MEAN: tl.constexpr,
                        FP64: tl.constexpr, BLOCK: tl.constexpr):
    # One program per segment: values[order[start : start + count]] (its tokens, in token order) -> out (S,)
    segment = tl.program_id(0)
    start = tl.load(starts_ptr + segment)
    count = tl.load(counts_ptr + segment)
    acc = upcast(tl.zeros([BLOCK], tl.float32), FP64)
    for k0 in range(0, count, BLOCK):
        offs = k0 + tl.arange(0, BLOCK)
        mask = offs < count
        token = tl.load(order_ptr + start + offs, mask=mask, other=0)
        acc += upcast(tl.load(values_ptr + token, mask=mask, other=0.0), FP64)
    total = tl.sum(acc, axis=0)
    if MEAN:
        total = total / tl.maximum(count, 1).to(total.dtype)
    tl.store(out_ptr + segment, total)


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
        wrap_triton(_segment_count_kernel)[(triton.cdiv(n, BLOCK),)](segment_ids, counts, n, num_segments,
                                                                      BLOCK=BLOCK)
    return counts


@register_op("triton_sequence_logprobs")
def _sequence_logprobs(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                       mean: bool) -> torch.Tensor:
    n = values.numel()
    stat = compute_dtype(values.dtype)
    out = values.new_empty(num_segments, dtype=stat)  # (S,)
    if num_segments:
        order = torch.argsort(segment_ids, stable=True)  # (N,) excluded (-1) first, then segment by segment
        counts = _counts(segment_ids, num_segments)  # (S,)
        ends = torch.cumsum(counts, 0) + (n - counts.sum())  # (S,) past each segment's run in `order`
        starts = ends - counts
        wrap_triton(_segment_sum_kernel)[(num_segments,)](values, order, starts, counts, out, MEAN=mean,
                                                          FP64=stat == torch.float64, BLOCK=BLOCK)
    return out.to(values.dtype)


@register_op("triton_sequence_logprobs_backward")
def _sequence_logprobs_backward(grad: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                                mean: bool) -> torch.Tensor:
    n = segment_ids.numel()
    grad_values = grad.new_empty(n)  # (N,)
    if n:
        counts = _counts(segment_ids, num_segments) if mean else segment_ids.new_empty(0, dtype=torch.int32)
        wrap_triton(_segment_backward_kernel)[(triton.cdiv(n, BLOCK),)](
            grad, segment_ids, counts, grad_values, n, num_segments, MEAN=mean,
            FP64=compute_dtype(grad.dtype) == torch.float64, BLOCK=BLOCK)
    return grad_values


register_autograd(_sequence_logprobs, "sequence_logprobs", _sequence_logprobs_backward)


def triton_sequence_logprobs(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                             mean: bool) -> torch.Tensor:
    """Per-segment sum (or mean over the included tokens) of values [N]; differentiable w.r.t. values."""
    return _sequence_logprobs(values.contiguous(), segment_ids.long().contiguous(), int(num_segments), bool(mean))
