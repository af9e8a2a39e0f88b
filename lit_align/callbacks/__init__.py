"""Lightning callbacks of lit_align's own (the task-evaluation callback lives with the rollouts: lit_align.rollout).

checkpoint.py   RunCheckpoint: the checkpoint of `lit-align fit` (one folder per run, atomic last.ckpt,
                periodic saves, RNG states), so that re-running a crashed command resumes it
"""
from lit_align.callbacks.checkpoint import RunCheckpoint

__all__ = ["RunCheckpoint"]
