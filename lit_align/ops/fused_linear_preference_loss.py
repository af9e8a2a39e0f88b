"""fused_linear_preference_loss: the end-to-end DPO path from hidden states to the per-pair loss.

hidden (2B, T, H) -> LM head -> token log-probs -> per-sequence sums (or means) -> preference_loss, with the
backward through all of it and never an (N, V) tensor: linear_token_logprobs streams the vocabulary and
recomputes logit tiles in its backward. Rows 0..B-1 are the chosen sequences, rows B..2B-1 the rejected
ones (TRL's and Liger's layout); labels are already shifted and ignore_index marks prompt and padding.
DPOModule trains through this op; its RPO term (rpo_alpha) and its metrics' log-probs come out of the same pass.

Two strategies for the LM-head gradient (DESIGN §3 asks to measure both; benchmarks/bench_ops.py does):
  strategy="recompute"  the op chain above: the backward recomputes logit tiles (Cut Cross-Entropy)
  strategy="chunked"    Liger-style: chunks of whole pairs, gradients computed in the forward
                        (fused_linear_preference_loss_chunked.py; plain PyTorch, one chunk's logits at a time)

batch_invariant=True: a pair's loss, rewards, log-probs and hidden-state gradient do not depend on the other
pairs in the batch. "recompute" runs every op in its batch-invariant mode; "chunked" is invariant with one pair
per chunk (its default): each chunk's GEMMs then see that pair's tokens only, so other chunk sizes are refused.
Weight and bias gradients sum over the pairs: deterministic, not batch invariant.
"""
from __future__ import annotations

import torch

from lit_align.losses.preference import rpo_nll
from lit_align.ops.preference_loss import preference_loss
from lit_align.ops.sequence_logprobs import linear_sequence_logprobs

STRATEGIES = ("recompute", "chunked")


def split_pairs(hidden: torch.Tensor, labels: torch.Tensor) -> int:
    """B, after checking the (2B, T, H) / (2B, T) layout."""
    if hidden.dim() != 3 or labels.shape != hidden.shape[:2]:
        raise ValueError(f"expected hidden (2B, T, H) and labels (2B, T), got {tuple(hidden.shape)} and "
                         f"{tuple(labels.shape)}")
    if hidden.shape[0] % 2:
        raise ValueError(f"hidden has {hidden.shape[0]} rows: expected 2B (B chosen rows, then B rejected rows)")
    return hidden.shape[0] // 2


def chosen_lengths(labels: torch.Tensor, batch: int, ignore_index: int, dtype: torch.dtype) -> torch.Tensor:
    """(B,) labelled tokens of each chosen sequence (at least 1), for RPO's per-token NLL."""
    return (labels[:batch] != ignore_index).sum(-1).clamp(min=1).to(dtype)


def fused_linear_preference_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                                 bias: torch.Tensor | None = None, ref_chosen: torch.Tensor | None = None,
                                 ref_rejected: torch.Tensor | None = None, beta: float = 0.1,
                                 loss_type: str = "sigmoid", label_smoothing=0.0, gamma: float = 0.0,
                                 rpo_alpha: float = 0.0, ignore_index: int = -100, average_log_prob: bool = False,
                                 temperature: float = 1.0, return_logprobs: bool = False, backend: str = "auto",
                                 strategy: str = "recompute", chunk_size: int | None = None,
                                 batch_invariant: bool = False):
    """Per-pair DPO-family loss straight from the policy's final hidden states.

    Returns (loss (B,), chosen_rewards (B,), rejected_rewards (B,)), and with return_logprobs=True also the
    policy's sequence log-probs (chosen (B,), rejected (B,), detached: sums, or means with average_log_prob) for
    logging. ref_* are the reference model's sequence log-probs, precomputed (or from linear_sequence_logprobs on
    the reference model's hidden states). rpo_alpha > 0 adds rpo_alpha * the chosen answer's per-token NLL to each
    pair's loss (RPO, lit_align.losses.preference.rpo_nll).
    strategy: "recompute" (kernels per `backend`) or "chunked" (gradient in the forward, plain PyTorch, so
    backend must be "auto" or "torch"; chunk_size pairs per chunk, default 1). Both give the gradient of
    any upstream gradient of the per-pair loss, not only of loss.mean().
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}; expected one of {STRATEGIES}")
    if not rpo_alpha >= 0:
        raise ValueError(f"rpo_alpha must be >= 0, got {rpo_alpha}")
    if strategy == "chunked":
        if backend not in ("auto", "torch"):
            raise ValueError(f"strategy='chunked' is plain PyTorch; backend must be 'auto' or 'torch', got {backend!r}")
        if batch_invariant and chunk_size not in (None, 1):
            raise ValueError(f"batch_invariant=True with strategy='chunked' needs one pair per chunk (chunk_size=1), "
                             f"got chunk_size={chunk_size}: a chunk's GEMM would mix the pairs")
        from lit_align.ops.fused_linear_preference_loss_chunked import chunked_linear_preference_loss
        out = chunked_linear_preference_loss(
            hidden, weight, labels, bias=bias, ref_chosen=ref_chosen, ref_rejected=ref_rejected, beta=beta,
            loss_type=loss_type, label_smoothing=label_smoothing, gamma=gamma, rpo_alpha=rpo_alpha,
            ignore_index=ignore_index, average_log_prob=average_log_prob, temperature=temperature,
            chunk_size=chunk_size)
        return out if return_logprobs else out[:3]
    if chunk_size is not None:
        raise ValueError("chunk_size applies to strategy='chunked' only")
    batch = split_pairs(hidden, labels)
    scores = linear_sequence_logprobs(hidden, weight, labels, bias=bias, ignore_index=ignore_index,
                                      average_log_prob=average_log_prob, temperature=temperature, backend=backend,
                                      batch_invariant=batch_invariant)  # (2B,)
    chosen, rejected = scores[:batch], scores[batch:]
    loss, chosen_rewards, rejected_rewards = preference_loss(
        chosen, rejected, ref_chosen, ref_rejected, beta=beta, loss_type=loss_type, label_smoothing=label_smoothing,
        gamma=gamma, backend=backend, batch_invariant=batch_invariant)
    if rpo_alpha:
        lengths = None if average_log_prob else chosen_lengths(labels, batch, ignore_index, chosen.dtype)
        loss = loss + rpo_alpha * rpo_nll(chosen, lengths)
    out = (loss, chosen_rewards, rejected_rewards)
    return (*out, chosen.detach(), rejected.detach()) if return_logprobs else out
