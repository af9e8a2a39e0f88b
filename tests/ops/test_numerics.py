"""Large-logit numerics: every backend within 10x of eager float32's error against a float64 reference.

With logits of 1e4 and T = 0.6 a float32 logsumexp (16667) has an ulp of 2e-3; a backward that rebuilds the
softmax as exp(z - lse) from it carries that error into every probability (1e-4 relative where eager float32
log_softmax is at 1e-7). The kernels keep (raw row max, log-sum) instead. Here: ±1e4 logits (spread over
[-1e4, 1e4], and clustered near ±1e4 so that the softmax is not one-hot), temperatures 0.3 to 2, float32 and
bfloat16 inputs, fresh random data each run (the seed is in the failure message). Errors are norm-relative to
float64 computed from the same (rounded) inputs; "eager" is `log_softmax(logits.float() / T)` through autograd
(its gradient rounded to the input dtype, as every backend's is).
"""
import pytest
import torch
import torch.nn.functional as F

from lit_align.ops import linear_token_logprobs, token_logprobs
from tests.ops._cases import skip_if_missing

BACKENDS = ["torch", "cpp", "triton"]
TEMPERATURES = [0.3, 0.6, 1.0, 2.0]
FACTOR = 10.0  # the bound: 10x eager float32's error
FLOOR = 1e-9  # where eager is exact (one-hot softmax) an error below this counts as exact too


def rel_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.double() - reference).norm() / reference.norm().clamp_min(1e-300))


def large_logits(kind: str, n: int, v: int, gen: torch.Generator) -> torch.Tensor:
    """(n, v) float64 logits of magnitude 1e4."""
    if kind == "spread":  # uniform over [-1e4, 1e4]: a few logits dominate each row
        return (torch.rand(n, v, generator=gen, dtype=torch.float64) * 2 - 1) * 1e4
    sign = torch.where(torch.rand(n, 1, generator=gen) < 0.5, -1.0, 1.0).double()
    return sign * 1e4 + torch.randn(n, v, generator=gen, dtype=torch.float64) * 3  # "clustered": a soft softmax


@pytest.fixture
def seed():
    return int(torch.randint(0, 2**31 - 1, ()))


def grad_of(fn, x: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    out = fn(x)
    return out.detach(), torch.autograd.grad((out * upstream.to(out.dtype)).sum(), x)[0]


def errors(result: tuple[torch.Tensor, torch.Tensor], ref: torch.Tensor, ref_grad: torch.Tensor) -> dict:
    return {"forward": rel_error(result[0], ref), "backward": rel_error(result[1], ref_grad)}


def check(name: str, errors: dict, eager: dict, seed: int) -> None:
    for part in ("forward", "backward"):
        bound = FACTOR * eager[part] + FLOOR
        assert errors[part] <= bound, (f"{name} {part}: {errors[part]:.2e} vs eager float32 {eager[part]:.2e} "
                                       f"(bound {bound:.2e}, seed {seed})")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("kind", ["spread", "clustered"])
def test_token_logprobs_large_logits(backend, dtype, kind, seed):
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(seed)
    n, v = 9, 517
    logits = large_logits(kind, n, v, gen).to(dtype)  # the rounded inputs every computation starts from
    labels = torch.randint(0, v, (n,), generator=gen)
    labels[::4] = logits[::4].float().argmax(-1)  # p_label close to 1: the label term must not cancel
    upstream = torch.randn(n, generator=gen)
    pick = labels[:, None]
    for t in TEMPERATURES:
        ref, ref_grad = grad_of(lambda x: x.log_softmax(-1).gather(-1, pick).squeeze(-1), logits.double() / t,
                                upstream.double())
        ref_grad = ref_grad / t  # d/dlogits of the float64 truth
        eager = grad_of(lambda x, t=t: (x.float() / t).log_softmax(-1).gather(-1, pick).squeeze(-1), logits, upstream)
        ours = grad_of(lambda x, t=t: token_logprobs(x, labels, temperature=t, backend=backend), logits, upstream)
        check(f"{backend} {dtype} {kind} T={t}", errors(ours, ref, ref_grad), errors(eager, ref, ref_grad), seed)


@pytest.mark.parametrize("backend", ["cpp", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("batch_invariant", [False, True])
def test_linear_token_logprobs_large_logits(backend, dtype, batch_invariant, seed):
    """Hidden states that give logits near ±1e4 through the LM head: log-probs and the hidden gradient."""
    skip_if_missing(backend)
    gen = torch.Generator().manual_seed(seed)
    n, hdim, v = 7, 24, 301
    weight = (torch.randn(v, hdim, generator=gen, dtype=torch.float64) / hdim ** 0.5).to(dtype)
    # hidden = a large shared direction (logits near ±1e4) plus noise (a spread of a few units between logits)
    direction = weight.double().sum(0) / weight.double().sum(0).norm()
    scale = 1e4 / float((weight.double() @ direction).abs().mean())
    hidden = (direction * scale * torch.where(torch.rand(n, 1, generator=gen) < 0.5, -1.0, 1.0).double()
              + torch.randn(n, hdim, generator=gen, dtype=torch.float64) * 0.3).to(dtype)
    labels = torch.randint(0, v, (n,), generator=gen)
    upstream = torch.randn(n, generator=gen)
    pick = labels[:, None]
    for t in (0.3, 2.0):
        ref, ref_grad = grad_of(lambda h, t=t: (F.linear(h, weight.double()) / t).log_softmax(-1).gather(-1, pick)
                                .squeeze(-1), hidden.double(), upstream.double())
        eager = grad_of(lambda h, t=t: (F.linear(h, weight).float() / t).log_softmax(-1).gather(-1, pick).squeeze(-1),
                        hidden, upstream)
        ours = grad_of(lambda h, t=t: linear_token_logprobs(h, weight, labels, temperature=t, backend=backend,
                                                            batch_invariant=batch_invariant), hidden, upstream)
        check(f"linear {backend} {dtype} T={t}", errors(ours, ref, ref_grad), errors(eager, ref, ref_grad), seed)
