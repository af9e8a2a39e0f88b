"""SFT packing: several tokenised examples share one row of at most max_length tokens, without attending
to each other, so a packed batch gives the same per-token loss as the padded one with far less padding.

How the examples are kept apart (transformers 5, checked in masking_utils.py / modeling_llama.py):
  * position_ids restart at 0 for each example. When a model is called with position_ids, NO
    attention_mask and use_cache=False, `create_causal_mask` detects the restarts
    (`find_packed_sequence_indices`) and builds a block-diagonal causal mask for sdpa, eager and flex
    attention; flash-attention-2/3 turn the same position_ids into cu_seqlens (varlen kernels). This is the
    default ("position_ids") and needs no (B, 1, T, T) tensor in the batch. PITFALL: with use_cache=True
    (the config default, even in training) the model builds a DynamicCache first and the detection is
    skipped (it only runs when past_key_values is None), so examples silently attend to each other; call
    `model(**collate.model_inputs(batch))`, which sets use_cache=False.
  * mask="4d" also puts an explicit block-diagonal causal mask in the batch: "attention_mask"
    (B, 1, T, T), additive (0 = attend, finfo.min = blocked) in `mask_dtype`. Llama-style models hand a
    4D mask to the attention function unchanged; eager ADDS it to the scores, so it must be additive and
    in the model's dtype (a bool mask only works for sdpa). Build it for another dtype with
    `block_causal_mask(batch["segment_ids"], dtype)`.
  * The first label of every example is -100: in a padded batch the first token is never a target (the
    shift drops it); in a packed row the previous example's last token would otherwise predict it.
  * Padding at the end of a row continues the last example's positions (so it joins that example for
    position-based detection and for cu_seqlens, exactly what transformers computes from position_ids);
    it has -100 labels and segment id -1, and no real token can attend to it (it comes later).

Batch keys (S = examples in the batch, B = packed rows):
  input_ids, labels, position_ids, segment_ids (B, T) (segment ids number the examples 0..S-1, -1 pad);
  cu_seqlens (S + 1,) int32 offsets into the flattened (B*T) stream; max_seqlen (int); ids (S list);
  index (S,); passthrough columns (S lists); attention_mask (B, 1, T, T) only with mask="4d".
Checked on a tiny float32 LlamaForCausalLM (tests/data/test_data_packing.py): per-token losses of a packed
batch equal those of the padded batch for sdpa and eager, with both mask modes (bitwise on CPU here; the
test allows float32 rounding, since masked keys are reduced in a different layout).
"""
from __future__ import annotations

import bisect
from typing import Any, Literal

import torch

from lit_align.data.collate import _Collator, pad
from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.errors import UserError


def pack_examples(examples: list[dict], max_length: int) -> list[list[dict]]:
    """Group examples into rows of at most `max_length` tokens (best-fit decreasing; deterministic)."""
    too_long = [ex["id"] for ex in examples if len(ex["input_ids"]) > max_length]
    if too_long:
        raise UserError(f"{len(too_long)} examples exceed max_length={max_length} (e.g. {too_long[0]!r}); "
                        "tokenise with the same max_length before packing")
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]["input_ids"]))
    bins: list[list[dict]] = []
    free: list[tuple[int, int]] = []  # sorted (room left, bin number)
    for i in order:
        n = len(examples[i]["input_ids"])
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, b = free.pop(k)
        else:
            room, b = max_length, len(bins)
            bins.append([])
        bins[b].append(examples[i])
        bisect.insort(free, (room - n, b))
    return bins


def block_causal_mask(segment_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, T) segment ids -> (B, 1, T, T) additive mask: attend causally within the same segment only."""
    length = segment_ids.shape[-1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
    causal = torch.ones(length, length, dtype=torch.bool, device=segment_ids.device).tril()  # (T, T)
    blocked = torch.zeros(same.shape, dtype=dtype, device=segment_ids.device)
    return blocked.masked_fill(~(same & causal), torch.finfo(dtype).min)[:, None]  # (B, 1, T, T)


class PackedCollator(_Collator):
    """Rows of packed examples (lists from `pack_examples`) -> one packed batch (see the module docstring)."""

    def __init__(self, pad_token_id: int, mask: Literal["position_ids", "4d"] = "position_ids",
                 mask_dtype: torch.dtype = torch.float32, pad_to_multiple_of: int | None = None):
        super().__init__(pad_token_id, pad_to_multiple_of)
        if mask not in ("position_ids", "4d"):
            raise UserError(f"mask must be 'position_ids' or '4d', got {mask!r}")
        self.mask, self.mask_dtype = mask, mask_dtype

    def __call__(self, rows: list[list[dict]]) -> dict[str, Any]:
        tokens, labels, segments = [], [], []
        num_segments = 0
        for row in rows:
            tokens.append([t for ex in row for t in ex["input_ids"]])
            labels.append([lab for ex in row for lab in [IGNORE_INDEX] + ex["labels"][1:]])
            segments.append([num_segments + k for k, ex in enumerate(row) for _ in ex["input_ids"]])
            num_segments += len(row)
        input_ids = self._pad(tokens, self.pad_token_id)  # (B, T)
        width = input_ids.shape[1]
        positions = [_positions(row, width) for row in rows]
        seg_ids = pad(segments, -1, length=width)  # (B, T)
        batch = {
            "input_ids": input_ids,
            "labels": pad(labels, IGNORE_INDEX, length=width),  # (B, T)
            "position_ids": torch.tensor(positions, dtype=torch.long),  # (B, T)
            "segment_ids": seg_ids,  # (B, T)
            **_cu_seqlens(seg_ids),
            **self.meta([ex for row in rows for ex in row]),
        }
        if self.mask == "4d":
            batch["attention_mask"] = block_causal_mask(seg_ids, self.mask_dtype)  # (B, 1, T, T)
        return batch


def _positions(row: list[dict], width: int) -> list[int]:
    """0..n-1 per example; the padding continues the last example's count up to `width`."""
    pos = [p for ex in row for p in range(len(ex["input_ids"]))]
    start = pos[-1] + 1 if pos else 0
    return pos + list(range(start, start + width - len(pos)))


def _cu_seqlens(segment_ids: torch.Tensor) -> dict[str, Any]:
    """cu_seqlens (S + 1,) over the flattened (B*T) stream, each row's padding joined to its last example."""
    filled = segment_ids.clone()  # (B, T)
    for b in range(filled.shape[0]):
        real = filled[b] >= 0
        last = int(filled[b][real][-1]) if bool(real.any()) else -1
        filled[b][~real] = last
    lengths = torch.bincount(filled.flatten(), minlength=int(segment_ids.max()) + 1)  # (S,)
    cu = torch.zeros(lengths.numel() + 1, dtype=torch.int32)
    cu[1:] = lengths.cumsum(0)
    return {"cu_seqlens": cu, "max_seqlen": int(lengths.max()) if lengths.numel() else 0}
