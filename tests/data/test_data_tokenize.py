"""Tokenisation: completion-only labels (checked by decoding), chat and plain paths, multi-turn masks,
drop/truncate accounting and strict errors."""
from __future__ import annotations

import copy

import pytest

from lit_align.data.jsonl import read_rows
from lit_align.data.tokenize import IGNORE_INDEX, RowEncoder, tokenize_rows


def trained_runs(tok, ex, key="labels", ids_key="input_ids"):
    """Decoded text of each contiguous run of trained (label != -100) tokens."""
    runs, current = [], []
    for token, label in zip(ex[ids_key], ex[key], strict=True):
        if label != IGNORE_INDEX:
            assert label == token  # labels are unshifted copies of the ids they cover
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tok.decode(r) for r in runs]


def untrained_text(tok, ex):
    return tok.decode([t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab == IGNORE_INDEX])


def test_chat_template_path_masks_the_prompt(chat_tokenizer):
    rows = read_rows([{"prompt": "Hello there", "completion": "I am fine"}], "sft")
    (ex,), report = tokenize_rows(rows, "sft", chat_tokenizer)
    assert chat_tokenizer.decode(ex["input_ids"]) == (
        "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\nI am fine<|im_end|>\n")
    assert trained_runs(chat_tokenizer, ex) == ["I am fine<|im_end|>\n"]  # eos ends the turn: not added twice
    assert untrained_text(chat_tokenizer, ex) == "<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n"
    prompt_ids = RowEncoder(chat_tokenizer).encode_prompt("Hello there")
    assert ex["input_ids"][: len(prompt_ids)] == prompt_ids  # generation prompt == training prefix
    assert all(lab == IGNORE_INDEX for lab in ex["labels"][: len(prompt_ids)])
    assert ex["labels"][len(prompt_ids)] != IGNORE_INDEX
    assert (report.total, report.kept) == (1, 1)


def test_plain_path_appends_eos(plain_tokenizer):
    rows = read_rows([{"prompt": "Q: hello?", "completion": " A: fine"}], "sft")
    (ex,), _ = tokenize_rows(rows, "sft", plain_tokenizer)
    assert plain_tokenizer.decode(ex["input_ids"]) == "Q: hello? A: fine<|endoftext|>"
    assert trained_runs(plain_tokenizer, ex) == [" A: fine<|endoftext|>"]
    assert untrained_text(plain_tokenizer, ex) == "Q: hello?"


def test_use_chat_template_false_forces_plain(chat_tokenizer):
    rows = read_rows([{"prompt": "Q", "completion": " A"}], "sft")
    (ex,), _ = tokenize_rows(rows, "sft", chat_tokenizer, use_chat_template=False)
    assert chat_tokenizer.decode(ex["input_ids"]) == "Q A<|im_end|>"


def test_multi_turn_messages_train_every_assistant_turn(chat_tokenizer):
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "List three words."},
        {"role": "assistant", "content": "apple grape"},
        {"role": "user", "content": "That is two; try again."},  # CORGI-style feedback turn: no loss
        {"role": "assistant", "content": "apple grape orange"},
    ]
    (ex,), _ = tokenize_rows(read_rows([{"messages": messages}], "sft"), "sft", chat_tokenizer)
    assert trained_runs(chat_tokenizer, ex) == ["apple grape<|im_end|>\n", "apple grape orange<|im_end|>\n"]
    untrained = untrained_text(chat_tokenizer, ex)
    for text in ("be brief", "List three words.", "That is two; try again.", "<|im_start|>assistant\n"):
        assert text in untrained
    assert chat_tokenizer.decode(ex["input_ids"]) == chat_tokenizer.apply_chat_template(messages, tokenize=False)


