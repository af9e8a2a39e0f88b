"""LearningDynamicsCallback on short DPO fits of the suite's tiny model on Persona-shaped rows: the per-group
numbers against a direct computation, training bitwise unchanged by the probes, history through a resume, the
PNG, and the refusals of bad probe files and non-DPO modules."""
from __future__ import annotations

import math

import pytest
import torch

from lit_align.callbacks import LearningDynamicsCallback
from lit_align.callbacks.dynamics import NAMES


@pytest.fixture
def persona(tmp_path):
    from lit_align.files import write_jsonl
    from lit_align.tasks.persona import persona_rows

    train, probe = tmp_path / "persona.jsonl", tmp_path / "probe.jsonl"
    write_jsonl(train, persona_rows(8, seed=0, markers=(6, 1)))  # 16 pairs: 2 steps at batch size 8
    write_jsonl(probe, persona_rows(6, seed=0, split="probe", markers=(6, 1)))
    return train, probe


def fit(suite, train_file, callbacks, tmp_path, max_steps: int = 2, ckpt_path=None, checkpoint_dir=None):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from lit_align.data.datamodule import PreferenceDataModule
    from lit_align.modules.dpo import DPOModule

    pl.seed_everything(0, verbose=False)
    data = PreferenceDataModule(str(train_file), str(suite.model), batch_size=8, max_length=64)
    module = DPOModule(str(suite.model), beta=0.5, lr=5e-3, warmup_ratio=0.0)
    if checkpoint_dir is not None:
        callbacks = [*callbacks, ModelCheckpoint(dirpath=checkpoint_dir, save_last=True, save_top_k=0)]
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path, name="csv"),
                         callbacks=callbacks, enable_checkpointing=checkpoint_dir is not None,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, module


def direct(module, data_tokenizer, probe_file, group):
    """The numbers of one group at the module's current weights, computed here without the callback."""
    from lit_align.data.collate import PreferenceCollator
    from lit_align.data.jsonl import read_rows
    from lit_align.data.tokenize import RowEncoder
    from lit_align.models.causal_lm import final_hidden_states, sequence_logprobs

    rows = [r for r in read_rows(str(probe_file), "preference") if r["group"] == group]
    examples, _ = RowEncoder(data_tokenizer, max_length=64).preference(rows)
    batch = PreferenceCollator(data_tokenizer.pad_token_id)(examples)
    b = len(rows)
    with torch.no_grad():
        module.model.eval()
        policy = sequence_logprobs(module.model, batch)  # (2B,)
        ref = module.reference.scores(module.model, batch)
        hidden = final_hidden_states(module.model, batch)  # (2B, T, H)
    # the answers " Yes" / " No" part after their shared first token: h at that token, one position per pair
    ids = batch["input_ids"]
    position = [int((ids[i] != ids[b + i]).nonzero()[0]) - 1 for i in range(b)]
    h = torch.stack([hidden[i, position[i]] for i in range(b)]).double()  # (B, H)
    label = torch.tensor([bool(r["label"]) for r in rows])
    plus, minus = h[label], h[~label]
    d = (plus.mean(0) - minus.mean(0)).norm()
    spread = ((plus - plus.mean(0)).pow(2).sum() + (minus - minus.mean(0)).pow(2).sum()) / b
    margin = 0.5 * ((policy[:b] - ref[:b]) - (policy[b:] - ref[b:]))
    return {"distinguishability": float(d), "distinguishability_norm": float(d / spread.sqrt()),
            "accuracy": float((policy[:b] > policy[b:]).double().mean()), "margin": float(margin.mean()),
            "loss": float(-torch.nn.functional.logsigmoid(margin).mean())}


