"""Packing: bins respect max_length, positions restart, and a packed batch gives the same per-token loss
as the padded batch on a tiny random Llama (sdpa and eager; position_ids-derived and explicit 4D masks)."""
from __future__ import annotations

import random

import pytest
import torch

from lit_align.data.collate import SFTCollator, model_inputs
from lit_align.data.jsonl import read_rows
from lit_align.data.packing import PackedCollator, block_causal_mask, pack_examples
from lit_align.data.tokenize import IGNORE_INDEX, tokenize_rows

WORDS = "the quick brown fox jumps over lazy dog cats apple grape orange".split()
MAX_LENGTH = 96


@pytest.fixture(scope="module")
def examples(chat_tokenizer):
    rnd = random.Random(0)
    rows = [{"prompt": " ".join(rnd.choices(WORDS, k=rnd.randint(1, 6))),
             "completion": " ".join(rnd.choices(WORDS, k=rnd.randint(1, 8)))} for _ in range(9)]
    return tokenize_rows(read_rows(rows, "sft", name="ex"), "sft", chat_tokenizer, max_length=MAX_LENGTH)[0]


def _fake(n: int, name: str) -> dict:
    return {"id": name, "index": 0, "input_ids": list(range(1, n + 1)), "labels": list(range(1, n + 1)), "extra": {}}


def test_pack_examples_fills_bins_within_max_length(examples):
    bins = pack_examples(examples, MAX_LENGTH)
    assert sorted(ex["id"] for b in bins for ex in b) == sorted(ex["id"] for ex in examples)
    assert all(sum(len(ex["input_ids"]) for ex in b) <= MAX_LENGTH for b in bins)
    assert len(bins) < len(examples)  # something was actually packed
    assert [[ex["id"] for ex in b] for b in pack_examples([_fake(n, str(n)) for n in (5, 3, 4, 2)], 7)] == [
        ["5", "2"], ["4", "3"]]  # best-fit decreasing
    with pytest.raises(ValueError, match="exceed max_length=4"):
        pack_examples([_fake(5, "x")], 4)


def test_packed_batch_layout():
    rows = [[_fake(3, "a"), _fake(2, "b")], [_fake(4, "c")]]
    batch = PackedCollator(pad_token_id=0, mask="4d")(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 1, 2], [1, 2, 3, 4, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 4]]  # padding continues the count
    assert batch["segment_ids"].tolist() == [[0, 0, 0, 1, 1], [2, 2, 2, 2, -1]]
    assert batch["labels"].tolist() == [[-100, 2, 3, -100, 2], [-100, 2, 3, 4, -100]]  # no cross-example target
    assert batch["cu_seqlens"].tolist() == [0, 3, 5, 10] and batch["cu_seqlens"].dtype == torch.int32
    assert batch["max_seqlen"] == 5 and batch["ids"] == ["a", "b", "c"] and tuple(batch["index"].shape) == (3,)
    allowed = (batch["attention_mask"] == 0)[:, 0]  # (B, T, T)
    assert tuple(batch["attention_mask"].shape) == (2, 1, 5, 5)
    assert allowed[0].int().tolist() == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0],
                                         [0, 0, 0, 1, 0], [0, 0, 0, 1, 1]]
    assert torch.equal(block_causal_mask(batch["segment_ids"]), batch["attention_mask"])
    assert "attention_mask" not in PackedCollator(pad_token_id=0)(rows)


def _per_token_loss(model, batch) -> dict[str, torch.Tensor]:
    """Per-token NLL of each example's trained tokens, keyed by example id."""
    with torch.no_grad():
        logits = model(**model_inputs(batch)).logits  # (B, T, V)
    targets = batch["labels"][:, 1:]  # (B, T-1): HF shift
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=IGNORE_INDEX,
                                            reduction="none")  # (B, T-1)
    trained = targets != IGNORE_INDEX
    if "segment_ids" in batch:
        seg = batch["segment_ids"][:, 1:]
        return {i: nll[(seg == s) & trained] for s, i in enumerate(batch["ids"])}
    return {i: nll[b][trained[b]] for b, i in enumerate(batch["ids"])}


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_padded_loss(examples, chat_tokenizer, attn):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(chat_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_LENGTH)
    model = LlamaForCausalLM._from_config(config, attn_implementation=attn).eval()
    padded = _per_token_loss(model, SFTCollator(chat_tokenizer.pad_token_id)(examples))
    bins = pack_examples(examples, MAX_LENGTH)
    for mask in ("position_ids", "4d"):
        packed = _per_token_loss(model, PackedCollator(chat_tokenizer.pad_token_id, mask=mask)(bins))
        assert packed.keys() == padded.keys()
        for i in padded:
            assert packed[i].numel() == padded[i].numel() > 0
            torch.testing.assert_close(packed[i], padded[i], rtol=1e-5, atol=1e-5, msg=f"{attn}/{mask}/{i}")
