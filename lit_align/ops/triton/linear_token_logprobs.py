"""Triton linear_token_logprobs: token log-probs straight from hidden states and the LM head, never holding logits.

Forward (Cut Cross-Entropy, Wijmans et al., arXiv 2411.09009): the rows are reordered so that the valid ones
(label != ignore_index) come first, without a host sync (a stable argsort and a device-side count); each
program owns BLOCK_N valid rows and one split of the vocabulary, computes [BLOCK_N, BLOCK_V] logit tiles with
tl.dot over H in float32 (float64 for float64 inputs) and folds them into an online logsumexp; it also picks
up the label's logit when it falls in its split. Programs whose rows are all ignored exit at once, so prompt
and padding tokens cost no LM-head work. A small merge kernel folds the per-split partials ([N, splits] raw max,
sum and label logit) into each row's logp and statistics (raw row max, log-sum: no large float32 lse).

Backward, chunked over the vocabulary (the Liger / CCE hybrid, chosen over a fully fused kernel):
    for each vocabulary chunk c (width C, so that the [n, C] tile is about the size of hidden):
        D_c = (g_logp * onehot + (g_lse - g_logp) * softmax(z_c)) / T   Triton: recomputes the logit tile
                                                                          with tl.dot (float32) and writes D_c
        grad_hidden += D_c @ W_c          cuBLAS, accumulated across chunks in a float32 buffer
        grad_weight[c] = D_c.T @ hidden   cuBLAS, one GEMM over all rows (float32 accumulation inside)
        grad_bias[c] = D_c.sum(0)         in float32
A fully fused backward (CCE's) needs float32 atomics on both [N, H] and [V, H] from every tile, about as much
atomic traffic as GEMM work at LLM sizes; the two gradient GEMMs run near peak in cuBLAS, and the only extra
memory is the D tile (O(N*H)), the float32 grad_hidden accumulator (O(N*H)) and the compacted hidden rows.
The label's entry g_logp * (1 - p_label) / T is formed in float32 without cancellation (one_minus_p) before D
is rounded to the inputs' dtype. The backward compacts the valid rows with a nonzero (one host sync), so it is
an opaque custom op (a static-shape fake kernel keeps torch.compile(fullgraph=True) working); the forward is a
triton_op that torch.compile traces into.

batch_invariant=True: a row's log-prob and hidden gradient must not depend on the batch. The default tiles
follow the batch (the row tile shrinks for few rows, the vocabulary splits and backward chunks follow N, cuBLAS
picks its kernel by shape); here every tile size, split and chunk is fixed, and grad_hidden comes from
_grad_hidden_kernel (fixed tiles, chunks in order) instead of cuBLAS. Every row then goes through the same
instructions in the same order wherever it sits. grad_weight (a sum over rows) stays a cuBLAS GEMM.
Under the interpreter tl.dot is numpy's OpenBLAS matmul, whose result for a row depends on its position in the
tile; there (SUM_DOT) the invariant mode multiplies and sums along K instead, one k after the other.

    triton_linear_token_logprobs(hidden[N, H], weight[V, H], bias[V] | None, labels[N], ignore_index,
                                 temperature, batch_invariant) -> (logp, row_max, log_sum) [N]
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from lit_align.ops._autograd import register_autograd
from lit_align.ops.triton._common import (
    INTERPRETER,
    compute_dtype,
    logsumexp_rescale,
    num_programs_target,
    one_minus_p,
    register_op,
    scalar,
    upcast,
    wrap_triton,
)

TILE_ELEMENTS = 1 << 24  # lower bound on the backward's [n, C] tile; C is at least H (tests shrink it)
# batch_invariant: vocabulary tiles per forward split and the backward's chunk width, fixed (not from N)
INVARIANT_SPLIT_TILES = 16
INVARIANT_CHUNK = 8192


@triton.jit
def _dot(a, b, FP64: tl.constexpr, SUM_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """a [M, K] @ b [K, N] in the compute dtype: tl.dot, or (SUM_DOT, the interpreter's batch-invariant mode) a
    broadcast product summed along K in order, the same for every row."""
    if SUM_DOT:
        return tl.sum(upcast(a, FP64)[:, :, None] * upcast(b, FP64)[None, :, :], axis=1)
    else:
        return upcast(tl.dot(a, b, input_precision=DOT_PRECISION), FP64)


@triton.jit
def _logits_tile(hidden_ptr, weight_ptr, bias_ptr, rows, row_mask, cols, col_mask, H, stride_h, stride_w,
                 HAS_BIAS: tl.constexpr, FP64: tl.constexpr, UPCAST_DOT: tl.constexpr, SUM_DOT: tl.constexpr,
                 DOT_PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr):
    """hidden[rows] @ weight[cols].T + bias[cols] (raw logits) as a [BLOCK_N, BLOCK_V] tile of the compute dtype."""
    acc = upcast(tl.zeros([BLOCK_N, BLOCK_V], tl.float32), FP64)
    a_rows = hidden_ptr + rows[:, None] * stride_h  # (BLOCK_N, 1) pointers, int64 offsets
    b_rows = weight_ptr + cols.to(tl.int64)[:, None] * stride_w  # (BLOCK_V, 1)
    for k0 in range(0, H, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < H
        a = tl.load(a_rows + ks[None, :], mask=row_mask[:, None] & k_mask[None, :], other=0.0)  # (BLOCK_N, BLOCK_K)
        b = tl.load(b_rows + ks[None, :], mask=col_mask[:, None] & k_mask[None, :], other=0.0)  # (BLOCK_V, BLOCK_K)
        if UPCAST_DOT:  # the interpreter's tl.dot cannot multiply bf16
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += _dot(a, tl.trans(b), FP64, SUM_DOT, DOT_PRECISION)
    if HAS_BIAS:
        acc += upcast(tl.load(bias_ptr + cols, mask=col_mask, other=0.0), FP64)[None, :]
    return acc


@triton.jit
def _linear_fwd_kernel(
    hidden_ptr, weight_ptr, bias_ptr, labels_ptr, order_ptr, count_ptr, part_max_ptr, part_sum_ptr, part_target_ptr,
    H, V, V_PER_SPLIT, NUM_SPLITS, stride_h, stride_w, inv_temperature: tl.float64,
    HAS_BIAS: tl.constexpr, FP64: tl.constexpr, UPCAST_DOT: tl.constexpr, SUM_DOT: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # hidden (N, H), weight (V, H), bias (V,), labels (N,), order (N,) valid rows first, count () valid rows,
    # part_max / part_sum / part_target (N, NUM_SPLITS): raw max, sum of exp((z - max) / T) and raw label logit
    # of each row over each vocabulary split
    start = tl.program_id(0) * BLOCK_N
    split = tl.program_id(1)
    if start >= tl.load(count_ptr):
        return  # only ignored rows here: no LM-head work
    offs = start + tl.arange(0, BLOCK_N)
    row_mask = offs < tl.load(count_ptr)
    rows = tl.load(order_ptr + offs, mask=row_mask, other=0)  # (BLOCK_N,) int64 original row ids
    labels = tl.load(labels_ptr + rows, mask=row_mask, other=-1)
    scale = scalar(inv_temperature, FP64)
    v_begin = split * V_PER_SPLIT
    v_end = tl.minimum(v_begin + V_PER_SPLIT, V)
    m = upcast(tl.full([BLOCK_N], float("-inf"), tl.float32), FP64)
    s = upcast(tl.zeros([BLOCK_N], tl.float32), FP64)
    target = upcast(tl.zeros([BLOCK_N], tl.float32), FP64)
    for v0 in range(v_begin, v_end, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        col_mask = cols < v_end
        z = _logits_tile(hidden_ptr, weight_ptr, bias_ptr, rows, row_mask, cols, col_mask, H, stride_h, stride_w,
                         HAS_BIAS, FP64, UPCAST_DOT, SUM_DOT, DOT_PRECISION, BLOCK_N, BLOCK_V, BLOCK_K)
        z = tl.where(col_mask[None, :], z, float("-inf"))  # (BLOCK_N, BLOCK_V) raw logits
        m, shift, s = logsumexp_rescale(m, s, tl.max(z, axis=1), scale)
        s += tl.sum(tl.exp((z - shift[:, None]) * scale), axis=1)
        is_label = (cols[None, :] == labels[:, None]) & col_mask[None, :]
        target += tl.sum(tl.where(is_label, z, 0.0), axis=1)
    out = rows * NUM_SPLITS + split
    tl.store(part_max_ptr + out, m, mask=row_mask)
    tl.store(part_sum_ptr + out, s, mask=row_mask)
    tl.store(part_target_ptr + out, target, mask=row_mask)


@triton.jit
def _linear_merge_kernel(
    labels_ptr, part_max_ptr, part_sum_ptr, part_target_ptr, logp_ptr, max_ptr, log_sum_ptr,
    NUM_SPLITS, ignore_index, inv_temperature: tl.float64, FP64: tl.constexpr, BLOCK_S: tl.constexpr,
):
    # One program per row: the splits' partials (N, NUM_SPLITS) -> logp, row_max, log_sum (N,), in split order.
    row = tl.program_id(0).to(tl.int64)
    if tl.load(labels_ptr + row) == ignore_index:
        tl.store(logp_ptr + row, 0.0)
        tl.store(max_ptr + row, 0.0)
        tl.store(log_sum_ptr + row, 0.0)
        return
    scale = scalar(inv_temperature, FP64)
    splits = tl.arange(0, BLOCK_S)
    mask = splits < NUM_SPLITS
    part_max = tl.load(part_max_ptr + row * NUM_SPLITS + splits, mask=mask, other=float("-inf"))
    part_sum = tl.load(part_sum_ptr + row * NUM_SPLITS + splits, mask=mask, other=0.0)
    m = tl.max(part_max, axis=0)
    log_sum = tl.log(tl.sum(tl.where(mask, part_sum * tl.exp((part_max - m) * scale), 0.0), axis=0))
    target = tl.sum(tl.load(part_target_ptr + row * NUM_SPLITS + splits, mask=mask, other=0.0), axis=0)  # one split
    tl.store(logp_ptr + row, (target - m) * scale - log_sum)
    tl.store(max_ptr + row, m)
    tl.store(log_sum_ptr + row, log_sum)


@triton.jit
def _linear_bwd_logit_grad_kernel(
    hidden_ptr, weight_ptr, bias_ptr, labels_ptr, max_ptr, log_sum_ptr, grad_logp_ptr, grad_log_sum_ptr, d_ptr,
    n, H, v_begin, v_end, stride_h, stride_w, stride_d, inv_temperature: tl.float64,
    HAS_BIAS: tl.constexpr, FP64: tl.constexpr, UPCAST_DOT: tl.constexpr, SUM_DOT: tl.constexpr,
    DOT_PRECISION: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP: tl.constexpr,
):
    # hidden (n, H) compacted valid rows, labels / row stats / grad_* (n,), d (n, v_end - v_begin): the gradient
    # of the logits of this vocabulary chunk, in the inputs' dtype. Programs go down GROUP row tiles before moving
    # to the next vocabulary tile, so that neighbours share hidden and weight tiles in L2.
    row_tiles = tl.cdiv(n, BLOCK_N)
    in_group = GROUP * tl.cdiv(v_end - v_begin, BLOCK_V)
    first_row_tile = (tl.program_id(0) // in_group) * GROUP
    group_rows = tl.minimum(row_tiles - first_row_tile, GROUP)
    row_tile = first_row_tile + (tl.program_id(0) % in_group) % group_rows
    v_tile = (tl.program_id(0) % in_group) // group_rows
    rows = (row_tile * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    row_mask = rows < n
    cols = v_begin + v_tile * BLOCK_V + tl.arange(0, BLOCK_V)
    col_mask = cols < v_end
    scale = scalar(inv_temperature, FP64)
    z = _logits_tile(hidden_ptr, weight_ptr, bias_ptr, rows, row_mask, cols, col_mask, H, stride_h, stride_w,
                     HAS_BIAS, FP64, UPCAST_DOT, SUM_DOT, DOT_PRECISION, BLOCK_N, BLOCK_V, BLOCK_K)
    z = tl.where(col_mask[None, :], z, float("-inf"))  # columns past the chunk: p = 0, never stored
    m = upcast(tl.load(max_ptr + rows, mask=row_mask, other=0.0), FP64)
    log_sum = upcast(tl.load(log_sum_ptr + rows, mask=row_mask, other=0.0), FP64)
    labels = tl.load(labels_ptr + rows, mask=row_mask, other=-1)
    g_logp = upcast(tl.load(grad_logp_ptr + rows, mask=row_mask, other=0.0), FP64)
    g_log_sum = upcast(tl.load(grad_log_sum_ptr + rows, mask=row_mask, other=0.0), FP64)
    log_p = (z - m[:, None]) * scale - log_sum[:, None]  # (BLOCK_N, BLOCK_V)
    p = tl.exp(log_p)
    softmax_part = (g_log_sum - g_logp)[:, None] * p
    label_part = g_log_sum[:, None] * p + g_logp[:, None] * one_minus_p(p, log_p, FP64)
    d = tl.where(cols[None, :] == labels[:, None], label_part, softmax_part) * scale
    d_ptrs = d_ptr + rows[:, None] * stride_d + (cols - v_begin)[None, :]
    tl.store(d_ptrs, d, mask=row_mask[:, None] & col_mask[None, :])  # one rounding, in float32 before it


@triton.jit
def _grad_hidden_kernel(
    d_ptr, weight_ptr, acc_ptr, n, H, C, v_begin, stride_d, stride_w, stride_acc,
    FP64: tl.constexpr, UPCAST_DOT: tl.constexpr, SUM_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    # acc (n, H) float32/64 += d (n, C) @ weight[v_begin : v_begin + C] (C, H), the batch-invariant grad_hidden:
    # one program per (row tile, H tile), the C columns in BLOCK_K steps, always in the same order and tiles.
    row_tile = tl.program_id(0)
    h_tile = tl.program_id(1)
    rows = (row_tile * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    row_mask = rows < n
    hs = h_tile * BLOCK_H + tl.arange(0, BLOCK_H)
    h_mask = hs < H
    acc_ptrs = acc_ptr + rows[:, None] * stride_acc + hs[None, :]
    acc = tl.load(acc_ptrs, mask=row_mask[:, None] & h_mask[None, :], other=0.0)  # (BLOCK_N, BLOCK_H)
    for k0 in range(0, C, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_mask = ks < C
        a = tl.load(d_ptr + rows[:, None] * stride_d + ks[None, :], mask=row_mask[:, None] & k_mask[None, :],
                    other=0.0)  # (BLOCK_N, BLOCK_K)
        b = tl.load(weight_ptr + (v_begin + ks).to(tl.int64)[:, None] * stride_w + hs[None, :],
                    mask=k_mask[:, None] & h_mask[None, :], other=0.0)  # (BLOCK_K, BLOCK_H)
        if UPCAST_DOT:  # the interpreter's tl.dot cannot multiply bf16
            a = a.to(tl.float32)
            b = b.to(tl.float32)
        acc += _dot(a, b, FP64, SUM_DOT, DOT_PRECISION)
    tl.store(acc_ptrs, acc, mask=row_mask[:, None] & h_mask[None, :])


def _config(dtype: torch.dtype, rows: int, batch_invariant: bool = False) -> dict:
    """Tile sizes and launch options: tensor-core tiles for 16-bit (and tf32) inputs, smaller for fp32/fp64.
    With batch_invariant they never depend on the number of rows."""
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    precision = "tf32" if dtype in (torch.float16, torch.bfloat16) or tf32 else "ieee"
    # sm_90 (ptxas -v, no spills): 16-bit 128x128x64 wgmma 96 KiB smem; tf32 128x128x32; fp32 FMA; fp64 DMMA
    if INTERPRETER:
        block_n, block_v, block_k, warps, stages = 16, 64, 64, 4, 1
    elif dtype == torch.float64:
        block_n, block_v, block_k, warps, stages = 32, 32, 32, 4, 2
    elif precision == "ieee":
        block_n, block_v, block_k, warps, stages = 64, 64, 32, 4, 3
    elif dtype == torch.float32:
        block_n, block_v, block_k, warps, stages = 128, 128, 32, 8, 3
    else:
        block_n, block_v, block_k, warps, stages = 128, 128, 64, 8, 3
    while not batch_invariant and block_n > 16 and block_n // 2 >= rows:  # few rows: a smaller row tile (SymInt-safe)
        block_n //= 2
    return dict(UPCAST_DOT=INTERPRETER and dtype == torch.bfloat16, SUM_DOT=INTERPRETER and batch_invariant,
                DOT_PRECISION=precision, BLOCK_N=block_n,
                BLOCK_V=block_v, BLOCK_K=block_k, num_warps=warps, num_stages=stages)


def _splits(vocab: int, rows: int, cfg: dict, device: torch.device, batch_invariant: bool) -> tuple[int, int, int]:
    """(number of vocabulary splits, columns per split, a power of two >= the splits that does not depend on the
    number of rows) of the forward grid: enough programs to fill the device, or INVARIANT_SPLIT_TILES tiles per
    split with batch_invariant (then a function of V alone)."""
    v_tiles = triton.cdiv(vocab, cfg["BLOCK_V"])
    if batch_invariant:
        most = splits = triton.cdiv(v_tiles, INVARIANT_SPLIT_TILES)
    else:
        most = min(v_tiles, num_programs_target(device))
        row_tiles = triton.cdiv(rows, cfg["BLOCK_N"])
        splits = min(v_tiles, max(1, triton.cdiv(num_programs_target(device), max(row_tiles, 1))))
    v_per_split = triton.cdiv(v_tiles, max(splits, 1)) * cfg["BLOCK_V"]
    return triton.cdiv(vocab, v_per_split), v_per_split, max(2, triton.next_power_of_2(max(most, 1)))


@register_op("triton_linear_token_logprobs")
def _linear_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                           labels: torch.Tensor, ignore_index: int, temperature: float,
                           batch_invariant: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, hidden_size = hidden.shape
    vocab = weight.shape[0]
    stat = compute_dtype(hidden.dtype)
    valid = labels != ignore_index  # (N,)
    order = torch.argsort((~valid).to(torch.int8), stable=True)  # (N,) valid rows first, no host sync
    count = valid.sum()  # () on the device
    cfg = _config(hidden.dtype, n, batch_invariant)
    splits, v_per_split, block_s = _splits(vocab, n, cfg, hidden.device, batch_invariant)
    # (N, splits) each; rows of ignored tokens stay unwritten
    part_max, part_sum, part_target = (hidden.new_empty(n, max(splits, 1), dtype=stat) for _ in range(3))
    logp, row_max, log_sum = (hidden.new_zeros(n, dtype=stat) for _ in range(3))  # (N,) each
    if n and vocab:
        fp64 = stat == torch.float64
        wrap_triton(_linear_fwd_kernel)[(triton.cdiv(n, cfg["BLOCK_N"]), splits)](
            hidden, weight, hidden if bias is None else bias, labels, order, count, part_max, part_sum, part_target,
            hidden_size, vocab, v_per_split, splits, hidden.stride(0), weight.stride(0), 1.0 / temperature,
            HAS_BIAS=bias is not None, FP64=fp64, **cfg)
        wrap_triton(_linear_merge_kernel)[(n,)](
            labels, part_max, part_sum, part_target, logp, row_max, log_sum, splits, ignore_index, 1.0 / temperature,
            FP64=fp64, BLOCK_S=block_s)
    return logp, row_max, log_sum


def _vocab_chunk(rows: int, hidden_size: int, vocab: int, batch_invariant: bool) -> int:
    if batch_invariant:
        return min(vocab, INVARIANT_CHUNK)
    chunk = max(hidden_size, triton.cdiv(TILE_ELEMENTS, max(rows, 1)))
    return min(vocab, triton.cdiv(chunk, 256) * 256)


@functools.cache
def _has_mm_out_dtype() -> bool:  # torch.mm(a, b, out_dtype=torch.float32) for bf16/fp16 on CUDA: torch >= 2.8
    return torch.torch_version.TorchVersion(torch.__version__) >= "2.8"


def _add_matmul(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """acc += a @ b with acc in float32/float64, whatever the (16-bit) dtype of a and b."""
    if a.dtype == acc.dtype:
        acc.addmm_(a, b)
    elif a.is_cuda and _has_mm_out_dtype():
        acc += torch.mm(a, b, out_dtype=acc.dtype)
    elif a.is_cuda:
        acc += torch.mm(a, b)  # older torch: each chunk's partial product is rounded once
    else:
        acc.addmm_(a.to(acc.dtype), b.to(acc.dtype))


def _add_matmul_invariant(acc: torch.Tensor, d: torch.Tensor, weight: torch.Tensor, v0: int, cfg: dict) -> None:
    """acc (n, H) += d (n, C) @ weight[v0 : v0 + C] with _grad_hidden_kernel's fixed tiles."""
    n, hidden_size = acc.shape
    block_h = 64
    grid = (triton.cdiv(n, cfg["BLOCK_N"]), triton.cdiv(hidden_size, block_h))
    wrap_triton(_grad_hidden_kernel)[grid](
        d, weight, acc, n, hidden_size, d.shape[1], v0, d.stride(0), weight.stride(0), acc.stride(0),
        FP64=acc.dtype == torch.float64, UPCAST_DOT=cfg["UPCAST_DOT"], SUM_DOT=cfg["SUM_DOT"],
        DOT_PRECISION=cfg["DOT_PRECISION"],
        BLOCK_N=cfg["BLOCK_N"], BLOCK_H=block_h, BLOCK_K=cfg["BLOCK_K"], num_warps=cfg["num_warps"])


def _backward_fake(grad_logp, grad_log_sum, hidden, weight, bias, labels, row_max, log_sum, ignore_index,
                   temperature, need_hidden, need_weight, need_bias, batch_invariant):
    return (torch.empty_like(hidden) if need_hidden else hidden.new_empty(0),
            torch.empty_like(weight) if need_weight else weight.new_empty(0),
            weight.new_empty(weight.shape[0]) if need_bias else weight.new_empty(0))


@register_op("triton_linear_token_logprobs_backward", opaque=True, fake=_backward_fake)
def _linear_token_logprobs_backward(
    grad_logp: torch.Tensor, grad_log_sum: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor,
    bias: torch.Tensor | None, labels: torch.Tensor, row_max: torch.Tensor, log_sum: torch.Tensor,
    ignore_index: int, temperature: float, need_hidden: bool, need_weight: bool, need_bias: bool,
    batch_invariant: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    grad_hidden, grad_weight, grad_bias = _backward_fake(
        grad_logp, grad_log_sum, hidden, weight, bias, labels, row_max, log_sum, ignore_index, temperature,
        need_hidden, need_weight, need_bias, batch_invariant)  # every chunk writes its slice of the last two
    grad_hidden.zero_()  # ignored rows keep a zero gradient
    idx = (labels != ignore_index).nonzero().squeeze(1)  # (n,) the one host sync
    n, hidden_size = idx.numel(), hidden.shape[1]
    vocab = weight.shape[0]
    if n == 0 or vocab == 0 or not (need_hidden or need_weight or need_bias):
        return grad_hidden, grad_weight.zero_(), grad_bias.zero_()
    stat = compute_dtype(hidden.dtype)
    hidden_v = hidden.index_select(0, idx)  # (n, H)
    labels_v, row_max_v, log_sum_v, grad_logp_v, grad_log_sum_v = (
        t.index_select(0, idx) for t in (labels, row_max, log_sum, grad_logp, grad_log_sum))  # (n,) each
    acc = hidden.new_zeros(n, hidden_size, dtype=stat) if need_hidden else None  # (n, H) float32
    chunk = _vocab_chunk(n, hidden_size, vocab, batch_invariant)
    d = hidden.new_empty(n, chunk)  # (n, C) logit-gradient tile, inputs' dtype
    cfg = _config(hidden.dtype, n, batch_invariant)
    for v0 in range(0, vocab, chunk):
        v1 = min(vocab, v0 + chunk)
        d_c = d[:, : v1 - v0]  # (n, v1 - v0)
        grid = (triton.cdiv(n, cfg["BLOCK_N"]) * triton.cdiv(v1 - v0, cfg["BLOCK_V"]),)
        wrap_triton(_linear_bwd_logit_grad_kernel)[grid](
            hidden_v, weight, hidden if bias is None else bias, labels_v, row_max_v, log_sum_v, grad_logp_v,
            grad_log_sum_v, d_c, n, hidden_size, v0, v1, hidden_v.stride(0), weight.stride(0), d_c.stride(0),
            1.0 / temperature, HAS_BIAS=bias is not None, FP64=stat == torch.float64, GROUP=8, **cfg)
        if need_hidden and batch_invariant:
            _add_matmul_invariant(acc, d_c, weight, v0, cfg)  # (n, H) += (n, C) @ (C, H), fixed tiles
        elif need_hidden:
            _add_matmul(acc, d_c, weight[v0:v1])  # (n, H) += (n, C) @ (C, H)
        if need_weight:
            torch.mm(d_c.t(), hidden_v, out=grad_weight[v0:v1])  # (C, H) = (C, n) @ (n, H)
        if need_bias:
            grad_bias[v0:v1] = d_c.sum(0, dtype=stat)
    if need_hidden:
        grad_hidden.index_copy_(0, idx, acc.to(hidden.dtype))
    return grad_hidden, grad_weight, grad_bias


register_autograd(_linear_token_logprobs, "linear_token_logprobs", _linear_token_logprobs_backward)


def triton_linear_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                                 labels: torch.Tensor, ignore_index: int, temperature: float,
                                 batch_invariant: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logp, row_max, log_sum) [N] of hidden [N, H] through weight [V, H] (+ bias [V]); differentiable w.r.t. all
    three through logp and log_sum (row_max is the constant shift)."""
    return _linear_token_logprobs(hidden.contiguous(), weight.contiguous(),
                                  None if bias is None else bias.contiguous(), labels.contiguous(),
                                  int(ignore_index), float(temperature), bool(batch_invariant))
