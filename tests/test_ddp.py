"""`--trainer.strategy ddp --trainer.devices 2 --trainer.accelerator cpu` (gloo) trains DPO correctly: both
ranks end with identical weights, and the run matches one process fed the same global batch."""
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM


def run_fit(config, suite, out, *extra):
    """`lit-align fit` in a subprocess on the test suite's model, quiet, recording each rank (tests/replica.py).

    `extra` goes before RecordReplica is appended: a bare `--trainer.callbacks.<arg>` in it sets an argument of
    the config's last callback (or of one that `extra` appends)."""
    cmd = [sys.executable, "-m", "lit_align.cli", "fit", "--config", config,
           "--model.init_args.model", str(suite.model), "--data.init_args.tokenizer", str(suite.model),
           "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
           "--trainer.enable_model_summary", "false", "--trainer.logger", "false",
           "--trainer.enable_checkpointing", "false", *extra,
           "--trainer.callbacks+=tests.replica.RecordReplica", f"--trainer.callbacks.out_dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def fit(suite, out, *extra):
    return run_fit("configs/dpo.yaml", suite, out, "--data.init_args.train_file", suite.file("preference.jsonl"),
            "--data.init_args.shuffle", "false", "--model.init_args.warmup_ratio", "0.0",
            "--model.init_args.lr", "3e-3", "--trainer.max_steps", "3", *extra)


def test_ddp_two_cpu_processes_match_one(suite, tmp_path):
    ddp = fit(suite, tmp_path / "ddp", "--trainer.strategy", "ddp", "--trainer.devices", "2",
              "--trainer.accelerator", "cpu", "--data.init_args.batch_size", "4")
    # Lightning's warnings about the frozen reference (eval mode) and the absent validation set are expected: silenced
    for expected in ("in eval mode at the start of training", "across ranks is zero"):
        assert expected not in ddp.stderr
    fit(suite, tmp_path / "single", "--trainer.devices", "1", "--trainer.accelerator", "cpu",
        "--data.init_args.batch_size", "8")
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    single = torch.load(tmp_path / "single" / "rank0.pt")
    assert rank0["world_size"] == 2 and single["world_size"] == 1
    assert torch.equal(rank0["weights"], rank1["weights"]), "DDP ranks diverged"
    initial = AutoModelForCausalLM.from_pretrained(suite.model)
    start = torch.cat([p.detach().flatten().double() for p in initial.parameters()])
    assert (rank0["weights"] - start).abs().max() > 1e-4, "training did not change the weights"
    # The global batch is the same 8 pairs: the mean of the two ranks' losses is the single-process loss.
    ddp_losses = [(a + b) / 2 for a, b in zip(rank0["losses"], rank1["losses"], strict=True)]
    assert len(ddp_losses) == len(single["losses"]) == 3
    torch.testing.assert_close(torch.tensor(ddp_losses), torch.tensor(single["losses"]), atol=1e-5, rtol=1e-4)
    # AdamW divides by sqrt(v): rounding-level gradient differences move a few weights by ~1e-5, far below
    # one learning-rate-sized step (3e-3) that a wrong gradient would produce.
    torch.testing.assert_close(rank0["weights"], single["weights"], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("recipe", ["rloo", "rlgaf"])
def test_online_recipe_on_two_processes(recipe, suite, tmp_path):
    """RLOO and RLGAF under DDP: each rank samples its own prompts (own seed), and the all-reduced update leaves both
    ranks with identical policies after every step; RLGAF's discriminator (all-reduced by hand) stays identical too."""
    out = tmp_path / recipe
    extra = [f"--model.init_args.expert_file={suite.file('expert.jsonl')}", "--model.init_args.disc_warmup_steps=2",
             "--model.init_args.disc_batch_size=4", "--trainer.callbacks+=tests.replica.RecordDiscriminator",
             f"--trainer.callbacks.out_dir={out}"] if recipe == "rlgaf" else []
    run_fit(f"configs/{recipe}.yaml", suite, out, "--data.init_args.train_file", suite.file("prompts.jsonl"),
            "--data.init_args.batch_size", "2", f"--trainer.callbacks.prompts_file={suite.file('val.jsonl')}",
            "--trainer.callbacks.limit=4", "--model.init_args.max_new_tokens", "6", "--model.init_args.lr", "3e-3",
            "--trainer.max_steps", "2", "--trainer.strategy", "ddp", "--trainer.devices", "2",
            "--trainer.accelerator", "cpu", *extra)  # the callbacks' arguments: see run_fit
    rank0, rank1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert rank0["world_size"] == 2
    assert torch.equal(rank0["weights"], rank1["weights"]), "DDP ranks diverged"
    initial = AutoModelForCausalLM.from_pretrained(suite.model)
    start = torch.cat([p.detach().flatten().double() for p in initial.parameters()])
    assert (rank0["weights"] - start).abs().max() > 1e-4, "training did not change the weights"
    steps = len(rank0["ids"])
    assert steps >= 1 and all(set(a).isdisjoint(b) for a, b in zip(rank0["ids"], rank1["ids"], strict=True)), \
        "the ranks should sample different prompts"
    assert rank0["losses"] != rank1["losses"], "each rank's rollout is its own"
    if recipe == "rlgaf":
        d0, d1 = (torch.load(out / f"disc{r}.pt") for r in (0, 1))
        assert d0["steps"] == d1["steps"] >= 2, "the discriminator should have trained (warm-up at least)"
        assert torch.equal(d0["weights"], d1["weights"]), "the discriminators diverged between ranks"
