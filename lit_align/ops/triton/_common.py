"""Small pieces shared by the Triton op files: compute dtypes, exact float arguments, the streaming logsumexp.

Softmax statistics are two numbers per row, as in every backend (csrc/ops.cpp): the raw row max m (before the
temperature) and the sum s = sum_j exp((x_j - m) * scale), scale = 1 / T; probabilities are rebuilt as
exp((x_j - m) * scale - log s), never from one large float32 logsumexp. `one_minus_p` forms the label's
1 - p_y without cancellation.

Statistics are kept in float32, or float64 when the inputs are float64 (the FP64 constexpr of every kernel).
Registration (`register_op`): on a GPU each op is a torch.library.triton_op whose kernels are launched
through `wrap_triton`, so torch.compile traces into them. Under the interpreter (TRITON_INTERPRET=1, CPU
tensors) a triton_op cannot serve as its own fake kernel: `wrap_triton` hands back the InterpretedFunction,
which would try to run on FakeTensors. There the op is a plain torch.library.custom_op (opaque to
torch.compile, still opcheck-clean) whose fake kernel runs the same function with the launches skipped.

Float scalars (temperature, beta, gamma) are annotated tl.float64 in the kernel signatures: Triton passes an
unannotated Python float as fp32, which would round temperature=0.7 before a float64 division. `scalar`
turns such an argument into a 0-d value of the compute dtype (and the interpreter's Python float as well).
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

import torch
import triton
import triton.language as tl

INTERPRETER = os.environ.get("TRITON_INTERPRET", "0") == "1"  # read once, as Triton does when kernels are defined
_fake = threading.local()


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype computes its statistics in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def num_programs_target(device: torch.device) -> int:
    """About four waves of programs: enough to fill every SM of a GPU (a small number on the interpreter)."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 4


class _NoLaunch:
    """Stands in for a kernel while a fake kernel runs: `kernel[grid](...)` does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def wrap_triton(kernel):
    """torch.library.wrap_triton(kernel), or a no-op launcher inside an interpreted op's fake kernel."""
    if getattr(_fake, "active", False):
        return _NoLaunch()
    return torch.library.wrap_triton(kernel)


@contextlib.contextmanager
def _launches_skipped():
    previous, _fake.active = getattr(_fake, "active", False), True
    try:
        yield
    finally:
        _fake.active = previous


def register_op(name: str, *, opaque: bool = False, fake: Callable | None = None):
    """Decorator: `fn` (torch ops + wrap_triton launches) becomes the op lit_align::<name>.

    A triton_op on GPUs; a custom_op under the interpreter or when `opaque` (an op whose body needs a host
    sync, such as a nonzero, cannot be traced). The custom_op's fake kernel is `fake`, by default `fn` with
    its launches skipped (its outputs are allocated but never written).
    """
    def decorate(fn: Callable):
        if not (opaque or INTERPRETER):
            return torch.library.triton_op(f"lit_align::{name}", fn, mutates_args=())
        op = torch.library.custom_op(f"lit_align::{name}", fn, mutates_args=())

        def fake_fn(*args, **kwargs):
            with _launches_skipped():
                return fn(*args, **kwargs)

        op.register_fake(fake or fake_fn)
        return op
    return decorate


@triton.jit
def upcast(x, FP64: tl.constexpr):
    """A loaded block in the compute dtype (float64 or float32)."""
    if FP64:
        return x.to(tl.float64)
    else:
        return x.to(tl.float32)


@triton.jit
def scalar(x, FP64: tl.constexpr):
    """A float argument (annotated tl.float64) or a Python float as a 0-d value of the compute dtype."""
    if FP64:
        return tl.full([], x, tl.float64)
    else:
        return tl.full([], x, tl.float32)


@triton.jit
def logsumexp_rescale(m, s, block_max, scale):
    """One step of the streaming logsumexp: (new max, finite shift, running sum rescaled to that shift).

    m, s: running raw max and sum of exp((x - m) * scale) ([] or [ROWS]); block_max: max of the next raw block.
    The shift is 0 while everything seen is -inf, so that exp(-inf - -inf) never makes a NaN.
    The caller adds sum(exp((x - shift) * scale)) to the returned sum.
    """
    m_new = tl.maximum(m, block_max)
    shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    return m_new, shift, s * tl.exp((m - shift) * scale)


@triton.jit
def one_minus_p(p, log_p, FP64: tl.constexpr):
    """1 - p for p = exp(log_p), without cancellation: directly below 1/2, as -expm1(log_p) above.

    Above 1/2, |log_p| <= ln 2 and expm1 is its Taylor series in Horner form (to x^10 / 10!, or x^18 / 18! for
    float64: truncation below the dtype's epsilon), with no libdevice call (the interpreter has none).
    """
    DEGREE: tl.constexpr = 18 if FP64 else 10
    x = tl.maximum(log_p, -1.0)  # the series is used above p = 1/2 only; this keeps the other lanes finite
    e = 1.0 + x / DEGREE
    for k in tl.static_range(DEGREE - 1, 1, -1):
        e = 1.0 + x / k * e
    return tl.where(p < 0.5, 1.0 - p, -(x * e))
