"""TaskEvalCallback under `--trainer.strategy ddp --trainer.devices 2` (gloo, CPU), set up through the CLI:
rank 0 evaluates, both ranks end with the same history and log the same eval/* values."""
import json
import os
import subprocess
import sys

import pytest


def ddp_command(suite, tmp_path, callbacks: list[str]) -> list[str]:
    return [sys.executable, "-m", "lit_align.cli", "fit", "--config", "configs/sft.yaml",
           "--model.init_args.model", str(suite.model), "--data.init_args.tokenizer", str(suite.model),
           "--data.init_args.train_file", suite.file("sft.jsonl"), "--data.init_args.val_file", "null",
           "--data.init_args.batch_size", "16", "--trainer.max_epochs", "1", "--trainer.strategy", "ddp",
           "--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path),
           "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
           "--trainer.logger", "false", "--trainer.enable_checkpointing", "false",
           *callbacks]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}


def eval_callback(class_path: str, suite) -> list[str]:
    return [f"--trainer.callbacks+={class_path}", f"--trainer.callbacks.prompts_file={suite.file('val.jsonl')}",
            "--trainer.callbacks.max_new_tokens=4", "--trainer.callbacks.limit=6"]


@pytest.mark.slow
def test_ddp_ranks_agree(suite, tmp_path):
    out = tmp_path / "out"
    cmd = ddp_command(suite, tmp_path, [*eval_callback("lit_align.callbacks.TaskEvalCallback", suite),
                                        "--trainer.callbacks+=tests.callbacks.ddp_record.RecordEvalHistory",
                                        f"--trainer.callbacks.out_dir={out}"])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-4000:]
    rank0, rank1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world_size"] == 2
    assert rank0["history"] == rank1["history"] and len(rank0["history"]) == 1
    assert rank0["logged"] == rank1["logged"]
    assert {"eval/success", "eval/score", "eval/distinct_words", "eval/length"} <= set(rank0["logged"])


@pytest.mark.slow
def test_ddp_rank_zero_failure_ends_every_rank(suite, tmp_path):
    """Rank 0's evaluation raises: the run ends with an error (rank 0's message) instead of rank 1 hanging at the
    broadcast until the timeout."""
    cmd = ddp_command(suite, tmp_path, eval_callback("tests.callbacks.ddp_record.FailOnRankZero", suite))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=ENV)
    assert done.returncode != 0
    assert "evaluation broke on rank 0" in done.stderr
