"""Small pieces shared by the Triton op files: compute dtypes, exact float arguments, the streaming logsumexp.

Statistics are kept in float32, or float64 when the inputs are float64 (the FP64 constexpr of every kernel).
Float scalars (temperature, beta, gamma) are annotated "fp64" in the kernel signatures: Triton passes an
unannotated Python float as fp32, which would round temperature=0.7 before a float64 division. `scalar`
turns such an argument into a 0-d value of the compute dtype (and the interpreter's Python float as well).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other floating dtype computes its statistics in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def zeros_if_none(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    """Autograd passes None for an output that got no gradient; the kernels want zeros."""
    return torch.zeros_like(like) if grad is None else grad.contiguous()


def num_programs_target(device: torch.device) -> int:
    """About four waves of programs: enough to fill every SM of a GPU (a small number on the interpreter)."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 4


@triton.jit
def upcast(x, FP64: tl.constexpr):
    """A loaded block in the compute dtype (float64 or float32)."""
    if FP64:
        return x.to(tl.float64)
    else:
        return x.to(tl.float32)


@triton.jit
def scalar(x, FP64: tl.constexpr):
    """A float argument (or Python constant) as a 0-d value of the compute dtype, keeping all its bits."""
    if FP64:
        return tl.full([], x, tl.float64)
    else:
        return tl.full([], x, tl.float32)


@triton.jit
def logsumexp_rescale(m, s, block_max):
    """One step of the streaming logsumexp: (new max, finite shift, running sum rescaled to that shift).

    m, s: running max and sum of exp(z - m) ([] or [ROWS]); block_max: max of the next block of z.
    The shift is 0 while everything seen is -inf, so that exp(-inf - -inf) never makes a NaN.
    The caller adds sum(exp(z - shift)) to the returned sum.
    """
    m_new = tl.maximum(m, block_max)
    shift = tl.where(m_new == float("-inf"), 0.0, m_new)
    return m_new, shift, s * tl.exp(m - shift)
