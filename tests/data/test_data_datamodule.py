"""Data modules end to end on temporary JSONL files with the fixture tokenizer; LightningCLI-style parsing."""
from __future__ import annotations

import logging

import pytest
import torch

from lit_align.data.datamodule import PreferenceDataModule, PromptDataModule, SFTDataModule
from lit_align.data.tokenize import IGNORE_INDEX

SFT_ROWS = [
    {"prompt": "hi", "completion": "apple"},
    {"messages": [{"role": "user", "content": "List words."}, {"role": "assistant", "content": "grape orange"}]},
    {"prompt": "Write a short poem about cats.", "completion": ""},  # empty: dropped and counted
    {"prompt": "hello there", "completion": "cats and dogs"},
]
PAIRS = [
    {"prompt": "hi", "chosen": "apple", "rejected": "grape"},
    {"prompt": "hi", "chosen": "same", "rejected": "same"},  # identical: dropped, index 1 skipped
    {"prompt": "hello", "chosen": "orange", "rejected": "dog", "id": "p-3"},
]


def test_sft_datamodule_end_to_end(write_jsonl, chat_tokenizer_dir, caplog):
    train, val = write_jsonl("train.jsonl", SFT_ROWS), write_jsonl("val.jsonl", SFT_ROWS[:2])
    dm = SFTDataModule(train_file=str(train), val_file=str(val), tokenizer=str(chat_tokenizer_dir), batch_size=2,
                       max_length=64, shuffle=False)
    tok = dm.tokenizer
    assert (dm.vocab_size, dm.pad_token_id, dm.eos_token_id) == (len(tok), tok.pad_token_id, tok.eos_token_id)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
        dm.setup("fit")  # tokenised and reported once
    reports = [r.getMessage() for r in caplog.records if "[lit_align.data]" in r.getMessage()]
    assert len(reports) == 2  # train and val, once each
    assert "train.jsonl: train: kept 3 of 4 examples; dropped 1 example with an empty completion (e.g. train:3)" \
        in reports[0]
    assert dm.reports["train"].dropped == {"empty_completion": 1}
    batches = list(dm.train_dataloader())
    assert [b["ids"] for b in batches] == [["train:1", "train:2"], ["train:4"]]
    first = batches[0]
    assert first["input_ids"].shape == first["labels"].shape == first["attention_mask"].shape
    assert first["input_ids"].shape[0] == 2 and first["index"].tolist() == [0, 1]
    trained = first["labels"][1][first["labels"][1] != IGNORE_INDEX]
    assert tok.decode(trained) == "grape orange<|im_end|>\n"
    assert len(list(dm.val_dataloader())) == 1
    assert dm.test_dataloader() == [] and dm.predict_dataloader() == []


def test_sft_datamodule_packing(write_jsonl, chat_tokenizer_dir):
    dm = SFTDataModule(train_file=str(write_jsonl("t.jsonl", SFT_ROWS)), tokenizer=str(chat_tokenizer_dir),
                       batch_size=4, max_length=128, packing=True)
    dm.setup("fit")
    (batch,) = list(dm.train_dataloader())
    assert batch["input_ids"].shape[1] <= 128 and batch["input_ids"].shape[0] < 3  # 3 examples, fewer rows
    assert sorted(batch["ids"]) == ["t:1", "t:2", "t:4"]
    assert {"position_ids", "segment_ids", "cu_seqlens"} <= set(batch) and "attention_mask" not in batch
    with pytest.raises(ValueError, match="packing needs max_length"):
        SFTDataModule(train_file="x", tokenizer=str(chat_tokenizer_dir), max_length=None, packing=True)


