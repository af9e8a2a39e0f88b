"""CREAM's self-labelling: rank a prompt's N responses by two rewards, measure how consistent the rankings are, make
one preference pair per prompt and its label smoothing (Wang et al., CREAM, arXiv 2410.12735, §3, Alg. 1).

    tau_i   Kendall's tau-b between the rankings of prompt i's N responses by the current reward r_t and by the
            previous one r_{t-1} (scipy.stats.kendalltau)
    C_i     (tau_i + 1) / 2, the consistency rate in [0, 1] (paper §3)
    pair    (argmax r_t, argmin r_t) of the prompt's responses; no pair when they tie (max == min)
    eps_i   the pair's label smoothing (paper §3: L = C L_DPO(y+, y-) + (1 - C) L_DPO(y-, y+)):
              "dyn"  1 - C_i              (CREAM, per pair)
              "avg"  1 - mean_i C_i       (CREAM's dataset-level variant; the mean over every ranked prompt)
              "srlm" 0                    (Self-Rewarding LM, Yuan et al. arXiv 2401.10020: the label as is)

Ties: tau-b corrects for ties in either ranking (pairs tied in one ranking count neither as concordant nor as
discordant, and the denominator shrinks by the tied pairs), so tied rewards do not bias tau towards -1 or +1.
When one ranking is constant (all N rewards equal in it) tau-b is undefined (NaN): such a prompt gets tau = 0,
C = 0.5 ("no evidence either way") and is counted in `undefined_tau`. Everything is keyed by prompt id, never by
position (the reference code's list of consistencies drifts out of line with its pairs when a prompt is skipped).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Variant = Literal["dyn", "avg", "srlm"]
VARIANTS: tuple[str, ...] = ("dyn", "avg", "srlm")


@dataclass
class Ranking:
    """One prompt's N responses under both rewards: tau, consistency, and its pair (None when r_t ties)."""

    prompt_id: str
    current: list[float]
    previous: list[float]
    tau: float
    consistency: float
    undefined_tau: bool
    pair: tuple[int, int] | None  # (chosen, rejected): indices into the prompt's responses


def kendall_tau(current: Sequence[float], previous: Sequence[float]) -> tuple[float, bool]:
    """(tau-b, undefined): scipy's Kendall tau-b of two rankings of the same responses; 0.0 and True when it is NaN."""
    from scipy.stats import kendalltau

    if len(current) != len(previous) or len(current) < 2:
        raise ValueError(f"kendall_tau needs two rankings of the same >= 2 responses, got {len(current)} and "
                         f"{len(previous)}")
    tau = float(kendalltau(current, previous, variant="b").statistic)
    return (0.0, True) if math.isnan(tau) else (tau, False)


def rank_prompt(prompt_id: str, current: Sequence[float], previous: Sequence[float]) -> Ranking:
    """A prompt's Ranking: tau and C of the two rewards, and the (argmax, argmin) pair of the current one."""
    tau, undefined = kendall_tau(current, previous)
    best = max(range(len(current)), key=lambda k: current[k])  # first of equal maxima
    worst = min(range(len(current)), key=lambda k: current[k])
    pair = None if current[best] == current[worst] else (best, worst)
    return Ranking(prompt_id, list(current), list(previous), tau, (tau + 1) / 2, undefined, pair)


def smoothing(rankings: list[Ranking], variant: str) -> dict[str, float]:
    """Per prompt id with a pair: its label smoothing eps under `variant` (see the module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}; expected one of {VARIANTS}")
    mean_c = sum(r.consistency for r in rankings) / max(1, len(rankings))
    eps = {"dyn": lambda r: 1.0 - r.consistency, "avg": lambda r: 1.0 - mean_c, "srlm": lambda r: 0.0}[variant]
    return {r.prompt_id: min(1.0, max(0.0, eps(r))) for r in rankings if r.pair is not None}


def labelling_accuracy(pairs: list[tuple[float | None, float | None]]) -> dict[str, float]:
    """How often the task checker agrees with self-made labels: of (checker score of chosen, of rejected) per pair,
    the shares where chosen scores higher ("correct"), lower ("wrong") and equal ("tie"); `accuracy_untied` is
    correct / (correct + wrong). Pairs with a missing score count as ties."""
    n = len(pairs)
    correct = sum(c is not None and r is not None and c > r for c, r in pairs)
    wrong = sum(c is not None and r is not None and c < r for c, r in pairs)
    return {"label_correct": correct / max(1, n), "label_wrong": wrong / max(1, n),
            "label_tie": (n - correct - wrong) / max(1, n),
            "label_accuracy_untied": correct / (correct + wrong) if correct + wrong else None}
