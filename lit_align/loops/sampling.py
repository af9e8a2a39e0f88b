"""Sample N responses per prompt from a policy and score them, in chunks appended to a ChunkedJSONL: the Grow step of
ReST and the candidate sampling of CREAM.

Chunk c holds the N samples of prompts [c * chunk_prompts, (c + 1) * chunk_prompts); it is sampled with the seed
`chunk_seed(seed, stage, c)` through lit_align.rollout.generate (which seeds a forked RNG and leaves the global one
alone), so chunk c is the same whether the stage runs through or is resumed after a kill: a resumed stage starts at
the first chunk not committed and ends with the file an uninterrupted run writes.

One line per response:

    {"prompt_id", "sample" (0..N-1), "chunk", "prompt" (the row's prompt, as given), "prompt_ids", "completion_ids"
     (the exact sampled tokens, stop token apart), "stop_token_id", "finished", "num_tokens", "text",
     + the scorer's fields (ReST: "rewards" {source: score or null}, "reward", "valid"), + "logp" when asked
     (the sampling policy's summed log-prob of the generated tokens, lit_align.rollout.score)}
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from lit_align.loops.driver import digest
from lit_align.loops.progress import ThroughputBar
from lit_align.loops.rundir import ChunkedJSONL
from lit_align.rollout.generate import Generation, encode_prompts, generate

Scorer = Callable[[list[dict], list[Generation]], list[dict[str, Any]]]
"""(prompt rows, generations) -> one dict of fields per generation, merged into its line."""


def chunk_seed(seed: int, stage: str, chunk: int) -> int:
    """The sampling seed of chunk `chunk` of stage `stage` in a run seeded `seed` (stable across processes)."""
    return int(digest(seed, stage, chunk), 16) % (2 ** 31)


@dataclass
class SamplingSettings:
    """How responses are sampled (ReST's Grow).

    Args:
        samples_per_prompt: N responses per prompt.
        temperature: sampling temperature (the ReST paper: 0.8).
        top_p: nucleus sampling (1.0: off).
        max_new_tokens: the longest response.
        batch_size: sequences per generate call.
        chunk_prompts: prompts per committed chunk (a killed run loses at most one chunk of work).
        logprobs: also record the sampling policy's log-prob of each response ("logp"; one more forward pass).
    """

    samples_per_prompt: int = 8
    temperature: float = 0.8
    top_p: float = 1.0
    max_new_tokens: int = 24
    batch_size: int = 64
    chunk_prompts: int = 64
    logprobs: bool = False

    def __post_init__(self):
        for name in ("samples_per_prompt", "max_new_tokens", "batch_size", "chunk_prompts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be > 0 and top_p in (0, 1], got {self.temperature}, {self.top_p}")


def sample_chunks(model, tokenizer, rows: list[dict], out: ChunkedJSONL, score: Scorer, settings: SamplingSettings,
                  *, seed: int, stage: str, encoder: Any = None, progress: bool = True) -> dict[str, float]:
    """Sample and score every chunk of `rows` not yet committed in `out`; returns the throughput of the chunks done in
    this call (sampling_seconds, scoring_seconds, and responses_per_s, tokens_per_s over the time spent in generate),
    empty when every chunk was committed before."""
    from lit_align.rollout.score import completion_logprobs

    n = settings.samples_per_prompt
    prompts = encode_prompts(tokenizer, rows, encoder)
    starts = list(range(0, len(rows), settings.chunk_prompts))
    done = min(out.chunks, len(starts))
    with ThroughputBar(progress) as bar:
        sampling = bar.task(f"{stage}: sampling", total=len(rows) * n, completed=out.lines)
        scoring = bar.task(f"{stage}: scoring", total=len(rows) * n, completed=out.lines)
        for c in range(done, len(starts)):
            idx = range(starts[c], min(starts[c] + settings.chunk_prompts, len(rows)))
            chunk_rows = [rows[i] for i in idx for _ in range(n)]
            start = time.monotonic()
            generations = generate(model, tokenizer, [prompts[i] for i in idx for _ in range(n)],
                                   max_new_tokens=settings.max_new_tokens, do_sample=True,
                                   temperature=settings.temperature, top_p=settings.top_p,
                                   batch_size=settings.batch_size, seed=chunk_seed(seed, stage, c))
            sampled = bar.advance(sampling, len(generations), sum(g.num_tokens for g in generations),
                                  time.monotonic() - start)
            start = time.monotonic()
            fields = score(chunk_rows, generations)
            if settings.logprobs:
                logps = completion_logprobs(model, tokenizer, generations, settings.batch_size)
                fields = [{**f, "logp": float(lp)} for f, lp in zip(fields, logps, strict=True)]
            scored = bar.advance(scoring, len(generations), seconds=time.monotonic() - start)
            out.append([line(row, k % n, c, g, f)
                        for k, (row, g, f) in enumerate(zip(chunk_rows, generations, fields, strict=True))])
    if done == len(starts):
        return {}
    responses_per_s, tokens_per_s = sampled.rates()
    return {"sampling_seconds": round(sampled.seconds, 2), "scoring_seconds": round(scored.seconds, 2),
            "responses_per_s": round(responses_per_s, 1), "tokens_per_s": round(tokens_per_s, 1)}


def line(row: dict, sample: int, chunk: int, generation: Generation, fields: dict[str, Any]) -> dict[str, Any]:
    """The JSONL line of one sampled response (see the module docstring)."""
    g = asdict(generation)
    return {"prompt_id": row["id"], "sample": sample, "chunk": chunk, "prompt": row["prompt"],
            "prompt_ids": g["prompt_ids"], "completion_ids": g["completion_ids"], "stop_token_id": g["stop_token_id"],
            "finished": g["finished"], "num_tokens": g["num_tokens"], "text": g["text"], **fields}
