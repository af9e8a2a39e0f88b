"""linear_token_logprobs: token log-probs straight from hidden states and the LM head, never holding logits.

Equal to token_logprobs(hidden @ weight.T + bias, labels) but the kernels stream the vocabulary in tiles
with an online logsumexp, keep only the per-row logsumexp, and recompute each logit tile in the backward
(Cut Cross-Entropy, Wijmans et al., arXiv 2411.09009). Rows whose label is ignore_index (prompt, padding)
are dropped before the LM head, so they cost no matmul work. Extra memory: O(N*H + V*H + tile).
Each row keeps (raw max, log-sum) rather than one logsumexp (token_logprobs.py says why).

batch_invariant=True: a row's log-prob and its hidden-state gradient are bitwise identical whatever else is in
the batch and whatever the batch size (RL recomputes the log-probs of sampled tokens: they must not move with
the batch, verl#6280). The kernels then use fixed tile sizes and fixed-order products instead of GEMMs whose
blocking follows the batch shape (cpp: fixed_order.h; triton: fixed tiles and its own dot kernel for
grad_hidden; cuda: fixed, padded cuBLAS tiles). The weight and bias gradients are sums over the batch's rows:
deterministic for a given batch, not batch invariant. The torch backend cannot promise it and refuses.

    linear_token_logprobs(hidden[..., H], weight[V, H], labels[...], bias=[V]) -> logp[...] float32
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lit_align.ops import _validate
from lit_align.ops._dispatch import resolve_backend
from lit_align.ops.token_logprobs import token_logprobs_reference


def linear_token_logprobs_reference(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                                    bias: torch.Tensor | None = None, ignore_index: int = -100,
                                    temperature: float = 1.0, return_lse: bool = False):
    """Plain PyTorch ground truth: materialises the (N, V) logits in float32 (float64 for float64)."""
    compute = torch.float64 if hidden.dtype == torch.float64 else torch.float32
    logits = F.linear(hidden.to(compute), weight.to(compute), None if bias is None else bias.to(compute))  # (N, V)
    return token_logprobs_reference(logits, labels, ignore_index=ignore_index, temperature=temperature,
                                    return_lse=return_lse)


def _run_kernel(backend: str, hidden, weight, bias, labels, ignore_index: int, temperature: float,
                batch_invariant: bool):
    """(logp, row_max, log_sum) [N] from the compiled/Triton kernels, differentiable through their backward."""
    if backend == "triton":
        from lit_align.ops.triton.linear_token_logprobs import triton_linear_token_logprobs
        return triton_linear_token_logprobs(hidden, weight, bias, labels, ignore_index, temperature, batch_invariant)
    import lit_align.ops._library  # noqa: F401
    return torch.ops.lit_align.linear_token_logprobs(hidden, weight, bias, labels, ignore_index, temperature,
                                                     batch_invariant)


def check_linear_inputs(hidden, weight, bias, labels, ignore_index: int) -> None:
    _validate.check_float("hidden", hidden)
    _validate.check_float("weight", weight)
    if hidden.dim() < 1 or weight.dim() != 2:
        raise ValueError(f"expected hidden (..., H) and weight (V, H), got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}")
    if hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden size mismatch: hidden has H={hidden.shape[-1]}, "
                         f"weight (V, H) has H={weight.shape[1]}")
    if hidden.dtype != weight.dtype:
        raise ValueError(f"hidden ({hidden.dtype}) and weight ({weight.dtype}) must have the same dtype")
    if bias is not None:
        _validate.check_float("bias", bias)
        if bias.shape != (weight.shape[0],) or bias.dtype != weight.dtype:
            raise ValueError(f"bias must have shape ({weight.shape[0]},) and dtype {weight.dtype}, "
                             f"got {tuple(bias.shape)} {bias.dtype}")
    _validate.check_labels(labels, weight.shape[0], ignore_index, hidden.shape[:-1])
    _validate.check_same_device(hidden=hidden, weight=weight, bias=bias, labels=labels)


def linear_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                          bias: torch.Tensor | None = None, ignore_index: int = -100, temperature: float = 1.0,
                          backend: str = "auto", batch_invariant: bool = False) -> torch.Tensor:
    """log_softmax((hidden @ weight.T + bias) / temperature)[label] without materialising the logits.

    hidden: (..., H); weight: (V, H) of hidden's dtype; bias: (V,) or None; labels: (...) integer.
    Returns (...) float32 (float64 for float64 inputs), exactly 0 where label == ignore_index.
    batch_invariant: see the module docstring.
    """
    check_linear_inputs(hidden, weight, bias, labels, ignore_index)
    _validate.check_temperature(temperature)
    backend = resolve_backend(backend, "linear_token_logprobs", hidden.device, batch_invariant)
    flat_hidden = hidden.reshape(labels.numel(), hidden.shape[-1])  # (N, H); H may be 0
    flat_labels = labels.reshape(-1).long()  # (N,)
    if backend == "torch":
        logp = linear_token_logprobs_reference(flat_hidden, weight, flat_labels, bias=bias,
                                               ignore_index=ignore_index, temperature=temperature)
    else:
        logp = _run_kernel(backend, flat_hidden.contiguous(), weight.contiguous(),
                           None if bias is None else bias.contiguous(), flat_labels.contiguous(), ignore_index,
                           float(temperature), bool(batch_invariant))[0]
    return logp.view(labels.shape)
