"""Reward-model scores of (prompt, response) pairs, rendered the way reward models are trained.

A reward model (lit_align.models.load_sequence_classifier) is trained on preference rows tokenised by
RowEncoder: the chat template's user prompt + assistant answer (or prompt text + answer), ending in EOS.
Scoring a generated response goes through the same encoder, so the model sees the same format it learned.
"""
from __future__ import annotations

from typing import Any

import torch

from lit_align.data.collate import pad
from lit_align.models.scalar import sequence_scalar
from lit_align.rollout.runtime import batches_by_length, evaluating, model_device


def pair_ids(encoder: Any, prompt: Any, response: str, where: str = "response") -> list[int]:
    """Token ids of prompt + response (+ EOS) exactly as RowEncoder tokenises a training pair (an empty response is
    scored, not dropped)."""
    return encoder.encode_pair(prompt, response, where)


def padded_pairs(seqs: list[list[int]], tokenizer: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids and attention_mask (n, T) of tokenised pairs, right-padded (the pad id, else EOS), on `device`."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return pad(seqs, pad_id).to(device), pad([[1] * len(s) for s in seqs], 0).to(device)


def reward_scores(reward_model, tokenizer: Any, prompts: list[Any], responses: list[str], *, encoder: Any = None,
                  batch_size: int = 64) -> torch.Tensor:
    """(n,) float32 CPU scores of each (prompt, response); `tokenizer` is the reward model's."""
    from lit_align.data.tokenize import RowEncoder

    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    encoder = encoder if encoder is not None else RowEncoder(tokenizer)
    pairs = enumerate(zip(prompts, responses, strict=True))
    seqs = [pair_ids(encoder, p, r, f"response {i}") for i, (p, r) in pairs]
    device = model_device(reward_model)
    out = torch.zeros(len(seqs), dtype=torch.float32)
    with evaluating(reward_model):
        for idx in batches_by_length([len(s) for s in seqs], batch_size):
            input_ids, attention_mask = padded_pairs([seqs[i] for i in idx], tokenizer, device)  # (B, T) each
            out[idx] = sequence_scalar(reward_model, input_ids, attention_mask).cpu()  # (B,)
    return out
