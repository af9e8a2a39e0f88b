"""`lit-align dynamics` (lit_align.dynamics.experiment): the summary's step counts and correlations on hand-made
curves, and a tiny end-to-end run (2 behaviours, 2 steps a fit) that a second invocation skips stage by stage."""
from __future__ import annotations

import json

import pytest

from lit_align.dynamics.experiment import Experiment, steps_to
from tests.loops.stall import killed_at
from tests.threads import one_thread  # noqa: F401  (autouse, package scope)


def curve(group: str, accuracies: list[float], d0: float) -> list[dict]:
    return [{"step": 2 * i, "group": group, "accuracy": a, "reward_accuracy": a, "distinguishability": d0 + i,
             "distinguishability_norm": d0 + i} for i, a in enumerate(accuracies)]


def test_steps_to_threshold_and_censoring():
    history = curve("g", [0.5, 0.7, 0.85, 0.6, 0.9], d0=1.0)
    assert steps_to(history, "g", "accuracy", lambda a: a >= 0.8, censored=99) == (4, True)
    assert steps_to(history, "g", "accuracy", lambda a: a >= 0.95, censored=99) == (99, False)
    assert steps_to(history, "g", "accuracy", lambda a: a < 0.6, censored=99) == (0, True)
    assert steps_to(history, "g", "accuracy", lambda a: a < 0.6, censored=99, after=0) == (99, False)


def test_summary_correlates_initial_distinguishability_with_learning_time(tmp_path):
    """Three behaviours: the most distinguishable learned first -> Spearman -1; reversed -> +1."""
    exp = Experiment(tmp_path, {"align_steps": 8, "flip_steps": 8, "every": 2})
    fast_first = (curve("a_m3", [0.5, 0.9, 1, 1, 1], 3.0) + curve("b_m2", [0.5, 0.6, 0.9, 1, 1], 2.0)
                  + curve("c_m1", [0.5, 0.5, 0.6, 0.7, 0.7], 1.0))
    flips = {"aligned": curve("a_m3", [1, 0.4, 0.1, 0, 0], 9.0), "base": curve("a_m3", [0.6, 0.55, 0.5, 0.4, 0.3], 1)}
    summary = exp.seed_summary(0, fast_first, flips)
    assert [r["steps_accuracy"] for r in summary["behaviours"]] == [2, 4, 10]  # c never reaches 0.8: 8 + 2
    assert [r["reached_accuracy"] for r in summary["behaviours"]] == [True, True, False]
    assert summary["spearman"]["d0_norm_vs_steps_accuracy"] == pytest.approx(-1.0)
    assert summary["spearman"]["markers_vs_steps_reward_accuracy"] == pytest.approx(-1.0)
    assert summary["flipped"]["aligned"]["accuracy_below_50"] == 2
    base = summary["flipped"]["base"]
    assert base["accuracy_below_50"] == 6 and base["accuracy_below_20"] == 10
    slow_first = [{**r, "distinguishability_norm": 4 - r["distinguishability_norm"]} for r in fast_first]
    assert exp.seed_summary(0, slow_first, flips)["spearman"]["d0_norm_vs_steps_accuracy"] == pytest.approx(1.0)


def test_tiny_run_end_to_end_and_resumed(tmp_path, capsys):
    from lit_align.dynamics.experiment import main

    args = ["--out", str(tmp_path), "--seeds", "0", "--markers", "6", "1", "--per-behaviour", "8",
            "--probe-per-behaviour", "4", "--align-steps", "2", "--flip-steps", "2", "--batch-size", "8",
            "--hidden-size", "16", "--num-layers", "1", "--num-heads", "2", "--intermediate-size", "32"]
    main(args)
    summary = json.loads((tmp_path / "summary.json").read_text())
    (seed,) = summary["seeds"]
    assert [b["group"] for b in seed["behaviours"]] == ["b0_m6", "b1_m1"]
    assert len(json.loads((tmp_path / "align_s0" / "history.json").read_text())) == 6  # steps 0..2, 2 groups
    assert set(seed["flipped"]) == {"aligned", "base"} and seed["flipped"]["aligned"]["d0_norm"] > 0
    assert (tmp_path / "accuracy.png").exists() and (tmp_path / "flipped.png").exists()
    assert (tmp_path / "align_s0" / "dynamics.png").exists()
    capsys.readouterr()
    main(args)
    assert capsys.readouterr().out.count("already done, skipped") == 5


def test_killed_in_the_align_fit_resumes_without_redoing_stages(tmp_path):
    """kill -9 inside seed 0's alignment fit: the same command skips the data and base stages, reruns the fit
    (no checkpoint was due yet) and ends with an uninterrupted run's curves and summary."""
    from lit_align.dynamics.experiment import main

    args = ["--seeds", "0", "--markers", "6", "1", "--per-behaviour", "8", "--probe-per-behaviour", "4",
            "--align-steps", "3", "--flip-steps", "2", "--batch-size", "8", "--hidden-size", "16", "--num-layers",
            "1", "--num-heads", "2", "--intermediate-size", "32"]
    baseline, run = tmp_path / "baseline", tmp_path / "run"
    main(["--out", str(baseline), *args])
    killed_at("step/align_s0/1", ["--out", str(run), *args], run, "lit_align.dynamics.experiment")
    assert (run / "align_s0.partial").is_dir() and not (run / "align_s0").exists()
    finished = {name: (run / name / "manifest.json").stat().st_mtime_ns for name in ("data_s0", "base_s0")}
    main(["--out", str(run), *args])
    assert finished == {name: (run / name / "manifest.json").stat().st_mtime_ns for name in finished}  # not redone
    for name in ("align_s0", "flip_aligned_s0", "flip_base_s0"):
        assert (json.loads((run / name / "history.json").read_text())
                == json.loads((baseline / name / "history.json").read_text())), name
    summary = [json.loads((root / "summary.json").read_text())["seeds"] for root in (run, baseline)]
    assert summary[0] == summary[1]
