"""The command line of a loop (`lit-align rest`, `lit-align cream`): a jsonargparse parser over the loop's
config dataclass, so YAML files, dotted overrides and `--print_config` work as in `lit-align fit`.

    lit-align rest --config configs/rest.yaml                       # a YAML file, or a packaged config by name: rest
    lit-align rest --config rest --grow.samples_per_prompt 4 --improve.thresholds '[0.8, 1.0]' --out runs/rest_n4
    lit-align rest --config rest --print_config                     # the resolved configuration, as YAML

Fields are documented in the dataclasses' docstrings (`--help` shows them); nested dataclasses become dotted
groups (`--grow.temperature`). Unknown keys, wrong types and values outside a Literal's choices are errors naming
the key (exit status 2).
"""
from __future__ import annotations

from typing import Any, TypeVar

from lit_align.config_files import resolve_config_args

T = TypeVar("T")


def parser_for(config_class: type, prog: str, description: str):
    """A jsonargparse ArgumentParser with --config (several compose) and --print_config over `config_class`."""
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog=prog, description=description, print_config="--print_config")
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML config file, or a packaged config's name")
    parser.add_class_arguments(config_class, as_group=False)
    return parser


def parse(config_class: type[T], argv: list[str] | None, prog: str, description: str) -> T:
    """The config dataclass from the command line (`argv`, default sys.argv[1:])."""
    import sys

    parser = parser_for(config_class, prog, description)
    args = resolve_config_args(list(sys.argv[1:] if argv is None else argv))
    namespace = parser.parse_args(args)
    values: dict[str, Any] = parser.instantiate(namespace).as_dict()
    values.pop("config", None)
    config = _build(config_class, values)
    if getattr(config, "progress", True) is False:  # a loop's `progress: false` hides the weight-loading bars too
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return config


def runtime_device(device: str, threads: int | None):
    """A loop's torch device ("auto": CUDA when there is one), after setting the CPU threads when given."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                        "cpu" if device == "auto" else device)


def _build(config_class: type[T], values: dict[str, Any]) -> T:
    """The dataclass from parsed values (nested dataclasses come back as dicts from `as_dict`)."""
    import dataclasses
    import typing

    hints = typing.get_type_hints(config_class)
    kwargs = {}
    for f in dataclasses.fields(config_class):
        if f.name not in values:
            continue
        value = values[f.name]
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, dict):
            value = _build(hints[f.name], value)
        kwargs[f.name] = value
    return config_class(**kwargs)
