"""Reference policies for the DPO family: where pi_ref's sequence log-probs come from.

* FrozenCopyReference: a frozen copy of the initial policy (eval mode, no grad). A submodule of the
  LightningModule, so it moves devices and is wrapped by DDP/FSDP like the policy.
* PeftAdapterReference: the policy itself with its LoRA adapter switched off (no second copy in memory).
* CachedReference: reference scores computed once per example id, kept on disk (atomic writes, a fingerprint
  of what produced them), so later epochs and later runs skip the reference forward entirely.
Every reference answers `scores(policy, batch) -> (2B,)` for a preference batch (rows: chosen, then rejected);
the frozen copy and the adapter also answer `token_logps(policy, batch) -> (B, T-1)` (online RL's per-token KL).
"""
from __future__ import annotations

import copy
import os

import torch
from torch import nn

from lit_align.models.causal_lm import sequence_logps, shifted_logps


def _batch_logps(model, batch, average_log_prob: bool) -> torch.Tensor:
    return sequence_logps(model, batch, average_log_prob=average_log_prob)  # (2B,)


class FrozenCopyReference(nn.Module):
    def __init__(self, policy: nn.Module, average_log_prob: bool = False):
        super().__init__()
        self.model = copy.deepcopy(policy).eval().requires_grad_(False)
        self.average_log_prob = average_log_prob

    def train(self, mode: bool = True):  # stays in eval mode (no dropout) whatever Lightning asks
        return super().train(False)

    @torch.no_grad()
    def scores(self, policy, batch) -> torch.Tensor:
        return _batch_logps(self.model, batch, self.average_log_prob)

    @torch.no_grad()
    def token_logps(self, policy, batch, temperature: float = 1.0) -> torch.Tensor:
        return shifted_logps(self.model, batch, temperature=temperature)[0]  # (B, T-1)


class PeftAdapterReference(nn.Module):
    def __init__(self, average_log_prob: bool = False):
        super().__init__()
        self.average_log_prob = average_log_prob

    @torch.no_grad()
    def scores(self, policy, batch) -> torch.Tensor:
        return self._without_adapter(policy, lambda: _batch_logps(policy, batch, self.average_log_prob))

    @torch.no_grad()
    def token_logps(self, policy, batch, temperature: float = 1.0) -> torch.Tensor:
        return self._without_adapter(policy, lambda: shifted_logps(policy, batch, temperature=temperature)[0])

    @staticmethod
    def _without_adapter(policy, fn):
        if not hasattr(policy, "disable_adapter"):
            raise ValueError("reference='adapter' needs a PEFT policy (set model.lora); use reference='copy' otherwise")
        was_training = policy.training
        policy.eval()
        try:
            with policy.disable_adapter():
                return fn()
        finally:
            policy.train(was_training)


class CachedReference(nn.Module):
    """Reference scores by example id, filled from `source` on a miss and saved to `path`.

    The file holds {"fingerprint": str, "scores": {id: (chosen, rejected)}}; a file whose fingerprint differs
    (another model, max_length or reduction) is ignored with a warning rather than silently reused.
    """

    def __init__(self, source: nn.Module, path: str, fingerprint: str):
        super().__init__()
        self.source, self.path, self.fingerprint = source, path, fingerprint
        self.cache: dict[str, tuple[float, float]] = {}
        self.hits = self.misses = 0
        self.load()

    def load(self) -> None:
        if not os.path.exists(self.path):
            return
        data = torch.load(self.path, weights_only=True)
        if data.get("fingerprint") != self.fingerprint:
            import warnings
            warnings.warn(f"{self.path}: reference cache made for {data.get('fingerprint')!r}, not "
                          f"{self.fingerprint!r}; recomputing", stacklevel=2)
            return
        self.cache = {k: tuple(v) for k, v in data["scores"].items()}

    def save(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = f"{self.path}.tmp{os.getpid()}"
        torch.save({"fingerprint": self.fingerprint, "scores": {k: list(v) for k, v in self.cache.items()}}, tmp)
        os.replace(tmp, self.path)

    def complete_for(self, ids) -> bool:
        return all(str(i) in self.cache for i in ids)

    @torch.no_grad()
    def scores(self, policy, batch) -> torch.Tensor:
        ids = [str(i) for i in batch["ids"]]
        device = batch["input_ids"].device
        if not self.complete_for(ids):
            self.misses += len(ids)
            fresh = self.source.scores(policy, batch).float().cpu()  # (2B,)
            b = len(ids)
            for i, key in enumerate(ids):
                self.cache[key] = (float(fresh[i]), float(fresh[b + i]))
        else:
            self.hits += len(ids)
        chosen = [self.cache[k][0] for k in ids]
        rejected = [self.cache[k][1] for k in ids]
        return torch.tensor(chosen + rejected, device=device)