def test_conversational_preference_rows(chat_tokenizer):
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    rows = read_rows([{"prompt": prompt, "chosen": [{"role": "assistant", "content": "hello"}],
                       "rejected": [{"role": "assistant", "content": "go away"}], "group": "polite"}],
                     "preference")
    (ex,), _ = tokenize_rows(rows, "preference", chat_tokenizer)
    assert trained_runs(chat_tokenizer, ex, "chosen_labels", "chosen_input_ids") == ["hello<|im_end|>\n"]
    assert trained_runs(chat_tokenizer, ex, "rejected_labels", "rejected_input_ids") == ["go away<|im_end|>\n"]
    p = RowEncoder(chat_tokenizer).encode_prompt(prompt)
    assert ex["chosen_input_ids"][: len(p)] == ex["rejected_input_ids"][: len(p)] == p
    assert ex["extra"] == {"group": "polite"} and ex["index"] == 0


def test_conversation_without_template_is_a_clear_error(plain_tokenizer):
    rows = read_rows([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}],
                     "sft", name="chats")
    with pytest.raises(ValueError, match="chats: row 0: conversational rows .* need a tokenizer with a chat template"):
        tokenize_rows(rows, "sft", plain_tokenizer)


def test_non_prefix_stable_template_is_reported(chat_tokenizer):
    tok = copy.deepcopy(chat_tokenizer)  # numbers turns from the end: earlier renders are not prefixes
    tok.chat_template = "{% for m in messages %}{{ messages|length - loop.index }}{{ m['content'] }}{% endfor %}"
    rows = read_rows([{"prompt": "a", "completion": "b"}], "sft")
    with pytest.raises(ValueError, match="row 0: the chat template does not render .* as a prefix"):
        tokenize_rows(rows, "sft", tok)


def test_empty_completion_and_identical_pair_dropped_and_counted(chat_tokenizer):
    rows = read_rows([
        {"prompt": "p", "chosen": "good", "rejected": "bad"},
        {"prompt": "p", "chosen": "  ", "rejected": "bad"},
        {"prompt": "p", "chosen": "same", "rejected": "same"},
    ], "preference", name="pairs")
    examples, report = tokenize_rows(rows, "preference", chat_tokenizer)
    assert [ex["id"] for ex in examples] == ["pairs:0"]
    assert report.dropped == {"empty_completion": 1, "identical_pair": 1}
    assert (report.total, report.kept, report.num_dropped) == (3, 1, 2)
    text = str(report)
    assert "kept 1 of 3 pairs" in text
    assert "dropped 1 pair with an empty completion (e.g. pairs:1)" in text
    assert "dropped 1 pair whose chosen and rejected are identical (e.g. pairs:2)" in text


def test_strict_raises_with_location_and_field(chat_tokenizer, write_jsonl):
    path = write_jsonl("sft.jsonl", [{"prompt": "p", "completion": "ok"}, {"prompt": "p", "completion": ""}])
    with pytest.raises(ValueError, match=r"sft\.jsonl: line 2: field 'completion': example with an empty completion"):
        tokenize_rows(read_rows(path, "sft"), "sft", chat_tokenizer, strict=True)
    pairs = read_rows([{"prompt": "p", "chosen": "x", "rejected": "x"}], "preference")
    with pytest.raises(ValueError, match="field 'rejected': example whose chosen and rejected are identical"):
        tokenize_rows(pairs, "preference", chat_tokenizer, strict=True)


def test_messages_without_assistant_text_count_as_empty(chat_tokenizer):
    rows = read_rows([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]}], "sft")
    examples, report = tokenize_rows(rows, "sft", chat_tokenizer)
    assert examples == [] and report.dropped == {"empty_completion": 1}


LONG = "the quick brown fox jumps over the lazy dog " * 4


def _pairs():
    return read_rows([{"prompt": "hi", "chosen": "apple", "rejected": "grape"},
                      {"prompt": LONG, "chosen": "apple", "rejected": "grape"}], "preference", name="pairs")


def test_prompt_over_max_length_is_dropped_and_counted(plain_tokenizer):
    for mode in ("truncate", "drop"):  # no room for a completion: dropped in either mode
        examples, report = tokenize_rows(_pairs(), "preference", plain_tokenizer, max_length=16, truncation=mode)
        assert [ex["id"] for ex in examples] == ["pairs:0"]
        assert report.dropped == {"prompt_exceeds_max_length": 1}
        assert "dropped 1 pair whose prompt leaves no room for a completion within max_length=16" in str(report)


