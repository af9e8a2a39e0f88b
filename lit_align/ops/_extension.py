"""Loads the compiled extension lit_align._C (C++ CPU ops, plus CUDA ops when built with CUDA).

`import lit_align` must work without it: the ops then fall back to their torch references and this module
warns once. `has_kernel(op, "CPU"|"CUDA")` asks the dispatcher whether a backend registered a kernel.
"""
from __future__ import annotations

import warnings

import torch

_C = None
_LOAD_ERROR: str | None = None
try:
    from lit_align import _C  # noqa: F401  (importing registers lit_align::* with torch.library)
except ImportError as error:  # not built, or built against another torch
    _LOAD_ERROR = str(error)
    warnings.warn(
        f"lit_align._C is not available ({error}); lit_align.ops falls back to the torch reference "
        "implementations. Build the extension with `pip install --no-build-isolation -e .`.",
        RuntimeWarning,
        stacklevel=2,
    )


def extension_loaded() -> bool:
    return _C is not None


@torch.compiler.assume_constant_result  # a constant of the build: torch.compile evaluates it once
def has_kernel(op: str, dispatch_key: str) -> bool:
    """True when lit_align::<op> has a kernel for dispatch_key ("CPU" or "CUDA")."""
    if _C is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"lit_align::{op}", dispatch_key)
