"""The one way loops and the demo build and run a Lightning Trainer for a fit inside a stage folder.

    trainer = build_trainer(folder, max_epochs=1, checkpoint_every_n_steps=50)
    result = fit(trainer, module, data)          # resumes <folder>/checkpoints/last.ckpt when it is there

What a stage's fit gets, and why:

- RunCheckpoint (lit_align.callbacks) into `<folder>/checkpoints/`: last.ckpt every `checkpoint_every_n_steps`
  optimizer steps or every `checkpoint_interval` (H:MM:SS) and at the end, written under another name and renamed;
  it carries the RNG states and the data position. So an interrupted fit continues through the same mechanism as
  `lit-align fit` (lit_align.cli): no batch trained twice or skipped, bitwise the weights of an uninterrupted fit.
- `fit` on a finished checkpoint restores the trained weights and trains nothing (Lightning's fit loop is done
  before its first step), so a stage killed after its fit but before its export exports the right weights.
- A CSV logger into `<folder>/logs/version_N/metrics.csv`: a resumed fit writes the next version (Lightning's CSV
  logger would delete an existing file); `read_metrics` joins the versions into one curve.
- RichProgressBar (kept on screen when done) unless `progress=False`; no model summary; validation only when asked.
"""
from __future__ import annotations

import csv
import os
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

from lit_align.callbacks.checkpoint import RunCheckpoint, checkpoint_progress, finished

# Loops load data in the main process on purpose (small token lists; workers would cost more than they save).
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")


def parse_interval(value: timedelta | str | None) -> timedelta | None:
    """"H:MM:SS" (or a timedelta, or None) as a timedelta."""
    if value is None or isinstance(value, timedelta):
        return value
    try:
        hours, minutes, seconds = (float(part) for part in str(value).split(":"))
    except ValueError:
        raise ValueError(f"checkpoint_interval {value!r}: expected H:MM:SS, e.g. 0:03:00") from None
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def build_trainer(folder: str | os.PathLike, *, max_epochs: int | None = None, max_steps: int = -1,
                  checkpoint_every_n_steps: int | None = None, checkpoint_interval: timedelta | str | None = "0:03:00",
                  progress: bool = True, accelerator: str = "auto", devices: int = 1, callbacks: list | None = None,
                  limit_val_batches: int | float = 0, log_every_n_steps: int = 10, **trainer_args: Any):
    """A Trainer whose checkpoints, logs and resumption live in `folder` (see the module docstring).

    `checkpoint_every_n_steps` replaces the time interval when given; `trainer_args` go to pl.Trainer
    (gradient_clip_val, precision, ...).
    """
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    folder = Path(folder)
    every = {"every_n_train_steps": checkpoint_every_n_steps} if checkpoint_every_n_steps else \
        {"train_time_interval": parse_interval(checkpoint_interval)}
    checkpoint = RunCheckpoint(dirpath=str(folder / "checkpoints"), **every)
    extra = [RichProgressBar(leave=True)] if progress else []
    return pl.Trainer(accelerator=accelerator, devices=devices, max_epochs=max_epochs, max_steps=max_steps,
                      default_root_dir=str(folder), logger=CSVLogger(str(folder), name="logs"),
                      callbacks=[checkpoint, *extra, *(callbacks or [])], enable_progress_bar=progress,
                      enable_model_summary=False, limit_val_batches=limit_val_batches,
                      log_every_n_steps=log_every_n_steps, **trainer_args)


def fit(trainer, module, data, log=print) -> dict[str, Any]:
    """trainer.fit, continuing from the trainer's `checkpoints/last.ckpt` when one is there.

    Returns {"steps": optimizer steps at the end, "resumed_from": the checkpoint's step (None when fresh),
    "metrics": the last logged values}.
    """
    callback = trainer.checkpoint_callback
    if not isinstance(callback, RunCheckpoint):
        raise ValueError("fit() needs a trainer from build_trainer (its checkpoint callback is a RunCheckpoint)")
    last = callback.last_path(trainer)
    resumed = None
    if os.path.exists(last):
        resumed, epochs = checkpoint_progress(last)
        state = "already finished, restoring its weights" if finished(resumed, epochs, trainer) else "resuming"
        log(f"lit-align: {state}: {last} (step {resumed}, {epochs} epoch{'' if epochs == 1 else 's'} done)")
    trainer.fit(module, data, ckpt_path=last if resumed is not None else None)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return {"steps": int(trainer.global_step), "resumed_from": resumed, "metrics": metrics}


def read_metrics(folder: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of `<folder>/logs/version_*/metrics.csv` as one curve: a resumed fit's version replaces the rows of
    the versions before it from its first step on (those steps were redone)."""
    versions = sorted((Path(folder) / "logs").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    rows: list[dict[str, str]] = []
    for version in versions:
        path = version / "metrics.csv"
        if not path.exists():
            continue
        with open(path, newline="") as f:
            new = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
        if new:
            first = min(int(row["step"]) for row in new)
            rows = [row for row in rows if int(row["step"]) < first] + new
    return rows
