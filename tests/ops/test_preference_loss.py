"""preference_loss: hand-computed values, every backend against the reference, gradients, bad input."""
import math

import pytest
import torch

from lit_align.ops import LOSS_TYPES, preference_loss, preference_loss_reference
from tests.ops._cases import DEVICE_BACKENDS, assert_close, randn, skip_if_missing

ALL = DEVICE_BACKENDS + [pytest.param("cpu", "torch", id="cpu-torch")]
SP = lambda x: math.log1p(math.exp(-x))  # noqa: E731  -logsigmoid(x)


# policy_chosen=-1, policy_rejected=-2, ref_chosen=ref_rejected=-1.5 -> margin 1.0
@pytest.mark.parametrize("loss_type,kwargs,expected", [
    ("sigmoid", dict(beta=0.1), SP(0.1)),
    ("sigmoid", dict(beta=0.1, label_smoothing=0.2), 0.8 * SP(0.1) + 0.2 * SP(-0.1)),
    ("robust", dict(beta=0.1, label_smoothing=0.2), (0.8 * SP(0.1) - 0.2 * SP(-0.1)) / 0.6),
    ("hinge", dict(beta=0.1), 0.9),
    ("ipo", dict(beta=0.1), 16.0),
])
@pytest.mark.parametrize("device,backend", ALL)
def test_hand_computed_reference_types(loss_type, kwargs, expected, device, backend):
    skip_if_missing(backend)
    t = lambda x: torch.tensor([x], dtype=torch.float64, device=device)  # noqa: E731
    loss, chosen, rejected = preference_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), loss_type=loss_type,
                                             backend=backend, **kwargs)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert chosen.item() == pytest.approx(0.05) and rejected.item() == pytest.approx(-0.05)


@pytest.mark.parametrize("device,backend", ALL)
def test_hand_computed_reference_free_types(device, backend):
    skip_if_missing(backend)
    t = lambda x: torch.tensor([x], dtype=torch.float64, device=device)  # noqa: E731
    loss, chosen, rejected = preference_loss(t(-1.0), t(-2.0), loss_type="bt", backend=backend)
    assert loss.item() == pytest.approx(SP(1.0), abs=1e-12)
    assert (chosen.item(), rejected.item()) == (-1.0, -2.0)
    loss, chosen, _ = preference_loss(t(-1.0), t(-2.0), loss_type="simpo", beta=2.0, gamma=0.5, backend=backend)
    assert loss.item() == pytest.approx(SP(1.5), abs=1e-12)
    assert chosen.item() == pytest.approx(-2.0)


def _inputs(loss_type, dtype, device, seed, b=9):
    gen = torch.Generator().manual_seed(seed)
    tensors = [randn(b, scale=20.0, dtype=dtype, generator=gen, device=device).requires_grad_() for _ in range(4)]
    if loss_type in ("bt", "simpo"):
        tensors[2] = tensors[3] = None
    eps_vector = torch.rand(b, generator=gen, dtype=torch.float64).mul(0.45).to(dtype).to(device)
    return tensors, eps_vector, gen


# label smoothing is undefined for hinge and ipo (test_bad_input checks the error), so those pairs are not generated
TYPE_SMOOTHING = [(t, s) for t in LOSS_TYPES for s in ("none", "scalar", "per_pair")
                  if s == "none" or t not in ("hinge", "ipo")]


@pytest.mark.parametrize("device,backend", DEVICE_BACKENDS)
@pytest.mark.parametrize("loss_type,smoothing", TYPE_SMOOTHING)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(device, backend, loss_type, dtype, smoothing):
    skip_if_missing(backend)
    tensors, eps_vector, gen = _inputs(loss_type, dtype, device, seed=len(loss_type))
    eps = {"none": 0.0, "scalar": 0.15, "per_pair": eps_vector}[smoothing]
    kwargs = dict(beta=0.3, loss_type=loss_type, label_smoothing=eps, gamma=0.4)
    live = [t for t in tensors if t is not None]
    grad_out = randn(9, dtype=dtype, generator=gen, device=device)

    out = preference_loss(*tensors, backend=backend, **kwargs)
    grads = torch.autograd.grad((out[0] * grad_out).sum(), live)
    ref = preference_loss_reference(*tensors, **kwargs)
    ref_grads = torch.autograd.grad((ref[0] * grad_out).sum(), live)

    tol = (1e-12, 1e-10) if dtype == torch.float64 else (1e-5, 1e-5)
    for name, a, b in zip(("loss", "chosen_rewards", "rejected_rewards"), out, ref, strict=True):
        assert a.dtype == dtype
        assert name == "loss" or not a.requires_grad, "rewards are detached"
        assert_close(a, b, tol, f"{backend} {loss_type} {name}")
    for a, b in zip(grads, ref_grads, strict=True):
        assert_close(a, b, tol, f"{backend} {loss_type} gradient")


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gradcheck_cpp(loss_type):
    skip_if_missing("cpp")
    tensors, eps_vector, _ = _inputs(loss_type, torch.float64, "cpu", seed=1, b=5)
    eps = eps_vector if loss_type not in ("hinge", "ipo") else 0.0
    fn = lambda *xs: preference_loss(*xs, beta=0.2, loss_type=loss_type, label_smoothing=eps,  # noqa: E731
                                     gamma=0.3, backend="cpp")[0]
    assert torch.autograd.gradcheck(fn, tuple(t for t in tensors if t is not None) if loss_type in ("bt", "simpo")
                                    else tuple(tensors))


def test_extreme_margins_stay_finite():
    for backend in ["torch", "cpp"]:
        skip_if_missing(backend)
        pc = torch.tensor([1e4, -1e4, 0.0], requires_grad=True)
        loss, _, _ = preference_loss(pc, torch.zeros(3), torch.zeros(3), torch.zeros(3), beta=1.0, backend=backend)
        loss.sum().backward()
        assert torch.isfinite(loss).all() and torch.isfinite(pc.grad).all(), backend
        assert loss[0].item() == 0.0 and loss[1].item() == pytest.approx(1e4)


@pytest.mark.parametrize("backend", ["torch", "cpp"])
@pytest.mark.parametrize("call,match", [
    (lambda b, v: preference_loss(v, v, loss_type="dpo", backend=b), "loss_type='dpo'"),
    (lambda b, v: preference_loss(v, v[:2], backend=b), "policy_rejected has shape"),
    (lambda b, v: preference_loss(v, v, v, backend=b), "both ref_chosen and ref_rejected"),
    (lambda b, v: preference_loss(v, v, v, v, loss_type="simpo", backend=b), "reference-free"),
    (lambda b, v: preference_loss(v, v, v, v, beta=0.0, backend=b), "beta must be > 0"),
    (lambda b, v: preference_loss(v, v, v, v, loss_type="hinge", label_smoothing=0.1, backend=b), "not defined"),
    (lambda b, v: preference_loss(v, v, v, v, loss_type="robust", label_smoothing=0.5, backend=b), "< 0.5"),
    (lambda b, v: preference_loss(v, v, v, v, label_smoothing=torch.ones(2), backend=b), "float or a \\[B\\]"),
    (lambda b, v: preference_loss(v, v, v, v, label_smoothing=1.5, backend=b), r"\[0, 1\]"),
    (lambda b, v: preference_loss(v.long(), v, backend=b), "floating-point"),
])
def test_bad_input(backend, call, match):
    skip_if_missing(backend)
    with pytest.raises(ValueError, match=match):
        call(backend, torch.randn(4))
