"""Checkpoints of LoRA fits hold the adapters only, not the frozen base (AlignModule.on_save_checkpoint): a killed
LoRA DPO fit still resumes bitwise, `lit-align export` rebuilds the base from the model path and merges the trained
adapters (plain transformers gives the trained module's logits), and a checkpoint loaded against another base
model, or lacking a trained entry, is refused with a UserError."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from lit_align.cli import cli_main
from lit_align.errors import UserError
from lit_align.export import export_checkpoint, load_module
from lit_align.modules.base import FROZEN_BASE
from lit_align.tasks.tiny_model import build_tiny_model
from tests.killing import kill_when_marked
from tests.test_cli import overrides
from tests.test_resume import CASES, command, fit_in_process, load, start_stalling

LORA = ["--model.init_args.lora", json.dumps({"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]})]


def assert_adapters_only(path: Path, suite) -> dict:
    """The checkpoint at `path` holds LoRA weights and no frozen base weight, in far fewer bytes than the base."""
    state = load(path)
    trained = (".lora_", ".modules_to_save.")  # the adapters, and a head trained whole (SEQ_CLS's score)
    assert state["state_dict"] and all(any(t in k for t in trained) for k in state["state_dict"]), state["state_dict"]
    assert state[FROZEN_BASE]["keys"] > 0 and state[FROZEN_BASE]["model"] == str(suite.model)
    assert path.stat().st_size * 3 < (suite.model / "model.safetensors").stat().st_size
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"], "one file per run, no top-k copy"
    return state


def test_killed_lora_dpo_fit_resumes_exactly(suite, tmp_path, caplog):
    _, _, max_steps, _, stall, saved = CASES["dpo"]
    baseline, run = tmp_path / "baseline", tmp_path / "run"
    args = command("dpo", suite, run) + LORA
    last = run / "checkpoints" / "last.ckpt"
    process = start_stalling(args, stall, run)
    try:
        fit_in_process(command("dpo", suite, baseline) + LORA)  # the uninterrupted run, meanwhile
    finally:
        kill_when_marked(process, Path(f"{run}.stalled"), Path(f"{run}.log"))
    killed = assert_adapters_only(last, suite)
    assert killed["global_step"] == saved

    with caplog.at_level("INFO"):
        fit_in_process(args)  # resumes: the base from the model path, the adapters and optimizer from last.ckpt
    assert f"resuming from {last} (step {saved}" in caplog.text
    done, expected = assert_adapters_only(last, suite), load(baseline / "checkpoints" / "last.ckpt")
    assert done["global_step"] == expected["global_step"] == max_steps
    assert done["state_dict"].keys() == expected["state_dict"].keys()
    for name, value in expected["state_dict"].items():
        assert torch.equal(done["state_dict"][name], value), f"{name} differs from the uninterrupted run"
    assert any(not torch.equal(v, killed["state_dict"][k]) for k, v in expected["state_dict"].items())


def lora_fit(config: str, suite, root: Path, *extra: str):
    """A 3-step LoRA fit of `config` in `root`: the trained module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cli = cli_main(["fit", "--config", config, *overrides(config, suite, root), "--trainer.max_steps", "3",
                        "--trainer.logger", "false", *LORA, *extra])
    finally:
        torch.set_num_threads(threads)
    return cli.model


@pytest.fixture(scope="module")
def sft_run(suite, tmp_path_factory):
    """A LoRA SFT fit: (its run folder, the trained module)."""
    root = tmp_path_factory.mktemp("lora_sft")
    return root, lora_fit("configs/sft.yaml", suite, root)