def test_numbers_match_a_direct_computation(suite, persona, tmp_path):
    callback = LearningDynamicsCallback(str(persona[1]), every_n_steps=1, batch_size=4)
    trainer, module = fit(suite, persona[0], [callback], tmp_path)
    assert [r["step"] for r in callback.history] == [0, 0, 1, 1, 2, 2]
    assert callback.groups == ["b0_m6", "b1_m1"]
    for group in callback.groups:
        row = [r for r in callback.history if r["group"] == group and r["step"] == 2][0]
        want = direct(module, trainer.datamodule.tokenizer, persona[1], group)
        for name, value in want.items():
            assert row[name] == pytest.approx(value, rel=1e-4, abs=1e-6), (group, name)
        assert row["pairs"] == 6 and row["grad_norm"] > 0
        assert all(math.isfinite(row[k]) for k in NAMES)
    first = {r["group"]: r for r in callback.history if r["step"] == 0}
    assert first["b0_m6"]["distinguishability"] > first["b1_m1"]["distinguishability"] > 0  # 6 vs 1 marker words
    assert first["b0_m6"]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # the policy is its reference at step 0
    assert (tmp_path / "dynamics.png").stat().st_size > 10_000
    trainer.loggers[0].save()
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "dynamics/b1_m1/grad_norm" in header and "dynamics/b0_m6/accuracy" in header


def test_grad_norm_is_the_norm_of_the_group_gradient(suite, persona, tmp_path):
    """Batches of 4 over 6 pairs (4 + 2) give the norm of the 6-pair mean loss's gradient."""
    callback = LearningDynamicsCallback(str(persona[1]), every_n_steps=5, batch_size=4, plot=None)
    trainer, module = fit(suite, persona[0], [callback], tmp_path, max_steps=1)
    from lit_align.data.collate import PreferenceCollator

    examples = callback._tokenised(trainer, module)[1]
    batch = PreferenceCollator(trainer.datamodule.pad_token_id)(examples)
    params = list(module.model.parameters())
    for i, p in enumerate(params):  # gradients a training step might be accumulating: the probes leave them be
        p.grad = torch.full_like(p, float(i + 1))
    module.model.train()
    again = callback.measure(trainer, module)
    assert all(torch.equal(p.grad, torch.full_like(p, float(i + 1))) for i, p in enumerate(params))
    assert module.model.training and again["grad_norm"][1] == pytest.approx(callback.history[-1]["grad_norm"])
    module.model.zero_grad(set_to_none=True)
    module.model.eval()
    loss = callback._score(module, 1, batch).mean()
    loss.backward()
    norm = torch.stack([p.grad.pow(2).sum() for p in module.model.parameters() if p.grad is not None]).sum().sqrt()
    last = [r for r in callback.history if r["group"] == "b1_m1"][-1]
    assert last["step"] == 1 and last["grad_norm"] == pytest.approx(float(norm), rel=1e-4)
    assert not (tmp_path / "dynamics.png").exists()


def test_training_is_bitwise_unchanged(suite, persona, tmp_path):
    _, plain = fit(suite, persona[0], [], tmp_path / "plain", max_steps=3)
    callback = LearningDynamicsCallback(str(persona[1]), every_n_steps=1, plot=None)
    _, probed = fit(suite, persona[0], [callback], tmp_path / "probed", max_steps=3)
    assert len(callback.history) == 8  # steps 0..3, 2 groups
    a, b = plain.model.state_dict(), probed.model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    moved = [k for k in a if not torch.equal(a[k], probed.reference.model.state_dict()[k])]
    assert moved  # the weights did train (the equality above is not that of two untrained models)


