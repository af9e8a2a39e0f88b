"""The metrics a loop records for each policy it makes: the validation reward it early-stops on and the held-out
task success it reports, both through lit_align.rollout.evaluate.evaluate_policy (greedy answers).

    val_reward     mean total reward of the loop's reward sources (the same specs as training) on the validation
                   prompts: what ReST's early stopping compares (Gulcehre et al., arXiv 2308.08998, §3)
    val_success    checker success on the validation prompts
    test_success   checker success on the test prompts (and test_score, test_distinct_words, test_distinct_responses:
                   success alone can be gamed by repetition)
    test_best_of_success   with best_of N > 1: the success of the best of N samples (temperature / top_p) ranked by
                   the reward sources (lit_align.rollout.best_of_n), and test_pass_at_n

The full results (examples included) go to `eval.json` in the stage folder.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_align.files import write_json
from lit_align.rollout.evaluate import evaluate_policy, read_task_rows


@dataclass
class EvalSettings:
    """Where and how each policy of a loop is evaluated.

    Args:
        val_file: JSONL rows with "prompt" and a "task" checker (the suite's val.jsonl).
        test_file: the same for the reported test success; None to skip.
        limit: the first `limit` rows of each file (None: all).
        max_new_tokens: the longest answer.
        batch_size: prompts per generate call.
        best_of: > 1 adds the best-of-N test success (N samples per prompt ranked by the reward sources).
    """

    val_file: str = "artifacts/suite/data/val.jsonl"
    test_file: str | None = "artifacts/suite/data/test.jsonl"
    limit: int | None = 200
    max_new_tokens: int = 24
    batch_size: int = 64
    best_of: int = 1


def evaluate_for_loop(model, tokenizer: Any, sources: list, settings: EvalSettings, *, folder: Path | None = None,
                      temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, progress: bool = True,
                      label: str = "policy") -> dict[str, float]:
    """The metrics of the module docstring; writes the full results to folder/eval.json when a folder is given."""
    common = {"max_new_tokens": settings.max_new_tokens, "batch_size": settings.batch_size, "rewards": sources}
    results = {"val": evaluate_policy(model, tokenizer, read_task_rows(settings.val_file, settings.limit), **common,
                                      progress=progress and f"{label} on val")}
    val = results["val"]
    metrics = {"val_reward": val["source_reward"], "val_success": val["success"], "val_score": val["score"]}
    if settings.test_file:
        rows = read_task_rows(settings.test_file, settings.limit)
        results["test"] = test = evaluate_policy(model, tokenizer, rows, **common,
                                                 progress=progress and f"{label} on test")
        metrics.update(test_success=test["success"], test_score=test["score"],
                       test_distinct_words=test["distinct_words"], test_distinct_responses=test["distinct_responses"])
        if settings.best_of > 1:
            results["test_best_of"] = best = evaluate_policy(
                model, tokenizer, rows, **common, best_of=settings.best_of, temperature=temperature, top_p=top_p,
                seed=seed, progress=progress and f"{label} on test")
            metrics.update(test_best_of_success=best["success"], test_pass_at_n=best["pass_at_n"])
    if folder is not None:
        write_json(folder / "eval.json", results)
    return metrics
