"""Reading rows: malformed JSON, missing/misspelt columns, wrong types -> errors naming file, line, field."""
from __future__ import annotations

import pytest

from lit_align.data.jsonl import passthrough, read_rows

PAIR = {"prompt": "p", "chosen": "a", "rejected": "b"}


def test_malformed_json_names_file_and_line(write_jsonl):
    path = write_jsonl("pairs.jsonl", [PAIR, '{"prompt": "p", "chosen": '])
    with pytest.raises(ValueError, match=r"pairs\.jsonl: line 2: malformed JSON") as err:
        read_rows(path, "preference")
    assert "column" in str(err.value)


def test_misspelt_column_suggests_the_expected_name(write_jsonl):
    path = write_jsonl("pairs.jsonl", [PAIR, PAIR, {"prompt": "p", "choosen": "a", "rejected": "b"}])
    with pytest.raises(ValueError) as err:
        read_rows(path, "preference")
    msg = str(err.value)
    assert "pairs.jsonl: line 3" in msg
    assert "missing field 'chosen'" in msg
    assert "prompt/chosen/rejected" in msg
    assert "did you mean 'chosen'?" in msg


def test_missing_column_without_a_near_miss(write_jsonl):
    path = write_jsonl("sft.jsonl", [{"prompt": "p"}])
    with pytest.raises(ValueError, match=r"sft\.jsonl: line 1: missing field 'completion' "
                                         r"\(expected columns prompt/completion or messages"):
        read_rows(path, "sft")


def test_non_string_field(write_jsonl):
    path = write_jsonl("pairs.jsonl", [{**PAIR, "chosen": 3}])
    with pytest.raises(ValueError, match=r"pairs\.jsonl: line 1: field 'chosen' must be a string .* got int"):
        read_rows(path, "preference")


def test_bad_message_field_is_located(write_jsonl):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}]
    path = write_jsonl("chat.jsonl", [{"messages": messages}])
    with pytest.raises(ValueError, match=r"chat\.jsonl: line 1: field 'messages\[1\]\.content' must be a string"):
        read_rows(path, "sft")


def test_mixed_string_and_messages_rejected():
    rows = [{"prompt": [{"role": "user", "content": "q"}], "chosen": "a", "rejected": "b"}]
    with pytest.raises(ValueError, match="rows: row 0: fields must all be strings or all be message lists"):
        read_rows(rows, "preference")


def test_non_object_line(write_jsonl):
    with pytest.raises(ValueError, match=r"line 1: expected a JSON object, got list"):
        read_rows(write_jsonl("x.jsonl", ["[1, 2]"]), "prompt")


def test_ids_index_blank_lines_and_passthrough(write_jsonl):
    path = write_jsonl("prompts.jsonl", [{"prompt": "a", "task": "t1"}, "", {"prompt": "b", "id": 7, "task": "t2"}])
    rows = read_rows(path, "prompt")
    assert [r["id"] for r in rows] == ["prompts:1", "7"]  # own id, else "<stem>:<line>" (line 2 is blank)
    assert [r["_index"] for r in rows] == [0, 1]
    assert passthrough(rows[1], "prompt") == {"prompt": "b", "task": "t2"}
    assert passthrough({**PAIR, "group": "g", "_where": "w"}, "preference") == {"group": "g"}


def test_duplicate_ids_rejected():
    with pytest.raises(ValueError, match="id 'x' repeats"):
        read_rows([{"prompt": "a", "id": "x"}, {"prompt": "b", "id": "x"}], "prompt")


def test_reserved_column_rejected():
    with pytest.raises(ValueError, match="column 'labels' is reserved"):
        read_rows([{"prompt": "a", "completion": "b", "labels": [1]}], "sft")


def test_sft_accepts_both_schemas_and_in_memory_sources():
    from datasets import Dataset

    rows = [{"prompt": "p", "completion": "c"}, {"messages": [{"role": "user", "content": "q"}]}]
    assert len(read_rows(rows, "sft")) == 2
    got = read_rows(Dataset.from_list([PAIR, PAIR]), "preference", name="hf")
    assert [r["id"] for r in got] == ["hf:0", "hf:1"]


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unknown row format"):
        read_rows([], "kto")
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_rows(tmp_path / "nope.jsonl", "sft")
