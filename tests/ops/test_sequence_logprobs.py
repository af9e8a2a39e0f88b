"""sequence_logprobs: padded, packed (segment_ids) and cu_seqlens layouts, sum and mean, every backend."""
import pytest
import torch

from lit_align.ops import sequence_logprobs, sequence_logprobs_reference
from tests.ops._cases import DEVICE_BACKENDS, assert_close, randn, skip_if_missing

TOL = {torch.float64: (1e-12, 1e-12), torch.float32: (1e-5, 1e-5)}


def by_hand(values, mask, mean):
    """Row-by-row Python loop: the simplest possible statement of the reduction."""
    out = []
    for row, keep in zip(values.tolist(), mask.tolist(), strict=True):
        kept = [x for x, k in zip(row, keep, strict=True) if k]
        total = sum(kept)
        out.append(total / len(kept) if (mean and kept) else total)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS + [pytest.param("cpu", "torch", id="cpu-torch")])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_padded(device, backend, dtype, reduction):
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(1)
    values = randn(5, 13, dtype=dtype, generator=gen, device=device).requires_grad_()
    mask = torch.rand(5, 13, generator=gen) < 0.6
    mask[3] = False  # an empty sequence scores 0
    mask = mask.to(device)
    out = sequence_logprobs(values, mask=mask, reduction=reduction, backend=backend)
    assert_close(out.cpu(), by_hand(values.detach().cpu().double(), mask.cpu(), reduction == "mean"), TOL[dtype],
                 "padded")
    grad_out = randn(5, dtype=dtype, generator=gen, device=device)
    (grad,) = torch.autograd.grad((out * grad_out).sum(), values)
    counts = mask.sum(1, keepdim=True).clamp(min=1).to(dtype) if reduction == "mean" else 1.0
    assert_close(grad, grad_out[:, None] * mask / counts, TOL[dtype], "padded grad")


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS + [pytest.param("cpu", "torch", id="cpu-torch")])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_packed_layouts_agree(device, backend, reduction):
    """segment_ids, cu_seqlens (+ a token mask) and the padded layout give the same scores."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(2)
    lengths = [3, 1, 6, 4]
    padded = torch.zeros(4, 6, dtype=torch.float64)
    pad_mask = torch.zeros(4, 6, dtype=torch.bool)
    for i, n in enumerate(lengths):
        padded[i, :n] = torch.randn(n, generator=gen, dtype=torch.float64)
        pad_mask[i, :n] = True
    token_mask = torch.rand(4, 6, generator=gen) < 0.8
    values = padded[pad_mask].to(device)  # (N,) packed
    packed_mask = token_mask[pad_mask].to(device)
    ids = torch.repeat_interleave(torch.arange(4), torch.tensor(lengths)).to(device)
    cu = torch.tensor([0, 3, 4, 10, 14], device=device)
    expected = by_hand(padded, pad_mask & token_mask, reduction == "mean")
    for kwargs in (dict(segment_ids=ids), dict(cu_seqlens=cu)):
        out = sequence_logprobs(values, mask=packed_mask, reduction=reduction, backend=backend, **kwargs)
        assert_close(out.cpu(), expected, TOL[torch.float64], f"packed {list(kwargs)}")
    out = sequence_logprobs(padded.to(device), mask=(pad_mask & token_mask).to(device), reduction=reduction,
                            backend=backend)
    assert_close(out.cpu(), expected, TOL[torch.float64], "padded")


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_excluded_tokens_and_num_segments(device, backend):
    skip_if_missing(backend)
    values = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0], device=device, requires_grad=True)
    ids = torch.tensor([0, -1, 2, 2, -1], device=device)
    out = sequence_logprobs(values, segment_ids=ids, num_segments=4, reduction="mean", backend=backend)
    assert out.tolist() == [1.0, 0.0, 6.0, 0.0]
    out.sum().backward()
    assert values.grad.tolist() == [1.0, 0.0, 0.5, 0.5, 0.0]


def test_reference_matches_hand_loop():
    values = torch.tensor([0.5, -1.0, 2.0, 3.0], dtype=torch.float64)
    ids = torch.tensor([1, 1, -1, 0])
    assert sequence_logprobs_reference(values, ids, 3, mean=False).tolist() == [3.0, -0.5, 0.0]
    assert sequence_logprobs_reference(values, ids, 3, mean=True).tolist() == [3.0, -0.25, 0.0]


@pytest.mark.parametrize("kwargs,match", [
    (dict(values=torch.randn(3, 4, 5)), "padded or"),
    (dict(values=torch.randn(6)), "needs segment_ids or cu_seqlens"),
    (dict(values=torch.randn(6), segment_ids=torch.tensor([0, 0, 1, 1, 2, 5]), num_segments=3), r"\[-1, 3\)"),
    (dict(values=torch.randn(6), cu_seqlens=torch.tensor([0, 4, 2, 6])), "non-decreasing"),
    (dict(values=torch.randn(6), cu_seqlens=torch.tensor([0, 5])), "non-decreasing from 0 to N=6"),
    (dict(values=torch.randn(2, 3), mask=torch.ones(3, 2)), "mask has shape"),
    (dict(values=torch.randn(2, 3), reduction="max"), "reduction"),
    (dict(values=torch.ones(2, 3, dtype=torch.long)), "floating point"),
])
def test_bad_input(kwargs, match):
    values = kwargs.pop("values")
    with pytest.raises(ValueError, match=match):
        sequence_logprobs(values, **kwargs)
