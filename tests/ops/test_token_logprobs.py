"""token_logprobs: every backend against the plain PyTorch reference, forward and backward."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_align.ops import token_logprobs, token_logprobs_reference
from tests.ops._cases import DEVICE_BACKENDS, IGNORE, TOL, assert_close, randn, random_labels, skip_if_missing

# (N, V, temperature, logit scale): N=1, V=1, V not a multiple of any block, temperature != 1, huge logits.
CASES = [(1, 1, 1.0, 1.0), (1, 7, 1.0, 3.0), (5, 33, 0.7, 2.0), (37, 257, 1.0, 4.0), (16, 4099, 1.3, 5.0),
         (9, 129, 1.0, 1e4)]


def check_against_reference(device, backend, dtype, n, v, temperature, scale, seed, ignore_share=0.3):
    gen = torch.Generator().manual_seed(seed)
    logits = randn(n, v, scale=scale, dtype=dtype, generator=gen, device=device).requires_grad_()
    labels = random_labels(n, v, ignore_share, gen, device)
    grad_out = randn(n, generator=gen, device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)

    out = token_logprobs(logits, labels, temperature=temperature, backend=backend)
    (grad,) = torch.autograd.grad((out * grad_out).sum(), logits)

    ref_logits = logits.detach().double().requires_grad_()  # float64 truth from the same (rounded) inputs
    ref = token_logprobs_reference(ref_logits, labels, temperature=temperature)
    (ref_grad,) = torch.autograd.grad((ref * grad_out.double()).sum(), ref_logits)

    expected_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    assert out.dtype == expected_dtype and out.shape == (n,)
    assert grad.dtype == dtype
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()
    assert (out[labels == IGNORE] == 0).all(), "ignored rows must be exactly 0"
    assert (grad[labels == IGNORE] == 0).all(), "ignored rows must get no gradient"
    tol = TOL[dtype]
    out_tol = tol["out"] if scale < 100 else (tol["out"][0] * scale, tol["out"][1])
    assert_close(out, ref, out_tol, f"{backend} logp")
    assert_close(grad, ref_grad.to(dtype), tol["grad"], f"{backend} grad_logits")


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("n,v,temperature,scale", CASES)
def test_matches_reference(device, backend, dtype, n, v, temperature, scale):
    skip_if_missing(backend)
    if dtype == torch.float16 and scale > 1e3:
        scale = 1e3  # 1e4 * randn overflows float16
    check_against_reference(device, backend, dtype, n, v, temperature, scale, seed=n * 1000 + v)


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_all_ignored_and_empty(device, backend):
    skip_if_missing(backend)
    logits = torch.randn(4, 11, device=device, requires_grad=True)
    labels = torch.full((4,), IGNORE, device=device)
    out = token_logprobs(logits, labels, backend=backend)
    out.sum().backward()
    assert (out == 0).all() and (logits.grad == 0).all()
    empty = token_logprobs(torch.randn(0, 11, device=device), torch.zeros(0, dtype=torch.long, device=device),
                           backend=backend)
    assert empty.shape == (0,)


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_negative_infinity_logits(device, backend):
    """Masked vocabulary entries (-inf) contribute nothing; the label's own logit stays finite."""
    skip_if_missing(backend)
    logits = torch.randn(6, 50, dtype=torch.float64, device=device)
    labels = torch.arange(6, device=device)
    logits[:, 25:] = float("-inf")
    x = logits.clone().requires_grad_()
    out = token_logprobs(x, labels, backend=backend)
    out.sum().backward()
    ref = token_logprobs_reference(logits, labels)
    assert_close(out, ref, TOL[torch.float64]["out"], "logp with -inf entries")
    assert torch.isfinite(x.grad).all() and (x.grad[:, 25:] == 0).all()


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_leading_dimensions_and_custom_ignore_index(device, backend):
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(3)
    logits = randn(2, 3, 17, generator=gen, device=device)
    labels = torch.randint(0, 17, (2, 3), generator=gen).to(device)
    labels[0, 1] = 5
    out = token_logprobs(logits, labels, ignore_index=5, backend=backend)
    ref = token_logprobs_reference(logits.reshape(-1, 17), labels.reshape(-1), ignore_index=5).view(2, 3)
    assert out.shape == (2, 3) and out[0, 1] == 0
    assert_close(out, ref, TOL[torch.float32]["out"], "leading dims")


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_logsumexp_output_gradient(device, backend):
    """The kernels' statistics (row_max, log_sum) give lse = row_max / T + log_sum, differentiable through log_sum
    (row_max is the constant shift): check value and gradient against the reference."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(11)
    logits = randn(7, 45, dtype=torch.float64, generator=gen, device=device)
    labels = random_labels(7, 45, 0.3, gen, device)
    a, b = randn(7, dtype=torch.float64, generator=gen, device=device), randn(7, dtype=torch.float64, generator=gen,
                                                                                device=device)
    x = logits.clone().requires_grad_()
    if backend == "triton":
        from lit_align.ops.triton.token_logprobs import triton_token_logprobs
        logp, row_max, log_sum = triton_token_logprobs(x, labels, IGNORE, 0.9)
    else:
        logp, row_max, log_sum = torch.ops.lit_align.token_logprobs(x, labels, IGNORE, 0.9)
    assert not row_max.requires_grad, "row_max is the softmax shift, not differentiated"
    lse = row_max / 0.9 + log_sum
    (grad,) = torch.autograd.grad((logp * a + lse * b).sum(), x)
    y = logits.clone().requires_grad_()
    ref_logp, ref_lse = token_logprobs_reference(y, labels, temperature=0.9, return_lse=True)
    (ref_grad,) = torch.autograd.grad((ref_logp * a + ref_lse * b).sum(), y)
    assert_close(lse, ref_lse, TOL[torch.float64]["out"], "lse")
    assert_close(grad, ref_grad, TOL[torch.float64]["grad"], "grad through logp and lse")


@pytest.mark.parametrize("backend", ["torch", "cpp"])
def test_gradcheck_float64(backend):
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(5)
    logits = randn(6, 13, dtype=torch.float64, generator=gen).requires_grad_()
    labels = random_labels(6, 13, 0.3, gen)
    assert torch.autograd.gradcheck(lambda x: token_logprobs(x, labels, temperature=0.8, backend=backend), (logits,))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), v=st.integers(1, 300), ignore_share=st.floats(0, 1), temperature=st.floats(0.25, 4),
       scale=st.sampled_from([0.1, 1.0, 30.0]), seed=st.integers(0, 2**31 - 1),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_hypothesis_cpp(n, v, ignore_share, temperature, scale, seed, dtype):
    skip_if_missing("cpp")
    check_against_reference("cpu", "cpp", dtype, n, v, temperature, scale, seed, ignore_share)


@settings(max_examples=6, deadline=None)
@given(n=st.integers(1, 12), v=st.integers(1, 200), ignore_share=st.floats(0, 1), seed=st.integers(0, 2**31 - 1))
def test_hypothesis_triton(n, v, ignore_share, seed):
    pytest.importorskip("triton")
    check_against_reference("cpu", "triton", torch.float32, n, v, 1.0, 2.0, seed, ignore_share)
