"""Evaluate a policy on task prompts: checker success, diversity, reward, KL to a reference, length.

`evaluate_policy` answers every row greedily and scores the answers with the row's checker (the "task"
column of the lit_align.tasks suite); success alone hides a degenerate policy ("lemon lemon lemon"), so
diversity is reported beside it. With a reward model it adds the mean reward of the greedy answers; with a
reference model (e.g. the SFT model) it samples `kl_samples` responses per prompt from the policy at
temperature 1 and estimates KL(policy || reference) (kl.py).

Metric names (all floats): n, success (share with checker score 1), score (mean checker score),
distinct_words (mean number of different words per response), repeated_words (share of responses that
repeat a word), distinct_responses (different responses / n), length (mean generated tokens, stop token
included), finished (share that ended with a stop token rather than max_new_tokens), and when asked
reward, kl, kl_k3, kl_per_token, kl_k3_per_token. "examples" holds a few rows for display.

With reward sources (`rewards`: the `{kind: checker}` / `{kind: model, ...}` specs of training, built by
lit_align.rollout.reward_sources.build_reward_sources), source_reward is their mean total on the answers. With
`best_of` N > 1 the answers are not greedy: N samples per prompt at `temperature` / `top_p`, the one the reward
sources rank highest (lit_align.rollout.best_of_n); then best_of = N, sample_success (the checker success of a
single sample, over all N x prompts) and pass_at_n (share of prompts where any of the N samples succeeds: what a
perfect ranker would reach) are added.

`evaluate_sessions` measures how a policy uses corrective feedback (CORGI, arXiv 2411.01483): greedy sessions of
at most `rounds` feedback rounds through the session sampler (rollout/sessions.py) with the checker's feedback as
the next user turn, and returns success@0..rounds (share of prompts solved within k rounds), per round the fix
rate (a failed answer fixed by the next one) and the worse rate (the next answer scores lower), the stop reasons
and a few transcripts.

Library code: the `lit-align evaluate` command (lit_align/evaluate.py), TaskEvalCallback (lit_align.callbacks)
and the demo call it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lit_align.errors import UserError
from lit_align.rollout.best_of_n import best_of_n
from lit_align.rollout.generate import encode_prompts, generate
from lit_align.rollout.kl import kl_to_reference
from lit_align.rollout.reward import reward_scores
from lit_align.rollout.reward_sources import score_rewards

METRIC_NAMES = {"success_rate": "success", "mean_score": "score", "distinct_words_per_response": "distinct_words",
                "repeated_word_share": "repeated_words", "distinct_response_share": "distinct_responses"}


def read_task_rows(path: str | Path, limit: int | None = None) -> list[dict[str, Any]]:
    """Rows with "prompt" and "task" from a JSONL file (the first `limit`); errors name the file and line."""
    from lit_align.data.jsonl import read_rows
    from lit_align.tasks.checkers import checker_from_dict

    rows = read_rows(path, "prompt")[:limit]
    if not rows:
        raise UserError(f"{path}: no rows to evaluate")
    for row in rows:
        if "task" not in row:
            raise UserError(f"{row['_where']}: missing field 'task' (a checker dict from lit_align.tasks; "
                            f"found {', '.join(repr(k) for k in row if not k.startswith('_'))})")
        try:
            checker_from_dict(row["task"])
        except (TypeError, ValueError) as error:
            raise UserError(f"{row['_where']}: field 'task': {error}") from None
    return rows


def evaluate_policy(model, tokenizer: Any, rows: list[dict], *, reward_model=None, reward_tokenizer: Any = None,
                    reference=None, max_new_tokens: int = 32, batch_size: int = 64, kl_samples: int = 1,
                    seed: int = 0, progress: bool | str = False, encoder: Any = None,
                    num_examples: int = 5, rewards: list | None = None, best_of: int = 1, temperature: float = 1.0,
                    top_p: float = 1.0) -> dict[str, Any]:
    """Metrics of `model` on `rows` (each with "prompt" and a "task" checker dict); see the module docstring.

    `encoder` (a RowEncoder, e.g. the training data module's) encodes the prompts as in training. `rewards` (reward
    sources, lit_align.rollout.reward_sources) add "source_reward"; `best_of` > 1 answers with the best of that many
    samples at `temperature` / `top_p` by `rewards` (lit_align.rollout.best_of_n) instead of greedily.
    """
    from lit_align.tasks.checkers import checker_from_dict
    from lit_align.tasks.evaluate import score_responses

    if not rows:
        raise UserError("no rows to evaluate")
    missing = next((i for i, row in enumerate(rows) if "task" not in row), None)
    if missing is not None:
        raise UserError(f"{rows[missing].get('_where', f'row {missing}')}: missing field 'task'")
    if kl_samples < 1:
        raise UserError(f"kl_samples must be >= 1, got {kl_samples}")
    if best_of < 1 or (best_of > 1 and not rewards):
        raise UserError(f"best_of={best_of}: expected 1 (greedy), or more with reward sources to rank the samples")
    prompts = encode_prompts(tokenizer, rows, encoder)
    title = progress if isinstance(progress, str) else "evaluating"

    def bar(stage: str) -> str | bool:
        return f"{title}: {stage}" if progress else False

    n = len(rows)
    extra: dict[str, float] = {}
    if best_of > 1:
        best = best_of_n(model, tokenizer, rows, rewards, best_of, temperature=temperature, top_p=top_p,
                         max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, prompt_ids=prompts,
                         progress=bar(f"best of {best_of}"))
        answers = best.picks
        solved = [[checker.check(g.text).score == 1.0 for g in samples]  # (P, N) whether each sample succeeds
                  for checker, samples in zip((checker_from_dict(row["task"]) for row in rows), best.samples,
                                              strict=True)]
        extra = {"best_of": float(best_of), "sample_success": sum(map(sum, solved)) / (n * best_of),
                 "pass_at_n": sum(map(any, solved)) / n}
    else:
        answers = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size,
                           progress=bar("greedy"))
    responses = [g.text for g in answers]
    scores = score_responses([row["task"] for row in rows], responses)
    metrics: dict[str, Any] = {"n": float(n), **{new: float(scores[old]) for old, new in METRIC_NAMES.items()},
                               "length": sum(g.num_tokens for g in answers) / n,
                               "finished": sum(g.finished for g in answers) / n, **extra}
    if rewards:
        result = score_rewards(rewards, rows, answers)
        metrics["source_reward"] = result.total[result.valid].mean().item() if result.valid.any() else math.nan
    if reward_model is not None:
        model_rewards = reward_scores(reward_model, reward_tokenizer or tokenizer, [row["prompt"] for row in rows],
                                      responses, batch_size=batch_size)
        metrics["reward"] = model_rewards.mean().item()
    if reference is not None:
        repeated = [p for p in prompts for _ in range(kl_samples)]
        samples = generate(model, tokenizer, repeated, max_new_tokens=max_new_tokens, do_sample=True,
                           temperature=1.0, top_p=1.0, batch_size=batch_size, seed=seed,
                           progress=bar("sampling for KL"))
        metrics.update(kl_to_reference(model, reference, tokenizer, samples, batch_size))
    examples = []
    for row, response in zip(rows[:num_examples], responses[:num_examples], strict=True):
        check = checker_from_dict(row["task"]).check(response)
        examples.append({"prompt": row["prompt"], "response": response, "score": check.score,
                         "feedback": check.feedback})
    return {**metrics, "examples": examples}


def evaluate_sessions(model, tokenizer: Any, rows: list[dict], rounds: int, *, env: str = "checker",
                      env_args: dict[str, Any] | None = None, max_new_tokens: int = 32, batch_size: int = 64,
                      encoder: Any = None, max_length: int | None = None, progress: bool | str = False,
                      num_examples: int = 3) -> dict[str, Any]:
    """success@k (k = 0..rounds) and the per-round fix / worse rates of greedy feedback sessions on `rows`
    (rollout/sessions.py summarize), with `examples`: a few transcripts as (answer, score, feedback) turns."""
    from lit_align.rollout.feedback import env_factory
    from lit_align.rollout.sessions import sample_sessions, summarize

    if rounds < 0:
        raise UserError(f"feedback rounds must be >= 0, got {rounds}")
    if not rows:
        raise UserError("no rows to evaluate")
    sessions = sample_sessions(model, tokenizer, rows, env_factory(env, env_args), rounds=rounds, encoder=encoder,
                               max_new_tokens=max_new_tokens, batch_size=batch_size, max_length=max_length,
                               progress=progress if isinstance(progress, str) else "sessions" if progress else False)
    examples = [{"prompt": s.row["prompt"], "stop": s.stop,
                 "turns": [{"response": a.text, "score": score, "feedback": fb}
                           for a, score, fb in zip(s.answers, s.scores, s.feedback, strict=True)]}
                for s in sessions[:num_examples]]
    return {"n": float(len(rows)), "rounds": float(rounds), **summarize(sessions, rounds), "examples": examples}
