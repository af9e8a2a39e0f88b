"""Data: TRL-column rows (JSONL / HF datasets) -> chat-templated token ids with completion-only labels
-> padded, packed or left-padded batches, inside LightningDataModules.

  jsonl.py      read + validate rows (errors name file, line, field)
  chat.py       chat templates -> trained / untrained text spans
  tokenize.py   spans -> input_ids + labels, length limits, drop/truncate accounting
  report.py     DataReport: the counted drops and truncations of a split
  collate.py    SFT / preference (2B rows) / prompt (left-padded) collators
  packing.py    SFT packing with restarting position_ids and block-diagonal attention
  resumable.py  ResumableSampler, ResumableDataLoader (seeded epoch order + mid-epoch position)
  datamodule.py SFTDataModule, PreferenceDataModule, PromptDataModule

Names are imported lazily, so `import lit_align.data.jsonl` does not pull in Lightning.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "collate": ("PreferenceCollator", "PromptCollator", "SFTCollator", "model_inputs", "pad"),
    "datamodule": ("AlignDataModule", "PreferenceDataModule", "PromptDataModule", "SFTDataModule"),
    "jsonl": ("read_rows",),
    "packing": ("PackedCollator", "block_causal_mask", "pack_examples"),
    "report": ("DataReport",),
    "resumable": ("ResumableDataLoader", "ResumableSampler"),
    "tokenize": ("IGNORE_INDEX", "RowEncoder", "tokenize_rows"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'lit_align.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lit_align.data.{_WHERE[name]}"), name)
