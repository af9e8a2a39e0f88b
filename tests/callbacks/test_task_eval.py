"""TaskEvalCallback on a real 1-epoch SFT fit: eval/* logged, history kept, fit-end evaluation, refusals."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from lit_align.rollout.callback import TaskEvalCallback

LOGGED = ("eval/success", "eval/score", "eval/distinct_words", "eval/length")


@pytest.fixture
def files(tmp_path, task_rows):
    from lit_align.tasks.build import sft_rows, write_jsonl
    from lit_align.tasks.suite import make_tasks

    write_jsonl(tmp_path / "sft.jsonl", sft_rows(make_tasks(8, 0, "train"), seed=0))
    write_jsonl(tmp_path / "val.jsonl", task_rows)
    return tmp_path / "sft.jsonl", tmp_path / "val.jsonl"


def fit(model_dir, train_file, callback, tmp_path, epochs: int = 1):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from lit_align.data.datamodule import SFTDataModule
    from lit_align.modules.sft import SFTModule

    data = SFTDataModule(train_file=str(train_file), tokenizer=str(model_dir), batch_size=4, max_length=64)
    module = SFTModule(model=str(model_dir), lr=1e-3)
    logger = CSVLogger(tmp_path, name="csv")
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    return trainer, logger


def test_logs_after_each_epoch(model_dir, files, tmp_path):
    callback = TaskEvalCallback(str(files[1]), max_new_tokens=4, limit=4, batch_size=4)
    trainer, _ = fit(model_dir, files[0], callback, tmp_path)
    for name in LOGGED:
        assert math.isfinite(float(trainer.callback_metrics[name])), name
    assert len(callback.history) == 1  # the epoch-end evaluation covers the fit end too
    entry = callback.history[0]
    assert entry["epoch"] == 1 and entry["step"] == trainer.global_step == 2
    assert float(trainer.callback_metrics["eval/success"]) == entry["success"]
    assert len(callback.examples) == 4 and trainer.lightning_module.model.training


def test_fit_end_evaluation_goes_to_loggers(model_dir, files, tmp_path):
    callback = TaskEvalCallback(str(files[1]), every_n_epochs=2, max_new_tokens=3, limit=2)
    _, logger = fit(model_dir, files[0], callback, tmp_path)
    assert len(callback.history) == 1  # epoch 1 was not an evaluation epoch, the end of fit was
    assert callback.history[0]["epoch"] == 1 and callback.history[0]["step"] == 2
    logger.save()
    header = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert all(name in header for name in LOGGED)


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
