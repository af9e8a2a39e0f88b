"""Reference policies for the DPO family: where pi_ref's sequence log-probs come from.

* FrozenCopyReference: a frozen copy of the initial policy (eval mode, no grad). A submodule of the
  LightningModule, so it moves devices and is wrapped by DDP/FSDP like the policy.
* PeftAdapterReference: the policy itself with its LoRA adapter switched off (no second copy in memory).
* CachedReference: the initial policy's scores of every pair of the data, computed once before the first update
  (sharded over the ranks, then all-gathered), kept on disk and keyed by a hash of each pair's tokens, so later
  epochs, resumed runs and later runs skip the reference forward entirely and never score with a trained policy.
Every reference answers `scores(policy, batch) -> (2B,)`, sequence log-probs of a preference batch (rows: chosen,
then rejected); the frozen copy and the adapter also answer `token_logprobs(policy, batch) -> (B, T-1)` (online RL's
per-token KL). Both come from lit_align.models.causal_lm, with the recipe's `backend` and `batch_invariant`.
"""
from __future__ import annotations

import copy
import hashlib
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.errors import UserError
from lit_align.files import fsync_replace
from lit_align.models.causal_lm import sequence_logprobs, token_logprobs


@dataclass(frozen=True)
class LogprobSettings:
    """How a model-backed reference computes its log-probs: the recipe's settings of the fused ops."""
    average_log_prob: bool = False
    backend: str = "auto"
    batch_invariant: bool = False

    def sequences(self, model, batch) -> torch.Tensor:
        return sequence_logprobs(model, batch, average_log_prob=self.average_log_prob, backend=self.backend,
                                 batch_invariant=self.batch_invariant)  # (2B,)

    def tokens(self, model, batch, temperature: float) -> torch.Tensor:
        return token_logprobs(model, batch, temperature=temperature, backend=self.backend,
                              batch_invariant=self.batch_invariant)  # (B, T-1)


class FrozenCopyReference(nn.Module):
    def __init__(self, policy: nn.Module, average_log_prob: bool = False, backend: str = "auto",
                 batch_invariant: bool = False):
        super().__init__()
        self.model = copy.deepcopy(policy).eval().requires_grad_(False)
        self.settings = LogprobSettings(average_log_prob, backend, batch_invariant)

    def train(self, mode: bool = True):  # stays in eval mode (no dropout) whatever Lightning asks
        return super().train(False)

    @torch.no_grad()
    def scores(self, policy, batch) -> torch.Tensor:
        return self.settings.sequences(self.model, batch)

    @torch.no_grad()
    def token_logprobs(self, policy, batch, temperature: float = 1.0) -> torch.Tensor:
        return self.settings.tokens(self.model, batch, temperature)


class PeftAdapterReference(nn.Module):
    def __init__(self, average_log_prob: bool = False, backend: str = "auto", batch_invariant: bool = False):
        super().__init__()
        self.settings = LogprobSettings(average_log_prob, backend, batch_invariant)

    @torch.no_grad()
    def scores(self, policy, batch) -> torch.Tensor:
        return self._without_adapter(policy, lambda: self.settings.sequences(policy, batch))

    @torch.no_grad()
    def token_logprobs(self, policy, batch, temperature: float = 1.0) -> torch.Tensor:
        return self._without_adapter(policy, lambda: self.settings.tokens(policy, batch, temperature))

    @staticmethod
    def _without_adapter(policy, fn):
        if not hasattr(policy, "disable_adapter"):
            raise UserError("reference='adapter' needs a PEFT policy (set model.lora); use reference='copy' otherwise")
        was_training = policy.training
        policy.eval()
        try:
            with policy.disable_adapter():
                return fn()
        finally:
            policy.train(was_training)


def pair_keys(batch) -> list[str]:
    """(B,) keys of a preference batch's pairs: a hash of both sides' input_ids and labels, padding dropped.

    Whatever changes a pair's tokens (tokenizer, chat template, max_length, max_prompt_length, truncation)
    changes its key, so a stale score is never looked up; equal tokens share a key whatever the row id.
    """
    input_ids, labels = batch["input_ids"].cpu(), batch["labels"].cpu()  # (2B, T)
    mask = batch["attention_mask"].cpu().bool() if "attention_mask" in batch else torch.ones_like(input_ids).bool()
    b = input_ids.shape[0] // 2
    keys = []
    for i in range(b):
        digest = hashlib.blake2b(digest_size=16)
        for row in (i, b + i):  # chosen, then rejected
            tokens, targets = input_ids[row][mask[row]], labels[row][mask[row]]  # (n,)
            digest.update(len(tokens).to_bytes(8, "little"))
            digest.update(tokens.numpy().tobytes())
            digest.update(targets.numpy().tobytes())
        keys.append(digest.hexdigest())
    return keys