def test_preference_datamodule_keeps_stable_indices(write_jsonl, chat_tokenizer_dir):
    dm = PreferenceDataModule(train_file=str(write_jsonl("pairs.jsonl", PAIRS)), tokenizer=str(chat_tokenizer_dir),
                              batch_size=8, seed=1)
    dm.setup("fit")
    (batch,) = list(dm.train_dataloader())
    order = batch["index"].tolist()
    assert sorted(order) == [0, 2]  # the dropped pair's index is not reused
    assert batch["ids"] == [{0: "pairs:1", 2: "p-3"}[i] for i in order]
    assert batch["input_ids"].shape[0] == 4 and batch["labels"].shape == batch["input_ids"].shape
    assert dm.reports["train"].dropped == {"identical_pair": 1}


def test_prompt_datamodule_left_pads_and_passes_columns(write_jsonl, chat_tokenizer_dir):
    rows = [{"prompt": "hi", "task": "words"}, {"prompt": "Write a short poem about cats.", "task": "poem"}]
    path = str(write_jsonl("prompts.jsonl", rows))
    dm = PromptDataModule(train_file=path, predict_file=path, tokenizer=str(chat_tokenizer_dir), shuffle=False)
    dm.setup("predict")
    assert "train" not in dm.datasets
    (batch,) = list(dm.predict_dataloader())
    assert batch["task"] == ["words", "poem"] and batch["ids"] == ["prompts:1", "prompts:2"]
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][:, -1].tolist() == [1, 1]


def test_plain_tokenizer_without_pad_falls_back_to_eos(write_jsonl, plain_tokenizer_dir):
    dm = SFTDataModule(train_file=str(write_jsonl("t.jsonl", SFT_ROWS[:1])), tokenizer=str(plain_tokenizer_dir))
    assert dm.pad_token_id == dm.eos_token_id is not None
    dm.setup("fit")
    (batch,) = list(dm.train_dataloader())
    assert dm.tokenizer.decode(batch["input_ids"][0]) == "hiapple<|endoftext|>"


def test_bad_file_fails_in_setup_with_location(write_jsonl, chat_tokenizer_dir):
    dm = PreferenceDataModule(train_file=str(write_jsonl("bad.jsonl", [{"prompt": "p", "choosen": "a",
                                                                         "rejected": "b"}])),
                              tokenizer=str(chat_tokenizer_dir))
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 1: missing field 'chosen'.*did you mean 'chosen'\?"):
        dm.setup("fit")


def test_init_args_parse_like_lightning_cli(chat_tokenizer_dir):
    from jsonargparse import ArgumentError, ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SFTDataModule, "data")
    cfg = parser.parse_args(["--data.train_file=t.jsonl", f"--data.tokenizer={chat_tokenizer_dir}",
                             "--data.packing=true", "--data.truncation=drop", "--data.max_prompt_length=32"])
    assert cfg.data.packing is True and cfg.data.truncation == "drop" and cfg.data.max_prompt_length == 32
    assert cfg.data.batch_size == 8 and cfg.data.num_workers == 0 and cfg.data.val_file is None
    with pytest.raises(ArgumentError):
        parser.parse_args(["--data.train_file=t.jsonl", "--data.tokenizer=x", "--data.truncation=cut"])


def test_fits_with_a_lightning_trainer(write_jsonl, chat_tokenizer_dir):
    """The loaders plug into Trainer.fit (no val file: validation is skipped, not an error)."""
    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self, vocab: int):
            super().__init__()
            self.emb = torch.nn.Embedding(vocab, 8)
            self.head = torch.nn.Linear(8, vocab)

        def training_step(self, batch, _):
            logits = self.head(self.emb(batch["input_ids"]))[:, :-1]  # (B, T-1, V)
            return torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch["labels"][:, 1:])

        def validation_step(self, batch, _):
            raise AssertionError("no val_file: validation must be skipped")

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = SFTDataModule(train_file=str(write_jsonl("t.jsonl", SFT_ROWS)), tokenizer=str(chat_tokenizer_dir),
                       batch_size=2)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(dm.vocab_size), datamodule=dm)
    assert trainer.global_step == 2


def epoch_batches(loader, epoch: int) -> list[list[int]]:
    loader.sampler.set_epoch(epoch)  # as Lightning does at each epoch start
    return [batch.tolist() for batch in loader]


