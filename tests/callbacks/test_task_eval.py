"""TaskEvalCallback on a real 1-epoch SFT fit: eval/* logged, history kept, fit-end evaluation, refusals; its
history and last evaluated step survive a checkpoint (a resumed fit continues the curve)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from lit_align.callbacks import TaskEvalCallback

LOGGED = ("eval/success", "eval/score", "eval/distinct_words", "eval/length")


def fit(model_dir, train_file, callbacks, tmp_path, epochs: int = 1, ckpt_path=None):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from lit_align.data.datamodule import SFTDataModule
    from lit_align.modules.sft import SFTModule

    data = SFTDataModule(train_file=str(train_file), tokenizer=str(model_dir), batch_size=4, max_length=64)
    module = SFTModule(model=str(model_dir), lr=1e-3)
    logger = CSVLogger(tmp_path, name="csv")
    checkpointing = any(isinstance(c, pl.callbacks.ModelCheckpoint) for c in callbacks)
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks,
                         enable_checkpointing=checkpointing, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return trainer, logger


def test_logs_after_each_epoch(suite, files, tmp_path):
    callback = TaskEvalCallback(str(files[1]), max_new_tokens=4, limit=4, batch_size=4)
    trainer, _ = fit(suite.model, files[0], [callback], tmp_path)
    for name in LOGGED:
        assert math.isfinite(float(trainer.callback_metrics[name])), name
    assert len(callback.history) == 1  # the epoch-end evaluation covers the fit end too
    entry = callback.history[0]
    assert entry["epoch"] == 1 and entry["step"] == trainer.global_step == 2
    assert float(trainer.callback_metrics["eval/success"]) == entry["success"]
    assert len(callback.examples) == 4 and trainer.lightning_module.model.training


def test_fit_end_evaluation_goes_to_loggers(suite, files, tmp_path):
    callback = TaskEvalCallback(str(files[1]), every_n_epochs=2, max_new_tokens=3, limit=2)
    _, logger = fit(suite.model, files[0], [callback], tmp_path)
    assert len(callback.history) == 1  # epoch 1 was not an evaluation epoch, the end of fit was
    assert callback.history[0]["epoch"] == 1 and callback.history[0]["step"] == 2
    logger.save()
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert all(name in header for name in LOGGED)


def test_history_survives_resume(suite, files, tmp_path):
    """Fit 1 epoch, then resume from its last.ckpt with fresh callbacks: to 2 epochs (the curve goes on from the
    saved entry); then resume the finished 2-epoch fit: no second evaluation of step 4 at fit end."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    def checkpoint():
        return ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)

    def callback(prompts=files[1]):
        return TaskEvalCallback(str(prompts), max_new_tokens=3, limit=2, batch_size=2)

    first = callback()
    fit(suite.model, files[0], [first, checkpoint()], tmp_path)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert len(first.history) == 1 and first.examples
    resumed = callback()
    fit(suite.model, files[0], [resumed, checkpoint()], tmp_path, epochs=2, ckpt_path=last)
    assert resumed.history[0] == first.history[0]
    assert [(h["epoch"], h["step"]) for h in resumed.history] == [(1, 2), (2, 4)]
    finished = callback()  # last.ckpt is now the 2-epoch fit's
    fit(suite.model, files[0], [finished, checkpoint()], tmp_path, epochs=2, ckpt_path=last)
    assert finished.history == resumed.history and finished.examples == resumed.examples
    # the state is keyed by what is measured: a callback on other prompts does not take this history
    other = callback(prompts=files[0])
    assert other.state_key != first.state_key and first.state_key == callback().state_key


def test_refuses_sharded_strategies_and_bad_files(tmp_path, files):
    from lightning.pytorch.strategies import FSDPStrategy

    callback = TaskEvalCallback(str(files[1]))
    trainer = SimpleNamespace(strategy=FSDPStrategy.__new__(FSDPStrategy))
    with pytest.raises(ValueError, match="rank 0 alone.*FSDPStrategy"):
        callback.setup(trainer, None, "fit")
    missing = TaskEvalCallback(str(tmp_path / "missing.jsonl"))
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        missing.setup(SimpleNamespace(strategy=None), None, "fit")
    with pytest.raises(ValueError, match="every_n_epochs"):
        TaskEvalCallback(str(files[1]), every_n_epochs=0)



def test_feedback_rounds_log_success_at_k(suite, files, tmp_path):
    callback = TaskEvalCallback(str(files[1]), max_new_tokens=4, limit=4, batch_size=4, feedback_rounds=2)
    trainer, _ = fit(suite.model, files[0], [callback], tmp_path)
    entry = callback.history[0]
    at_k = [entry[f"success@{k}"] for k in range(3)]
    assert at_k == sorted(at_k) and all(0 <= v <= 1 for v in at_k)
    assert at_k[0] == entry["success"]  # turn 0 is the greedy single answer
    assert float(trainer.callback_metrics["eval/success@2"]) == at_k[2]
    plain = TaskEvalCallback(str(files[1]), max_new_tokens=4, limit=4, batch_size=4)
    assert "'feedback_rounds'" not in plain.state_key and callback.state_key != plain.state_key
    with pytest.raises(ValueError, match="feedback_rounds must be >= 0"):
        TaskEvalCallback(str(files[1]), feedback_rounds=-1)
