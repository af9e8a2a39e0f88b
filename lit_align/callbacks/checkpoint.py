"""RunCheckpoint: the ModelCheckpoint of `lit-align fit`, made for re-running a crashed command.

What it changes in Lightning's ModelCheckpoint (2.6), and why:

- One folder per run, `<default_root_dir>/checkpoints/` (Lightning's default is the first logger's
  `csv/version_N/checkpoints/`, a new folder each run, so `--ckpt_path last` never found the crashed run's file).
- save_last=True, and the end of the fit is always saved, so that a second run of a finished fit can tell
  (ModelCheckpoint saves at the end only if it never saved before).
- One file per save: save_top_k defaults to 0 without a `monitor` (Lightning's default of 1 writes
  `epoch=N-step=M.ckpt`, a second full copy of last.ckpt, at every periodic save); with a monitor, 1 as in Lightning.
- Every file is written to `<name>.partial` and renamed over `<name>` (os.replace), so a kill never leaves a
  truncated last.ckpt; Lightning's own write goes through a temporary file in $TMPDIR and shutil.move, which is a
  copy, not a rename, when $TMPDIR is another filesystem.
- Periodic saves (every_n_train_steps / train_time_interval) also under manual optimisation (the online recipes,
  several optimizer steps per batch): "every n steps" means a multiple of n was passed; Lightning's manual
  branch warns at every save and ignores train_time_interval.
- The global RNG states (torch, the current CUDA device's, numpy, random) go into the checkpoint and are restored
  when the resumed training starts, so dropout and anything else random per step continue as in an uninterrupted
  run. They are rank 0's, restored on every rank: ranks seeded alike (seed_everything) draw alike.

The data position is the training loader's own state (lit_align.data.resumable); `lit-align fit` resumes from
last.ckpt by itself (lit_align.cli.AlignCLI.fit), using `checkpoint_progress` and `finished` below.
"""
from __future__ import annotations

import os
import random
import shutil
import time
import warnings
from typing import Any
from weakref import proxy

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_align.files import fsync_replace


class RunCheckpoint(ModelCheckpoint):
    """ModelCheckpoint with the run-folder defaults above; the arguments are ModelCheckpoint's
    (every_n_train_steps, train_time_interval and every_n_epochs exclude each other)."""

    def __init__(self, dirpath: str | None = None, save_last: bool = True, enable_version_counter: bool = False,
                 save_top_k: int | None = None, **kwargs: Any):
        if save_top_k is None:  # no `epoch=N-step=M.ckpt` copy next to last.ckpt unless a monitor ranks them
            save_top_k = 1 if kwargs.get("monitor") else 0
        super().__init__(dirpath=dirpath, save_last=save_last, enable_version_counter=enable_version_counter,
                         save_top_k=save_top_k, **kwargs)
        self._rng_to_restore: dict[str, Any] | None = None

    # ---- where ----------------------------------------------------------------------------------------
    def run_dirpath(self, trainer: pl.Trainer) -> str:
        """The checkpoint folder: dirpath if given, else <default_root_dir>/checkpoints (fixed for the run)."""
        if self.dirpath is None:
            self.dirpath = os.path.realpath(os.path.join(trainer.default_root_dir, "checkpoints"))
        return str(self.dirpath)

    def last_path(self, trainer: pl.Trainer) -> str:
        return os.path.join(self.run_dirpath(trainer), self.CHECKPOINT_NAME_LAST + self.FILE_EXTENSION)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.run_dirpath(trainer)
        with warnings.catch_warnings():  # a resumed run writes into its own non-empty folder by design
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: pl.Trainer) -> set[str]:  # `--ckpt_path last` looks in the run folder
        self.run_dirpath(trainer)
        return super()._find_last_checkpoints(trainer)

    # ---- when -----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_global_step_saved = trainer.global_step  # a resumed run has nothing new to save yet
        if self._rng_to_restore is not None:  # here, not at loading: set-up and the sanity check draw in between
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if pl_module.automatic_optimization:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if self._should_skip_saving_checkpoint(trainer) or not self._manual_save_due(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def _manual_save_due(self, trainer: pl.Trainer) -> bool:
        every = self._every_n_train_steps
        due = every >= 1 and trainer.global_step // every > self._last_global_step_saved // every
        if self._train_time_interval is not None:
            now = time.monotonic()
            elapsed = self._last_time_checked is not None and \
                now - self._last_time_checked >= self._train_time_interval.total_seconds()
            if trainer.strategy.broadcast(elapsed):  # rank 0 decides: every rank must take part in the save
                self._last_time_checked, due = now, True
        return due

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.save_last and not trainer.fast_dev_run and trainer.global_step > 0:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))  # the finished state

    # ---- how ------------------------------------------------------------------------------------------
    def _save_checkpoint(self, trainer: pl.Trainer, filepath: str) -> None:
        partial = f"{filepath}.partial"
        trainer.save_checkpoint(partial, self.save_weights_only)  # every rank takes part (sharded strategies)
        if trainer.is_global_zero:
            replace(partial, filepath)
        trainer.strategy.barrier("RunCheckpoint._save_checkpoint")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(proxy(self))

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["lit_align_rng"] = rng_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("lit_align_rng")


def replace(partial: str, path: str) -> None:
    """Move a finished checkpoint over `path` atomically: a file is fsynced and renamed; a folder (sharded
    checkpoints) is swapped in with two renames, the old one kept as `<path>.old` in between."""
    if os.path.isdir(partial):
        old = f"{path}.old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(partial, path)
        shutil.rmtree(old, ignore_errors=True)
        return
    fsync_replace(partial, path)


def rng_states() -> dict[str, Any]:
    """The global RNG states, as types that torch.load(weights_only=True) accepts."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),  # the current device's (each rank's own) CUDA generator, if in use:
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)],
            "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
    name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])


def checkpoint_progress(path: str) -> tuple[int, int]:
    """(optimizer steps, finished epochs) of a Lightning checkpoint file (or a sharded checkpoint's folder),
    read without loading the tensors into memory."""
    file = os.path.join(path, "meta.pt") if os.path.isdir(path) else path  # Lightning's sharded layout
    state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    progress = state.get("loops", {}).get("fit_loop", {}).get("epoch_progress", {}).get("current", {})
    return int(state.get("global_step", 0)), int(progress.get("processed", 0))


def finished(steps: int, epochs: int, trainer: pl.Trainer) -> bool:
    """Whether a fit at (steps, epochs) has reached the trainer's max_steps or max_epochs (-1/None: no limit),
    the test Lightning's fit loop makes before training (fit_loop.py, `done`)."""
    max_steps, max_epochs = trainer.max_steps, trainer.max_epochs
    return (max_steps not in (None, -1) and steps >= max_steps) or \
        (max_epochs not in (None, -1) and epochs >= max_epochs)
