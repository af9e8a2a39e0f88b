"""`lit-align`: the LightningCLI (fit / validate / test / predict) plus a few tools around it.

    lit-align fit --config configs/dpo.yaml                  # any recipe: configs/<recipe>.yaml
    lit-align fit --config configs/dpo.yaml --config configs/strategy/ddp.yaml
    lit-align fit --config configs/sft.yaml --print_config   # the full, resolved configuration
    lit-align suite --out artifacts/suite                    # build the bundled task suite, tokenizer, tiny model
    lit-align export --checkpoint runs/dpo --out artifacts/dpo      # newest last.ckpt -> save_pretrained
    lit-align evaluate --model artifacts/dpo --prompts artifacts/suite/data/test.jsonl
    lit-align demo                                           # the whole pipeline on the bundled suite

Tokenizer-derived values (vocab_size, pad_token_id) are linked from the data module into the model.
Defaults: CSV + TensorBoard loggers under runs/, ModelCheckpoint (last + best on val/loss when there is a
validation set), LearningRateMonitor, RichProgressBar.
"""
from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from lit_align.data.datamodule import AlignDataModule
from lit_align.modules.base import AlignModule

TOOLS = {
    "suite": "lit_align.tasks.__main__",
    "export": "lit_align.export",
    "evaluate": "lit_align.rollout.evaluate",
    "demo": "lit_align.demo",
}


class AlignCLI(LightningCLI):
    def before_instantiate_classes(self) -> None:
        """Default loggers write under trainer.default_root_dir (runs/<recipe>), not a shared runs/."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.trainer.default_root_dir
        loggers = config.trainer.logger if isinstance(config.trainer.logger, list) else []
        for logger in loggers:
            init_args = getattr(logger, "init_args", None)
            if root and init_args is not None and getattr(init_args, "save_dir", None) == "runs":
                init_args.save_dir = root

    def instantiate_trainer(self, **kwargs):
        """Each default callback steps aside when the config turns its feature off (no progress bar, no
        checkpointing, no logger), instead of Lightning refusing the combination."""
        from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

        config = self._get(self.config_init, "trainer", default={})
        off = [(config.get("enable_progress_bar") is False, RichProgressBar),
               (config.get("enable_checkpointing") is False, ModelCheckpoint),
               (config.get("logger") is False, LearningRateMonitor)]
        drop = tuple(cls for disabled, cls in off if disabled)
        self.trainer_defaults["callbacks"] = [c for c in self.trainer_defaults["callbacks"] if not isinstance(c, drop)]
        return super().instantiate_trainer(**kwargs)

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.pad_token_id", "model.init_args.pad_token_id", apply_on="instantiate")


def trainer_defaults() -> dict:
    """Loggers as configuration (overridable with --trainer.logger); callbacks always present."""
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

    return {
        "logger": [
            {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs", "name": "csv"}},
            {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
             "init_args": {"save_dir": "runs", "name": "tensorboard"}},
        ],
        "callbacks": [ModelCheckpoint(save_last=True), LearningRateMonitor(logging_interval="step"),
                      RichProgressBar()],
    }


def cli_main(args: list[str] | None = None, run: bool = True) -> AlignCLI:
    return AlignCLI(AlignModule, AlignDataModule, subclass_mode_model=True, subclass_mode_data=True,
                    trainer_defaults=trainer_defaults(), save_config_kwargs={"overwrite": True}, args=args, run=run)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TOOLS:
        import importlib
        rest = ["build", *argv[1:]] if argv[0] == "suite" else argv[1:]  # `lit-align suite --out DIR`
        importlib.import_module(TOOLS[argv[0]]).main(rest)
        return
    cli_main(argv)


if __name__ == "__main__":
    main()
