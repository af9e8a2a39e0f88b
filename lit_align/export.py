"""`lit-align export`: a training checkpoint -> a save_pretrained folder that plain transformers loads.

The checkpoint records which recipe wrote it (AlignModule.on_save_checkpoint); the recipe rebuilds its model
from the hyper-parameters, loads the trained weights (torch.load with weights_only=True; a LoRA checkpoint holds only
the adapters and trainable heads, the frozen base is rebuilt from the model path and checked against the checkpoint's
digest) and saves the policy (LoRA merged) or the reward model / discriminator (one folder per ensemble member)
with the tokenizer.
"""
from __future__ import annotations

import argparse
import importlib
import os
from pathlib import Path

import torch

from lit_align.errors import MissingFileError, UserError
from lit_align.modules.base import restore_frozen_base


def find_checkpoint(path: str) -> str:
    """A .ckpt file as given, or the newest last.ckpt under a run directory (e.g. runs/dpo)."""
    if os.path.isfile(path):
        return path
    found = sorted(Path(path).rglob("last*.ckpt"), key=lambda p: p.stat().st_mtime) if os.path.isdir(path) else []
    if not found:
        raise MissingFileError(f"{path}: no checkpoint file, and no last.ckpt under it")
    return str(found[-1])


def load_module(checkpoint: str):
    """The LightningModule of a lit_align checkpoint (a .ckpt or a run directory), with its trained weights."""
    checkpoint = find_checkpoint(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "lit_align_class" not in state:
        raise UserError(f"{checkpoint}: not a lit_align checkpoint (no 'lit_align_class' entry)")
    module_name, _, class_name = state["lit_align_class"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    # LightningCLI adds bookkeeping entries such as _class_path to the hyper-parameters; they are not init args
    hparams = {k: v for k, v in state["hyper_parameters"].items() if not k.startswith("_")}
    module = cls(**hparams)
    module.configure_model()
    restore_frozen_base(module, state, checkpoint)  # a LoRA checkpoint: the frozen base comes from `model`
    module.load_state_dict(state["state_dict"])
    module.on_load_checkpoint(state)  # state kept outside the state_dict (e.g. RLGAF's discriminator game)
    return module


def export_checkpoint(checkpoint: str, out_dir: str, tokenizer: str | None = None) -> list[str]:
    from lit_align.models.loading import load_tokenizer

    module = load_module(checkpoint)
    return module.export(out_dir, load_tokenizer(tokenizer) if tokenizer else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lit-align export", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True,
                        help="a .ckpt written by `lit-align fit`, or its run directory (newest last.ckpt)")
    parser.add_argument("--out", required=True, help="output folder (save_pretrained)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer to save alongside (default: the model's)")
    args = parser.parse_args(argv)
    for path in export_checkpoint(args.checkpoint, args.out, args.tokenizer):
        print(f"exported {path}")
