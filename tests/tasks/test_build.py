"""The written suite: TRL columns, ids, task dicts, pair ordering, imperfect share, manifest, atomicity."""

import json

import pytest

from lit_align.tasks.build import build_suite, read_jsonl, write_jsonl
from lit_align.tasks.checkers import checker_from_dict
from lit_align.tasks.evaluate import score_responses

SIZES = dict(sft_size=200, preference_size=150, prompts_size=50, expert_size=40, heldout_size=30)
COLUMNS = {
    "sft.jsonl": {"id", "prompt", "completion", "task", "score", "mistake"},
    "preference.jsonl": {"id", "prompt", "chosen", "rejected", "task", "chosen_score", "rejected_score", "mistake"},
    "prompts.jsonl": {"id", "prompt", "task"},
    "expert.jsonl": {"id", "prompt", "completion", "task"},
    "val.jsonl": {"id", "prompt", "task", "split"},
    "test.jsonl": {"id", "prompt", "task", "split"},
    "transfer.jsonl": {"id", "prompt", "task", "split"},
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    manifest = build_suite(out, seed=3, imperfect_share=0.5, **SIZES)
    return out, manifest, {name: read_jsonl(out / name) for name in COLUMNS}


def test_columns_ids_and_tasks(suite):
    _, _, files = suite
    for name, rows in files.items():
        assert rows and all(set(r) == COLUMNS[name] for r in rows), name
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows[:20]:
            assert checker_from_dict(r["task"]).prompt() and isinstance(r["prompt"], str) and r["prompt"]


def test_sft_imperfect_share_is_exact_and_labelled(suite):
    rows = suite[2]["sft.jsonl"]
    imperfect = [r for r in rows if r["mistake"] is not None]
    assert len(imperfect) == 100
    for r in rows:
        check = checker_from_dict(r["task"]).check(r["completion"])
        assert check.score == r["score"] and check.passed == (r["mistake"] is None)


def test_chosen_beats_rejected_on_every_pair(suite):
    for r in suite[2]["preference.jsonl"]:
        task = checker_from_dict(r["task"])
        assert r["chosen"] != r["rejected"]
        assert task.check(r["chosen"]).score == r["chosen_score"] > r["rejected_score"] == task.check(r["rejected"]).score


def test_expert_answers_are_all_correct(suite):
    rows = suite[2]["expert.jsonl"]
    assert score_responses([r["task"] for r in rows], [r["completion"] for r in rows])["success_rate"] == 1.0


def test_heldout_files_are_unique_and_disjoint_from_training(suite):
    _, _, files = suite
    train = {r["prompt"] for n in ("sft.jsonl", "preference.jsonl", "prompts.jsonl", "expert.jsonl") for r in files[n]}
    for split in ("val", "test", "transfer"):
        prompts = [r["prompt"] for r in files[f"{split}.jsonl"]]
        assert len(prompts) == len(set(prompts)) == 30 and not train & set(prompts)
        assert {r["split"] for r in files[f"{split}.jsonl"]} == {split}


def test_manifest_and_determinism(suite, tmp_path):
    out, manifest, files = suite
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["seed"] == 3 and manifest["files"]["sft.jsonl"]["rows"] == 200
    assert manifest["files"]["sft.jsonl"]["mistakes"]["None"] == 100
    build_suite(tmp_path, seed=3, imperfect_share=0.5, **SIZES)
    for name in COLUMNS:
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes(), name
    assert not list(tmp_path.glob(".*.tmp"))


def test_write_jsonl_is_atomic(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"a": 1}]  # the old file is intact


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_jsonl(path)


def test_score_responses_reports_diversity():
    from lit_align.tasks.checkers import EndsWith

    t = EndsWith(3, "n").to_dict()
    s = score_responses([t, t, t, t], ["lemon lemon lemon", "lemon melon moon", "lemon melon moon", "sun"])
    assert s["success_rate"] == 0.5 and s["n"] == 4
    assert s["distinct_words_per_response"] == (1 + 3 + 3 + 1) / 4
    assert s["repeated_word_share"] == 0.25
    assert s["distinct_response_share"] == 0.75
    with pytest.raises(ValueError, match="2 tasks but 1"):
        score_responses([t, t], ["x"])
