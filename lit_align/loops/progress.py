"""A progress display for a loop's sampling and scoring: responses done, responses/s and tokens/s per task.

    with ThroughputBar(enabled=True) as bar:
        sampling = bar.task("grow_1: sampling", total=8000)
        bar.advance(sampling, responses=512, tokens=9731, seconds=1.6)

Rich draws it (lit_align.rollout.progress draws the per-batch bars of a single generate call; a loop's work spans
many calls, so its bar counts responses and tokens across them). The rates are over the time spent in this process
(the seconds the caller says each advance took, so sampling and scoring are timed apart; a resumed stage starts
its rates again, but its bar starts at the responses already committed). Where rich cannot
start a live display (inside another one), or when disabled, nothing is drawn and the totals stay available.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Throughput:
    """What one task has counted in this process: responses, tokens and the seconds spent on them."""

    responses: int = 0
    tokens: int = 0
    seconds: float = 0.0

    def rates(self) -> tuple[float, float]:
        """(responses/s, tokens/s)."""
        elapsed = max(self.seconds, 1e-9)
        return self.responses / elapsed, self.tokens / elapsed


class ThroughputBar:
    """Rich progress tasks with responses/s and tokens/s columns (see the module docstring)."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.progress, self.counts = enabled, None, {}

    def __enter__(self) -> ThroughputBar:
        if self.enabled:
            from rich.errors import LiveError
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
            try:
                self.progress.start()
            except LiveError:
                self.progress = None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.stop()

    def task(self, description: str, total: int, completed: int = 0) -> Any:
        """A new task of `total` responses, `completed` of them done before (a resumed stage)."""
        key = self.progress.add_task(description, total=total, completed=completed, rate="") \
            if self.progress is not None else description
        self.counts[key] = Throughput()
        return key

    def advance(self, key: Any, responses: int, tokens: int = 0, seconds: float = 0.0) -> Throughput:
        """Count `responses` (and `tokens`) done in `seconds` of work; returns the task's totals."""
        count = self.counts[key]
        count.responses += responses
        count.tokens += tokens
        count.seconds += seconds
        if self.progress is not None:
            per_second, tokens_per_second = count.rates()
            rate = f"{per_second:.1f} responses/s" + (f", {tokens_per_second:.0f} tokens/s" if tokens else "")
            self.progress.update(key, advance=responses, rate=rate)
        return count
