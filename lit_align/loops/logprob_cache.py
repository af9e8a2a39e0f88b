"""Sequence log-probs of sampled responses, computed once per (model, response) and kept on disk: CREAM's scoring
cache (lit_align.loops.cream).

CREAM scores every sampled response with up to three models per iteration (M_t, M_{t-1}, M_{t-2}) and feeds the
chosen/rejected log-probs of M_t to DPO as its reference. Each (model fingerprint, sample key) is scored once:

    fingerprint   lit_align.models.reference.weights_digest of the scoring model (its weights, not its folder name:
                  the same weights under another path hit the same entries)
    sample key    "<prompt_id>#<sample>:<hash of prompt + generated tokens>" (`sample_key`): the tokens are in the
                  key, so a response resampled differently never reads a stale score

    <folder>/<fingerprint>.json    {"model": path, "scores": {sample key: [sum log p, scored tokens]}}

A lookup that finds its entry counts as `reused`, a scored one as `computed` (CREAM's summary.json reports both).
Scores are written after each batch of `save_every` responses, atomically (a kill -9 loses at most one batch).
Scoring goes through lit_align.rollout.score.completion_logprobs (the fused log-prob op, batches sorted by
length), with a ThroughputBar showing responses/s and tokens/s.
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from lit_align.files import read_json, write_json
from lit_align.loops.progress import ThroughputBar
from lit_align.rollout.generate import Generation


def sample_key(prompt_id: str, sample: int, generation: Generation) -> str:
    """The cache key of one sampled response (its tokens hashed in, see the module docstring)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr((generation.prompt_ids, generation.generated_ids)).encode())
    return f"{prompt_id}#{sample}:{digest.hexdigest()}"


class LogprobCache:
    """Summed log-probs of responses per (model fingerprint, sample key), on disk under `folder`.

    Args:
        folder: where the per-model JSON files live (created).
        batch_size: responses per scoring forward.
        save_every: responses scored between two saves of a model's file.
        progress: draw the scoring bar.
    """

    def __init__(self, folder: str | os.PathLike, batch_size: int = 64, save_every: int = 512, progress: bool = True):
        self.folder, self.batch_size, self.save_every, self.progress = Path(folder), batch_size, save_every, progress
        self.folder.mkdir(parents=True, exist_ok=True)
        self.computed = self.reused = 0
        self.tokens_per_s: float | None = None
        self._files: dict[str, dict[str, Any]] = {}

    def entries(self, fingerprint: str) -> dict[str, list[float]]:
        """The stored {sample key: [sum, tokens]} of one model (read once per process)."""
        if fingerprint not in self._files:
            path = self.folder / f"{fingerprint}.json"
            self._files[fingerprint] = read_json(path) if path.exists() else {"model": "", "scores": {}}
        return self._files[fingerprint]["scores"]

    def lookup(self, fingerprint: str, keys: list[str]) -> list[float]:
        """Stored sums only (KeyError naming the first missing key): how DPO's reference reads M_t's scores."""
        scores = self.entries(fingerprint)
        missing = [k for k in keys if k not in scores]
        if missing:
            raise KeyError(f"no log-prob of {missing[0]!r} under model {fingerprint} in {self.folder}")
        self.reused += len(keys)
        return [scores[k][0] for k in keys]

    def scores(self, model, tokenizer, fingerprint: str, keys: list[str], generations: list[Generation],
               label: str = "scoring", name: str = "") -> list[tuple[float, int]]:
        """(sum log p, scored tokens) of each generation under `model`, scoring only what the cache lacks."""
        from lit_align.rollout.score import completion_logprobs

        entries = self.entries(fingerprint)
        if name:
            self._files[fingerprint]["model"] = name
        todo = list(dict.fromkeys(k for k in keys if k not in entries))
        self.reused += len(keys) - len(todo)
        by_key = dict(zip(keys, generations, strict=True))
        with ThroughputBar(self.progress) as bar:
            task = bar.task(label, total=len(todo))
            for start in range(0, len(todo), self.save_every):
                part = todo[start:start + self.save_every]
                gens = [by_key[k] for k in part]
                began = time.monotonic()
                sums = completion_logprobs(model, tokenizer, gens, self.batch_size)  # (n,)
                done = bar.advance(task, len(part), sum(g.num_tokens for g in gens), time.monotonic() - began)
                entries.update((k, [float(s), g.num_tokens]) for k, s, g in zip(part, sums, gens, strict=True))
                write_json(self.folder / f"{fingerprint}.json", self._files[fingerprint])
                self.computed += len(part)
                self.tokens_per_s = round(done.rates()[1], 1)
        return [(entries[k][0], int(entries[k][1])) for k in keys]

    def counts(self) -> dict[str, int]:
        return {"scorings_computed": self.computed, "scorings_reused": self.reused}
