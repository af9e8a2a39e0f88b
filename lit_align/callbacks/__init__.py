"""Lightning callbacks of lit_align's own.

checkpoint.py   RunCheckpoint: the checkpoint of `lit-align fit` (one folder per run, atomic last.ckpt,
                periodic saves, RNG states), so that re-running a crashed command resumes it
task_eval.py    TaskEvalCallback: greedy task evaluation of the policy during training (lit_align.rollout's
                evaluate_policy), logged as eval/*; its history travels in the checkpoint
"""
from lit_align.callbacks.checkpoint import RunCheckpoint
from lit_align.callbacks.task_eval import TaskEvalCallback

__all__ = ["RunCheckpoint", "TaskEvalCallback"]
