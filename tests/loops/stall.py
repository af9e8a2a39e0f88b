"""`python -m tests.loops.stall MODULE ARGS`: `MODULE.main(ARGS)` (a loop: lit_align.loops.rest, lit_align.loops.cream,
lit_align.dynamics.experiment) that stalls at a chosen point, to be killed there; `killed_at` runs it and kills it.

$LIT_ALIGN_TEST_STALL = "<point>:<marker file>", with <point>
    chunk/<stage>/<k>   right after chunk k of the stage's samples is committed (as if killed while sampling chunk k+1)
    step/<stage>/<s>    at the first training batch after optimizer step s of the stage's fit
    scores/<stage>/<n>  right after the n-th model's log-probs of the stage are scored and saved (CREAM's cache)
    stage/<stage>       right after the stage finished (its folder in place, summary.json written)
At that point the process writes the marker and sleeps until killed. The hooks wrap lit_align's functions from the
outside; lit_align itself has no test switch.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl

STALL = "LIT_ALIGN_TEST_STALL"


def stall(marker: str) -> None:
    Path(marker).write_text("stalled")
    time.sleep(600)


class StallAt(pl.Callback):
    def __init__(self, step: int, marker: str):
        self.step, self.marker = step, marker

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step >= self.step:
            stall(self.marker)


def install(spec: str) -> None:
    point, marker = spec.split(":", 1)
    kind, stage, *number = point.split("/")
    if kind == "chunk":
        from lit_align.loops.rundir import ChunkedJSONL

        append = ChunkedJSONL.append

        def stalling_append(self, rows):
            append(self, rows)
            if self.path.parent.name == f"{stage}.partial" and self.chunks >= int(number[0]):
                stall(marker)

        ChunkedJSONL.append = stalling_append
    elif kind == "step":
        from lit_align.loops import trainer

        build = trainer.build_trainer

        def stalling_build(folder, **kwargs):
            if Path(folder).name == f"{stage}.partial":
                kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), StallAt(int(number[0]), marker)]
            return build(folder, **kwargs)

        trainer.build_trainer = stalling_build
    elif kind == "scores":
        from lit_align.loops.logprob_cache import LogprobCache

        scores, calls = LogprobCache.scores, []

        def stalling_scores(self, *args, **kwargs):
            out = scores(self, *args, **kwargs)
            if (self.folder.parent / f"{stage}.partial").is_dir():
                calls.append(1)
                if len(calls) >= int(number[0]):
                    stall(marker)
            return out

        LogprobCache.scores = stalling_scores
    elif kind == "stage":
        from lit_align.loops.rest import Rest

        run_stage = Rest.stage

        def stalling_stage(self, s):
            manifest = run_stage(self, s)
            if s.name == stage:
                stall(marker)
            return manifest

        Rest.stage = stalling_stage
    else:
        raise ValueError(f"unknown stall point {point!r}")


def killed_at(point: str, args: list[str], root: Path, module: str = "lit_align.loops.rest") -> None:
    """Run `module.main(args)` in a subprocess stalled at `point` and SIGKILL it there."""
    from tests.killing import kill_when_marked

    marker, log = root.with_suffix(".stalled"), root.with_suffix(".log")
    marker.unlink(missing_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd(), STALL: f"{point}:{marker}"}
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "tests.loops.stall", module, *args], stdout=out, stderr=out,
                                   env=env)
    kill_when_marked(process, marker, log)


if __name__ == "__main__":
    install(os.environ[STALL])
    importlib.import_module(sys.argv[1]).main(sys.argv[2:])
