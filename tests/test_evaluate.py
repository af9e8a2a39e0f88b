"""`lit-align evaluate` (lit_align/evaluate.py) on the suite's tiny model: the metrics table on stdout, the JSON
result written atomically, the KL of the model to itself (zero), and a missing prompts file as a one-line error
with exit status 2; reached through `lit-align`'s command table too. Best-of-N (lit_align.rollout.best_of_n): the
pick is the first of the highest-reward samples, seeded; `--best-of N --reward SPEC` and bad specs."""
from __future__ import annotations

import json

import pytest

from lit_align.evaluate import main


def test_command(suite, tmp_path, capsys):
    out = tmp_path / "out" / "eval.json"
    code = main(["--model", str(suite.model), "--prompts", suite.file("val.jsonl"), "--reference", str(suite.model),
                 "--max-new-tokens", "4", "--limit", "3", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["n"] == 3 and abs(result["kl"]) < 1e-5 and len(result["examples"]) == 3
    assert result["sources"]["model"] == str(suite.model)
    assert "success" in capsys.readouterr().out
    assert not list(out.parent.glob(".*tmp"))  # written atomically, no temporary left
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(suite.model), "--prompts", str(tmp_path / "missing.jsonl")])
    assert exit_info.value.code == 2
    assert "data file not found" in capsys.readouterr().err


def test_listed_as_a_lit_align_command():
    import importlib

    from lit_align.cli import TOOLS

    assert importlib.import_module(TOOLS["evaluate"][0]).main is main


def test_best_of_n_answers_with_the_highest_reward(suite):
    from lit_align.models.loading import load_causal_lm, load_tokenizer
    from lit_align.rollout.best_of_n import best_of_n
    from lit_align.rollout.evaluate import read_task_rows
    from lit_align.rollout.reward_sources import build_reward_sources
    from lit_align.tasks.checkers import checker_from_dict

    model, tokenizer = load_causal_lm(str(suite.model)), load_tokenizer(str(suite.model))
    rows = read_task_rows(suite.file("val.jsonl"), 4)
    sources = build_reward_sources([{"kind": "checker"}])
    best = best_of_n(model, tokenizer, rows, sources, 4, max_new_tokens=6, seed=1)
    assert best.rewards.shape == (4, 4) and len(best.samples) == 4 and all(len(s) == 4 for s in best.samples)
    for row, samples, chosen, rewards, pick in zip(rows, best.samples, best.chosen, best.rewards, best.picks,
                                                   strict=True):
        scores = [checker_from_dict(row["task"]).check(g.text).score for g in samples]
        assert rewards.tolist() == pytest.approx(scores)
        assert chosen == scores.index(max(scores)) and pick is samples[chosen]  # the first of the best
    assert best.pick_rewards.tolist() == pytest.approx(best.rewards.max(1).values.tolist())
    assert any(c != 0 for c in best.chosen), "every pick is the first sample: the ranking would prove nothing"
    again = best_of_n(model, tokenizer, rows, sources, 4, max_new_tokens=6, seed=1)
    assert [g.completion_ids for g in again.picks] == [g.completion_ids for g in best.picks]  # seeded


def test_command_best_of_n(suite, tmp_path, capsys):
    out = tmp_path / "best.json"
    args = ["--model", str(suite.model), "--prompts", suite.file("val.jsonl"), "--max-new-tokens", "6", "--limit", "4"]
    assert main([*args, "--best-of", "3", "--reward", "checker", "--temperature", "0.8", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["best_of"] == 3 and result["sources"]["rewards"] == [{"kind": "checker"}]
    assert result["source_reward"] == pytest.approx(result["score"])  # the checker's mean score of the picks
    assert result["success"] <= result["pass_at_n"] and 0 <= result["sample_success"] <= result["pass_at_n"]
    greedy = tmp_path / "greedy.json"
    assert main([*args, "--reward", "{kind: checker, weight: 2.0}", "--json", str(greedy)]) == 0
    assert json.loads(greedy.read_text())["source_reward"] == pytest.approx(2 * json.loads(greedy.read_text())["score"])
    capsys.readouterr()
    for bad, message in ((["--best-of", "2"], "best_of=2"), (["--reward", "[1, 2"], "not YAML"),
                         (["--reward", "{kind: oracle}"], "rewards[0]")):
        with pytest.raises(SystemExit) as exit_info:
            main([*args, *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_command_feedback_rounds(suite, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = main(["--model", str(suite.model), "--prompts", suite.file("val.jsonl"), "--max-new-tokens", "4",
                 "--limit", "4", "--feedback-rounds", "2", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    sessions = result["sessions"]
    at_k = [sessions[f"success@{k}"] for k in range(3)]
    assert sessions["n"] == 4 and at_k == sorted(at_k) and at_k[0] == result["success"]
    assert len(sessions["examples"][0]["turns"]) >= 1 and result["sources"]["feedback_rounds"] == 2
    printed = capsys.readouterr().out
    assert "feedback sessions" in printed and "success@k" in printed
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(suite.model), "--prompts", suite.file("val.jsonl"), "--feedback-rounds", "-1"])
    assert exit_info.value.code == 2
    assert "feedback rounds must be >= 0" in capsys.readouterr().err
