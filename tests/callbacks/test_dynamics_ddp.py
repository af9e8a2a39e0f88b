"""LearningDynamicsCallback under `--trainer.strategy ddp --trainer.devices 2` (gloo, CPU), through the CLI with the
dynamics.yaml fragment: the torchmetrics sums are reduced across the ranks, so both ranks hold the same history, and
its step-0 numbers (the initial weights, before DDP training diverges from one process) equal a one-process fit's,
though each rank scored only half of the probes."""
import json
import os
import subprocess
import sys

import lightning.pytorch as pl
import pytest

from lit_align.callbacks import LearningDynamicsCallback
from tests.callbacks.test_dynamics import cli_args, persona  # noqa: F401  (the fixture)


class RecordDynamics(pl.Callback):
    """Saves each rank's LearningDynamicsCallback history at the end of fit."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_fit_end(self, trainer, pl_module):
        (callback,) = [c for c in trainer.callbacks if isinstance(c, LearningDynamicsCallback)]
        os.makedirs(self.out_dir, exist_ok=True)
        with open(os.path.join(self.out_dir, f"rank{trainer.global_rank}.json"), "w") as f:
            json.dump({"history": callback.history, "world_size": trainer.world_size}, f)


@pytest.mark.slow  # two gloo processes, as tests/callbacks/test_task_eval_ddp.py
def test_ddp_ranks_agree_with_one_process(suite, persona, tmp_path):  # noqa: F811
    from lit_align.cli import cli_main

    out = tmp_path / "out"
    args = cli_args(suite, persona, tmp_path / "ddp")
    cmd = [sys.executable, "-m", "lit_align.cli", *args, "--config", "configs/strategy/ddp.yaml",
           "--trainer.logger", "false", "--trainer.callbacks+=tests.callbacks.test_dynamics_ddp.RecordDynamics",
           f"--trainer.callbacks.out_dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == 2 and rank0["history"] == rank1["history"]
    assert [r["step"] for r in rank0["history"]] == [0, 0, 1, 1, 2, 2]

    single = cli_main([*cli_args(suite, persona, tmp_path / "one"), "--trainer.max_steps", "1",
                       "--trainer.logger", "false"])
    (callback,) = [c for c in single.trainer.callbacks if isinstance(c, LearningDynamicsCallback)]
    for ddp, one in zip([r for r in rank0["history"] if r["step"] == 0],
                        [r for r in callback.history if r["step"] == 0], strict=True):
        assert ddp["pairs"] == one["pairs"] == 6  # all probes, split 3 + 3 over the ranks
        for name in ("distinguishability", "distinguishability_norm", "loss", "accuracy", "margin"):
            assert ddp[name] == pytest.approx(one[name], rel=1e-5, abs=1e-7), name
