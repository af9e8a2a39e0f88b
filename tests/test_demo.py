"""The demo trains what the packaged recipe configs say (issue 9: its settings had drifted from configs/*.yaml).

For every stage, the module and data module the demo builds carry the config's arguments, except the paths
(moved into the demo's folders) and the seed; its trainer runs the config's schedule. No training here.
"""
import json

import pytest
import yaml

from lit_align import demo
from lit_align.config_files import ROOT

STAGES = ["sft", "reward", *demo.RECIPES]


@pytest.fixture
def folders(suite, tmp_path):
    """(suite folder, seed folder) as the demo lays them out, the SFT and reward models being the suite's model."""
    root = tmp_path / "seed3"
    root.mkdir()
    for name in ("sft", "reward"):
        (root / name).symlink_to(suite.model, target_is_directory=True)
    return suite.root, root


@pytest.mark.parametrize("recipe", STAGES)
def test_demo_builds_the_config(recipe, folders):
    suite, root = folders
    config = demo.read_config(recipe)
    assert config == yaml.safe_load((ROOT / f"{recipe}.yaml").read_text())
    s = demo.spec(recipe, suite, root, seed=3)
    module, data = demo.build(s)

    assert type(module).__name__ == config["model"]["class_path"].split(".")[-1]
    for name, value in config["model"]["init_args"].items():
        if name in demo.PATH_ARGS["model"]:
            assert module.hparams[name] == demo.relocate(value, suite, root)
        else:
            assert json.loads(json.dumps(module.hparams[name])) == value, name
    if recipe in demo.ONLINE:
        assert module.hparams.seed == 3

    data_args = config["data"]["init_args"]
    assert type(data).__name__ == config["data"]["class_path"].split(".")[-1]
    assert (data.batch_size, data.max_length, data.seed) == (data_args["batch_size"], data_args["max_length"], 3)
    assert data.files["train"] == str(suite / "data" / data_args["train_file"].split("/")[-1])
    if "packing" in data_args:
        assert data.packing == data_args["packing"]

    trainer = config["trainer"]
    assert s.fit == {k: trainer[k] for k in demo.FIT_KEYS if k in trainer}
    assert "max_epochs" in s.fit or "max_steps" in s.fit


def test_stage_keys_follow_the_suite_and_the_settings(suite, tmp_path, monkeypatch):
    """A stage made from another suite (or other settings) is redone; the same one is skipped."""
    calls = []

    def make(out):
        calls.append(out)
        (out / "model.txt").write_text("trained")

    folder = tmp_path / "sft"
    demo.stage(folder, "key-a", make)
    demo.stage(folder, "key-a", make)
    assert len(calls) == 1 and (folder / "model.txt").exists()
    demo.stage(folder, "key-b", make)
    assert len(calls) == 2
    (folder / "done.json").write_text(json.dumps({"seconds": 1.0}))  # an old demo's stage: no key
    demo.stage(folder, "key-b", make)
    assert len(calls) == 3 and json.loads((folder / "done.json").read_text())["key"] == "key-b"


def test_relocate_refuses_paths_outside_artifacts(tmp_path):
    assert demo.relocate("artifacts/suite/data/sft.jsonl", tmp_path / "s", tmp_path / "r") == str(
        tmp_path / "s" / "data" / "sft.jsonl")
    assert demo.relocate("artifacts/sft", tmp_path / "s", tmp_path / "r") == str(tmp_path / "r" / "sft")
    with pytest.raises(ValueError, match="runs/sft"):
        demo.relocate("runs/sft", tmp_path / "s", tmp_path / "r")
