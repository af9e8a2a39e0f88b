"""A training order that survives a crash: ResumableSampler (the order) and ResumableDataLoader (the position).

Lightning 2.x saves `loader.state_dict()` in every checkpoint and calls `loader.load_state_dict()` before
iterating again when resuming (fit_loop.py, `_Stateful` loaders; AlignDataModule carries the same state for the
case where Lightning builds the loader before loading the checkpoint), but a plain DataLoader has no state: a run
resumed mid-epoch would start the epoch again from its first batch, training some batches twice. Here:

    order:    epoch e  ->  randperm(len(dataset), seed + e), padded and sharded like DistributedSampler
    position: state_dict() = {epoch, batches}: the batches this loader has handed out in that epoch, counted where
              they leave the loader (so worker prefetching does not count), i.e. the batches trained when the
              checkpoint is written (Lightning does not prefetch from a loader whose length is known)
    resume:   the same epoch's order without its first `batches * batch_size` indices (or the next epoch from its
              start when the saved epoch was complete); if the trainer moves on to another epoch instead, that
              epoch starts from its start

ResumableSampler is a DistributedSampler (one replica without torch.distributed), so Lightning keeps it under DDP
instead of installing its own, and `shuffle`/`seed` mean the same with one process or many.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lit_align.errors import UserError


class ResumableSampler(DistributedSampler):
    """DistributedSampler whose next epoch can start part-way (`resume_at`: skip the first indices of this rank's
    shard in a given epoch).

    Args:
        dataset: the map-style dataset.
        shuffle: a new seeded permutation each epoch (seed + epoch), else the dataset order.
        seed: the shuffle seed.
        num_replicas, rank: the shard; None: torch.distributed's world size and rank when it is initialised,
            else one replica.
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, num_replicas: int | None = None,
                 rank: int | None = None):
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False)
        self.start, self.start_epoch = 0, 0

    def resume_at(self, epoch: int, start: int) -> None:
        """The next iteration is epoch `epoch` without its first `start` indices (if the epoch is still `epoch`
        then: the skip never carries over to another epoch)."""
        self.set_epoch(epoch)
        self.start, self.start_epoch = start, epoch

    def next_start(self) -> int:
        """How many indices the next iteration skips."""
        return self.start if self.epoch == self.start_epoch else 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())  # (num_samples,) this rank's share of epoch `self.epoch`
        start, self.start = self.next_start(), 0  # only the resumed epoch starts part-way
        return iter(indices[start:])


class ResumableDataLoader(DataLoader):
    """A DataLoader over a ResumableSampler that Lightning checkpoints and restores mid-epoch (see the module
    docstring). Resuming needs the same data, batch size and number of processes as the checkpointed run."""

    def __init__(self, dataset: Dataset, *, sampler: ResumableSampler, **kwargs: Any):
        if not isinstance(sampler, ResumableSampler):
            raise ValueError(f"ResumableDataLoader needs a ResumableSampler, got {type(sampler).__name__}")
        super().__init__(dataset, sampler=sampler, **kwargs)
        self.epoch, self.batches = 0, 0  # the iteration in progress: its epoch and the batches handed out

    def __iter__(self) -> Iterator[Any]:
        # A generator: its body (and the sampler's permutation) starts at the first batch, after Lightning's
        # set_epoch, although Lightning calls iter() before it.
        self.epoch, self.batches = self.sampler.epoch, self.sampler.next_start() // self.batch_size
        for batch in super().__iter__():
            self.batches += 1
            yield batch

    def layout(self) -> dict[str, Any]:
        """What a saved position means nothing without: the rows, the batch size, the shards and the order."""
        return {"rows": len(self.dataset), "batch_size": self.batch_size, "replicas": self.sampler.num_replicas,
                "shuffle": self.sampler.shuffle, "seed": self.sampler.seed}

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches": self.batches, "total": len(self), **self.layout()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["batches"] >= state["total"]:  # the saved epoch was complete: the next one starts from its start
            self.sampler.resume_at(state["epoch"] + 1, 0)
            return
        saved = {k: state[k] for k in self.layout()}
        if saved != self.layout():
            changed = ", ".join(f"{k} {saved[k]} -> {v}" for k, v in self.layout().items() if saved[k] != v)
            raise UserError(f"cannot resume the training data mid-epoch (epoch {state['epoch']}, batch "
                            f"{state['batches']} of {state['total']}): the data changed since the checkpoint "
                            f"({changed}); resume with the same data, batch size and processes, or start anew")
        self.sampler.resume_at(state["epoch"], state["batches"] * self.batch_size)  # Lightning sets the epoch after