def test_lora_reward_checkpoint_reloads_in_another_process(suite, tmp_path):
    """SEQ_CLS: the fresh score head trains whole (saved), its frozen original (random, drawn from the process's
    seed) is neither saved nor digested, so a process with another seed loads the checkpoint and scores alike."""
    module = lora_fit("configs/reward.yaml", suite, tmp_path, "--model.init_args.lora.task_type", "SEQ_CLS")
    assert_adapters_only(tmp_path / "checkpoints" / "last.ckpt", suite)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)  # load_sequence_classifier draws the fresh head from torch.initial_seed()
        loaded = load_module(str(tmp_path))
    batch = {"input_ids": torch.tensor([[1, 5, 9, 14, 3, 7], [1, 8, 4, 2, 0, 0]]),
             "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])}
    with torch.no_grad():
        expected, got = module.eval().member_scores(batch), loaded.eval().member_scores(batch)  # (1, 2)
    assert torch.equal(got, expected)

    export_checkpoint(str(tmp_path), str(tmp_path / "out"))  # LoRA merged: plain transformers scores alike
    exported = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        scores = exported(**batch).logits[:, 0]  # (2,) the last non-padding token's score, as sequence_scalar
    torch.testing.assert_close(scores, expected[0], rtol=0, atol=1e-5)


def test_lora_online_fit_resumes_from_its_checkpoint(suite, tmp_path, caplog):
    """An online recipe (RLOO) restores its frozen base on load too (OnlineRLModule.on_load_checkpoint)."""
    lora_fit("configs/rloo.yaml", suite, tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert_adapters_only(last, suite)
    with caplog.at_level("INFO"):
        lora_fit("configs/rloo.yaml", suite, tmp_path, "--trainer.max_steps", "4")  # resumes at step 3, 1 more
    assert f"resuming from {last} (step 3" in caplog.text
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 4


def test_lora_sft_export_gives_the_trained_logits(suite, sft_run, tmp_path):
    root, module = sft_run
    assert_adapters_only(root / "checkpoints" / "last.ckpt", suite)
    export_checkpoint(str(root), str(tmp_path / "out"))
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    base = AutoModelForCausalLM.from_pretrained(suite.model).eval()
    input_ids = torch.tensor([[1, 5, 9, 14, 3, 7, 2, 11]])
    with torch.no_grad():
        trained = module.model.eval()(input_ids=input_ids).logits  # (1, T, V)
        got, untrained = exported(input_ids=input_ids).logits, base(input_ids=input_ids).logits
    torch.testing.assert_close(got, trained, rtol=0, atol=1e-5)
    assert (untrained - trained).abs().max() > 1e-3, "the adapters must have moved the logits"


def test_lora_checkpoint_against_another_base_is_refused(suite, sft_run, tmp_path):
    root, _ = sft_run
    other = tmp_path / "other"
    build_tiny_model(other, suite.root / "tokenizer", seed=1, hidden_size=32, num_layers=1, num_heads=2,
                     intermediate_size=64)
    state = load(root / "checkpoints" / "last.ckpt")
    state["hyper_parameters"]["model"] = str(other)
    moved = tmp_path / "moved.ckpt"
    torch.save(state, moved)
    with pytest.raises(UserError, match=rf"{moved}: .*base model '{suite.model}'.*the base model here, '{other}'"):
        load_module(str(moved))

    run = tmp_path / "run"  # the same run resumed by `lit-align fit` with another model
    shutil.copytree(root / "checkpoints", run / "checkpoints")
    args = ["fit", "--config", "configs/sft.yaml", *overrides("configs/sft.yaml", suite, run), "--trainer.max_steps",
            "4", "--trainer.logger", "false", "--model.init_args.model", str(other), *LORA]
    with pytest.raises(UserError, match=rf"last.ckpt: .*base model '{suite.model}'.*the base model here, '{other}'"):
        fit_in_process(args)

    state = load(root / "checkpoints" / "last.ckpt")
    lost = next(iter(state["state_dict"]))
    del state["state_dict"][lost]
    torch.save(state, moved)
    with pytest.raises(UserError, match="lacks 1 entries that are not frozen base weights"):
        load_module(str(moved))
