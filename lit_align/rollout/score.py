"""Log-probabilities of generated completions under a causal LM, through lit_align's fused log-prob ops.

A Generation (generate.py) becomes a training-format row: prompt + completion + the stop token that ended
it (when finished), right-padded, labels -100 on the prompt and padding (HF-aligned, unshifted) — the
batch format of lit_align.models.causal_lm, which never materialises the (B, T, V) logits. The stop token
is scored because the model chose to stop: a policy's log-prob of a response includes ending it.

Used by evaluation (KL to a reference), CREAM (implicit DPO rewards), PPO/RLOO (old/ref log-probs).
"""
from __future__ import annotations

from typing import Any

import torch

from lit_align.data.collate import pad
from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.models.causal_lm import sequence_logprobs, token_logprobs
from lit_align.rollout.generate import Generation, pad_token_id
from lit_align.rollout.runtime import batches_by_length, evaluating, model_device


def completion_batch(tokenizer: Any, generations: list[Generation], pad_id: int | None = None) -> dict:
    """Right-padded input_ids, attention_mask, labels (B, T) of prompt + generated tokens.

    labels equal input_ids on the generated tokens (completion + stop token) and -100 elsewhere.
    `pad_id` defaults to the tokenizer's pad id (or its first stop token).
    """
    if pad_id is None:
        pad_id = pad_token_id(tokenizer)
    seqs = [g.prompt_ids + g.generated_ids for g in generations]
    labels = [[IGNORE_INDEX] * len(g.prompt_ids) + g.generated_ids for g in generations]
    return {
        "input_ids": pad(seqs, pad_id),  # (B, T)
        "attention_mask": pad([[1] * len(s) for s in seqs], 0),  # (B, T)
        "labels": pad(labels, IGNORE_INDEX),  # (B, T)
    }


def _scored_batches(model, tokenizer: Any, generations: list[Generation], batch_size: int):
    """(indices, batch on the model's device) in length-sorted batches."""
    device = model_device(model)
    lengths = [len(g.prompt_ids) + g.num_tokens for g in generations]
    for idx in batches_by_length(lengths, batch_size):
        batch = completion_batch(tokenizer, [generations[i] for i in idx])
        yield idx, {k: v.to(device) for k, v in batch.items()}


def completion_logprobs(model, tokenizer: Any, generations: list[Generation], batch_size: int = 64) -> torch.Tensor:
    """(n,) float32 on CPU: sum of log p(token) over each generation's completion tokens (+ stop token)."""
    out = torch.zeros(len(generations), dtype=torch.float32)
    with evaluating(model):
        for idx, batch in _scored_batches(model, tokenizer, generations, batch_size):
            out[idx] = sequence_logprobs(model, batch).float().cpu()  # (B,)
    return out


def completion_token_logprobs(model, tokenizer: Any, generations: list[Generation], batch_size: int = 64
                           ) -> list[torch.Tensor]:
    """Per generation, a (num_tokens,) float32 CPU tensor of log p(token) for each generated token."""
    out: list[torch.Tensor | None] = [None] * len(generations)
    with evaluating(model):
        for idx, batch in _scored_batches(model, tokenizer, generations, batch_size):
            token_logp = token_logprobs(model, batch).float().cpu()  # (B, T-1)
            scored = (batch["labels"][:, 1:] != IGNORE_INDEX).cpu()  # (B, T-1)
            for row, i in enumerate(idx):
                out[i] = token_logp[row][scored[row]]  # (num_tokens,)
    return out  # type: ignore[return-value]
