"""ReST's Improve filter: which scored responses pass a threshold, and the weights of a reward-weighted loss.

Gulcehre et al., "Reinforced Self-Training (ReST) for Language Modeling", arXiv 2308.08998, §2: Improve step i
fine-tunes on the Grow data whose reward clears a threshold tau_i, and the thresholds rise from step to step
(the paper's IWSLT runs: 0, 0.7, 0.8, 0.9, 0.95, 0.99).

  absolute   keep a response when reward >= tau_i
  quantile   tau_i is a quantile level q in [0, 1]: keep a response when its reward is >= the q-quantile of the
             rewards in its group (the responses to the same prompt; linear interpolation between order
             statistics, numpy's default), so each prompt keeps its best share, however hard the prompt is.
             Only `reference` rows set the levels (ReST: the policy's samples, not the original SFT rows); a row
             whose prompt has no reference row (an SFT prompt that was not sampled) is held to the q-quantile of
             all reference rows
  min_reward an absolute floor on top of either (a prompt whose every answer failed keeps none of them)

Invalid responses (a reward source failed on them) never pass and take no part in a group's quantile. Ties at the
threshold pass, so a group whose rewards are all equal keeps all of them (quantile mode) or none/all (absolute).

Reward-weighted loss (the option beside plain BC on the kept rows): reward-weighted regression (Peters & Schaal,
ICML 2007; AWR, Peng et al., arXiv 1910.00177) weights each kept row by exp(r / T), normalised to mean 1 over
the kept rows, so the loss keeps BC's scale and better responses count more.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from lit_align.errors import UserError

Mode = Literal["absolute", "quantile"]


def check_thresholds(thresholds: Sequence[float], mode: Mode) -> None:
    """A non-empty, non-decreasing list of finite numbers; quantile levels lie in [0, 1]."""
    if not thresholds:
        raise UserError("improve.thresholds is empty: give one threshold per Improve step, e.g. [0.7, 0.8, 0.9]")
    if mode not in ("absolute", "quantile"):
        raise UserError(f"improve.threshold_mode must be 'absolute' or 'quantile', got {mode!r}")
    for i, t in enumerate(thresholds):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise UserError(f"improve.thresholds[{i}] must be a finite number, got {t!r}")
        if mode == "quantile" and not 0 <= t <= 1:
            raise UserError(f"improve.thresholds[{i}] = {t}: a quantile level must lie in [0, 1]")
        if i and t < thresholds[i - 1]:
            raise UserError(f"improve.thresholds must rise from step to step, but [{i - 1}] = {thresholds[i - 1]} > "
                            f"[{i}] = {t}")


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of `values` with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("quantile of no values")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def passing(rewards: Sequence[float], valid: Sequence[bool], groups: Sequence[str], threshold: float, mode: Mode,
            min_reward: float | None = None, reference: Sequence[bool] | None = None) -> list[bool]:
    """Which responses pass Improve's filter (see the module docstring); `groups[i]` names response i's prompt and
    `reference[i]` (default: all True) says whether it takes part in setting the quantile levels."""
    reference = [True] * len(rewards) if reference is None else reference
    if not len(rewards) == len(valid) == len(groups) == len(reference):
        raise ValueError(f"{len(rewards)} rewards, {len(valid)} validity flags, {len(groups)} groups and "
                         f"{len(reference)} reference flags")
    if mode == "absolute":
        cut = [threshold] * len(rewards)
    elif mode == "quantile":
        members: dict[str, list[float]] = {}
        for r, ok, g, ref in zip(rewards, valid, groups, reference, strict=True):
            if ok and ref:
                members.setdefault(g, []).append(r)
        levels = {g: quantile(values, threshold) for g, values in members.items()}
        every = [r for values in members.values() for r in values]
        overall = quantile(every, threshold) if every else math.inf
        cut = [levels.get(g, overall) for g in groups]
    else:
        raise ValueError(f"mode must be 'absolute' or 'quantile', got {mode!r}")
    floor = -math.inf if min_reward is None else min_reward
    return [bool(ok and r >= c and r >= floor) for r, ok, c in zip(rewards, valid, cut, strict=True)]


def reward_weights(rewards: Sequence[float], temperature: float = 1.0) -> list[float]:
    """exp(r / T) normalised to mean 1 (reward-weighted regression; see the module docstring)."""
    if temperature <= 0:
        raise ValueError(f"the weight temperature must be > 0, got {temperature}")
    if not rewards:
        return []
    top = max(rewards)
    raw = [math.exp((r - top) / temperature) for r in rewards]  # <= 1: no overflow
    mean = sum(raw) / len(raw)
    return [w / mean for w in raw]