def resumable(rows: int = 10, batch_size: int = 3, **kwargs):
    from lit_align.data.resumable import ResumableDataLoader, ResumableSampler

    data = list(range(100, 100 + rows))
    return ResumableDataLoader(data, sampler=ResumableSampler(data, seed=7, **kwargs), batch_size=batch_size)


def test_training_loader_resumes_mid_epoch_in_the_same_order():
    """A loader restored from another's state_dict hands out exactly the batches the first had not handed out yet."""
    first = resumable()
    whole = epoch_batches(resumable(), 1)
    assert len(whole) == 4 and whole != epoch_batches(resumable(), 0)  # a new permutation each epoch
    first.sampler.set_epoch(1)
    seen = []
    for batch in first:
        seen.append(batch.tolist())
        if len(seen) == 2:
            break
    state = first.state_dict()
    assert (state["epoch"], state["batches"], state["total"]) == (1, 2, 4)
    second = resumable()
    second.load_state_dict(state)
    rest = [b.tolist() for b in second]  # Lightning sets the epoch only after iter(): the state set it already
    assert seen + rest == whole
    assert second.state_dict()["batches"] == 4 and epoch_batches(second, 2) == epoch_batches(resumable(), 2)

    moved_on = resumable()
    moved_on.load_state_dict(state)
    assert epoch_batches(moved_on, 2) == epoch_batches(resumable(), 2)  # the skip belongs to epoch 1 alone

    finished = resumable()
    finished.load_state_dict({**state, "batches": 4})  # saved at the end of epoch 1: epoch 2 from its start
    assert [b.tolist() for b in finished] == epoch_batches(resumable(), 2)

    with pytest.raises(ValueError, match=r"batch_size 3 -> 4"):
        resumable(batch_size=4).load_state_dict(state)


def test_training_loader_shards_like_distributed_sampler():
    """Two processes: disjoint shards covering the data, in DistributedSampler's order (same shuffle and seed)."""
    from torch.utils.data import DistributedSampler

    shards = [sum(epoch_batches(resumable(rows=11, num_replicas=2, rank=r), 3), []) for r in (0, 1)]
    for rank, shard in enumerate(shards):
        reference = DistributedSampler(list(range(11)), num_replicas=2, rank=rank, shuffle=True, seed=7)
        reference.set_epoch(3)
        assert shard == [100 + i for i in reference]
    assert len(shards[0]) == len(shards[1]) == 6 and set(shards[0] + shards[1]) == set(range(100, 111))


def test_datamodule_carries_the_training_position(write_jsonl, chat_tokenizer_dir):
    """The trainer's training position is saved with the data module and restored into the trainer's loader, whether
    that loader is built after the checkpoint is loaded or before (Lightning's order depends on the strategy)."""
    from types import SimpleNamespace

    rows = [{"prompt": f"p{i}", "completion": f"answer {i}"} for i in range(9)]
    path = str(write_jsonl("many.jsonl", rows))

    def module():
        dm = SFTDataModule(train_file=path, tokenizer=str(chat_tokenizer_dir), batch_size=2, seed=5)
        dm.setup("fit")
        return dm

    first = module()
    assert first.state_dict() == {}  # not fitting: nothing to save
    loader = first.train_dataloader()
    first.trainer = SimpleNamespace(train_dataloader=loader)  # the loader a Trainer iterates
    ids = [batch["ids"] for batch in loader]
    partial = iter(loader)
    next(partial), next(partial)
    state = first.state_dict()

    loaded_first = module()
    loaded_first.load_state_dict(state)
    assert [batch["ids"] for batch in loaded_first.train_dataloader()] == ids[2:]
    assert [batch["ids"] for batch in loaded_first.train_dataloader()] == ids  # applied once

    built_first = module()
    built = built_first.train_dataloader()
    built_first.trainer = SimpleNamespace(train_dataloader=built)
    built_first.load_state_dict(state)
    assert [batch["ids"] for batch in built] == ids[2:]