def test_history_survives_resume(suite, persona, tmp_path):
    first = LearningDynamicsCallback(str(persona[1]), every_n_steps=2, plot=None)
    fit(suite, persona[0], [first], tmp_path, max_steps=2, checkpoint_dir=tmp_path / "ckpt")
    resumed = LearningDynamicsCallback(str(persona[1]), every_n_steps=2, plot=None)
    fit(suite, persona[0], [resumed], tmp_path, max_steps=4, ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert [r["step"] for r in first.history] == [0, 0, 2, 2]
    assert resumed.history[:4] == first.history
    assert [r["step"] for r in resumed.history] == [0, 0, 2, 2, 4, 4]
    other = LearningDynamicsCallback(str(persona[0]), every_n_steps=2)
    assert other.state_key != first.state_key


def test_bad_probe_file_names_line_and_field(tmp_path):
    from lit_align.files import write_jsonl

    path = tmp_path / "probe.jsonl"
    write_jsonl(path, [{"prompt": "I think", "chosen": " Yes", "rejected": " No", "group": "a", "label": 1},
                       {"prompt": "I think", "chosen": " No", "rejected": " Yes", "label": 0}])
    with pytest.raises(ValueError, match=r"probe.jsonl: line 2: field 'group' is missing"):
        LearningDynamicsCallback(str(path)).read_probes()
    with pytest.raises(ValueError, match="every_n_steps"):
        LearningDynamicsCallback(str(path), every_n_steps=0)


def test_refuses_a_module_without_preference_pairs(suite, persona):
    from types import SimpleNamespace

    from lit_align.modules.sft import SFTModule

    trainer = SimpleNamespace(strategy=None)
    with pytest.raises(ValueError, match="DPO-family module"):
        LearningDynamicsCallback(str(persona[1])).setup(trainer, SFTModule(str(suite.model)), "fit")


def cli_args(suite, persona, root) -> list[str]:
    """configs/dynamics.yaml on the tiny model and the Persona rows (their group and label columns), 2 steps."""
    return ["fit", "--config", "configs/dynamics.yaml",
            "--model.init_args.model", str(suite.model), "--data.init_args.tokenizer", str(suite.model),
            "--data.init_args.train_file", str(persona[0]), "--data.init_args.batch_size", "8",
            f"--trainer.callbacks.probe_file={persona[1]}", "--trainer.callbacks.every_n_steps=1",
            "--trainer.callbacks.group_key=group", "--trainer.callbacks.label_key=label",
            "--trainer.max_steps", "2", "--trainer.default_root_dir", str(root),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def test_config_adds_the_callback_to_a_dpo_fit(suite, persona, tmp_path):
    from lit_align.cli import cli_main

    cli = cli_main(cli_args(suite, persona, tmp_path))
    (callback,) = [c for c in cli.trainer.callbacks if isinstance(c, LearningDynamicsCallback)]
    assert [r["step"] for r in callback.history] == [0, 0, 1, 1, 2, 2]
    assert (tmp_path / "dynamics.png").exists()
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["callbacks"][callback.state_key]
    assert state["history"] == callback.history and state["measured_step"] == 2


def test_without_a_class_column_chosen_and_rejected_are_the_classes(suite, tmp_path):
    """The suite's preference rows grouped by mistake kind, probes = the training file: d_b between the last-token
    hidden states of the chosen and of the rejected responses."""
    from lit_align.data.collate import PreferenceCollator
    from lit_align.models.causal_lm import final_hidden_states

    callback = LearningDynamicsCallback(None, every_n_steps=5, group_key="mistake", label_key=None, plot=None)
    trainer, module = fit(suite, suite.file("preference.jsonl"), [callback], tmp_path, max_steps=1)
    from collections import Counter

    from lit_align.files import read_jsonl

    kinds = Counter(r["mistake"] for r in read_jsonl(suite.file("preference.jsonl")))
    assert callback.groups == sorted(kinds) and len(kinds) >= 3
    group, n = kinds.most_common(1)[0]
    g = callback.groups.index(group)
    batch = PreferenceCollator(trainer.datamodule.pad_token_id)(callback._tokenised(trainer, module)[g])
    with torch.no_grad():
        hidden = final_hidden_states(module.model.eval(), batch).double()  # (2B, T, H)
    last = batch["attention_mask"].sum(-1) - 1
    h = torch.stack([hidden[i, last[i]] for i in range(len(last))])
    b = len(last) // 2
    row = [r for r in callback.history if r["group"] == group and r["step"] == 1][0]
    assert row["pairs"] == b == n
    assert row["distinguishability"] == pytest.approx(float((h[:b].mean(0) - h[b:].mean(0)).norm()), rel=1e-5)
