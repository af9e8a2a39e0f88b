"""Peak memory of one pass, measured the same way by every benchmark (bench_ops, bench_dpo_step, bench_rollout).

One copy of the measurement, so that the benchmarks' peak-memory columns mean the same thing and a fix to the
method reaches all of them. Each function measures one call of `run_once` (a callable with no arguments: an op's
forward/backward, a training step, a scoring pass) above what is held just before it, and returns
dict(peak_mib=..., held_mib=...):
  * cuda_peak: torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated() after reset_peak_memory_stats();
    held_mib is the memory allocated before the call (tensors only).
  * cpu_peak: there is no allocator counter, so the process's resident set: malloc_trim(0) so that freed heap
    pages leave the resident set, VmRSS as the baseline, the high-water mark reset (`echo 5 >
    /proc/self/clear_refs` resets VmHWM on Linux), the call, then VmHWM - baseline. This counts every page the call
    touches (PyTorch's CPU tensors come from malloc, so a freed buffer that the call reuses from the heap is counted
    once it was trimmed); held_mib is the resident set before the call, interpreter and libraries included.
A CPU measurement needs a fresh process per measured case: run_in_child runs a function there, in a process forked
from a forkserver that has only imported `preload` (never forked from the benchmark's own process, whose OpenMP
pool would hang a forked child).
"""
from __future__ import annotations

import concurrent.futures
import ctypes
import functools
import gc
import importlib
import multiprocessing
from collections.abc import Callable, Iterable
from typing import Any

import torch


def cuda_peak(run_once: Callable[[], Any]) -> dict:
    """Peak CUDA memory allocated by one call of run_once, above what was allocated before it, in MiB."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    result = run_once()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del result
    return dict(peak_mib=peak / 2 ** 20, held_mib=before / 2 ** 20)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1])


def cpu_peak(run_once: Callable[[], Any]) -> dict:
    """Peak resident-set growth of this process over one call of run_once, in MiB (see the module docstring)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    baseline = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # VmHWM := VmRSS
    result = run_once()
    peak = _status_kib("VmHWM")
    del result
    return dict(peak_mib=(peak - baseline) / 1024, held_mib=baseline / 1024)


@functools.cache
def _forkserver(preload: tuple[str, ...]) -> multiprocessing.context.BaseContext:
    context = multiprocessing.get_context("forkserver")
    # Only takes effect if this process has not started its forkserver yet (e.g. another benchmark in the same
    # pytest session); the children then import what they need themselves, which is slower but measures the same.
    context.set_forkserver_preload(list(preload))
    return context


def forkserver(preload: Iterable[str]) -> multiprocessing.context.BaseContext:
    """The forkserver context, its server importing `preload` once so that each child starts with them loaded."""
    return _forkserver(tuple(preload))


def _child(module: str, name: str, threads: int, args: tuple) -> Any:
    torch.set_num_threads(threads)  # as in the measuring benchmark's process
    return getattr(importlib.import_module(module), name)(*args)


def run_in_child(module: str, name: str, *args, preload: Iterable[str]) -> Any:
    """`module.name(*args)` in a fresh process from forkserver(preload), with this process's torch thread count.

    The function is looked up by its module's import name (e.g. "benchmarks.bench_ops"), never through `__main__`,
    so that it is found in the child also when the benchmark runs as a script."""
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=forkserver(preload)) as pool:
        future = pool.submit(_child, module, name, torch.get_num_threads(), args)
        try:
            return future.result()
        except concurrent.futures.process.BrokenProcessPool:
            raise RuntimeError("the measuring process died (killed for memory?)") from None
