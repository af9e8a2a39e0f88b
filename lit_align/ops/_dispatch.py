"""Backend selection shared by every op: "auto" | "torch" | "cpp" | "triton" | "cuda".

"auto" picks cuda (then triton) for GPU tensors, cpp for CPU tensors, and the torch reference when the
compiled kernel is missing. An explicit backend that cannot run on the given device raises a ValueError
that says why, instead of silently running something else.

batch_invariant=True (a row's result must not depend on the rest of the batch) rules out the torch backend:
its BLAS GEMMs choose their blocking from the batch shape and its vectorised elementwise ops round a value
differently in a vector body and in the scalar tail, i.e. by position. The cpp, triton and cuda kernels are
batch invariant (token_logprobs, sequence_logprobs and preference_loss always; linear_token_logprobs with its
batch_invariant flag); "auto" then never falls back to torch and says so instead.
"""
from __future__ import annotations

import importlib.util
import os

import torch

from lit_align.ops._extension import extension_loaded, has_kernel

BACKENDS = ("auto", "torch", "cpp", "triton", "cuda")
# Preference order on GPU tensors; the GPU benchmarks (benchmarks/results) decide it per op.
GPU_ORDER = ("cuda", "triton", "torch")


TRITON_AVAILABLE = importlib.util.find_spec("triton") is not None


def triton_available() -> bool:
    return TRITON_AVAILABLE


def triton_interpreter() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _why_not(backend: str, op: str, device: torch.device) -> str | None:
    """None when `backend` can run lit_align::<op> on `device`, else the reason it cannot."""
    if backend == "torch":
        return None
    if backend == "cpp":
        if device.type != "cpu":
            return f"the cpp backend runs on CPU tensors, got {device.type}"
        if not extension_loaded():
            return "lit_align._C is not built (pip install --no-build-isolation -e .)"
        return None if has_kernel(op, "CPU") else f"lit_align::{op} has no CPU kernel"
    if backend == "cuda":
        if device.type != "cuda":
            return f"the cuda backend runs on CUDA tensors, got {device.type}"
        if not extension_loaded():
            return "lit_align._C is not built (pip install --no-build-isolation -e .)"
        return None if has_kernel(op, "CUDA") else "lit_align._C was built without CUDA kernels"
    if backend == "triton":
        if not triton_available():
            return "triton is not installed"
        if device.type == "cuda" or (device.type == "cpu" and triton_interpreter()):
            return None
        return f"triton runs on CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), got {device.type}"
    return f"unknown backend {backend!r}; expected one of {BACKENDS}"


NOT_INVARIANT = "the torch backend is not batch invariant (BLAS blocking and vectorised tails depend on the batch)"


def resolve_backend(backend: str, op: str, device: torch.device, batch_invariant: bool = False) -> str:
    """The concrete backend that runs lit_align::<op> for tensors on `device` (batch invariant if asked)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; expected one of {BACKENDS}")
    if backend == "auto":
        order = GPU_ORDER if device.type == "cuda" else ("cpp", "torch")
        chosen = next(b for b in order if _why_not(b, op, device) is None)
        if batch_invariant and chosen == "torch":
            raise ValueError(f"batch_invariant=True: no batch-invariant backend can run {op} here "
                             f"({_why_not('cpp', op, device) or 'no GPU kernel'}); {NOT_INVARIANT}")
        return chosen
    if batch_invariant and backend == "torch":
        raise ValueError(f"backend='torch' with batch_invariant=True: {NOT_INVARIANT}; use cpp, triton or cuda")
    reason = _why_not(backend, op, device)
    if reason is not None:
        raise ValueError(f"backend={backend!r} cannot run {op}: {reason}")
    return backend
