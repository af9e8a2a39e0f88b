"""Input checks shared by every backend, so that bad input raises one clear ValueError everywhere.

Each check names the argument, the expected shape/dtype/range and what was received.
"""
from __future__ import annotations

import torch


def check_float(name: str, tensor: torch.Tensor) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {tensor.dtype}")


def check_labels(labels: torch.Tensor, vocab_size: int, ignore_index: int, expected_shape: torch.Size) -> None:
    """labels: integer tensor of `expected_shape`, each in [0, vocab_size) or equal to ignore_index."""
    if (not isinstance(labels, torch.Tensor) or labels.is_floating_point() or labels.is_complex()
            or labels.dtype == torch.bool):
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be an integer tensor, got {got}")
    if labels.shape != expected_shape:
        raise ValueError(f"labels has shape {tuple(labels.shape)}, expected {tuple(expected_shape)} "
                         "(the leading dimensions of the logits/hidden states)")
    if labels.numel() == 0 or torch.compiler.is_compiling():
        return  # under torch.compile the kernels' own TORCH_CHECK_VALUE checks the range at run time
    valid = labels != ignore_index
    bad = valid & ((labels < 0) | (labels >= vocab_size))
    if bool(bad.any()):  # one device sync; the price of a clear error instead of a wrong answer
        index = int(bad.flatten().nonzero()[0])
        value = int(labels.flatten()[index])
        raise ValueError(f"labels[{index}] = {value} is outside the vocabulary [0, {vocab_size}) "
                         f"and is not ignore_index ({ignore_index})")


def check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def check_same_device(**tensors: torch.Tensor | None) -> None:
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        raise ValueError(f"tensors are on different devices: {devices}")