def test_prompt_over_max_prompt_length_dropped_or_truncated(plain_tokenizer):
    examples, report = tokenize_rows(_pairs(), "preference", plain_tokenizer, max_length=64, max_prompt_length=8,
                                     truncation="drop")
    assert len(examples) == 1 and report.dropped == {"prompt_too_long": 1}
    assert "dropped 1 pair whose prompt exceeds max_prompt_length=8" in str(report)

    examples, report = tokenize_rows(_pairs(), "preference", plain_tokenizer, max_length=64, max_prompt_length=8)
    assert len(examples) == 2 and report.truncated == {"prompt": 1} and not report.dropped
    ex = examples[1]
    for side in ("chosen", "rejected"):
        labels = ex[f"{side}_labels"]
        assert labels[:8] == [IGNORE_INDEX] * 8 and labels[8] != IGNORE_INDEX  # kept the last 8 prompt tokens
    full_prompt = plain_tokenizer(LONG, add_special_tokens=False)["input_ids"]
    assert ex["chosen_input_ids"][:8] == full_prompt[-8:]
    assert "truncated 1 prompts (kept their last max_prompt_length=8 tokens)" in str(report)


def test_completion_truncated_from_the_end(plain_tokenizer):
    rows = read_rows([{"prompt": "hi", "completion": LONG}], "sft")
    (ex,), report = tokenize_rows(rows, "sft", plain_tokenizer, max_length=12)
    prompt = plain_tokenizer("hi")["input_ids"]
    assert len(ex["input_ids"]) == 12 and ex["input_ids"][: len(prompt)] == prompt
    assert ex["labels"][: len(prompt)] == [IGNORE_INDEX] * len(prompt)
    assert plain_tokenizer.eos_token_id not in ex["input_ids"]  # the cut removed the end
    assert report.truncated == {"completion": 1} and report.kept == 1

    examples, report = tokenize_rows(rows, "sft", plain_tokenizer, max_length=12, truncation="drop")
    assert examples == [] and report.dropped == {"too_long": 1}
    assert "dropped 1 example longer than max_length=12" in str(report)
    with pytest.raises(ValueError, match="rows: row 0: example longer than max_length=12"):
        tokenize_rows(rows, "sft", plain_tokenizer, max_length=12, truncation="error")


def test_pair_identical_after_truncation_is_dropped(plain_tokenizer):
    rows = read_rows([{"prompt": "hi", "chosen": LONG + "apple", "rejected": LONG + "grape"}], "preference")
    examples, report = tokenize_rows(rows, "preference", plain_tokenizer, max_length=10)
    assert examples == [] and report.dropped == {"identical_after_truncation": 1}


def test_prompt_rows_keep_passthrough_and_respect_limits(chat_tokenizer):
    rows = read_rows([{"prompt": "hi", "task": "t1"}, {"prompt": LONG, "task": "t2"}], "prompt")
    examples, report = tokenize_rows(rows, "prompt", chat_tokenizer, max_prompt_length=32, truncation="drop")
    assert len(examples) == 1 and report.dropped == {"prompt_too_long": 1}
    assert examples[0]["extra"] == {"prompt": "hi", "task": "t1"}
    assert examples[0]["input_ids"] == RowEncoder(chat_tokenizer).encode_prompt("hi")
    examples, report = tokenize_rows(rows, "prompt", chat_tokenizer, max_prompt_length=32)
    assert len(examples[1]["input_ids"]) == 32 and report.truncated == {"prompt": 1}


def test_bad_options(chat_tokenizer, plain_tokenizer):
    with pytest.raises(ValueError, match="truncation must be one of"):
        RowEncoder(chat_tokenizer, truncation="cut")
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        RowEncoder(chat_tokenizer, max_length=0)
    with pytest.raises(ValueError, match="no chat_template"):
        RowEncoder(plain_tokenizer, use_chat_template=True)
