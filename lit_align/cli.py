"""`lit-align`: the LightningCLI (fit / validate / test / predict) plus a few tools around it.

    lit-align fit --config configs/dpo.yaml                  # any recipe: configs/<recipe>.yaml
    lit-align fit --config configs/dpo.yaml --config configs/strategy/ddp.yaml
    lit-align fit --config configs/sft.yaml --print_config   # the full, resolved configuration
    lit-align suite --out artifacts/suite                    # build the bundled task suite, tokenizer, tiny model
    lit-align export --checkpoint runs/dpo --out artifacts/dpo      # newest last.ckpt -> save_pretrained
    lit-align evaluate --model artifacts/dpo --prompts artifacts/suite/data/test.jsonl
    lit-align demo                                           # the whole pipeline on the bundled suite
    lit-align rest --config rest                             # ReST (Grow / Improve), resumable: --out runs/rest
    lit-align configs ls                                     # the packaged configs; `fit --config dpo` reads one

Tokenizer-derived values (vocab_size, pad_token_id) are linked from the data module into the model.
Defaults: CSV + TensorBoard loggers under trainer.default_root_dir (runs/<recipe>), LearningRateMonitor,
RichProgressBar, and the `checkpoint:` section (lit_align.callbacks.RunCheckpoint: <default_root_dir>/checkpoints/,
last.ckpt plus a periodic save, e.g. --checkpoint.every_n_train_steps 100 or --checkpoint.train_time_interval 0:10:00).

Re-running a `fit` command continues its run: with no --ckpt_path, <default_root_dir>/checkpoints/last.ckpt is
resumed when it exists (model, optimizer, scheduler, loop progress, data position and RNG states), and a fit that
already reached max_steps/max_epochs says so and trains nothing. To start over, delete that folder or pass another
--trainer.default_root_dir.
"""
from __future__ import annotations

import os
import sys

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from lit_align.callbacks.checkpoint import RunCheckpoint, checkpoint_progress, finished
from lit_align.config_files import resolve_config_args
from lit_align.data.datamodule import AlignDataModule
from lit_align.modules.base import AlignModule

# The commands besides LightningCLI's fit/validate/test/predict: name -> (module with main(argv), what it does).
TOOLS = {
    "suite": ("lit_align.tasks.__main__", "build the bundled offline task suite, its tokenizer and a tiny Llama"),
    "export": ("lit_align.export", "a training checkpoint -> a save_pretrained folder (policy, reward model, D)"),
    "evaluate": ("lit_align.evaluate", "greedy task success, checker score, KL, reward of a policy"),
    "demo": ("lit_align.demo", "the whole pipeline on the bundled suite, with a before/after table and plots"),
    "rest": ("lit_align.loops.rest", "ReST (Grow + Improve, repeated), resumable: lit-align rest --config rest"),
    "cream": ("lit_align.loops.cream", "CREAM / SRLM self-rewarding DPO, resumable: lit-align cream --config cream"),
    "dynamics": ("lit_align.dynamics.experiment", "DPO learning dynamics on Persona-shaped data (Im & Li 2403.18742)"),
    "configs": ("lit_align.config_files", "list (ls) or copy (cp) the recipe configs that ship with lit_align"),
    "models": ("lit_align.models.__main__", "real pretrained models as HF folders, offline: models smollm2 --out DIR"),
}
LIGHTNING = {
    "fit": "train a recipe: lit-align fit --config dpo (a packaged config name, or a YAML path)",
    "validate": "run the validation loop of a recipe",
    "test": "run the test loop of a recipe",
    "predict": "run the predict loop of a recipe",
}


