"""Re-running a killed `lit-align fit` command continues it: SFT, DPO and RLOO are killed (SIGKILL) mid-run after a
periodic checkpoint, the same command runs again, and the final weights and every logged metric from the resume
point on equal those of an uninterrupted run bitwise (one thread in every run: the same kernels in the same order,
so no summation-order noise is expected, and none is tolerated).

The killed run is a subprocess; the uninterrupted run (meanwhile) and the re-run go through `cli_main` in this
process with one torch thread like the subprocess (OMP_NUM_THREADS=1), which keeps the file near a minute on two
cores. The killed run stops itself at a chosen step (StallAt, switched on by an environment variable that only it
gets) and is killed there, so the kill lands after a checkpoint and after one more step that the re-run must redo.
"""
from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from lit_align.callbacks.checkpoint import RunCheckpoint
from lit_align.cli import cli_main
from tests.killing import kill_when_marked
from tests.test_cli import overrides

STALL = "LIT_ALIGN_TEST_STALL"  # "<step>:<marker file>"


class StallAt(pl.Callback):
    """With $LIT_ALIGN_TEST_STALL = "<step>:<marker>": at the first batch that starts after optimizer step <step>,
    write <marker> and sleep until killed. Without it, nothing."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if os.environ.get(STALL):
            step, marker = os.environ[STALL].split(":", 1)
            if trainer.global_step >= int(step):
                Path(marker).write_text(str(trainer.global_step))
                time.sleep(600)


# recipe: (config, batch size, max_steps, checkpoint every n steps, stall after step, last checkpoint when killed)
CASES = {
    # 64 rows / 16 = 4 batches an epoch: the checkpoint of step 6 is at batch 2 of the (reshuffled) second epoch
    "sft": ("configs/sft.yaml", 16, 8, 2, 7, 6),
    # 48 pairs / 8 = 6 batches: the checkpoint of step 6 closes epoch 0; the re-run starts epoch 1 at its start
    "dpo": ("configs/dpo.yaml", 8, 8, 3, 7, 6),
    # 16 prompts / 2 = 8 rollouts an epoch, one optimizer step each: the checkpoint of step 4 is mid-epoch
    "rloo": ("configs/rloo.yaml", 2, 6, 2, 5, 4),
}


def command(recipe: str, suite, root: Path) -> list[str]:
    config, batch_size, max_steps, every, _, _ = CASES[recipe]
    return ["fit", "--config", config, *overrides(config, suite, root), "--data.init_args.batch_size", str(batch_size),
            "--trainer.max_steps", str(max_steps), "--checkpoint.train_time_interval", "null",
            "--checkpoint.every_n_train_steps", str(every), "--trainer.callbacks+=tests.test_resume.StallAt"]


def start_stalling(args: list[str], stall: int, root: Path) -> subprocess.Popen:
    """`lit-align <args>` in a subprocess that stalls after optimizer step `stall` (see StallAt)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), STALL: f"{stall}:{root}.stalled"}
    with open(f"{root}.log", "w") as log:  # the child writes to its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "lit_align.cli", *args], stdout=log, stderr=log, env=env)


def fit_in_process(args: list[str]) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess (OMP_NUM_THREADS=1): the same kernels, bitwise
    try:
        cli_main(args)
    finally:
        torch.set_num_threads(threads)


def metric_rows(root: Path, from_step: int) -> list[dict[str, str]]:
    """The rows of the newest CSV log under `root` (a re-run logs into a new version) from step `from_step` on."""
    newest = max((root / "csv").glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    with open(newest / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in row.items() if v != ""} for row in rows if int(row["step"]) >= from_step]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("recipe", list(CASES))
def test_killed_fit_resumes_exactly(recipe, suite, tmp_path, caplog):
    _, _, max_steps, _, stall, saved = CASES[recipe]
    baseline, run = tmp_path / "baseline", tmp_path / "run"
    args = command(recipe, suite, run)
    last = run / "checkpoints" / "last.ckpt"

    process = start_stalling(args, stall, run)
    try:
        fit_in_process(command(recipe, suite, baseline))  # the uninterrupted run, meanwhile
    finally:
        kill_when_marked(process, Path(f"{run}.stalled"), Path(f"{run}.log"))
    killed = load(last)
    assert killed["global_step"] == saved, f"the kill should land after the periodic checkpoint of step {saved}"
    position = killed["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert 0 < position["batches"] and (position["batches"] < position["total"]) == (recipe != "dpo")

    with caplog.at_level("INFO"):
        fit_in_process(args)  # the very same command again
    assert f"resuming from {last} (step {saved}" in caplog.text

    done, expected = load(last), load(baseline / "checkpoints" / "last.ckpt")
    assert done["global_step"] == expected["global_step"] == max_steps
    assert done["state_dict"].keys() == expected["state_dict"].keys()
    for name, value in expected["state_dict"].items():
        assert torch.equal(done["state_dict"][name], value), f"{name} differs from the uninterrupted run"
    assert any(not torch.equal(v, killed["state_dict"][k]) for k, v in expected["state_dict"].items()), \
        "the steps after the checkpoint changed no weight: the comparison would prove nothing"
    resumed_rows, expected_rows = metric_rows(run, saved), metric_rows(baseline, saved)
    assert len(expected_rows) >= 2 * (max_steps - saved)  # a learning-rate row and a training row per step
    assert resumed_rows == expected_rows

    before = last.read_bytes()  # once more: the fit is finished, so nothing trains and last.ckpt stays as it is
    caplog.clear()
    with caplog.at_level("INFO"):
        fit_in_process(args)
    assert "already finished" in caplog.text and f"step {max_steps}" in caplog.text
    assert last.read_bytes() == before


def test_rng_states_travel_with_the_checkpoint():
    """Restored when the resumed training starts: the draws continue as if the run had never stopped."""
    callback, checkpoint = RunCheckpoint(), {}
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    callback.on_save_checkpoint(None, None, checkpoint)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(4), np.random.seed(4), random.seed(4)  # a fresh process draws otherwise
    callback.on_load_checkpoint(None, None, checkpoint)
    callback.on_train_start(SimpleNamespace(global_step=6), None)
    drawn = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(drawn[0], expected[0]) and np.array_equal(drawn[1], expected[1]) and drawn[2] == expected[2]


def test_a_failed_save_leaves_the_previous_checkpoint(tmp_path):
    """The file is written under another name and renamed over last.ckpt only once complete."""
    last = tmp_path / "last.ckpt"
    last.write_bytes(b"step 4")

    def save_checkpoint(path, weights_only=False):
        Path(path).write_bytes(b"step 6, half writ")
        raise OSError("disk full")

    trainer = SimpleNamespace(save_checkpoint=save_checkpoint, is_global_zero=True, global_step=6, loggers=[])
    with pytest.raises(OSError, match="disk full"):
        RunCheckpoint(dirpath=str(tmp_path))._save_checkpoint(trainer, str(last))
    assert last.read_bytes() == b"step 4"

    def save_whole(path, weights_only=False):
        Path(path).write_bytes(b"step 6")

    trainer = SimpleNamespace(save_checkpoint=save_whole, is_global_zero=True, global_step=6, loggers=[],
                              strategy=SimpleNamespace(barrier=lambda name=None: None))
    RunCheckpoint(dirpath=str(tmp_path))._save_checkpoint(trainer, str(last))
    assert last.read_bytes() == b"step 6" and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]
