"""Pluggable rewards for online RL: a checker, a reward model (or ensemble), a discriminator, or a weighted sum.

A reward source maps (rows, generations) -> (n,) float32 CPU tensor, one reward per generated response;
`rows[i]` is the prompt row it answered (with "prompt" and, for the checker, "task"). Sources are built
from config dicts, e.g. in YAML:

    rewards:
      - {kind: checker}                                   # the row's task checker: score in [0, 1]
      - {kind: model, path: artifacts/reward, weight: 0.5, reduction: min}   # an ensemble: member_*/ folders
      - {kind: discriminator, form: logit}                # RLGAF's D (provided by the module that trains it)

`score_rewards` runs every source and isolates failures: a source that raises is retried one sample at a
time, so one bad sample cannot sink the batch; a sample whose reward is NaN/inf or raised in any source is
marked invalid (dropped from the update by the caller) and counted per source. A source that fails on every
sample of a batch (more than one) is broken, not unlucky: that raises, naming the source and its error.
A bad spec (unknown kind, a non-finite weight, which would turn every total into NaN) is a UserError naming
its index in `rewards`.
"""
from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from lit_align.errors import UserError
from lit_align.rollout.generate import Generation

KINDS = ("checker", "model", "discriminator")


class RewardSource:
    """Base: `name` (for logs), `weight` in a sum, and `__call__(rows, generations) -> (n,) tensor`."""

    name = "reward"
    weight = 1.0

    def __call__(self, rows: list[dict], generations: list[Generation]) -> torch.Tensor:
        raise NotImplementedError


class CheckerReward(RewardSource):
    """The task suite's programmatic checker of each row ("task" column): partial credit in [0, 1]."""

    name = "checker"

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def __call__(self, rows, generations):
        from lit_align.tasks.checkers import checker_from_dict

        out = []
        for i, (row, gen) in enumerate(zip(rows, generations, strict=True)):
            if row.get("task") is None:
                raise UserError(f"{row.get('_where', f'prompt row {i}')}: the checker reward needs a 'task' column")
            out.append(checker_from_dict(row["task"]).check(gen.text).score)
        return torch.tensor(out, dtype=torch.float32)


class ModelReward(RewardSource):
    """A trained reward model (save_pretrained folder) or an ensemble (a folder of member_* folders).

    Ensembles reduce by "mean", "min" or "mean_minus_std" (mean - k * std; lit_align.models.RewardEnsemble).
    Responses are rendered like the reward model's training pairs (lit_align.rollout.reward).
    """

    name = "model"

    def __init__(self, path: str, weight: float = 1.0, reduction: str = "mean", k: float = 1.0,
                 batch_size: int = 64, dtype: str = "float32", device: torch.device | str = "cpu"):
        from lit_align.models.loading import load_sequence_classifier, load_tokenizer
        from lit_align.models.scalar import RewardEnsemble

        members = sorted(glob.glob(os.path.join(path, "member_*"))) or [path]
        self.tokenizer = load_tokenizer(members[0])
        models = [load_sequence_classifier(m, dtype=dtype, pad_token_id=self.tokenizer.pad_token_id,
                                           vocab_size=len(self.tokenizer)) for m in members]
        self.model = RewardEnsemble(models, reduction, k).to(device).eval().requires_grad_(False)
        self.weight, self.batch_size, self.name = weight, batch_size, f"model:{os.path.basename(path.rstrip('/'))}"

    def __call__(self, rows, generations):
        from lit_align.rollout.reward import reward_scores

        return reward_scores(self.model, self.tokenizer, [r["prompt"] for r in rows],
                             [g.text for g in generations], batch_size=self.batch_size)


@dataclass
class RewardResult:
    """Combined rewards (n,), per-source rewards, validity (n,) and failure counts per source."""

    total: torch.Tensor
    components: dict[str, torch.Tensor]
    valid: torch.Tensor
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def dropped(self) -> int:
        return int((~self.valid).sum())


def _safe_call(source: RewardSource, rows: list[dict], generations: list[Generation]) -> tuple[torch.Tensor, int]:
    """The source's rewards with failures as NaN: on an exception, retry one sample at a time."""
    n = len(generations)
    try:
        out = torch.as_tensor(source(rows, generations), dtype=torch.float32).reshape(-1)
        if out.numel() != n:
            raise ValueError(f"reward source {source.name!r} returned {out.numel()} rewards for {n} responses")
    except Exception:  # noqa: BLE001 - a reward source is user code; isolate the failing samples instead
        out = torch.full((n,), math.nan)
        error = None
        for i in range(n):
            try:
                one = torch.as_tensor(source(rows[i:i + 1], generations[i:i + 1])).reshape(-1)
                if one.numel() != 1:
                    raise ValueError(f"reward source {source.name!r} returned {one.numel()} rewards for 1 response")
                out[i] = float(one[0])
            except Exception as e:  # noqa: BLE001
                error = error or e
        if n > 1 and error is not None and not torch.isfinite(out).any():
            raise RuntimeError(f"reward source {source.name!r} failed on all {n} responses: "
                               f"{type(error).__name__}: {error}") from error
    failed = int((~torch.isfinite(out)).sum())
    if n > 1 and failed == n:
        raise FloatingPointError(f"reward source {source.name!r} returned no finite reward for any of {n} responses")
    return out, failed


def score_rewards(sources: list[RewardSource], rows: list[dict], generations: list[Generation]) -> RewardResult:
    """Weighted sum of every source's rewards; samples with a missing reward in any source are invalid."""
    if not sources:
        raise UserError("no reward sources: set `rewards` (e.g. [{kind: checker}])")
    total = torch.zeros(len(generations))
    components, failures = {}, {}
    for i, source in enumerate(sources):
        name = source.name if source.name not in components else f"{source.name}#{i}"  # two of a kind stay apart
        values, failed = _safe_call(source, rows, generations)
        components[name] = values
        failures[name] = failed
        total = total + source.weight * torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    valid = torch.stack([torch.isfinite(v) for v in components.values()]).all(0)
    return RewardResult(total, components, valid, failures)


def build_reward_sources(specs: list[dict[str, Any]], *, device: torch.device | str = "cpu",
                         discriminator: RewardSource | None = None) -> list[RewardSource]:
    """RewardSource objects from config dicts ({kind, weight, ...}); see the module docstring."""
    sources: list[RewardSource] = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict) or spec.get("kind") not in KINDS:
            raise UserError(f"rewards[{i}]: expected a dict with kind in {KINDS}, got {spec!r}")
        args = {k: v for k, v in spec.items() if k != "kind"}
        kind = spec["kind"]
        try:
            weight = args.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"weight must be a finite number, got {weight!r}")
            if kind == "checker":
                sources.append(CheckerReward(**args))
            elif kind == "model":
                if "path" not in args:
                    raise ValueError("a model reward needs `path` (a reward-model folder)")
                sources.append(ModelReward(device=device, **args))
            else:
                if discriminator is None:
                    raise ValueError("a discriminator reward is trained by RLGAFModule; use that recipe")
                discriminator.weight = args.pop("weight", 1.0)
                if args:
                    raise TypeError(f"unexpected fields {sorted(args)}")
                sources.append(discriminator)
        except (TypeError, ValueError) as error:
            raise UserError(f"rewards[{i}] ({kind}): {error}") from None
    return sources
