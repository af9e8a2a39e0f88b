"""token_logprobs: log_softmax(logits / T)[label] per row, 0 where label == ignore_index.

The usual `logits.log_softmax(-1).gather(...)` keeps a second [N, V] float32 tensor alive for the backward.
The kernels keep only two numbers per row, the raw row max m and the log-sum s = log sum_j exp((x_j - m) / T),
and write the gradient `g * (onehot - softmax) / T` straight from them, so the gradient of the logits is the
only [N, V] buffer. Two numbers rather than one logsumexp: a float32 lse of large logits (1e4 / 0.6 = 16667)
has an ulp of 2e-3, which exp(z - lse) would carry into every probability; exp((x - m) / T - s) keeps eager
float32's accuracy. Every backend is batch invariant: a row's log-prob and gradient depend on that row only.

    token_logprobs(logits[..., V], labels[...]) -> logp[...] float32 (float64 for float64 logits)
"""
from __future__ import annotations

import torch

from lit_align.ops import _validate
from lit_align.ops._dispatch import resolve_backend


def token_logprobs_reference(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100,
                             temperature: float = 1.0, return_lse: bool = False):
    """Plain PyTorch ground truth (eager log_softmax). Statistics in float32 (float64 for float64 input)."""
    compute = torch.float64 if logits.dtype == torch.float64 else torch.float32
    z = logits.to(compute) / temperature  # (N, V)
    valid = labels != ignore_index
    target = z.log_softmax(-1).gather(-1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)  # (N,)
    zero = torch.zeros((), dtype=compute, device=logits.device)
    logp = torch.where(valid, target, zero)
    return (logp, torch.where(valid, z.logsumexp(-1), zero)) if return_lse else logp


def _run_kernel(backend: str, logits, labels, ignore_index: int, temperature: float):
    """(logp, row_max, log_sum) [N] from the compiled/Triton kernels, differentiable through their backward."""
    if backend == "triton":
        from lit_align.ops.triton.token_logprobs import triton_token_logprobs
        return triton_token_logprobs(logits, labels, ignore_index, temperature)
    import lit_align.ops._library  # noqa: F401  (fake kernels + autograd for lit_align::token_logprobs)
    return torch.ops.lit_align.token_logprobs(logits, labels, ignore_index, temperature)


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, *, ignore_index: int = -100,
                   temperature: float = 1.0, backend: str = "auto", batch_invariant: bool = False) -> torch.Tensor:
    """Per-token log-probabilities of `labels` under softmax(logits / temperature).

    logits: (..., V) floating point; labels: (...) integer, in [0, V) or == ignore_index.
    Returns (...) float32 (float64 for float64 logits), exactly 0 at ignored positions.
    batch_invariant: the cpp, triton and cuda kernels always are; True only rules out backend="torch".
    """
    _validate.check_float("logits", logits)
    if logits.dim() < 1:
        raise ValueError("logits must have a vocabulary dimension, got a 0-d tensor")
    _validate.check_labels(labels, logits.shape[-1], ignore_index, logits.shape[:-1])
    _validate.check_temperature(temperature)
    _validate.check_same_device(logits=logits, labels=labels)
    backend = resolve_backend(backend, "token_logprobs", logits.device, batch_invariant)
    flat_logits = logits.reshape(labels.numel(), logits.shape[-1])  # (N, V); V may be 0
    flat_labels = labels.reshape(-1).long()  # (N,)
    if backend == "torch":
        logp = token_logprobs_reference(flat_logits, flat_labels, ignore_index=ignore_index, temperature=temperature)
    else:
        logp = _run_kernel(backend, flat_logits.contiguous(), flat_labels.contiguous(), ignore_index,
                           float(temperature))[0]
    return logp.view(labels.shape)
