"""Score a batch of responses against their tasks: success, partial credit and diversity.

Success (score == 1) alone hides a degenerate policy, so the report also measures diversity: how many
different words a response uses, how often a response repeats a word ("lemon lemon lemon"), and the share
of distinct responses in the batch (low when a policy answers every prompt the same way). `score_by` gives
the same per group of rows, e.g. by "phrasing" (seen / unseen, on the held-out files) or by "family".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .checkers import Checker, checker_from_dict, words_in


def score_responses(tasks: Sequence[Checker | dict[str, Any]], responses: Sequence[str]) -> dict[str, float]:
    """Scores of `responses[i]` against `tasks[i]` (checkers, or their dicts from the "task" column).

    Returns n, success_rate (share with score 1), mean_score, distinct_words_per_response (mean number of
    different words), repeated_word_share (share of responses that repeat a word) and
    distinct_response_share (different responses / n, after stripping whitespace).
    """
    if len(tasks) != len(responses):
        raise ValueError(f"{len(tasks)} tasks but {len(responses)} responses")
    if not tasks:
        raise ValueError("no responses to score")
    checkers = [t if isinstance(t, Checker) else checker_from_dict(t) for t in tasks]
    scores = [c.check(r).score for c, r in zip(checkers, responses, strict=True)]
    words = [words_in(r) for r in responses]
    n = len(responses)
    return {
        "n": n,
        "success_rate": sum(s == 1.0 for s in scores) / n,
        "mean_score": sum(scores) / n,
        "distinct_words_per_response": sum(len(set(w)) for w in words) / n,
        "repeated_word_share": sum(len(set(w)) < len(w) for w in words) / n,
        "distinct_response_share": len({r.strip() for r in responses}) / n,
    }


def score_by(rows: Sequence[dict[str, Any]], responses: Sequence[str], column: str) -> dict[str, dict[str, float]]:
    """`score_responses` for each value of `column` in `rows` (suite rows with "task"), in sorted order.

    For the held-out files: `score_by(rows, responses, "phrasing")` -> {"seen": {...}, "unseen": {...}}.
    """
    if len(rows) != len(responses):
        raise ValueError(f"{len(rows)} rows but {len(responses)} responses")
    missing = next((i for i, row in enumerate(rows) if column not in row), None)
    if missing is not None:
        raise ValueError(f"row {missing} has no column {column!r} (columns: {sorted(rows[missing])})")
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(str(row[column]), []).append(i)
    return {g: score_responses([rows[i]["task"] for i in idx], [responses[i] for i in idx])
            for g, idx in sorted(groups.items())}
