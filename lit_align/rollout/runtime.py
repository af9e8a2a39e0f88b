"""How rollout code runs a model: eval mode without grad (training mode restored after), scoped seeds, the
model's device, length-sorted batches, and whether a strategy shards the model (generation needs all of it).

Generation and scoring run inside training (callbacks, ReST/CREAM loops, PPO rollouts), so they must leave
the model as they found it (train/eval mode) and must not move the global RNG streams that training relies
on: a seed is applied inside `torch.random.fork_rng`, which restores every stream on exit.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (where its inputs must go)."""
    return next(model.parameters()).device


@contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Eval mode (no dropout) and no grad for the block; the previous train/eval mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


@contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for the block (CPU and `device` when it is CUDA) and restore every stream after.

    `seed=None` leaves the RNG alone (sampling then follows the global stream, as HF generate does).
    """
    if seed is None:
        yield
        return
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def is_sharded(strategy) -> bool:
    """Whether a Lightning strategy shards the model (FSDP, DeepSpeed, ModelParallel): then no rank holds the
    whole policy, and HF generate cannot run on one rank alone."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    return isinstance(strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy))


def batches_by_length(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so little compute goes to padding.

    Callers scatter the results back to the original order by index.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable: ties keep input order
    return [order[k: k + batch_size] for k in range(0, len(order), batch_size)]
