"""Best-of-N at inference: sample N responses per prompt, score them with reward sources, answer with the best.

ReST (Gulcehre et al., arXiv 2308.08998, §5) reports that re-ranking N samples with the reward model on top of a
ReST policy adds to its gains; here the scorer is any list of reward sources (lit_align.rollout.reward_sources:
`{kind: checker}`, `{kind: model, path, reduction: mean|min|mean_minus_std}` ensembles, weighted sums), the same
specs as training. A sample with an invalid reward (a source failed on it) is never picked unless every sample of
its prompt is invalid (then the first is); ties go to the first sample. Sampling is seeded (lit_align.rollout
.generate), so a call is reproducible and leaves the global RNG alone.

    best = best_of_n(model, tokenizer, rows, build_reward_sources([{"kind": "checker"}]), n=8, temperature=0.8)
    best.picks[i]          # the Generation answering rows[i]
    best.rewards           # (P, N) total reward of every sample (-inf where invalid)

`lit-align evaluate --best-of N --reward SPEC` evaluates these answers (lit_align.rollout.evaluate.evaluate_policy).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from lit_align.errors import UserError
from lit_align.rollout.generate import Generation, encode_prompts, generate
from lit_align.rollout.reward_sources import RewardSource, score_rewards


@dataclass
class BestOfN:
    """picks (P,): the chosen Generation per prompt; chosen (P,): its index among the prompt's samples;
    rewards (P, N): every sample's total reward (-inf where invalid); samples: the P x N Generations."""

    picks: list[Generation]
    chosen: list[int]
    rewards: torch.Tensor
    samples: list[list[Generation]]

    @property
    def pick_rewards(self) -> torch.Tensor:
        """(P,) the reward of each pick (-inf where every sample of the prompt was invalid)."""
        return self.rewards.gather(1, torch.tensor(self.chosen)[:, None])[:, 0]


def best_of_n(model, tokenizer: Any, rows: list[dict], sources: list[RewardSource], n: int, *,
              temperature: float = 1.0, top_p: float = 1.0, max_new_tokens: int = 32, batch_size: int = 64,
              seed: int = 0, encoder: Any = None, prompt_ids: list[list[int]] | None = None,
              progress: bool | str = False) -> BestOfN:
    """Sample `n` responses per row and pick the one with the highest total reward (see the module docstring).

    `prompt_ids` (already encoded prompts, one per row) skips encoding; `encoder` encodes as in training.
    """
    if n < 1:
        raise UserError(f"best-of-N needs N >= 1, got {n}")
    if not sources:
        raise UserError("best-of-N needs reward sources to rank the samples (e.g. --reward '{kind: checker}')")
    prompts = prompt_ids if prompt_ids is not None else encode_prompts(tokenizer, rows, encoder)
    generations = generate(model, tokenizer, [p for p in prompts for _ in range(n)], max_new_tokens=max_new_tokens,
                           do_sample=True, temperature=temperature, top_p=top_p, batch_size=batch_size, seed=seed,
                           progress=progress and (progress if isinstance(progress, str) else f"best-of-{n}: sampling"))
    result = score_rewards(sources, [row for row in rows for _ in range(n)], generations)
    rewards = torch.where(result.valid, result.total, torch.tensor(-math.inf)).view(len(rows), n)  # (P, N)
    chosen = rewards.argmax(dim=1).tolist()  # (P,) the first maximum on ties; sample 0 when all are -inf
    samples = [generations[i * n:(i + 1) * n] for i in range(len(rows))]
    return BestOfN([s[c] for s, c in zip(samples, chosen, strict=True)], chosen, rewards, samples)