def weights_digest(model: nn.Module, sample: int = 1024) -> str:
    """A short hash of a model's weights: each parameter's name, shape, dtype and `sample` evenly strided values.

    Cheap on any model size (no full pass), and enough to tell two checkpoints apart: training moves nearly every
    value of a trained tensor."""
    return tensors_digest(model.named_parameters(), sample)


def tensors_digest(named: Iterable[tuple[str, torch.Tensor]], sample: int = 1024) -> str:
    """weights_digest of (name, tensor) pairs, e.g. only a model's frozen parameters."""
    digest = hashlib.blake2b(digest_size=12)
    for name, param in named:
        flat = param.detach().reshape(-1)
        digest.update(f"{name}{tuple(param.shape)}{param.dtype}".encode())
        digest.update(flat[:: max(1, flat.numel() // sample)][:sample].float().cpu().numpy().tobytes())
    return digest.hexdigest()


class CacheMiss(KeyError):
    """A pair without a precomputed reference score (a KeyError whose message prints as written)."""

    def __str__(self) -> str:
        return str(self.args[0])


# (dataset, collate_fn, batch_size): the data whose pairs `CachedReference.fill` scores
Source = tuple[Sequence[Any], Callable[[list[Any]], dict], int]


class CachedReference(nn.Module):
    """The initial policy's sequence log-prob sums for every pair of the data, computed once and kept on disk.

    Entries are keyed by `pair_keys` (a hash of the pair's tokens); the file's fingerprint names the scoring model
    (`weights_digest` of its initial weights), and a file made by another model is ignored with a warning.
    `fill` scores what the file lacks, before any update; `scores` only looks up and raises `CacheMiss` on a
    miss: a pair is never scored with a policy that has already been trained.

    File: {"fingerprint": str, "model": str, "keys": [str] (N), "scores": float32 (N, 2) (chosen, rejected)},
    written by rank 0 to a temporary name and renamed, so a killed run leaves the last complete save.
    """

    def __init__(self, fingerprint: str, path: str | None = None, average_log_prob: bool = False, model: str = ""):
        super().__init__()
        self.fingerprint, self.path, self.average_log_prob, self.model_name = fingerprint, path, average_log_prob, model
        self.cache: dict[str, tuple[float, float]] = {}
        self.computed = 0  # pairs scored by the last `fill`, over all ranks (0 when the file covered everything)

    def load(self) -> None:
        self.cache = {}
        if not self.path or not os.path.exists(self.path):
            return
        data = torch.load(self.path, weights_only=True)
        if data.get("fingerprint") != self.fingerprint:
            warnings.warn(f"{self.path}: reference scores of model {data.get('model')!r} (weights "
                          f"{data.get('fingerprint')!r}), not of {self.model_name!r} (weights {self.fingerprint!r}); "
                          "recomputing them all", stacklevel=2)
            return
        self.cache = dict(zip(data["keys"], map(tuple, data["scores"].tolist()), strict=True))

    def save(self) -> None:
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        keys = list(self.cache)
        scores = torch.tensor([self.cache[k] for k in keys], dtype=torch.float32).reshape(-1, 2)  # (N, 2)
        tmp = f"{self.path}.tmp{os.getpid()}"
        torch.save({"fingerprint": self.fingerprint, "model": self.model_name, "keys": keys, "scores": scores}, tmp)
        fsync_replace(tmp, self.path)

    @torch.no_grad()
    def fill(self, sources: list[Source], score: Callable[[dict], torch.Tensor], *, may_score: bool,
             save_every: int = 64) -> int:
        """Make the cache (on every rank) cover every pair of `sources`; returns how many pairs were scored.

        Each rank reads the file, then looks at its own shard of every dataset (in dataset order, not the shuffled
        training order) and scores the batches with missing pairs by `score(batch) -> (2B,)` sums (the initial
        policy, in eval mode); the new scores are all-gathered, so every rank ends with every pair, and rank 0
        saves every `save_every` batches and at the end. Every rank runs the same number of forwards (FSDP's
        collectives need it). `may_score=False` (the policy was restored from a checkpoint, so it is no longer
        the reference) raises instead of scoring when a pair is missing.
        """
        self.load()
        rank, world = _rank_world()
        todo, missing = [], {}  # batches (dataset, collate, indices) with a missing pair; key -> id
        for dataset, collate, batch_size in sources:
            for chunk in _chunks(_shard(len(dataset), rank, world), batch_size):
                batch = collate([dataset[i] for i in chunk])
                lacking = {k: i for k, i in zip(pair_keys(batch), batch["ids"], strict=True) if k not in self.cache}
                if lacking:
                    todo.append((dataset, collate, chunk))
                    missing.update(lacking)
        missing = {k: i for part in _all_gather(missing) for k, i in part.items()}
        if missing and not may_score:
            raise UserError(
                f"{self.path}: no reference scores for {len(missing)} pairs (ids {sorted(missing.values())[:3]}...), "
                "and the policy was restored from a checkpoint, so it can no longer score them as the reference. "
                "Restore the reference file of the run that wrote the checkpoint, or start the run afresh.")
        if missing and self.cache and rank == 0:
            warnings.warn(f"{self.path}: {len(missing)} pairs have no reference score (new data, other tokenizer "
                          "settings, or a killed run); scoring them with the initial policy", stacklevel=2)
        rounds = max(_all_gather(len(todo)))
        if rounds and not todo:  # nothing missing here: repeat a batch so that every rank runs as many forwards
            dataset, collate, batch_size = sources[0]
            todo = [(dataset, collate, _shard(len(dataset), rank, world)[:batch_size])]
        fresh: dict[str, tuple[float, float]] = {}
        for step in range(rounds):
            dataset, collate, chunk = todo[min(step, len(todo) - 1)]
            batch = collate([dataset[i] for i in chunk])
            values = score(batch).float().cpu()  # (2B,)
            b = len(chunk)
            fresh.update((k, (float(values[i]), float(values[b + i]))) for i, k in enumerate(pair_keys(batch)))
            if (step + 1) % save_every == 0 or step + 1 == rounds:
                for part in _all_gather(fresh):
                    self.cache.update(part)
                fresh = {}
                if rank == 0:
                    self.save()
        _barrier()
        self.computed = len(missing)
        return self.computed

    @torch.no_grad()
    def scores(self, policy, batch) -> torch.Tensor:
        keys = batch.get("pair_keys") or pair_keys(batch)  # (B,), from the collator if it hashes them
        lacking = [i for i, k in enumerate(keys) if k not in self.cache]
        if lacking:
            ids = [batch["ids"][i] for i in lacking] if "ids" in batch else lacking
            raise CacheMiss(
                f"{self.path or 'the reference cache'} has no reference score for pair(s) {ids[:4]}: the cache is "
                "filled once, before the first update (DPOModule.on_fit_start), for the train and val pairs as "
                "tokenised then; a pair outside them would need the initial policy, which has been trained since")
        values = torch.tensor([self.cache[k] for k in keys], device=batch["input_ids"].device)  # (B, 2)
        out = torch.cat([values[:, 0], values[:, 1]])  # (2B,) chosen, then rejected
        if self.average_log_prob:
            out = out / (batch["labels"][:, 1:] != IGNORE_INDEX).sum(-1).clamp(min=1)
        return out


def _rank_world() -> tuple[int, int]:
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_gather(obj: Any) -> list[Any]:
    """Every rank's `obj` (a one-item list outside torch.distributed)."""
    rank, world = _rank_world()
    if world == 1:
        return [obj]
    out = [None] * world
    torch.distributed.all_gather_object(out, obj)
    return out


def _barrier() -> None:
    if _rank_world()[1] > 1:
        torch.distributed.barrier()


def _shard(n: int, rank: int, world: int) -> list[int]:
    """This rank's dataset indices: every world-th from `rank`, padded (with repeats) to equal shard sizes."""
    padded = -(-n // world) * world
    return [i % n for i in range(rank, padded, world)]


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[i:i + size] for i in range(0, len(indices), size)]
