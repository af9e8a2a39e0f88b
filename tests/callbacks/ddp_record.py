"""Callbacks for the DDP tests: one saves what TaskEvalCallback recorded on each rank at the end of fit; one
fails its evaluation on rank 0 only (the other ranks must not hang at the broadcast)."""
import json
import os

import lightning.pytorch as pl

from lit_align.callbacks import TaskEvalCallback


class RecordEvalHistory(pl.Callback):
    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_fit_end(self, trainer, pl_module):
        evals = [c for c in trainer.callbacks if isinstance(c, TaskEvalCallback)]
        logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("eval/")}
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"history": evals[0].history, "logged": logged, "world_size": trainer.world_size}, f)


class FailOnRankZero(TaskEvalCallback):
    """A TaskEvalCallback whose evaluation raises on rank 0 (where it runs)."""

    def evaluate_rows(self, pl_module, datamodule):
        raise RuntimeError("evaluation broke on rank 0")