def print_overview() -> None:
    """`lit-align`, `lit-align -h`: every command, not only LightningCLI's four."""
    print("usage: lit-align COMMAND [options]   (lit-align COMMAND --help for a command's options)\n")
    for name, what in {**LIGHTNING, **{k: v[1] for k, v in TOOLS.items()}}.items():
        print(f"  {name:10s} {what}")
    print("\nAny command: --debug (or LIT_ALIGN_DEBUG=1) shows the traceback of a user error.")


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
        checkpointing, no logger), instead of Lightning refusing the combination; a ModelCheckpoint listed in
        trainer.callbacks replaces the `checkpoint:` one."""
        from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar

        config = self._get(self.config_init, "trainer", default={})
        listed = config.get("callbacks") or []
        listed = listed if isinstance(listed, list) else [listed]
        off = [(config.get("enable_progress_bar") is False, RichProgressBar),
               (config.get("enable_checkpointing") is False, ModelCheckpoint),
               (any(isinstance(c, ModelCheckpoint) for c in listed), RunCheckpoint),
               (config.get("logger") is False, LearningRateMonitor)]
        drop = tuple(cls for disabled, cls in off if disabled)
        self.trainer_defaults["callbacks"] = [c for c in self.trainer_defaults["callbacks"] if not isinstance(c, drop)]
        extra = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        return self._instantiate_trainer({**config, **kwargs}, [c for c in extra if not isinstance(c, drop)])

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.vocab_size", "model.init_args.vocab_size", apply_on="instantiate")
        parser.link_arguments("data.pad_token_id", "model.init_args.pad_token_id", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")

    def fit(self, model, ckpt_path: str | None = None, **kwargs) -> None:
        """trainer.fit that continues the run in default_root_dir (see the module docstring); an explicit
        --ckpt_path works as in Lightning."""
        trainer = self.trainer
        callback = trainer.checkpoint_callback
        anew = "leave out --ckpt_path"
        if ckpt_path in (None, "last") and isinstance(callback, RunCheckpoint):
            last = callback.last_path(trainer)
            if os.path.exists(last):
                ckpt_path, anew = last, f"delete {os.path.dirname(last)} or pass another --trainer.default_root_dir"
            elif ckpt_path == "last":
                rank_zero_info(f"lit-align: no {last} yet: training from the start")
                ckpt_path = None
        if ckpt_path is not None and os.path.exists(ckpt_path):
            steps, epochs = checkpoint_progress(ckpt_path)
            at = f"step {steps}, {epochs} epoch{'' if epochs == 1 else 's'} done"
            if finished(steps, epochs, trainer):
                rank_zero_info(f"lit-align: already finished: {ckpt_path} is at {at} (max_steps={trainer.max_steps}, "
                               f"max_epochs={trainer.max_epochs}); nothing to train. To train again from the start, "
                               f"{anew}; to train on, raise --trainer.max_steps or --trainer.max_epochs.")
                return
            rank_zero_info(f"lit-align: resuming from {ckpt_path} ({at}); to start over instead, {anew}")
        trainer.fit(model, ckpt_path=ckpt_path, **kwargs)


def trainer_defaults() -> dict:
    """Loggers as configuration (overridable with --trainer.logger); callbacks always present (the checkpoint
    callback is configuration too: the `checkpoint:` section, AlignCLI.add_arguments_to_parser)."""
    from lightning.pytorch.callbacks import LearningRateMonitor, RichProgressBar

    return {
        "logger": [
            {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs", "name": "csv"}},
            {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
             "init_args": {"save_dir": "runs", "name": "tensorboard"}},
        ],
        "callbacks": [LearningRateMonitor(logging_interval="step"), RichProgressBar()],
    }


def cli_main(args: list[str] | None = None, run: bool = True) -> AlignCLI:
    return AlignCLI(AlignModule, AlignDataModule, subclass_mode_model=True, subclass_mode_data=True,
                    trainer_defaults=trainer_defaults(), save_config_kwargs={"overwrite": True}, args=args, run=run)


def main(argv: list[str] | None = None) -> None:
    """`lit-align ...` (argv: the arguments, default sys.argv[1:]). Bad data, a bad configuration value or a
    missing file prints one line `lit-align: error: ...` and exits 2; `--debug` or LIT_ALIGN_DEBUG=1 shows its
    traceback (lit_align.errors). Any other exception is a bug and keeps its traceback."""
    from lit_align.errors import DEBUG_ENV, DEBUG_FLAG, run_reporting_user_errors

    command_line = argv is None
    if command_line and DEBUG_FLAG in sys.argv:
        os.environ[DEBUG_ENV] = "1"  # DDP ranks re-run the command line, which LightningCLI gets without the flag

    def dispatch(args: list[str]) -> None:
        if not args or args[0] in ("-h", "--help"):
            print_overview()
            return
        if args[0] in TOOLS:
            import importlib
            importlib.import_module(TOOLS[args[0]][0]).main(args[1:])
            return
        args = resolve_config_args(args)  # --config NAME: a packaged config when no such file exists
        if command_line:  # LightningCLI reads sys.argv itself (given args too, it warns about both)
            sys.argv[1:] = args
        cli_main(None if command_line else args)

    run_reporting_user_errors(dispatch, sys.argv[1:] if command_line else list(argv))


if __name__ == "__main__":
    main()
