"""Every shipped config runs for a few steps through `lit-align fit`, on the test suite's tiny model and data."""
from pathlib import Path

import pytest
import yaml

from lit_align.cli import cli_main, main

# The `lit-align fit` configs (a loop's config, e.g. rest.yaml, opens with its own command: tests/loops)
CONFIGS = sorted(str(p) for p in Path("configs").glob("*.yaml") if p.read_text().startswith("# lit-align fit "))
ONLINE = {"PPOModule", "RLOOModule", "GRPOModule", "RLGAFModule", "RLGAFRLOOModule", "CORGIRLOOModule",
          "CORGIPPOModule"}


def overrides(config: str, suite, root) -> list[str]:
    """Point a config's artifacts/ paths at the test suite (tiny model, small data)."""
    cfg = yaml.safe_load(open(config))
    args = ["--trainer.max_steps", "2", "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar",
            "false", "--trainer.enable_model_summary", "false", "--model.init_args.model", str(suite.model),
            "--data.init_args.tokenizer", str(suite.model), "--data.init_args.batch_size", "4"]
    for section in ("data", "model"):
        for key, value in cfg[section]["init_args"].items():
            if key.endswith("_file") and value:
                args += [f"--{section}.init_args.{key}", suite.file(Path(value).name)]
    for callback in cfg["trainer"].get("callbacks", []):  # the task evaluation of the online recipes
        if "prompts_file" in callback.get("init_args", {}):
            args += [f"--trainer.callbacks.prompts_file={suite.file('val.jsonl')}"]
    if cfg["model"]["class_path"].split(".")[-1] in ONLINE:  # a few short rollouts
        args += ["--model.init_args.max_new_tokens", "6", "--trainer.max_steps", "4"]
    return args


def test_every_recipe_has_a_config():
    names = {Path(c).stem for c in CONFIGS}
    assert {"sft", "reward", "discriminator", "dpo", "ppo", "rloo", "grpo", "rlgaf", "corgi", "dynamics"} <= names
    for config in CONFIGS:
        first = open(config).readline()
        assert first.startswith(f"# lit-align fit --config configs/{Path(config).name}"), config


@pytest.mark.parametrize("config", CONFIGS)
def test_config_fits(config, suite, tmp_path):
    cli_main(["fit", "--config", config, *overrides(config, suite, tmp_path)])
    checkpoints = list(tmp_path.rglob("last.ckpt"))
    assert checkpoints, "ModelCheckpoint(save_last=True) wrote no checkpoint"
    assert list(tmp_path.rglob("metrics.csv")), "the CSV logger wrote nothing"
    assert list(tmp_path.rglob("events.out.tfevents.*")), "the TensorBoard logger wrote nothing"
    main(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "export")])
    assert (tmp_path / "export" / "config.json").exists() or (tmp_path / "export" / "member_0").exists()


def test_print_config_and_strategy_fragment(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", "configs/dpo.yaml", "--config", "configs/strategy/ddp.yaml", "--print_config"])
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["strategy"] == "ddp" and printed["trainer"]["devices"] == 2
    assert printed["model"]["class_path"] == "lit_align.modules.DPOModule"


def test_unknown_config_key_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(open("configs/dpo.yaml").read().replace("beta: 0.5", "betta: 0.5"))
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "--config", str(bad)])
    assert exit_info.value.code != 0
    assert "betta" in capsys.readouterr().err


def test_checkpoint_section_configures_the_run_checkpoint(suite, tmp_path):
    """`checkpoint:` is the run's checkpoint (<default_root_dir>/checkpoints); turning checkpointing off drops it, and
    a ModelCheckpoint of one's own in trainer.callbacks replaces it."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lit_align.callbacks import RunCheckpoint

    args = ["--config", "configs/dpo.yaml", *overrides("configs/dpo.yaml", suite, tmp_path)]  # run=False: no "fit"
    trainer = cli_main([*args, "--checkpoint.every_n_train_steps", "5", "--checkpoint.train_time_interval", "null"],
                       run=False).trainer
    (callback,) = trainer.checkpoint_callbacks
    assert isinstance(callback, RunCheckpoint) and callback._every_n_train_steps == 5
    assert callback.last_path(trainer) == str((tmp_path / "checkpoints" / "last.ckpt").resolve())
    assert cli_main([*args, "--trainer.enable_checkpointing", "false"], run=False).trainer.checkpoint_callbacks == []
    own = cli_main([*args, "--trainer.callbacks+=ModelCheckpoint", "--trainer.callbacks.save_top_k=-1"],
                   run=False).trainer.checkpoint_callbacks
    assert [type(c) for c in own] == [ModelCheckpoint] and own[0].save_top_k == -1
