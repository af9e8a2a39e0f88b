"""linear_token_logprobs: every backend against the reference (logits materialised), forward and backward."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lit_align.ops import linear_token_logprobs, linear_token_logprobs_reference
from tests.ops._cases import DEVICE_BACKENDS, IGNORE, assert_close, randn, random_labels, skip_if_missing

# (N, H, V, bias, temperature): N=1, V smaller/not a multiple of any tile, H odd, temperature != 1.
CASES = [(1, 8, 5, False, 1.0), (7, 16, 33, True, 1.0), (33, 24, 130, False, 0.7), (20, 32, 1031, True, 1.4)]
# Linear-path tolerances: the kernels' matmuls accumulate in another order than the reference's.
TOL = {
    torch.float64: dict(out=(1e-9, 1e-9), grad=(1e-9, 1e-8)),
    torch.float32: dict(out=(1e-4, 1e-4), grad=(1e-4, 1e-3)),
    torch.bfloat16: dict(out=(5e-2, 2e-2), grad=(5e-2, 5e-2)),
}


def check_against_reference(device, backend, dtype, n, h, v, use_bias, temperature, seed, ignore_share=0.3,
                            batch_invariant=False):
    gen = torch.Generator().manual_seed(seed)
    hidden = randn(n, h, dtype=dtype, generator=gen, device=device).requires_grad_()
    weight = randn(v, h, scale=h ** -0.5, dtype=dtype, generator=gen, device=device).requires_grad_()
    bias = randn(v, dtype=dtype, generator=gen, device=device).requires_grad_() if use_bias else None
    labels = random_labels(n, v, ignore_share, gen, device)
    grad_out = randn(n, generator=gen, device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    inputs = [t for t in (hidden, weight, bias) if t is not None]

    out = linear_token_logprobs(hidden, weight, labels, bias=bias, temperature=temperature, backend=backend,
                                batch_invariant=batch_invariant)
    grads = torch.autograd.grad((out * grad_out).sum(), inputs)

    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    ref_bias = ref_inputs[2] if use_bias else None
    ref = linear_token_logprobs_reference(ref_inputs[0], ref_inputs[1], labels, bias=ref_bias, temperature=temperature)
    ref_grads = torch.autograd.grad((ref * grad_out.double()).sum(), ref_inputs)

    assert out.shape == (n,) and torch.isfinite(out).all()
    assert (out[labels == IGNORE] == 0).all()
    assert (grads[0][labels == IGNORE] == 0).all(), "ignored rows must get no hidden gradient"
    tol = TOL[dtype]
    assert_close(out, ref, tol["out"], f"{backend} logp")
    for name, grad, ref_grad in zip(("hidden", "weight", "bias"), grads, ref_grads, strict=False):
        assert grad.dtype == dtype, name
        scale = max(1.0, float(ref_grad.abs().max()))
        assert_close(grad, ref_grad.to(dtype), (tol["grad"][0] * scale, tol["grad"][1]), f"{backend} grad_{name}")


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n,h,v,use_bias,temperature", CASES)
@pytest.mark.parametrize("batch_invariant", [False, True], ids=["default", "invariant"])
def test_matches_reference(device, backend, dtype, n, h, v, use_bias, temperature, batch_invariant):
    skip_if_missing(backend)
    check_against_reference(device, backend, dtype, n, h, v, use_bias, temperature, seed=n * 100 + v,
                            batch_invariant=batch_invariant)


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_large_logits(device, backend):
    """Hidden states that give logits in the thousands: the online logsumexp must not overflow."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(4)
    hidden = randn(12, 16, scale=300.0, generator=gen, device=device)
    weight = randn(300, 16, generator=gen, device=device)
    labels = random_labels(12, 300, 0.2, gen, device)
    out = linear_token_logprobs(hidden, weight, labels, backend=backend)
    ref = linear_token_logprobs_reference(hidden.double(), weight.double(), labels)
    assert torch.isfinite(out).all()
    assert_close(out, ref, (1e-2, 1e-4), "large logits")


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_frozen_weight_and_all_ignored(device, backend):
    """A frozen LM head (LoRA, reference model) gets no weight gradient; all-ignored rows cost nothing."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(8)
    hidden = randn(9, 16, generator=gen, device=device).requires_grad_()
    weight = randn(40, 16, generator=gen, device=device)
    labels = random_labels(9, 40, 0.3, gen, device)
    linear_token_logprobs(hidden, weight, labels, backend=backend).sum().backward()
    ref_hidden = hidden.detach().clone().requires_grad_()
    linear_token_logprobs_reference(ref_hidden, weight, labels).sum().backward()
    assert weight.grad is None
    assert_close(hidden.grad, ref_hidden.grad, (1e-4, 1e-3), "hidden grad with frozen weight")

    weight.requires_grad_()
    hidden.grad = None
    ignored = torch.full((9,), IGNORE, device=device)
    out = linear_token_logprobs(hidden, weight, ignored, backend=backend)
    out.sum().backward()
    assert (out == 0).all() and (hidden.grad == 0).all() and (weight.grad == 0).all()


@pytest.mark.parametrize("backend,batch_invariant", [("torch", False), ("cpp", False), ("cpp", True)])
def test_gradcheck_float64(backend, batch_invariant):
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(6)
    hidden = randn(5, 6, dtype=torch.float64, generator=gen).requires_grad_()
    weight = randn(11, 6, dtype=torch.float64, generator=gen).requires_grad_()
    bias = randn(11, dtype=torch.float64, generator=gen).requires_grad_()
    labels = random_labels(5, 11, 0.3, gen)
    fn = lambda h, w, b: linear_token_logprobs(h, w, labels, bias=b, temperature=0.7, backend=backend,  # noqa: E731
                                               batch_invariant=batch_invariant)
    assert torch.autograd.gradcheck(fn, (hidden, weight, bias))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 50), h=st.integers(1, 40), v=st.integers(1, 600), ignore_share=st.floats(0, 1),
       use_bias=st.booleans(), seed=st.integers(0, 2**31 - 1), batch_invariant=st.booleans())
def test_hypothesis_cpp(n, h, v, ignore_share, use_bias, seed, batch_invariant):
    skip_if_missing("cpp")
    check_against_reference("cpu", "cpp", torch.float32, n, h, v, use_bias, 1.0, seed, ignore_share,
                            batch_invariant)


@pytest.mark.parametrize("valid", [64, 16, 0])
def test_ignored_rows_cost_no_lm_head_work(valid):
    """The C++ op multiplies only the labelled rows: the profiler's matmul FLOPs are exactly the four GEMMs of
    forward + recompute + two gradients over `valid` rows (CCE-style), whatever the number of ignored rows."""
    skip_if_missing("cpp")
    from torch.profiler import ProfilerActivity, profile

    hidden = torch.randn(64, 32, requires_grad=True)
    weight = torch.randn(500, 32, requires_grad=True)
    labels = torch.randint(0, 500, (64,))
    labels[valid:] = IGNORE
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        linear_token_logprobs(hidden, weight, labels, backend="cpp").sum().backward()
    flops = sum(e.flops for e in prof.events() if e.name in ("aten::mm", "aten::addmm", "aten::matmul"))
    assert flops == 4 * 2 * valid * 32 * 500
