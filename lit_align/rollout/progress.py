"""A progress bar over batches for long generation and scoring work (rich, falling back to tqdm).

`progress` arguments across lit_align.rollout are `bool | str`: False shows nothing, True a bar with a
default label, a string a bar with that label. Rich draws the bar; where rich cannot start a live display
(an older rich inside another live display, e.g. Lightning's RichProgressBar) tqdm draws it instead.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def label(progress: bool | str, default: str) -> str | None:
    """The bar's label for a `progress` argument, or None for no bar."""
    if not progress:
        return None
    return progress if isinstance(progress, str) else default


def track(items: Iterable[T], total: int, progress: bool | str, default: str = "working") -> Iterator[T]:
    """Yield `items`, drawing a bar of `total` steps when `progress` asks for one."""
    description = label(progress, default)
    if description is None:
        yield from items
        return
    from rich.errors import LiveError
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        bar.start()
    except LiveError:
        from tqdm.auto import tqdm

        yield from tqdm(items, total=total, desc=description)
        return
    try:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
    finally:
        bar.stop()
