"""What every benchmark here shares (bench_ops, bench_dpo_step, bench_grpo_step, bench_rollout): timing, failure
reasons, ratios to a baseline row, n/a footnotes, printed tables and comma-separated choices, and the driver of the
one-optimisation-step comparisons (run_step_providers). Peak memory: benchmarks/memory.py.

One copy, so that "time ms", "x eager" / "x trl" and "n/a [k]" mean the same thing in every table and a fix to the
method reaches all of them. Rows are dicts; a value that could not be measured is None with the reason in a
`*_na` field (e.g. time_ms / time_na, peak_mib / memory_na), never a missing row.
"""
from __future__ import annotations

import dataclasses
import gc
import statistics
import sys
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import torch

RATIOS = (("time_ms", "time_ratio"), ("peak_mib", "memory_ratio"))


# ---- timing -------------------------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(run_once: Callable[[], Any], device: str) -> tuple[float, Any]:
    """Wall time of one call of run_once in ms (bracketed by torch.cuda.synchronize() on CUDA), and its result."""
    sync(device)
    start = time.perf_counter()
    result = run_once()
    sync(device)
    return (time.perf_counter() - start) * 1e3, result


def summary(times: list[float]) -> dict:
    """time_ms (the median) and time_ms_p20 / time_ms_p80 of the times in ms."""
    cuts = statistics.quantiles(times, n=5) if len(times) > 1 else [times[0]] * 4
    return dict(time_ms=statistics.median(times), time_ms_p20=cuts[0], time_ms_p80=cuts[3])


