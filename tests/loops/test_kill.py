"""kill -9 a `lit-align rest` run at three points, run the same command again each time, and the run ends with the
summary metrics and the final weights of an uninterrupted run, without redoing a finished stage.

One run directory goes through three SIGKILLs in a row, each in a subprocess stalled at a chosen point
(tests/loops/stall.py) and killed there:
  1. inside Grow's sampling: after chunk 1 of 2 was committed (a torn half chunk is then appended by hand, as a kill
     in the middle of writing chunk 2 would leave it)
  2. inside the first Improve fit: after the checkpoint of step 2, in step 3 of 4
  3. between stages: right after improve_1_1 finished
then the same command finishes in this process. The uninterrupted run (the baseline) runs in this process too, on
one thread like the subprocesses (OMP_NUM_THREADS=1), so the comparison is bitwise.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from lit_align.files import read_json
from lit_align.loops.rest import main as rest_main
from tests.loops.stall import killed_at

TIMING = {"seconds", "sampling_seconds", "scoring_seconds", "responses_per_s", "tokens_per_s", "fit_seconds"}
"""Wall-clock metrics: the only ones a resumed run may change."""


def metrics(summary: dict) -> list[tuple[str, dict]]:
    return [(s["name"], {k: v for k, v in s["metrics"].items() if k not in TIMING}) for s in summary["stages"]]


def mtime(path: Path) -> int:
    return path.stat().st_mtime_ns


def test_killed_three_times_ends_like_an_uninterrupted_run(rest_args, tmp_path, capsys):
    baseline, run = tmp_path / "baseline", tmp_path / "run"
    args = rest_args(run, "--improve.threshold_mode", "quantile")
    rest_main(rest_args(baseline, "--improve.threshold_mode", "quantile"))
    expected = read_json(baseline / "summary.json")

    killed_at("chunk/grow_1/1", args, run)  # 1. inside sampling
    grow = run / "grow_1.partial"
    assert read_json(grow / "samples.jsonl.chunks.json")["chunks"] == 1 and not (run / "grow_1").exists()
    with open(grow / "samples.jsonl", "ab") as f:
        f.write(b'{"prompt_id": "prompt-00002", "sample": 0, "chu')  # the torn start of chunk 2
    base = mtime(run / "base" / "manifest.json")

    killed_at("step/improve_1_1/3", args, run)  # 2. inside a fit
    grown = read_json(run / "grow_1" / "manifest.json")
    assert grown["attempts"] == 2 and grown["resumed_from_chunk"] == 1  # resumed at chunk 2, not redone
    assert (run / "grow_1" / "samples.jsonl").read_bytes() == (baseline / "grow_1" / "samples.jsonl").read_bytes()
    checkpoint = torch.load(run / "improve_1_1.partial" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2

    killed_at("stage/improve_1_1", args, run)  # 3. between stages
    improve = read_json(run / "improve_1_1" / "manifest.json")
    assert improve["attempts"] == 2 and improve["resumed_from_step"] == 2
    assert [s["name"] for s in read_json(run / "summary.json")["stages"]] == ["base", "grow_1", "improve_1_1"]
    done = {name: mtime(run / name / "manifest.json") for name in ("base", "grow_1", "improve_1_1")}
    assert done["base"] == base

    capsys.readouterr()
    rest_main(args)  # the same command, once more: it finishes
    assert capsys.readouterr().out.count("already done, skipped") == 3
    assert done == {name: mtime(run / name / "manifest.json") for name in done}  # finished stages untouched
    summary = read_json(run / "summary.json")
    assert summary["finished"] and metrics(summary) == metrics(expected)
    assert summary["final"]["stage"] == expected["final"]["stage"] == "improve_1_2"
    for name in ("improve_1_1", "improve_1_2"):
        weights = load_file(run / name / "model" / "model.safetensors")
        reference = load_file(baseline / name / "model" / "model.safetensors")
        assert weights.keys() == reference.keys()
        assert all(torch.equal(weights[k], reference[k]) for k in reference), f"{name}: weights differ"
    start = load_file(Path(read_json(run / "base" / "manifest.json")["policy"]) / "model.safetensors")
    assert any(not torch.equal(start[k], reference[k]) for k in reference), "the fits changed nothing"
