"""Fixtures of the loop tests: one torch thread (the tiny models gain nothing from two on a busy 2-core machine, and
a run in this process then computes bitwise what a subprocess with OMP_NUM_THREADS=1 computes), and the arguments
of a tiny `lit-align rest` run on the session's suite."""
from __future__ import annotations

import pytest

from tests.threads import one_thread  # noqa: F401  (autouse, package scope)


@pytest.fixture
def rest_args(suite):
    """args(out, *extra): `lit-align rest` on the test suite: 4 prompts x 2 samples in chunks of 2 prompts, 1 Grow,
    2 Improve steps (thresholds 0 and 0.5) of 4 optimizer steps (batches of 8 from the kept samples and the 64 SFT
    rows), a checkpoint every 2 steps, evaluation on 4 val and 4 test prompts."""
    return lambda out, *extra: _args(suite, out, *extra)


def _args(suite, out, *extra: str) -> list[str]:
    data = suite.data
    return ["--config", "rest", "--policy", str(suite.model), "--prompts_file", str(data / "prompts.jsonl"),
            "--prompts_limit", "4", "--sft_file", str(data / "sft.jsonl"), "--out", str(out), "--grow_steps", "1",
            "--threads", "1", "--progress", "false", "--grow.samples_per_prompt", "2", "--grow.chunk_prompts", "2",
            "--grow.max_new_tokens", "6", "--grow.batch_size", "8", "--improve.thresholds", "[0.0, 0.5]",
            "--improve.drop_unfinished", "false", "--improve.max_steps", "4", "--improve.batch_size", "8",
            "--improve.checkpoint_every_n_steps", "2", "--improve.early_stop", "false",
            "--eval.val_file", str(data / "val.jsonl"), "--eval.test_file", str(data / "test.jsonl"),
            "--eval.limit", "4", "--eval.max_new_tokens", "6", *extra]
