"""TaskEvalCallback: evaluate the policy on task prompts during training and log eval/* metrics.

At the end of every `every_n_epochs`-th training epoch, and once more at the end of fit when the last
optimizer step has not been evaluated yet, the module's causal LM (`pl_module.model`, a PEFT model too)
answers the prompts greedily with the data module's tokenizer and RowEncoder (so the prompt tokens equal
the training prompts), and `evaluate_policy` scores the answers with their checkers.

Multi-process training (DDP): rank 0 evaluates alone and the other ranks receive its numbers through
`trainer.strategy.broadcast`, so every rank logs the same values (sync_dist then averages equal numbers,
which keeps Lightning's epoch-level logging rules and ModelCheckpoint(monitor="eval/success") consistent).
This is correct under DDP because `pl_module.model` is the plain module inside the DDP wrapper: generating
with it runs no collective. The other ranks wait at the broadcast meanwhile, so keep `limit` modest. If rank 0's
evaluation raises, rank 0 still broadcasts (the error) before raising, so the other ranks raise too instead of
hanging at the broadcast. A sharded model (FSDP, DeepSpeed, ModelParallel) cannot run on one rank alone; the
callback refuses those strategies in `setup` with a clear error rather than hanging.

With `feedback_rounds` K > 0 it also runs greedy feedback sessions (CORGI, arXiv 2411.01483;
lit_align.rollout.evaluate_sessions) on the same prompts and logs eval/success@0..K, eval/fix_rate@k and
eval/worse_rate@k beside the single-answer metrics: how well the policy uses the checker's feedback as training goes.

Logging: on epoch ends through `pl_module.log` ("eval/success", ...); at fit end, where Lightning forbids
`self.log`, straight to the trainer's loggers. `history` keeps every evaluation — "epoch" (training epochs
completed: 1 after the first), "step" (optimizer steps) and the metrics — and `examples` the latest few
answers, for plots and demos. Both travel in the Lightning checkpoint (`state_dict`, under a key naming the prompts
file, limit and answer length), with the step last evaluated: a resumed fit continues the curve, and resuming a
finished fit does not evaluate its last step twice.
"""
from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from lit_align.rollout.evaluate import evaluate_policy, evaluate_sessions, read_task_rows

SESSION_METRICS = ("success@", "fix_rate@", "worse_rate@")


class TaskEvalCallback(Callback):
    """Greedy task evaluation of the policy every few training epochs (rank 0 generates, others receive).

    Args:
        prompts_file: JSONL file of rows with "prompt" and a "task" checker dict (e.g. the suite's val.jsonl).
        every_n_epochs: evaluate after every N-th training epoch (and at the end of fit).
        max_new_tokens: the longest answer in tokens.
        limit: evaluate the first `limit` rows only (None: all of them).
        batch_size: prompts per generation batch.
        feedback_rounds: K > 0 also logs success@0..K (and the fix / worse rates) of greedy feedback sessions.
        max_length: the longest session transcript in tokens (None: the model's max_position_embeddings).
    """

    def __init__(self, prompts_file: str, every_n_epochs: int = 1, max_new_tokens: int = 32,
                 limit: int | None = 200, batch_size: int = 64, feedback_rounds: int = 0,
                 max_length: int | None = None):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 or None, got {limit}")
        if feedback_rounds < 0:
            raise ValueError(f"feedback_rounds must be >= 0, got {feedback_rounds}")
        self.feedback_rounds, self.max_length = feedback_rounds, max_length
        self.prompts_file, self.every_n_epochs = prompts_file, every_n_epochs
        self.max_new_tokens, self.limit, self.batch_size = max_new_tokens, limit, batch_size
        self.rows: list[dict] | None = None
        self.history: list[dict[str, float]] = []
        self.examples: list[dict[str, Any]] = []
        self._evaluated_step: int | None = None

    @property
    def state_key(self) -> str:
        """One history per measurement: two callbacks on different prompts keep apart in the checkpoint."""
        sessions = {"feedback_rounds": self.feedback_rounds} if self.feedback_rounds else {}  # old keys unchanged
        return self._generate_state_key(prompts_file=self.prompts_file, limit=self.limit,
                                        max_new_tokens=self.max_new_tokens, **sessions)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(h) for h in self.history], "examples": [dict(e) for e in self.examples],
                "evaluated_step": self._evaluated_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state_dict["history"]]
        self.examples = [dict(e) for e in state_dict["examples"]]
        self._evaluated_step = state_dict["evaluated_step"]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from lit_align.rollout.runtime import is_sharded

        if is_sharded(trainer.strategy):
            raise ValueError(f"TaskEvalCallback generates on rank 0 alone, which a sharded model "
                             f"({type(trainer.strategy).__name__}) cannot do; use DDP, or evaluate the saved "
                             "checkpoint with `lit-align evaluate`")
        if self.rows is None:  # every rank reads (cheap), so a bad file fails everywhere instead of hanging
            self.rows = read_task_rows(self.prompts_file, self.limit)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        metrics = self._evaluate(trainer, pl_module, epochs=trainer.current_epoch + 1)
        for name, value in metrics.items():
            pl_module.log(f"eval/{name}", value, on_step=False, on_epoch=True, sync_dist=True)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._evaluated_step == trainer.global_step:
            return
        metrics = self._evaluate(trainer, pl_module, epochs=trainer.fit_loop.epoch_progress.current.completed)
        for logger in trainer.loggers:  # self.log is not allowed here; loggers write on rank 0 only
            logger.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=trainer.global_step)

    def _evaluate(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epochs: int) -> dict[str, float]:
        """Rank 0 evaluates; every rank returns its metrics (floats, without n) and records the history."""
        datamodule = trainer.datamodule  # checked on every rank, so a missing tokenizer fails everywhere at once
        if datamodule is None or not hasattr(datamodule, "tokenizer"):
            raise ValueError("TaskEvalCallback needs a data module with a `tokenizer` (a lit_align data module)")
        result, error = None, None
        if trainer.is_global_zero:
            try:
                result = self.evaluate_rows(pl_module, datamodule)
            except Exception as e:  # reach the broadcast anyway: the other ranks wait there and would hang
                result, error = {"error": f"{type(e).__name__}: {e}"}, e
        result = trainer.strategy.broadcast(result, src=0)
        if "error" in result:
            if error is not None:
                raise error
            raise RuntimeError(f"TaskEvalCallback: evaluation failed on rank 0: {result['error']}")
        self.examples = result.pop("examples")
        metrics = {k: v for k, v in result.items() if k != "n"}
        self.history.append({"epoch": epochs, "step": trainer.global_step, **metrics})
        self._evaluated_step = trainer.global_step
        return metrics

    def evaluate_rows(self, pl_module: pl.LightningModule, datamodule) -> dict[str, Any]:
        """Rank 0's evaluation of the prompts: metrics, n and a few examples (evaluate_policy)."""
        encoder = getattr(datamodule, "encoder", None)
        result = evaluate_policy(pl_module.model, datamodule.tokenizer, self.rows, encoder=encoder,
                                 max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        if self.feedback_rounds:
            sessions = evaluate_sessions(pl_module.model, datamodule.tokenizer, self.rows, self.feedback_rounds,
                                         encoder=encoder, max_new_tokens=self.max_new_tokens,
                                         batch_size=self.batch_size, max_length=self.max_length)
            result.update({k: v for k, v in sessions.items()  # rates of a round nobody reached are NaN: left out
                           if k.startswith(SESSION_METRICS) and v == v})
        return result
