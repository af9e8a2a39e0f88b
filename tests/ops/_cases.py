"""Shared test helpers for the ops: which backends run where, per-dtype tolerances, random inputs.

Inputs are random (never zeros), with a share of ignored labels; every backend is compared with the plain
PyTorch reference. Backends that cannot run here are not silently skipped: test_extension.py fails when
the compiled extension is missing, and the GPU backends are collected only on a CUDA machine.
"""
from __future__ import annotations

import pytest
import torch

from lit_align.ops._dispatch import triton_available
from lit_align.ops._extension import extension_loaded

IGNORE = -100


def backends_for(device: str) -> list[str]:
    if device == "cuda":
        return ["cuda", "triton"]
    return ["cpp"] + (["triton"] if triton_available() else [])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# (device, backend) pairs, the GPU ones marked so that `pytest -m gpu` selects them.
DEVICE_BACKENDS = [
    pytest.param(d, b, id=f"{d}-{b}", marks=[pytest.mark.gpu] if d == "cuda" else [])
    for d in DEVICES for b in backends_for(d)
]


def skip_if_missing(backend: str) -> None:
    """The cpp backend is required (test_extension.py fails without it); here it only avoids a cascade."""
    if backend in ("cpp", "cuda") and not extension_loaded():
        pytest.skip("lit_align._C not built: see test_extension.py, which fails")


# atol/rtol for outputs (float32 statistics) and for gradients (in the input dtype).
TOL = {
    torch.float64: dict(out=(1e-10, 1e-10), grad=(1e-10, 1e-9)),
    torch.float32: dict(out=(2e-5, 2e-5), grad=(1e-6, 1e-4)),
    torch.bfloat16: dict(out=(2e-5, 2e-5), grad=(2e-3, 1.6e-2)),
    torch.float16: dict(out=(2e-5, 2e-5), grad=(2e-4, 2e-3)),
}


def random_labels(n: int, vocab: int, ignore_share: float, generator: torch.Generator, device="cpu") -> torch.Tensor:
    labels = torch.randint(0, vocab, (n,), generator=generator)
    ignored = torch.rand(n, generator=generator) < ignore_share
    return labels.masked_fill(ignored, IGNORE).to(device)


def randn(*shape, scale=1.0, dtype=torch.float32, generator=None, device="cpu") -> torch.Tensor:
    return (torch.randn(*shape, generator=generator, dtype=torch.float64) * scale).to(dtype).to(device)


def assert_close(actual, expected, tol, what: str) -> None:
    atol, rtol = tol
    torch.testing.assert_close(actual.to(torch.float64), expected.to(torch.float64), atol=atol, rtol=rtol,
                               msg=lambda m: f"{what}: {m}")
