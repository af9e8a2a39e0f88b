"""evaluate_policy's metrics and examples, its input errors, the reward model's input format (the command:
tests/test_evaluate.py)."""
from __future__ import annotations

import json
import math

import pytest

from lit_align.rollout.evaluate import evaluate_policy, read_task_rows
from lit_align.rollout.reward import pair_ids, reward_scores

KEYS = ("n", "success", "score", "distinct_words", "repeated_words", "distinct_responses", "length", "finished",
        "reward", "kl", "kl_k3", "kl_per_token", "kl_k3_per_token")


def test_evaluate_policy_all_metrics(model, tokenizer, reward_model, task_rows):
    out = evaluate_policy(model, tokenizer, task_rows, reward_model=reward_model, reference=model, max_new_tokens=6,
                          batch_size=4, kl_samples=2, num_examples=3)
    for key in KEYS:
        assert isinstance(out[key], float) and math.isfinite(out[key]), key
    assert out["n"] == len(task_rows)
    assert 0 <= out["success"] <= out["score"] <= 1
    assert 0 < out["length"] <= 6 and 0 <= out["finished"] <= 1
    assert abs(out["kl"]) < 1e-5 and abs(out["kl_k3"]) < 1e-5  # the reference is the policy itself
    assert [sorted(ex) for ex in out["examples"]] == [["feedback", "prompt", "response", "score"]] * 3
    assert out["examples"][0]["prompt"] == task_rows[0]["prompt"]


def test_evaluate_policy_without_optional_models(model, tokenizer, task_rows):
    out = evaluate_policy(model, tokenizer, task_rows[:2], max_new_tokens=3)
    assert "reward" not in out and "kl" not in out and out["n"] == 2.0


def test_reward_input_is_the_training_format(tokenizer, reward_model, task_rows):
    from lit_align.data.tokenize import RowEncoder

    encoder = RowEncoder(tokenizer)
    row = {**task_rows[0], "chosen": " apple grape", "rejected": " lemon", "_where": "row 0", "_index": 0}
    pairs, _ = encoder.preference([row])
    assert pair_ids(encoder, row["prompt"], " apple grape") == pairs[0]["chosen_input_ids"]
    assert pair_ids(encoder, row["prompt"], "")[-1] == tokenizer.eos_token_id  # an empty answer is still scored
    scores = reward_scores(reward_model, tokenizer, [row["prompt"]] * 3, [" apple grape", "", " apple grape"],
                           batch_size=2)
    assert scores.shape == (3,) and scores[0] == pytest.approx(scores[2].item(), abs=1e-5)


def test_bad_rows(model, tokenizer, tmp_path):
    with pytest.raises(ValueError, match="row 0: missing field 'task'"):
        evaluate_policy(model, tokenizer, [{"prompt": "hi"}])
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_task_rows(tmp_path / "nope.jsonl")
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"prompt": "hi", "task": {"kind": "ends_with", "n": 2, "letter": "e"}}) + "\n"
                    + json.dumps({"prompt": "hi again"}) + "\n")
    with pytest.raises(ValueError, match=r"rows.jsonl: line 2: missing field 'task'"):
        read_task_rows(path)
    assert len(read_task_rows(path, limit=1)) == 1
    path.write_text(json.dumps({"prompt": "hi", "task": {"kind": "nonsense"}}) + "\n")
    with pytest.raises(ValueError, match=r"line 1: field 'task': unknown checker kind"):
        read_task_rows(path)
