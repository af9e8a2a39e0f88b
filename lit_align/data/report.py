"""DataReport: what tokenisation dropped or truncated, counted per reason and logged once per split.

Nothing is dropped or shortened silently: every example the limits or the sanity checks touch is counted
under a reason, with a few example ids, and the report reads as plain sentences, e.g.
"train: kept 97 of 100 pairs; dropped 3 pairs whose prompt exceeds max_length=256 (e.g. train:4, train:9)".
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

# reason -> sentence fragment; "{...}" fields are filled from DataReport.limits.
DROP_REASONS = {
    "empty_completion": "with an empty completion",
    "empty_prompt": "with an empty prompt",
    "identical_pair": "whose chosen and rejected are identical",
    "identical_after_truncation": "whose chosen and rejected match after truncation to max_length={max_length}",
    "prompt_too_long": "whose prompt exceeds max_prompt_length={max_prompt_length}",
    "prompt_exceeds_max_length": "whose prompt leaves no room for a completion within max_length={max_length}",
    "too_long": "longer than max_length={max_length}",
}
TRUNCATION_REASONS = {
    "prompt": "prompts (kept their last max_prompt_length={max_prompt_length} tokens)",
    "completion": "completions to fit max_length={max_length}",
}
_SINGULAR = {"examples": "example", "pairs": "pair", "prompts": "prompt"}
_SHOWN_IDS = 3


@dataclass
class DataReport:
    """Counts of kept, dropped (per reason) and truncated (per part) items of one split."""

    split: str
    unit: str = "examples"  # "examples" | "pairs" | "prompts"
    limits: dict[str, Any] = field(default_factory=dict)
    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    truncated: Counter = field(default_factory=Counter)
    sample_ids: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, example_id: str) -> None:
        if reason not in DROP_REASONS:
            raise KeyError(f"unknown drop reason {reason!r}")
        self.dropped[reason] += 1
        self._remember(reason, example_id)

    def truncate(self, part: str, example_id: str) -> None:
        if part not in TRUNCATION_REASONS:
            raise KeyError(f"unknown truncated part {part!r}")
        self.truncated[part] += 1
        self._remember(f"truncated:{part}", example_id)

    def _remember(self, key: str, example_id: str) -> None:
        ids = self.sample_ids.setdefault(key, [])
        if len(ids) < _SHOWN_IDS:
            ids.append(example_id)

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    def lines(self) -> list[str]:
        """One sentence per nonzero count, after a 'kept k of n' headline."""
        out = [f"{self.split}: kept {self.kept} of {self.total} {self.unit}"]
        for reason, n in sorted(self.dropped.items()):
            what = DROP_REASONS[reason].format_map(_Missing(self.limits))
            out.append(f"dropped {n} {self._unit(n)} {what}{self._eg(reason)}")
        for part, n in sorted(self.truncated.items()):
            what = TRUNCATION_REASONS[part].format_map(_Missing(self.limits))
            out.append(f"truncated {n} {what}{self._eg('truncated:' + part)}")
        return out

    def __str__(self) -> str:
        return "; ".join(self.lines())

    def _unit(self, n: int) -> str:
        return self.unit if n != 1 else _SINGULAR.get(self.unit, self.unit)

    def _eg(self, key: str) -> str:
        ids = self.sample_ids.get(key, [])
        return f" (e.g. {', '.join(ids)})" if ids else ""


class _Missing(dict):
    """format_map helper: unknown limits print as '?' instead of raising."""

    def __missing__(self, key: str) -> str:
        return "?"
