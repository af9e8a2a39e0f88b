"""Collators: tokenised examples (tokenize.py) -> padded batch dicts.

Every batch carries, besides its tensors, "ids" (list of example ids, the key of the reference log-prob
cache and of per-prompt bookkeeping), "index" (LongTensor of stable dataset indices) and each passthrough
column of the rows (e.g. "task", "group", "weight") as a python list. So never call `model(**batch)`:
`model(**model_inputs(batch))` picks the model's arguments (and sets use_cache=False, which packed
batches need).

  SFTCollator        input_ids, attention_mask, labels: (B, T), right-padded
  PreferenceCollator input_ids, attention_mask, labels: (2B, T), rows 0..B-1 chosen, B..2B-1 rejected
                     (the TRL/Liger layout the fused preference op expects); ids/index/passthrough per pair (B);
                     a `label_smoothing` column becomes a (B,) float32 tensor (per-pair cDPO / CREAM smoothing)
  PromptCollator     input_ids, attention_mask: (B, T), LEFT-padded so generation appends on the right

Labels follow the HF convention: aligned with input_ids (unshifted; the model or loss shifts them), -100
on prompt and padding tokens.
"""
from __future__ import annotations

from typing import Any

import torch

from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.errors import UserError


def pad(seqs: list[list[int]], value: int, *, left: bool = False, multiple_of: int | None = None,
        length: int | None = None) -> torch.Tensor:
    """Stack ragged int lists into a (len(seqs), T) LongTensor; T = `length`, else the longest rounded up
    to `multiple_of`."""
    if length is None:
        length = max((len(s) for s in seqs), default=0)
    if multiple_of:
        length = -(-length // multiple_of) * multiple_of
    out = torch.full((len(seqs), length), value, dtype=torch.long)  # (B, T)
    for i, s in enumerate(seqs):
        if s:
            row = torch.as_tensor(s, dtype=torch.long)
            if left:
                out[i, length - len(s):] = row
            else:
                out[i, : len(s)] = row
    return out


MODEL_KEYS = ("input_ids", "attention_mask", "position_ids")


def model_inputs(batch: dict[str, Any], dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Keyword arguments for a training/scoring forward of an HF causal LM on any lit_align batch.

    Passes input_ids, attention_mask and position_ids where present, and use_cache=False: with a cache,
    transformers skips the packed-sequence detection on position_ids and packed examples would attend to
    each other (packing.py). A 4D additive mask is re-expressed in `dtype` (the model's) when given.
    """
    out = {k: batch[k] for k in MODEL_KEYS if k in batch}
    mask = out.get("attention_mask")
    if dtype is not None and mask is not None and mask.dim() == 4 and mask.dtype != dtype:
        blocked = torch.finfo(dtype).min
        out["attention_mask"] = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask != 0, blocked)
    return {**out, "use_cache": False}


class _Collator:
    """Shared bookkeeping: ids, index and passthrough columns."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            raise UserError("pad_token_id is None; set tokenizer.pad_token (e.g. to the eos token)")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def _pad(self, seqs: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
        return pad(seqs, value, left=left, multiple_of=self.pad_to_multiple_of)

    def _mask(self, seqs: list[list[int]], left: bool = False) -> torch.Tensor:
        return self._pad([[1] * len(s) for s in seqs], 0, left=left)

    @staticmethod
    def meta(examples: list[dict]) -> dict[str, Any]:
        columns = dict.fromkeys(k for ex in examples for k in ex.get("extra", {}))
        return {
            "ids": [ex["id"] for ex in examples],
            "index": torch.tensor([ex["index"] for ex in examples], dtype=torch.long),  # (B,)
            **{c: [ex.get("extra", {}).get(c) for ex in examples] for c in columns},
        }


class SFTCollator(_Collator):
    """Right-padded SFT batch: input_ids, attention_mask, labels (B, T) + ids, index, passthrough."""

    def __call__(self, examples: list[dict]) -> dict[str, Any]:
        ids = [ex["input_ids"] for ex in examples]
        return {
            "input_ids": self._pad(ids, self.pad_token_id),  # (B, T)
            "attention_mask": self._mask(ids),  # (B, T)
            "labels": self._pad([ex["labels"] for ex in examples], IGNORE_INDEX),  # (B, T)
            **self.meta(examples),
        }


class PreferenceCollator(_Collator):
    """One batch of 2B rows: chosen sequences first, then rejected; per-pair ids/index/passthrough (B)."""

    def __call__(self, examples: list[dict]) -> dict[str, Any]:
        sides = ("chosen", "rejected")
        ids = [ex[f"{s}_input_ids"] for s in sides for ex in examples]
        meta = self.meta(examples)
        if "label_smoothing" in meta:
            meta["label_smoothing"] = smoothing_tensor(meta["label_smoothing"], meta["ids"])  # (B,)
        return {
            "input_ids": self._pad(ids, self.pad_token_id),  # (2B, T)
            "attention_mask": self._mask(ids),  # (2B, T)
            "labels": self._pad([ex[f"{s}_labels"] for s in sides for ex in examples], IGNORE_INDEX),  # (2B, T)
            **meta,
        }


def smoothing_tensor(values: list, ids: list) -> torch.Tensor:
    """(B,) float32 per-pair label smoothing; every pair of a batch must carry one (the values were range-checked by
    data/tokenize.py), else the pairs without one would silently get 0."""
    missing = [i for i, v in zip(ids, values, strict=True) if v is None]
    if missing:
        raise UserError(f"pairs {missing[:4]} have no 'label_smoothing' while others in the same data do: give every "
                        "row one (0.0 for an unsmoothed pair) or none")
    return torch.tensor(values, dtype=torch.float32)


class PromptCollator(_Collator):
    """Left-padded prompts for generation: input_ids, attention_mask (B, T) + ids, index, passthrough."""

    def __call__(self, examples: list[dict]) -> dict[str, Any]:
        ids = [ex["input_ids"] for ex in examples]
        return {
            "input_ids": self._pad(ids, self.pad_token_id, left=True),  # (B, T)
            "attention_mask": self._mask(ids, left=True),  # (B, T)
            **self.meta(examples),
        }
