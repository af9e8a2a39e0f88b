"""Bad input raises a ValueError that says what is wrong, on every backend (and on direct op calls)."""
import pytest
import torch

from lit_align.ops import linear_token_logprobs, token_logprobs
from tests.ops._cases import DEVICE_BACKENDS, skip_if_missing

ALL = DEVICE_BACKENDS + [pytest.param("cpu", "torch", id="cpu-torch")]


@pytest.mark.parametrize("device,backend", ALL)
@pytest.mark.parametrize("make,match", [
    (lambda d: (torch.randn(4, 10, device=d), torch.tensor([1, 10, 2, 3], device=d)), r"labels\[1\] = 10 is outside"),
    (lambda d: (torch.randn(4, 10, device=d), torch.tensor([1, -1, 2, 3], device=d)), r"labels\[1\] = -1 is outside"),
    (lambda d: (torch.randn(4, 10, device=d), torch.tensor([1, 2, 3], device=d)), "labels has shape"),
    (lambda d: (torch.randint(0, 5, (4, 10), device=d), torch.tensor([1, 2, 3, 4], device=d)), "floating-point"),
    (lambda d: (torch.randn(4, 10, device=d), torch.randn(4, device=d)), "integer tensor"),
])
def test_token_logprobs(device, backend, make, match):
    skip_if_missing(backend)
    logits, labels = make(device)
    with pytest.raises(ValueError, match=match):
        token_logprobs(logits, labels, backend=backend)


@pytest.mark.parametrize("device,backend", ALL)
def test_token_logprobs_temperature(device, backend):
    skip_if_missing(backend)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        token_logprobs(torch.randn(2, 3, device=device), torch.tensor([0, 1], device=device), temperature=0.0,
                       backend=backend)


@pytest.mark.parametrize("device,backend", ALL)
@pytest.mark.parametrize("make,match", [
    (lambda d: (torch.randn(4, 8, device=d), torch.randn(10, 8, device=d), torch.tensor([1, 10, 2, 3], device=d)),
     r"labels\[1\] = 10"),
    (lambda d: (torch.randn(4, 8, device=d), torch.randn(10, 7, device=d), torch.tensor([1, 2, 2, 3], device=d)),
     "hidden size mismatch"),
    (lambda d: (torch.randn(4, 8, device=d), torch.randn(10, 8, device=d, dtype=torch.float64),
                torch.tensor([1, 2, 2, 3], device=d)), "same dtype"),
    (lambda d: (torch.randn(4, 8, device=d), torch.randn(10, 8, device=d), torch.tensor([1, 2], device=d)),
     "labels has shape"),
])
def test_linear_token_logprobs(device, backend, make, match):
    skip_if_missing(backend)
    hidden, weight, labels = make(device)
    with pytest.raises(ValueError, match=match):
        linear_token_logprobs(hidden, weight, labels, backend=backend)


def test_linear_bias_shape():
    with pytest.raises(ValueError, match="bias must have shape"):
        linear_token_logprobs(torch.randn(2, 4), torch.randn(5, 4), torch.tensor([0, 1]), bias=torch.randn(4))


def test_unknown_or_impossible_backend():
    with pytest.raises(ValueError, match="expected one of"):
        token_logprobs(torch.randn(2, 3), torch.tensor([0, 1]), backend="fast")
    with pytest.raises(ValueError, match="cuda backend runs on CUDA tensors"):
        token_logprobs(torch.randn(2, 3), torch.tensor([0, 1]), backend="cuda")


def test_direct_op_calls_raise_value_error():
    """The compiled kernels check too, so that torch.ops.lit_align.* is safe without the Python wrapper."""
    skip_if_missing("cpp")
    with pytest.raises(ValueError):
        torch.ops.lit_align.token_logprobs(torch.randn(3, 5), torch.tensor([0, 7, 1]), -100, 1.0)
    with pytest.raises(ValueError):
        torch.ops.lit_align.linear_token_logprobs(torch.randn(3, 4), torch.randn(5, 4), None,
                                                  torch.tensor([0, 1, -3]), -100, 1.0, True)
    with pytest.raises(ValueError):
        torch.ops.lit_align.token_logprobs(torch.randn(3, 5), torch.tensor([0, 1, 1]), -100, -1.0)
