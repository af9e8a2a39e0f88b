"""fused_linear_preference_loss: the end-to-end DPO path from hidden states to the per-pair loss.

hidden (2B, T, H) -> LM head -> token log-probs -> per-sequence sums (or means) -> preference_loss, with the
backward through all of it and never an (N, V) tensor: linear_token_logprobs streams the vocabulary and
recomputes logit tiles in its backward. Rows 0..B-1 are the chosen sequences, rows B..2B-1 the rejected
ones (TRL's and Liger's layout); labels are already shifted and ignore_index marks prompt and padding.

Two strategies for the LM-head gradient (DESIGN §3 asks to measure both; benchmarks/bench_ops.py does):
  strategy="recompute"  the op chain above: the backward recomputes logit tiles (Cut Cross-Entropy)
  strategy="chunked"    Liger-style: chunks of whole pairs, gradients computed in the forward
                        (fused_preference_chunked.py; plain PyTorch, one chunk's logits at a time)

batch_invariant=True: a pair's loss, rewards, log-probs and hidden-state gradient do not depend on the other
pairs in the batch. "recompute" runs every op in its batch-invariant mode; "chunked" is invariant with one pair
per chunk (its default): each chunk's GEMMs then see that pair's tokens only, so other chunk sizes are refused.
Weight and bias gradients sum over the pairs: deterministic, not batch invariant.
"""
from __future__ import annotations

import torch

from lit_align.ops.linear_token_logprobs import linear_token_logprobs
from lit_align.ops.preference_loss import preference_loss
from lit_align.ops.sequence_logprobs import sequence_logprobs

STRATEGIES = ("recompute", "chunked")


def split_pairs(hidden: torch.Tensor, labels: torch.Tensor) -> int:
    """B, after checking the (2B, T, H) / (2B, T) layout."""
    if hidden.dim() != 3 or labels.shape != hidden.shape[:2]:
        raise ValueError(f"expected hidden (2B, T, H) and labels (2B, T), got {tuple(hidden.shape)} and "
                         f"{tuple(labels.shape)}")
    if hidden.shape[0] % 2:
        raise ValueError(f"hidden has {hidden.shape[0]} rows: expected 2B (B chosen rows, then B rejected rows)")
    return hidden.shape[0] // 2


def fused_linear_preference_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                                 bias: torch.Tensor | None = None, ref_chosen: torch.Tensor | None = None,
                                 ref_rejected: torch.Tensor | None = None, beta: float = 0.1,
                                 loss_type: str = "sigmoid", label_smoothing=0.0, gamma: float = 0.0,
                                 ignore_index: int = -100, average_log_prob: bool = False, temperature: float = 1.0,
                                 return_logps: bool = False, backend: str = "auto", strategy: str = "recompute",
                                 chunk_size: int | None = None, batch_invariant: bool = False):
    """Per-pair DPO-family loss straight from the policy's final hidden states.

    Returns (loss (B,), chosen_rewards (B,), rejected_rewards (B,)), and with return_logps=True also the
    policy's (chosen_logps (B,), rejected_logps (B,)) for logging. ref_* are the reference model's sequence
    scores, precomputed (or from this op's `sequence_scores` on the reference model's hidden states).
    strategy: "recompute" (kernels per `backend`) or "chunked" (gradient in the forward, plain PyTorch, so
    backend must be "auto" or "torch"; chunk_size pairs per chunk, default 1). Both give the gradient of
    any upstream gradient of the per-pair loss, not only of loss.mean().
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}; expected one of {STRATEGIES}")
    if strategy == "chunked":
        if backend not in ("auto", "torch"):
            raise ValueError(f"strategy='chunked' is plain PyTorch; backend must be 'auto' or 'torch', got {backend!r}")
        if batch_invariant and chunk_size not in (None, 1):
            raise ValueError(f"batch_invariant=True with strategy='chunked' needs one pair per chunk (chunk_size=1), "
                             f"got chunk_size={chunk_size}: a chunk's GEMM would mix the pairs")
        from lit_align.ops.fused_preference_chunked import chunked_linear_preference_loss
        out = chunked_linear_preference_loss(
            hidden, weight, labels, bias=bias, ref_chosen=ref_chosen, ref_rejected=ref_rejected, beta=beta,
            loss_type=loss_type, label_smoothing=label_smoothing, gamma=gamma, ignore_index=ignore_index,
            average_log_prob=average_log_prob, temperature=temperature, chunk_size=chunk_size)
        return out if return_logps else out[:3]
    if chunk_size is not None:
        raise ValueError("chunk_size applies to strategy='chunked' only")
    batch = split_pairs(hidden, labels)
    scores = sequence_scores(hidden, weight, labels, bias=bias, ignore_index=ignore_index,
                             average_log_prob=average_log_prob, temperature=temperature, backend=backend,
                             batch_invariant=batch_invariant)  # (2B,)
    chosen, rejected = scores[:batch], scores[batch:]
    out = preference_loss(chosen, rejected, ref_chosen, ref_rejected, beta=beta, loss_type=loss_type,
                          label_smoothing=label_smoothing, gamma=gamma, backend=backend,
                          batch_invariant=batch_invariant)
    return (*out, chosen.detach(), rejected.detach()) if return_logps else out


def sequence_scores(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                    bias: torch.Tensor | None = None, ignore_index: int = -100, average_log_prob: bool = False,
                    temperature: float = 1.0, backend: str = "auto", batch_invariant: bool = False) -> torch.Tensor:
    """Sequence log-probs (S,) from hidden (S, T, H) through the LM head, without materialising logits."""
    token_logp = linear_token_logprobs(hidden, weight, labels, bias=bias, ignore_index=ignore_index,
                                       temperature=temperature, backend=backend,
                                       batch_invariant=batch_invariant)  # (S, T)
    return sequence_logprobs(token_logp, mask=labels != ignore_index, reduction="mean" if average_log_prob else "sum",
                             backend=backend, batch_invariant=batch_invariant)  # (S,)
