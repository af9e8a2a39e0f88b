"""The demo trains what the packaged recipe configs say (issue 9: its settings had drifted from configs/*.yaml).

For every stage, the module and data module the demo builds carry the config's arguments, except the paths
(moved into the demo's folders) and the seed; its trainer runs the config's schedule. Its stages are lit_align.loops
stages (RunDir, build_trainer/fit, read_metrics). No training here: the stage functions and the fit are fakes.
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


def fake_evaluation(model):
    return {split: {"success": len(model) / 10, "split": split} for split in ("test", "transfer")}


def test_stages_go_through_the_run_dir(folders, monkeypatch):
    """Every stage is a RunDir stage keyed by the suite and the settings: a finished one is skipped, one whose key
    changed is redone along with the stages made from it, and an evaluation is read back from its done.json."""
    suite, root = folders
    for name in ("sft", "reward"):
        (root / name).unlink()  # the demo trains them here
    trained, evaluated = [], []

    def train(s, out):
        trained.append(s.recipe)
        assert out == root / f"{s.recipe}.partial"
        (out / "model.txt").write_text(s.recipe)
        return {"metrics": {"loss": 1.5}, "fit": s.fit}

    def evaluate(suite_, root_, model, limit):
        evaluated.append(model)
        return fake_evaluation(model)

    monkeypatch.setattr(demo, "train", train)
    monkeypatch.setattr(demo, "evaluate", evaluate)
    results = demo.run_seed(suite, root, 3, ["dpo"], limit=4)
    assert trained == ["sft", "reward", "dpo"] and evaluated == ["sft", "dpo"]
    assert results == {m: fake_evaluation(m) for m in ("sft", "dpo")}
    done = json.loads((root / "dpo" / "done.json").read_text())
    assert done["kind"] == "train" and done["metrics"]["loss"] == 1.5 and "seconds" in done["metrics"]
    assert (root / "dpo" / "model.txt").read_text() == "dpo" and not (root / "dpo.partial").exists()

    trained.clear()
    evaluated.clear()
    assert demo.run_seed(suite, root, 3, ["dpo"], limit=4) == results
    assert trained == [] and evaluated == []  # all finished: nothing is called again

    read_config = demo.read_config

    def other_reward_settings(recipe):
        config = read_config(recipe)
        if recipe == "reward":
            config["trainer"]["max_epochs"] = config["trainer"].get("max_epochs", 1) + 1
        return config

    monkeypatch.setattr(demo, "read_config", other_reward_settings)
    demo.run_seed(suite, root, 3, ["dpo"], limit=4)
    # the reward model is redone; DPO starts from SFT only; every evaluation scores with the reward model
    assert trained == ["reward"] and evaluated == ["sft", "dpo"]

    trained.clear()
    evaluated.clear()
    demo.run_seed(suite, root, 3, ["dpo"], limit=5)
    assert trained == [] and evaluated == ["sft", "dpo"]


def test_train_builds_the_loops_trainer(folders, monkeypatch):
    """The demo's fit is lit_align.loops' (build_trainer + fit, resumable), with the config's schedule on CPU; the
    checkpoints go once the model is exported. No training: the Trainer and the fit are fakes."""
    from lit_align.loops import trainer as loops_trainer

    suite, root = folders
    s = demo.spec("dpo", suite, root, seed=3)
    out = root / "dpo.partial"
    out.mkdir()
    built, exported = [], []

    class Module:
        def export(self, path, tokenizer):
            exported.append((path, tokenizer))

    class Data:
        tokenizer = "the tokenizer"

    def build_trainer(folder, **settings):
        built.append((folder, settings))
        return "trainer"

    def fit(trainer, module, data):
        (out / "checkpoints").mkdir()
        (out / "checkpoints" / "last.ckpt").write_text("weights")
        return {"steps": 7, "resumed_from": 5, "metrics": {"loss": 0.25}}

    monkeypatch.setattr(demo, "build", lambda spec: (Module(), Data()))
    monkeypatch.setattr(loops_trainer, "build_trainer", build_trainer)
    monkeypatch.setattr(loops_trainer, "fit", fit)
    info = demo.train(s, out)
    assert built == [(out, {"accelerator": "cpu", **s.fit})]
    assert exported == [(str(out), "the tokenizer")] and not (out / "checkpoints").exists()
    assert info == {"metrics": {"loss": 0.25}, "steps": 7, "resumed_from_step": 5, "fit": s.fit}


def test_curves_join_a_resumed_fit(tmp_path):
    """The plots read every logs/version_N of a stage: a resumed fit's rows replace the steps it redid."""
    versions = ["step,loss\n0,4.0\n10,3.0\n20,2.5\n", "step,loss,lr\n10,3.0,\n20,2.0,\n30,1.0,0.1\n"]
    for version, rows in enumerate(versions):
        (tmp_path / "logs" / f"version_{version}").mkdir(parents=True)
        (tmp_path / "logs" / f"version_{version}" / "metrics.csv").write_text(rows)
    assert demo.read_curve(tmp_path, "loss") == [(0, 4.0), (10, 3.0), (20, 2.0), (30, 1.0)]
    assert demo.read_curve(tmp_path, "lr") == [(30, 0.1)]
    assert demo.read_curve(tmp_path / "missing", "loss") == []


def test_relocate_refuses_paths_outside_artifacts(tmp_path):
    assert demo.relocate("artifacts/suite/data/sft.jsonl", tmp_path / "s", tmp_path / "r") == str(
        tmp_path / "s" / "data" / "sft.jsonl")
    assert demo.relocate("artifacts/sft", tmp_path / "s", tmp_path / "r") == str(tmp_path / "r" / "sft")
    with pytest.raises(ValueError, match="runs/sft"):
        demo.relocate("runs/sft", tmp_path / "s", tmp_path / "r")
