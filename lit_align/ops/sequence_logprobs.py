"""sequence_logprobs: per-sequence sums (or means) of token log-probs, padded or packed.

    sequence_logprobs(token_logp, mask= | segment_ids= | cu_seqlens=)   token log-probs -> (S,)
    linear_sequence_logprobs(hidden, weight, labels)   hidden states -> LM head -> token log-probs -> (S,)

Three layouts, all reduced to one segment form (segment_ids[N] in [-1, S), -1 = excluded):
  * padded: token_logp (B, T) with mask (B, T)           -> (B,)
  * packed: token_logp (N,) with segment_ids (N,)        -> (S,)   (S = num_segments or max id + 1)
  * packed: token_logp (N,) with cu_seqlens (S + 1,)     -> (S,)   (flash-attention's layout)
A packed call may also pass mask (N,) to exclude prompt/padding tokens. "mean" divides by the number of
included tokens (an empty sequence scores 0): SimPO and IPO use length-normalised scores.
The cpp, triton and cuda kernels are batch invariant (a segment's score depends on its own tokens only, summed
in token order); batch_invariant=True only rules out the torch backend (index_add on CUDA uses atomics).
The kernels (lit_align::sequence_logprobs) work on the segment form; sequence_logprobs_reference is their ground truth.
"""
from __future__ import annotations

import torch

from lit_align.ops._dispatch import resolve_backend
from lit_align.ops.linear_token_logprobs import linear_token_logprobs

REDUCTIONS = ("sum", "mean")


def to_segments(token_logp: torch.Tensor, *, mask=None, segment_ids=None, cu_seqlens=None,
                num_segments: int | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(values (N,), segment_ids (N,) int64 with -1 for excluded tokens, S) for any accepted layout."""
    if segment_ids is not None and cu_seqlens is not None:
        raise ValueError("pass segment_ids or cu_seqlens, not both")
    if token_logp.dim() == 2 and segment_ids is None and cu_seqlens is None:  # padded (B, T)
        batch, length = token_logp.shape
        ids = torch.arange(batch, device=token_logp.device).unsqueeze(1).expand(batch, length)  # (B, T)
        if num_segments is not None and num_segments != batch:
            raise ValueError(f"num_segments={num_segments} but padded input has {batch} rows")
        num_segments = batch
    elif token_logp.dim() == 1:
        if cu_seqlens is not None:
            cu = cu_seqlens.long()
            if cu.dim() != 1 or cu.numel() < 1 or int(cu[0]) != 0 or int(cu[-1]) != token_logp.numel() \
                    or bool((cu[1:] < cu[:-1]).any()):
                raise ValueError(f"cu_seqlens must be non-decreasing from 0 to N={token_logp.numel()}, "
                                 f"got {cu.tolist()[:8]}...")
            lengths = cu[1:] - cu[:-1]
            num_segments = lengths.numel() if num_segments is None else num_segments
            ids = torch.repeat_interleave(torch.arange(lengths.numel(), device=token_logp.device), lengths)
        elif segment_ids is not None:
            if segment_ids.shape != token_logp.shape or segment_ids.is_floating_point():
                raise ValueError(f"segment_ids must be an integer tensor of shape {tuple(token_logp.shape)}, "
                                 f"got {segment_ids.dtype} {tuple(segment_ids.shape)}")
            ids = segment_ids.long()
            if num_segments is None:
                num_segments = int(ids.max()) + 1 if ids.numel() else 0
            if ids.numel() and (int(ids.min()) < -1 or int(ids.max()) >= num_segments):
                raise ValueError(f"segment_ids must lie in [-1, {num_segments}), "
                                 f"got [{int(ids.min())}, {int(ids.max())}]")
        else:
            raise ValueError("packed (N,) token_logp needs segment_ids or cu_seqlens; padded input is (B, T)")
    else:
        raise ValueError(f"token_logp must be (B, T) padded or (N,) packed, got shape {tuple(token_logp.shape)}")
    if mask is not None:
        if mask.shape != token_logp.shape:
            raise ValueError(f"mask has shape {tuple(mask.shape)}, expected {tuple(token_logp.shape)}")
        ids = torch.where(mask.bool(), ids, -1)
    return token_logp.reshape(-1), ids.reshape(-1).contiguous(), num_segments


def sequence_logprobs_reference(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int,
                                mean: bool) -> torch.Tensor:
    """Plain PyTorch ground truth on the segment form."""
    keep = segment_ids >= 0
    ids = segment_ids[keep]
    sums = values.new_zeros(num_segments).index_add(0, ids, values[keep])  # (S,)
    if not mean:
        return sums
    counts = torch.bincount(ids, minlength=num_segments).to(values.dtype)  # (S,)
    return sums / counts.clamp(min=1)


def _run_kernel(backend: str, values, segment_ids, num_segments: int, mean: bool):
    if backend == "triton":
        from lit_align.ops.triton.sequence_logprobs import triton_sequence_logprobs
        return triton_sequence_logprobs(values, segment_ids, num_segments, mean)
    import lit_align.ops._library  # noqa: F401
    return torch.ops.lit_align.sequence_logprobs(values, segment_ids, num_segments, mean)


def sequence_logprobs(token_logp: torch.Tensor, *, mask: torch.Tensor | None = None,
                      segment_ids: torch.Tensor | None = None, cu_seqlens: torch.Tensor | None = None,
                      num_segments: int | None = None, reduction: str = "sum", backend: str = "auto",
                      batch_invariant: bool = False) -> torch.Tensor:
    """Per-sequence score of token log-probs; see the module docstring for the layouts."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; expected one of {REDUCTIONS}")
    if not token_logp.is_floating_point():
        raise ValueError(f"token_logp must be floating point, got {token_logp.dtype}")
    values, ids, count = to_segments(token_logp, mask=mask, segment_ids=segment_ids, cu_seqlens=cu_seqlens,
                                     num_segments=num_segments)
    backend = resolve_backend(backend, "sequence_logprobs", token_logp.device, batch_invariant)
    if backend == "torch":
        return sequence_logprobs_reference(values, ids, count, reduction == "mean")
    return _run_kernel(backend, values.contiguous(), ids, count, reduction == "mean")


def linear_sequence_logprobs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                             bias: torch.Tensor | None = None, ignore_index: int = -100, average_log_prob: bool = False,
                             temperature: float = 1.0, backend: str = "auto",
                             batch_invariant: bool = False) -> torch.Tensor:
    """Sequence log-probs (S,) of labels (S, T) from hidden states (S, T, H) through the LM head (V, H) + bias (V,):
    linear_token_logprobs (never the (S, T, V) logits), then sums over the labelled tokens (means with
    average_log_prob). Labels are already shifted; ignore_index marks prompt and padding."""
    token_logp = linear_token_logprobs(hidden, weight, labels, bias=bias, ignore_index=ignore_index,
                                       temperature=temperature, backend=backend,
                                       batch_invariant=batch_invariant)  # (S, T)
    return sequence_logprobs(token_logp, mask=labels != ignore_index, reduction="mean" if average_log_prob else "sum",
                             backend=backend, batch_invariant=batch_invariant)  # (S,)
