"""`lit-align rest` end to end on the tiny suite: the stage folders, samples, filtered training rows and summary.json,
a second run that skips every stage, the packaged config and --print_config, and bad settings as one-line errors."""
from __future__ import annotations

import json

import pytest
import yaml

from lit_align.cli import TOOLS, main
from lit_align.config_files import ROOT
from lit_align.errors import UserError
from lit_align.files import read_json, read_jsonl
from lit_align.loops.rest import SUMMARY_FIELDS
from lit_align.loops.rest import main as rest_main

STAGES = ["base", "grow_1", "improve_1_1", "improve_1_2"]


def test_rest_runs_every_stage_then_skips_them(rest_args, tmp_path, capsys):
    out = tmp_path / "run"
    extra = ["--improve.loss", "reward_weighted", "--grow.logprobs", "true"]
    main(["rest", *rest_args(out, *extra)])  # through `lit-align`'s command table
    summary = read_json(out / "summary.json")
    assert summary["finished"] and [s["name"] for s in summary["stages"]] == STAGES
    for stage in summary["stages"]:
        assert all(stage["metrics"].get(k) is not None for k in SUMMARY_FIELDS), stage
        assert (out / stage["name"] / "manifest.json").exists() and not (out / f"{stage['name']}.partial").exists()
    grow = summary["stages"][1]["metrics"]
    assert grow["samples"] == 8 and grow["tokens"] > 0 and grow["tokens_per_s"] > 0 and grow["original_rows"] == 64

    samples = read_jsonl(out / "grow_1" / "samples.jsonl")
    assert [(s["prompt_id"], s["sample"]) for s in samples] == [(f"prompt-{i:05d}", k) for i in range(4)
                                                                 for k in (0, 1)]
    assert all(s["completion_ids"] and s["prompt_ids"] and s["rewards"]["checker"] == s["reward"] for s in samples)
    assert all(s["logp"] < 0 for s in samples)  # the sampling policy's log-prob of its own response
    scored = read_jsonl(out / "grow_1" / "original.jsonl")
    for k, threshold in enumerate([0.0, 0.5], start=1):  # the training rows: exactly the pool above the threshold
        rows = read_jsonl(out / f"improve_1_{k}" / "train.jsonl")
        pool = [(s["prompt"], s["text"]) for s in samples if s["reward"] >= threshold] + \
            [(o["prompt"], o["completion"]) for o in scored if o["reward"] >= threshold]
        assert sorted((r["prompt"], r["completion"]) for r in rows) == sorted(set(pool))  # deduplicated
        assert min(r["reward"] for r in rows) >= threshold
        assert sum(r["weight"] for r in rows) == pytest.approx(len(rows))  # reward weights: mean 1
        by_reward = sorted(rows, key=lambda r: r["reward"])
        assert [r["weight"] for r in by_reward] == sorted(r["weight"] for r in rows)  # rising with the reward
        metrics = summary["stages"][1 + k]["metrics"]
        assert metrics["kept"] == len(rows) and metrics["steps"] == 4 and metrics["threshold"] == threshold
        assert (out / f"improve_1_{k}" / "model" / "model.safetensors").exists()
        assert not (out / f"improve_1_{k}" / "checkpoints").exists()  # removed once exported
    assert 0 < summary["stages"][3]["metrics"]["kept"] < summary["stages"][2]["metrics"]["kept"]
    assert summary["final"]["policy"] == str(out / "improve_1_2" / "model")

    mtimes = {name: (out / name / "manifest.json").stat().st_mtime_ns for name in STAGES}
    capsys.readouterr()
    rest_main(rest_args(out, *extra))  # again: nothing to do
    assert capsys.readouterr().out.count("already done, skipped") == 4
    assert mtimes == {name: (out / name / "manifest.json").stat().st_mtime_ns for name in STAGES}
    assert read_json(out / "summary.json")["stages"] == summary["stages"]


def test_packaged_config_and_print_config(capsys):
    text = (ROOT / "rest.yaml").read_text()
    assert text.startswith("# lit-align rest --config configs/rest.yaml\n")
    config = yaml.safe_load(text)
    assert config["grow"]["temperature"] == 0.8 and config["improve"]["thresholds"] == [0.8, 0.9, 1.0]
    with pytest.raises(SystemExit) as exit_info:
        rest_main(["--config", "rest", "--grow.samples_per_prompt", "4", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["grow"]["samples_per_prompt"] == 4 and printed["improve"]["loss"] == "bc"
    assert printed["rewards"] == [{"kind": "checker"}] and printed["out"] == "runs/rest"
    assert TOOLS["rest"][0] == "lit_align.loops.rest"


def test_bad_settings_are_one_line_errors(rest_args, tmp_path, capsys):
    with pytest.raises(UserError, match="rise"):
        rest_main(rest_args(tmp_path / "run", "--improve.thresholds", "[0.9, 0.5]"))
    with pytest.raises(SystemExit) as exit_info:  # jsonargparse: a value outside the Literal's choices
        rest_main(rest_args(tmp_path / "run", "--improve.loss", "dpo"))
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:  # through `lit-align`: one line, status 2
        main(["rest", *rest_args(tmp_path / "run", "--rewards", json.dumps([{"kind": "nonsense"}]))])
    assert exit_info.value.code == 2 and "rewards[0]" in capsys.readouterr().err