def free(device: str) -> None:
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ---- failures -----------------------------------------------------------------------------------------------
def reason(error: BaseException) -> str:
    """A one-line reason for a row's n/a: the error's first line, at most 160 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if isinstance(error, torch.OutOfMemoryError):
        text = "out of memory"
    return text if len(text) <= 160 else text[:157] + "..."


def add_memory(rows: dict, measure: Callable[[Any], dict], label: Callable[[Any], str], args) -> None:
    """row.update(measure(key)) for each row (key -> row) without a memory_na yet; --skip-memory or a failure
    becomes the row's memory_na. For the benchmarks that measure each row's peak memory after timing them all."""
    for key, row in rows.items():
        if row["memory_na"] is not None:
            continue
        if args.skip_memory:
            row["memory_na"] = "skipped (--skip-memory)"
            continue
        print(f"{label(key)}: peak memory ...", file=sys.stderr, flush=True)
        try:
            row.update(measure(key))
        except Exception as error:  # noqa: BLE001
            row["memory_na"] = reason(error)
            free(args.device)


# ---- one optimisation step per provider (bench_dpo_step, bench_grpo_step) --------------------------------------
def warm_peak(runner, warmup: int, peak: Callable[[Callable[[], Any]], dict]) -> dict:
    """`warmup` steps of runner.step(), then the peak memory of one more by `peak` (memory.cpu_peak / cuda_peak)."""
    for _ in range(warmup):
        runner.step()
    return peak(runner.step)


def run_step_providers(providers: list[str], build: Callable[[str], Any], args, tokens: int,
                       measure: Callable[[str], dict], name: str, fields: dict | None = None,
                       checked: Callable[[Any], dict] | None = None) -> list[dict]:
    """Build every provider (build(provider) -> a runner whose step() is one optimisation step returning its loss),
    warm each up (recording its first losses, and checked(runner): more row values), then time their steps
    interleaved (args.repeats rounds), then measure(provider) their peak memory. `fields`: the extra row keys."""
    rows = {p: dict(provider=p, time_ms=None, time_ms_p20=None, time_ms_p80=None, times_ms=None, time_na=None,
                    tokens_per_s=None, peak_mib=None, held_mib=None, memory_na=None, losses=None, **(fields or {}))
            for p in providers}
    runners: dict[str, Any] = {}
    for provider in providers:
        print(f"[{name}] {provider}: building and warming up ...", file=sys.stderr, flush=True)
        try:
            runner = build(provider)
            losses = [float(runner.step()) for _ in range(args.warmup)]
            sync(args.device)
            rows[provider].update(losses=losses, **(checked(runner) if checked else {}))
            runners[provider] = runner
        except Exception as error:  # noqa: BLE001 - any failure is reported as the row's reason
            rows[provider].update(time_na=reason(error), memory_na=reason(error))
        runner = None
        free(args.device)
    times: dict[str, list[float]] = {p: [] for p in runners}
    failed: dict[str, str] = {}
    print(f"[{name}] timing {args.repeats} steps each, interleaved ...", file=sys.stderr, flush=True)
    for _ in range(args.repeats):
        for provider, runner in runners.items():
            if provider in failed:
                continue
            try:
                elapsed, loss = timed(runner.step, args.device)
                times[provider].append(elapsed)
                del loss
            except Exception as error:  # noqa: BLE001
                failed[provider] = reason(error)
    runner = None
    for provider in runners:
        if provider in failed:
            rows[provider]["time_na"] = failed[provider]
        else:
            rows[provider].update(summary(times[provider]), times_ms=times[provider])
            rows[provider]["tokens_per_s"] = tokens / (rows[provider]["time_ms"] / 1e3)
    runners.clear()
    free(args.device)
    add_memory(rows, measure, lambda provider: f"[{name}] {provider}", args)
    return [rows[p] for p in providers]


# ---- ratios to a baseline -----------------------------------------------------------------------------------
def add_ratios(rows: list[dict], baseline: str, group: Callable[[dict], Hashable] = lambda row: None,
               ratios: Iterable[tuple[str, str]] = RATIOS) -> None:
    """For each (key, ratio) in ratios: row[ratio] = row[key] / the baseline provider's row[key] of the same group
    (None where either is n/a)."""
    base = {group(r): r for r in rows if r["provider"] == baseline}
    for row in rows:
        reference_row = base.get(group(row), {})
        for key, ratio in ratios:
            value, reference = row.get(key), reference_row.get(key)
            row[ratio] = value / reference if value is not None and reference else None


# ---- tables -------------------------------------------------------------------------------------------------
class Footnotes:
    """Table cells: a formatted number, or "n/a [k]" pointing at the k-th reason printed under the table."""

    def __init__(self):
        self.reasons: list[str] = []

    def cell(self, value, na, fmt: str) -> str:
        if value is not None:
            return format(value, fmt)
        if na not in self.reasons:
            self.reasons.append(na)
        return f"n/a [{self.reasons.index(na) + 1}]"

    @staticmethod
    def ratio(value) -> str:
        return "-" if value is None else f"{value:.2f}"

    def print(self, file) -> None:
        for i, reason_text in enumerate(self.reasons, 1):
            print(f"  [{i}] n/a: {reason_text}", file=file)


def num(value, fmt: str) -> str:
    """A formatted number, or "-" for None."""
    return "-" if value is None else format(value, fmt)


@dataclasses.dataclass(frozen=True)
class Column:
    title: str
    width: int
    cell: Callable[[dict, Footnotes], str]  # (row, footnotes) -> the cell's text
    left: bool = False  # left-aligned (names) rather than right-aligned (numbers)

    def fit(self, text: str) -> str:
        return f"{text:<{self.width}}" if self.left else f"{text:>{self.width}}"


def print_rows(rows: list[dict], columns: list[Column], notes: Footnotes, file) -> None:
    """A header, a rule and one line per row; the footnotes are the caller's to print (tables may share them)."""
    header = " ".join(c.fit(c.title) for c in columns)
    print(header, file=file)
    print("-" * len(header), file=file)
    for row in rows:
        print(" ".join(c.fit(c.cell(row, notes)) for c in columns), file=file)


def time_column(title: str = "time ms", fmt: str = ".2f", width: int = 11) -> Column:
    return Column(title, width, lambda r, notes: notes.cell(r["time_ms"], r["time_na"], fmt))


def memory_column(title: str = "peak MiB", fmt: str = ".1f", width: int = 11) -> Column:
    return Column(title, width, lambda r, notes: notes.cell(r["peak_mib"], r["memory_na"], fmt))


def ratio_column(key: str, title: str, width: int = 8) -> Column:
    return Column(title, width, lambda r, notes: notes.ratio(r[key]))


# ---- command line -------------------------------------------------------------------------------------------
def choices(text: str, allowed, flag: str) -> list[str]:
    """The comma-separated names in text, each one of allowed (SystemExit naming the flag otherwise)."""
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in allowed]
    if unknown or not chosen:
        raise SystemExit(f"{flag}: unknown {unknown or text!r}; choose from {', '.join(allowed)}")
    return chosen
