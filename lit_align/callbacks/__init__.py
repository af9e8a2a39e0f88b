"""Lightning callbacks of lit_align's own.

checkpoint.py   RunCheckpoint: the checkpoint of `lit-align fit` (one folder per run, atomic last.ckpt,
                periodic saves, RNG states), so that re-running a crashed command resumes it
task_eval.py    TaskEvalCallback: greedy task evaluation of the policy during training (lit_align.rollout's
                evaluate_policy), logged as eval/*; its history travels in the checkpoint
dynamics.py     LearningDynamicsCallback: per-group distinguishability, loss, accuracy, margin and gradient norm of
                a DPO fit on a probe set (Im & Li, arXiv 2403.18742), logged as dynamics/*, plotted at the end
"""
from lit_align.callbacks.checkpoint import RunCheckpoint
from lit_align.callbacks.dynamics import LearningDynamicsCallback
from lit_align.callbacks.task_eval import TaskEvalCallback

__all__ = ["LearningDynamicsCallback", "RunCheckpoint", "TaskEvalCallback"]
