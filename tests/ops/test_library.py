"""torch.library integration: opcheck on every registered op, torch.compile(fullgraph=True) through them."""
import pytest
import torch

from lit_align.ops import fused_linear_preference_loss, linear_token_logprobs, preference_loss, token_logprobs
from tests.ops._cases import DEVICE_BACKENDS, randn, random_labels, skip_if_missing


def op(backend: str, name: str):
    """The registered op behind a backend: lit_align::<name> (C++/CUDA) or lit_align::triton_<name>."""
    if backend == "triton":
        import importlib
        family = name.removesuffix("_backward")
        importlib.import_module(f"lit_align.ops.triton.{family}")
        return getattr(torch.ops.lit_align, f"triton_{name}")
    return getattr(torch.ops.lit_align, name)


def sample_args(device, backend, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = randn(6, 37, dtype=dtype, generator=gen, device=device).requires_grad_()
    hidden = randn(6, 8, dtype=dtype, generator=gen, device=device).requires_grad_()
    weight = randn(37, 8, dtype=dtype, generator=gen, device=device).requires_grad_()
    bias = randn(37, dtype=dtype, generator=gen, device=device).requires_grad_()
    labels = random_labels(6, 37, 0.3, gen, device)
    stats = op(backend, "token_logprobs")(logits.detach(), labels, -100, 1.0)[1:]  # (row_max, log_sum)
    lin_stats = op(backend, "linear_token_logprobs")(hidden.detach(), weight.detach(), bias.detach(), labels, -100,
                                                     1.0, False)[1:]
    g = randn(6, generator=gen, device=device)
    # which gradients to compute: (weight and bias) for the C++/CUDA op, (hidden, weight, bias) for Triton's;
    # then batch_invariant
    needs = (True, True, True, True) if backend == "triton" else (True, True)
    pairs = [randn(4, generator=gen, device=device).requires_grad_() for _ in range(4)]
    eps = torch.full((4,), 0.1, device=device)
    ids = torch.tensor([0, 0, -1, 2, 2, 1], device=device)
    return {
        "token_logprobs": (logits, labels, -100, 1.0),
        "token_logprobs_backward": (g, g.flip(0), logits.detach(), labels, *stats, -100, 1.0),
        "linear_token_logprobs": (hidden, weight, bias, labels, -100, 0.8, False),
        "linear_token_logprobs_invariant": (hidden, weight, bias, labels, -100, 0.8, True),
        "linear_token_logprobs_backward": (g, g.flip(0), hidden.detach(), weight.detach(), bias.detach(), labels,
                                           *lin_stats, -100, 1.0, *needs),
        "sequence_logprobs": (g.clone().requires_grad_(), ids, 3, True),
        "sequence_logprobs_backward": (randn(3, generator=gen, device=device), ids, 3, False),
        "preference_loss": (*pairs, eps, 0.1, "sigmoid", 0.0),
        "preference_loss_backward": (g[:4], *[p.detach() for p in pairs], eps, 0.1, "robust", 0.0),
    }


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
@pytest.mark.parametrize("name", ["token_logprobs", "token_logprobs_backward", "linear_token_logprobs",
                                  "linear_token_logprobs_invariant", "linear_token_logprobs_backward",
                                  "sequence_logprobs", "sequence_logprobs_backward", "preference_loss",
                                  "preference_loss_backward"])
def test_opcheck(device, backend, name):
    skip_if_missing(backend)
    args = sample_args(device, backend)[name]
    torch.library.opcheck(op(backend, name.removesuffix("_invariant")).default, args)


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_opcheck_without_bias_and_frozen_weight(device, backend):
    skip_if_missing(backend)
    hidden, weight, _, labels, _, _, _ = sample_args(device, backend)["linear_token_logprobs"]
    torch.library.opcheck(op(backend, "linear_token_logprobs").default,
                          (hidden, weight.detach(), None, labels, -100, 1.0, False))


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_compile_fullgraph(device, backend):
    """The public functions trace into one graph through the registered ops and their fake kernels."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(3)
    hidden = randn(4, 6, 8, generator=gen, device=device).requires_grad_()
    weight = randn(29, 8, generator=gen, device=device).requires_grad_()
    labels = random_labels(24, 29, 0.3, gen, device).view(4, 6)
    ref_c, ref_r = randn(2, generator=gen, device=device), randn(2, generator=gen, device=device)

    def step(hidden, weight):
        logits = hidden @ weight.T
        a = token_logprobs(logits, labels, backend=backend).sum()
        b = linear_token_logprobs(hidden, weight, labels, backend=backend).sum()
        loss, _, _ = fused_linear_preference_loss(hidden, weight, labels, ref_chosen=ref_c, ref_rejected=ref_r,
                                                  backend=backend)
        c = preference_loss(loss, loss.flip(0), backend=backend, loss_type="bt")[0].sum()
        return a + b + loss.mean() + c

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    eager_out = step(hidden, weight)
    eager_grads = torch.autograd.grad(eager_out, (hidden, weight))
    out = compiled(hidden, weight)
    grads = torch.autograd.grad(out, (hidden, weight))
    torch.testing.assert_close(out, eager_out)
    for g, e in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(g, e)


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
def test_compile_inductor(device, backend):
    """Inductor (the default torch.compile backend) also compiles around the custom ops."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(4)
    hidden = randn(10, 8, generator=gen, device=device).requires_grad_()
    weight = randn(33, 8, generator=gen, device=device)
    labels = random_labels(10, 33, 0.3, gen, device)
    fn = lambda h: (linear_token_logprobs(h * 2, weight, labels, backend=backend) ** 2).sum()  # noqa: E731
    compiled = torch.compile(fn, fullgraph=True)
    (g1,) = torch.autograd.grad(compiled(hidden), hidden)
    (g2,) = torch.autograd.grad(fn(hidden), hidden)
    torch.testing.assert_close(g1, g2)
