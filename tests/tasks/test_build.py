"""The written suite: TRL columns, families and phrasings, held-out texts and families never in training, pair
contrasts, imperfect share, manifest, determinism, atomicity, scoring by group."""

import json
import random

import pytest

from lit_align.files import read_jsonl, write_jsonl
from lit_align.tasks.build import build_suite
from lit_align.tasks.checkers import checker_from_dict
from lit_align.tasks.evaluate import score_by, score_responses
from lit_align.tasks.responses import good_response, makes
from lit_align.tasks.suite import families

SIZES = dict(sft_size=200, preference_size=150, prompts_size=50, expert_size=40, heldout_size=44)
TRAIN_FILES = ("sft.jsonl", "preference.jsonl", "prompts.jsonl", "expert.jsonl")
HELDOUT = {"id", "prompt", "task", "family", "split", "phrasing"}
COLUMNS = {
    "sft.jsonl": {"id", "prompt", "completion", "task", "family", "score", "mistake"},
    "preference.jsonl": {"id", "prompt", "chosen", "rejected", "task", "family", "chosen_score", "rejected_score",
                         "mistake"},
    "prompts.jsonl": {"id", "prompt", "task", "family"},
    "expert.jsonl": {"id", "prompt", "completion", "task", "family"},
    "val.jsonl": HELDOUT, "test.jsonl": HELDOUT, "transfer.jsonl": HELDOUT,
}


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite")
    manifest = build_suite(out, seed=3, imperfect_share=0.5, **SIZES)
    return out, manifest, {name: read_jsonl(out / name) for name in COLUMNS}


def test_columns_ids_tasks_and_families(suite):
    _, _, files = suite
    for name, rows in files.items():
        assert rows and all(set(r) == COLUMNS[name] for r in rows), name
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            checker = checker_from_dict(r["task"])
            assert checker in families()[r["family"]].cells, (name, r)  # the row's checker is a cell of its family


def test_training_files_hold_trained_families_and_no_heldout_text(suite):
    _, _, files = suite
    held_out = {n for n, f in families().items() if f.held_out}
    train = {r["prompt"] for n in TRAIN_FILES for r in files[n]}
    for name in TRAIN_FILES:
        assert not {r["family"] for r in files[name]} & held_out, name
    for split in ("val", "test", "transfer"):
        rows = files[f"{split}.jsonl"]
        prompts = [r["prompt"] for r in rows]
        assert len(prompts) == len(set(prompts)) == 44 and not train & set(prompts)
        assert {r["split"] for r in rows} == {split}
        assert [r["phrasing"] for r in rows].count("seen") == 22  # both phrasings, half each
        assert ({r["family"] for r in rows} <= held_out) == (split == "transfer")


def test_sft_imperfect_share_is_exact_and_labelled(suite):
    rows = suite[2]["sft.jsonl"]
    imperfect = [r for r in rows if r["mistake"] is not None]
    assert len(imperfect) == 100
    for r in rows:
        task = checker_from_dict(r["task"])
        check = task.check(r["completion"])
        assert check.score == r["score"] and check.passed == (r["mistake"] is None)
        assert r["mistake"] is None or makes(task, r["completion"], r["mistake"])


def test_pairs_are_minimal_contrasts_that_fail_by_the_named_mistake(suite):
    rows = suite[2]["preference.jsonl"]
    for r in rows:
        task = checker_from_dict(r["task"])
        assert task.check(r["chosen"]).score == r["chosen_score"] == 1.0
        assert r["rejected_score"] == task.check(r["rejected"]).score < 1.0
        assert makes(task, r["rejected"], r["mistake"]), r
        if r["mistake"] in ("too_few", "too_many"):  # the pair differs at its end
            short, long = sorted((r["chosen"], r["rejected"]), key=len)
            assert long.startswith(short + " ")
    mistakes = [r["mistake"] for r in rows]
    assert mistakes.count("same_word") > len(rows) / 2  # loop-heavy


def test_expert_answers_are_all_correct(suite):
    rows = suite[2]["expert.jsonl"]
    assert score_responses([r["task"] for r in rows], [r["completion"] for r in rows])["success_rate"] == 1.0


def test_manifest(suite):
    out, manifest, files = suite
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["format"] == 2 and manifest["seed"] == 3 and manifest["sizes"]["heldout"] == 44
    assert manifest["held_out_families"] == ["starts_ends", "sorted_contains"]
    assert len(manifest["trained_families"]) == 11 and not set(manifest["trained_families"]) & {"starts_ends"}
    assert manifest["families"]["starts_ends"]["held_out"] and manifest["families"]["starts_ends"]["cells"] >= 10
    assert manifest["phrasing"]["seen_templates"] >= 1000 and manifest["phrasing"]["unseen_templates"] >= 1000
    assert manifest["generators"]["mistake_weights"]["same_word"] == 12
    sft = manifest["files"]["sft.jsonl"]
    assert sft["rows"] == 200 and sft["mistakes"]["None"] == 100 and sum(sft["families"].values()) == 200
    assert manifest["files"]["test.jsonl"]["phrasings"] == {"seen": 22, "unseen": 22}
    assert manifest["files"]["transfer.jsonl"]["families"] == {"sorted_contains": 22, "starts_ends": 22}


def test_determinism_per_seed(suite, tmp_path):
    out, _, _ = suite
    build_suite(tmp_path / "same", seed=3, imperfect_share=0.5, **SIZES)
    for name in COLUMNS:
        assert (tmp_path / "same" / name).read_bytes() == (out / name).read_bytes(), name
    assert not list((tmp_path / "same").glob(".*.tmp"))
    build_suite(tmp_path / "other", seed=4, imperfect_share=0.5, **SIZES)
    for name in COLUMNS:
        assert (tmp_path / "other" / name).read_bytes() != (out / name).read_bytes(), name


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
    with pytest.raises(ValueError, match=r"bad.jsonl: line 2"):
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


def test_score_by_phrasing(suite):
    test = suite[2]["test.jsonl"]
    rows = [r for r in test if r["phrasing"] == "seen"][:2] + [r for r in test if r["phrasing"] == "unseen"][:3]
    rng = random.Random(0)
    answers = [good_response(checker_from_dict(r["task"]), rng) if i in (0, 2) else "lemon lemon"
               for i, r in enumerate(rows)]  # one seen and one unseen answer correct
    by = score_by(rows, answers, "phrasing")
    assert list(by) == ["seen", "unseen"] and by["seen"]["n"] == 2 and by["unseen"]["n"] == 3
    assert by["seen"]["success_rate"] == 0.5 and by["unseen"]["success_rate"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no column 'phrasing'"):
        score_by([{"task": rows[0]["task"]}], ["x"], "phrasing")
