"""LightningDataModules for the three row formats: SFTDataModule, PreferenceDataModule, PromptDataModule.

One base class holds everything (tokenizer, files, limits, loaders); a subclass only names its row
format and its collator. The tokenizer is loaded in __init__ so that LightningCLI can link the values
derived from it into the model after instantiation, e.g.

    parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")

Each split is read (jsonl.py), tokenised (tokenize.py) once in setup(), and its DataReport is logged once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset

from lit_align.data.collate import PreferenceCollator, PromptCollator, SFTCollator
from lit_align.data.jsonl import read_rows
from lit_align.data.packing import PackedCollator, pack_examples
from lit_align.data.report import DataReport
from lit_align.data.resumable import ResumableDataLoader, ResumableSampler
from lit_align.data.tokenize import RowEncoder
from lit_align.errors import UserError
from lit_align.models.loading import load_tokenizer

_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class ListDataset(Dataset):
    """A map-style dataset over tokenised examples (or packed rows of them)."""

    def __init__(self, items: list[Any]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


class AlignDataModule(pl.LightningDataModule):
    """Base data module: JSONL files in TRL's columns -> tokenised, length-limited, collated batches.

    Args:
        train_file: JSONL file of training rows (from Python, an HF `datasets.Dataset` or a list of dicts
            also works for any of the split files).
        tokenizer: tokenizer path or hub id (AutoTokenizer.from_pretrained; an already built tokenizer
            object is accepted too when constructing from Python).
        val_file: optional JSONL file of validation rows.
        test_file: optional JSONL file of test rows.
        predict_file: optional JSONL file of rows for `predict` (generation).
        batch_size: rows per batch (pairs for preference data; packed rows when packing).
        max_length: the longest example in tokens (prompt + completion); None for no limit.
        max_prompt_length: the longest prompt in tokens; None for no separate limit.
        truncation: "truncate" (cut prompts from the left, completions from the right), "drop" (drop the
            example) or "error" (raise). Every truncation and drop is counted in the split's DataReport.
        strict: raise on empty completions and identical chosen/rejected instead of dropping them.
        use_chat_template: format with the tokenizer's chat template (None: when it has one).
        trust_remote_code: passed to AutoTokenizer.from_pretrained; keep False unless you trust the repo.
        num_workers: DataLoader worker processes.
        seed: seed of the training shuffle (epoch e's order is a permutation seeded with seed + e).
        shuffle: shuffle the training set each epoch.
    """

    format: str = ""  # the row format of jsonl.SCHEMAS, set by subclasses

    def __init__(self, train_file: str, tokenizer: str, val_file: str | None = None, test_file: str | None = None,
                 predict_file: str | None = None, batch_size: int = 8, max_length: int | None = 1024,
                 max_prompt_length: int | None = None,
                 truncation: Literal["truncate", "drop", "error"] = "truncate", strict: bool = False,
                 use_chat_template: bool | None = None, trust_remote_code: bool = False, num_workers: int = 0,
                 seed: int = 0, shuffle: bool = True):
        super().__init__()
        self.files = {"train": train_file, "val": val_file, "test": test_file, "predict": predict_file}
        self.tokenizer = (load_tokenizer(tokenizer, trust_remote_code=trust_remote_code)
                          if isinstance(tokenizer, str) else tokenizer)
        self.batch_size, self.num_workers, self.seed, self.shuffle = batch_size, num_workers, seed, shuffle
        self.max_length = max_length
        self.encoder = RowEncoder(self.tokenizer, max_length=max_length, max_prompt_length=max_prompt_length,
                                  truncation=truncation, strict=strict, use_chat_template=use_chat_template)
        self.datasets: dict[str, ListDataset] = {}
        self.reports: dict[str, DataReport] = {}
        self._train_position: dict[str, Any] | None = None  # a checkpoint's, for the next training loader built

    # ---- tokenizer-derived values (for LightningCLI link_arguments) ---------------------------------

    @property
    def vocab_size(self) -> int:
        """len(tokenizer): base vocabulary plus added tokens (the embedding rows a model needs)."""
        return len(self.tokenizer)

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    # ---- subclass hooks --------------------------------------------------------------------------

    def collator(self) -> Any:
        raise NotImplementedError

    def build(self, examples: list[dict]) -> list[Any]:
        """Dataset items from tokenised examples (packing groups them here)."""
        return examples

    # ---- Lightning ---------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        splits = _STAGE_SPLITS.get(stage, tuple(self.files)) if stage else tuple(self.files)
        for split in splits:
            if split in self.datasets or self.files[split] is None:
                continue
            rows = read_rows(self.files[split], self.format, name=split)
            examples, report = getattr(self.encoder, self.format)(rows, split)
            if not examples:
                raise UserError(f"{self.files[split]}: no usable rows ({report})")
            self.datasets[split], self.reports[split] = ListDataset(self.build(examples)), report
            source = self.files[split]
            name = Path(source).name if isinstance(source, (str, Path)) else type(source).__name__
            rank_zero_info(f"[lit_align.data] {name}: {report}")

    def train_dataloader(self) -> ResumableDataLoader:
        loader = self._loader("train", shuffle=self.shuffle)
        if self._train_position is not None:
            loader.load_state_dict(self._train_position)
            self._train_position = None
        return loader

    def state_dict(self) -> dict[str, Any]:
        """The position (epoch, batches) of the trainer's training loader, so that a resumed fit continues mid-epoch.

        Lightning restores a stateful loader itself, but only if the loader is built after the checkpoint is
        loaded; a module whose configure_optimizers reads trainer.estimated_stepping_batches (AlignModule) has it
        built before (Lightning 2.6), so the position also travels with the data module: applied to the trainer's
        loader if it is built already, else to the next training loader built (applying it twice is harmless)."""
        loader = self.trainer.train_dataloader if self.trainer is not None else None
        return {"train_loader": loader.state_dict()} if isinstance(loader, ResumableDataLoader) else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        loader = self.trainer.train_dataloader if self.trainer is not None else None
        if isinstance(loader, ResumableDataLoader) and "train_loader" in state:
            loader.load_state_dict(state["train_loader"])
        else:
            self._train_position = state.get("train_loader")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if self.files[split] is None:
            return []  # Lightning skips a split whose loader is empty
        if split not in self.datasets:
            self.setup(None)
        dataset = self.datasets[split]
        # Our own sampler (a DistributedSampler: one shard per process under DDP), so that `shuffle` and `seed` hold
        # under DDP too (Lightning would otherwise install a shuffled one for training whatever this data module
        # says); the training loader also resumes mid-epoch (data/resumable.py). The generator only seeds the
        # workers, so that loading never draws from the global RNG (a resumed run's draws match an uninterrupted one).
        sampler = ResumableSampler(dataset, shuffle=shuffle, seed=self.seed)
        loader = ResumableDataLoader if split == "train" else DataLoader
        return loader(dataset, batch_size=self.batch_size, sampler=sampler, collate_fn=self.collator(),
                      generator=torch.Generator().manual_seed(self.seed), num_workers=self.num_workers,
                      persistent_workers=self.num_workers > 0)


class SFTDataModule(AlignDataModule):
    """SFT rows (prompt/completion or messages); batches from SFTCollator, or PackedCollator when packing.

    Args:
        packing: pack several examples into each row of max_length tokens (see lit_align.data.packing).
        packing_mask: "position_ids" (the model builds the block-diagonal mask from restarting
            position_ids; no attention_mask in the batch) or "4d" (an explicit (B, 1, T, T) additive mask).
    """

    format = "sft"

    def __init__(self, *args: Any, packing: bool = False,
                 packing_mask: Literal["position_ids", "4d"] = "position_ids", **kwargs: Any):
        super().__init__(*args, **kwargs)
        if packing and self.max_length is None:
            raise UserError("packing needs max_length (the length of a packed row)")
        self.packing, self.packing_mask = packing, packing_mask

    def build(self, examples: list[dict]) -> list[Any]:
        return pack_examples(examples, self.max_length) if self.packing else examples

    def collator(self) -> SFTCollator | PackedCollator:
        if self.packing:
            return PackedCollator(self.pad_token_id, mask=self.packing_mask)
        return SFTCollator(self.pad_token_id)


class PreferenceDataModule(AlignDataModule):
    """Preference pairs (prompt/chosen/rejected); batches of 2B rows from PreferenceCollator."""

    format = "preference"

    def collator(self) -> PreferenceCollator:
        return PreferenceCollator(self.pad_token_id)


class PromptDataModule(AlignDataModule):
    """Prompt-only rows for online RL and generation; left-padded batches from PromptCollator."""

    format = "prompt"

    def collator(self) -> PromptCollator:
        return PromptCollator(self.pad_token_id)
