"""Collators: layouts, shapes, padding side, label masking of padding, bookkeeping keys."""
from __future__ import annotations

import torch

from lit_align.data.collate import PreferenceCollator, PromptCollator, SFTCollator, model_inputs, pad
from lit_align.data.jsonl import read_rows
from lit_align.data.tokenize import IGNORE_INDEX, tokenize_rows


def _sft(tok):
    rows = read_rows([{"prompt": "hi", "completion": "apple"},
                      {"prompt": "Write a short poem about cats.", "completion": "cats and dogs", "weight": 0.5}],
                     "sft", name="s")
    return tokenize_rows(rows, "sft", tok)[0]


def test_pad_right_left_and_multiple():
    assert pad([[1, 2, 3], [4]], 0).tolist() == [[1, 2, 3], [4, 0, 0]]
    assert pad([[1, 2, 3], [4]], 0, left=True).tolist() == [[1, 2, 3], [0, 0, 4]]
    assert pad([[1, 2, 3]], 9, multiple_of=4).tolist() == [[1, 2, 3, 9]]


def test_sft_collator_right_pads_and_masks_padding(chat_tokenizer):
    examples = _sft(chat_tokenizer)
    batch = SFTCollator(chat_tokenizer.pad_token_id)(examples)
    lengths = [len(ex["input_ids"]) for ex in examples]
    B, T = 2, max(lengths)
    assert {k: tuple(v.shape) for k, v in batch.items() if torch.is_tensor(v)} == {
        "input_ids": (B, T), "attention_mask": (B, T), "labels": (B, T), "index": (B,)}
    assert batch["ids"] == ["s:0", "s:1"] and batch["index"].tolist() == [0, 1]
    assert batch["weight"] == [None, 0.5]  # passthrough column, None where a row lacks it
    short = lengths.index(min(lengths))
    n = lengths[short]
    assert batch["attention_mask"][short].tolist() == [1] * n + [0] * (T - n)
    assert (batch["input_ids"][short, n:] == chat_tokenizer.pad_token_id).all()
    assert (batch["labels"][short, n:] == IGNORE_INDEX).all()
    assert batch["labels"][short, :n].tolist() == examples[short]["labels"]
    # decoding the labelled tokens gives exactly the completion turn
    kept = batch["labels"][short][batch["labels"][short] != IGNORE_INDEX]
    assert chat_tokenizer.decode(kept) == "apple<|im_end|>\n"
    assert set(model_inputs(batch)) == {"input_ids", "attention_mask", "use_cache"}


def test_preference_collator_stacks_chosen_then_rejected(chat_tokenizer):
    rows = read_rows([{"prompt": "hi", "chosen": "apple", "rejected": "grape grape grape", "group": "a"},
                      {"prompt": "hello there", "chosen": "orange", "rejected": "dog", "group": "b"},
                      {"prompt": "q", "chosen": "cats", "rejected": "dogs", "group": "c"}], "preference")
    examples, _ = tokenize_rows(rows, "preference", chat_tokenizer)
    batch = PreferenceCollator(chat_tokenizer.pad_token_id)(examples)
    B = 3
    T = max(len(ex[f"{s}_input_ids"]) for ex in examples for s in ("chosen", "rejected"))
    for key in ("input_ids", "attention_mask", "labels"):
        assert tuple(batch[key].shape) == (2 * B, T)
    assert batch["ids"] == [ex["id"] for ex in examples] and tuple(batch["index"].shape) == (B,)
    assert batch["group"] == ["a", "b", "c"]
    for i, ex in enumerate(examples):
        for row, side in ((i, "chosen"), (B + i, "rejected")):
            n = len(ex[f"{side}_input_ids"])
            assert batch["input_ids"][row, :n].tolist() == ex[f"{side}_input_ids"]
            assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
            assert int(batch["attention_mask"][row].sum()) == n
    trained = [chat_tokenizer.decode(row[row != IGNORE_INDEX]) for row in batch["labels"]]
    assert trained[0] == "apple<|im_end|>\n" and trained[B] == "grape grape grape<|im_end|>\n"


def test_prompt_collator_left_pads(chat_tokenizer):
    rows = read_rows([{"prompt": "hi", "task": "t1"}, {"prompt": "Write a short poem about cats.", "task": "t2"}],
                     "prompt")
    examples, _ = tokenize_rows(rows, "prompt", chat_tokenizer)
    batch = PromptCollator(chat_tokenizer.pad_token_id)(examples)
    assert set(batch) == {"input_ids", "attention_mask", "ids", "index", "prompt", "task"}
    assert batch["task"] == ["t1", "t2"] and batch["prompt"] == ["hi", "Write a short poem about cats."]
    n = len(examples[0]["input_ids"])
    T = batch["input_ids"].shape[1]
    assert batch["attention_mask"][0].tolist() == [0] * (T - n) + [1] * n
    assert batch["input_ids"][0, T - n:].tolist() == examples[0]["input_ids"]
    assert (batch["input_ids"][0, : T - n] == chat_tokenizer.pad_token_id).all()
    # every row ends with the generation prompt, so generation continues right after it
    suffix = chat_tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert batch["input_ids"][:, -len(suffix):].tolist() == [suffix, suffix]


def test_model_inputs_recasts_a_4d_mask():
    mask = torch.tensor([[[[0.0, torch.finfo(torch.float32).min], [0.0, 0.0]]]])
    out = model_inputs({"input_ids": torch.zeros(1, 2, dtype=torch.long), "attention_mask": mask, "ids": ["a"]},
                       dtype=torch.bfloat16)
    assert out["attention_mask"].dtype == torch.bfloat16 and out["use_cache"] is False and "ids" not in out
    assert out["attention_mask"][0, 0].tolist() == [[0.0, torch.finfo(torch.bfloat16).min], [0.0, 0.0]]


def test_preference_label_smoothing_column_is_checked_and_becomes_a_tensor(chat_tokenizer):
    """A per-pair `label_smoothing` (CREAM) reaches the batch as a (B,) float tensor; bad values and rows lacking it
    while others carry it are one-line errors naming the row."""
    import pytest

    from lit_align.errors import UserError

    def rows(*values):
        data = [{"prompt": f"q{i}", "chosen": "apple", "rejected": "dog",
                 **({} if v is ... else {"label_smoothing": v})} for i, v in enumerate(values)]
        return read_rows(data, "preference", name="p.jsonl")

    examples, _ = tokenize_rows(rows(0.25, 0.0, 0.75), "preference", chat_tokenizer)
    batch = PreferenceCollator(chat_tokenizer.pad_token_id)(examples)
    assert batch["label_smoothing"].dtype == torch.float32 and batch["label_smoothing"].tolist() == [0.25, 0.0, 0.75]
    for bad in (1.5, -0.1, float("nan"), "0.1", True):
        with pytest.raises(UserError, match=r"p.jsonl: row 1: field .label_smoothing."):
            tokenize_rows(rows(0.1, bad), "preference", chat_tokenizer)
    examples, _ = tokenize_rows(rows(0.1, ...), "preference", chat_tokenizer)
    with pytest.raises(UserError, match="no 'label_smoothing'"):
        PreferenceCollator(chat_tokenizer.pad_token_id)(examples)
