"""fused_linear_preference_loss(strategy="chunked"): the Liger-style gradient-in-forward path.

Forward and every gradient against the reference composition (linear_token_logprobs_reference, segment
sums, preference_loss_reference, autograd through all of it) for each loss type, scalar and per-pair
label smoothing, sums and means, chunk sizes that do and do not divide B, uniform (loss.mean()) and
per-pair upstream gradients (the second takes the recompute branch of the backward).
"""
import pytest
import torch

from lit_align.ops import (
    LOSS_TYPES,
    fused_linear_preference_loss,
    linear_token_logprobs_reference,
    preference_loss_reference,
    sequence_logprobs_reference,
)
from lit_align.ops import fused_linear_preference_loss_chunked as chunked
from lit_align.ops.sequence_logprobs import to_segments
from tests.ops._cases import IGNORE, assert_close, randn
from tests.ops.test_fused_linear_preference_loss import make_batch

B, T, H, V = 3, 9, 12, 97
TOL = {torch.float64: (1e-10, 1e-9), torch.float32: (1e-5, 1e-4)}


def reference(hidden, weight, labels, *, bias=None, temperature=1.0, average_log_prob=False, refs=(None, None),
              **loss_kwargs):
    """(loss, chosen_rewards, rejected_rewards, chosen_logprobs, rejected_logprobs) by plain autograd."""
    token = linear_token_logprobs_reference(hidden.flatten(0, 1), weight, labels.flatten(), bias=bias,
                                            temperature=temperature).view(labels.shape)  # (2B, T)
    values, ids, count = to_segments(token, mask=labels != IGNORE)
    seq = sequence_logprobs_reference(values, ids, count, mean=average_log_prob)  # (2B,)
    b = seq.shape[0] // 2
    return (*preference_loss_reference(seq[:b], seq[b:], *refs, **loss_kwargs), seq[:b], seq[b:])


def loss_cases():
    """(loss_type, label_smoothing kind) pairs: smoothing only where the loss defines it."""
    for loss_type in LOSS_TYPES:
        smoothable = loss_type in ("sigmoid", "robust", "bt", "simpo")
        for smoothing in (("none", "scalar", "per_pair") if smoothable else ("none",)):
            yield pytest.param(loss_type, smoothing, id=f"{loss_type}-{smoothing}")


def smoothing_value(kind, dtype):
    return {"none": 0.0, "scalar": 0.15, "per_pair": torch.tensor([0.0, 0.3, 0.1], dtype=dtype)}[kind]


def run_both(dtype, *, loss_type="sigmoid", smoothing="none", average_log_prob=False, chunk_size=1,
             with_bias=False, temperature=1.0, upstream="mean", seed=3):
    """Outputs and gradients of the chunked op and of the reference, for the same inputs."""
    hidden, weight, labels, refs = make_batch(B, T, H, V, dtype, "cpu", seed=seed)
    bias = randn(V, scale=0.5, dtype=dtype).requires_grad_() if with_bias else None
    refs = [r.requires_grad_() for r in refs] if loss_type not in ("bt", "simpo") else [None, None]
    kwargs = dict(beta=0.3, loss_type=loss_type, label_smoothing=smoothing_value(smoothing, dtype), gamma=0.4)
    out = fused_linear_preference_loss(hidden, weight, labels, bias=bias, ref_chosen=refs[0], ref_rejected=refs[1],
                                       average_log_prob=average_log_prob, temperature=temperature,
                                       return_logprobs=True, strategy="chunked", chunk_size=chunk_size, **kwargs)
    expected = reference(hidden, weight, labels, bias=bias, temperature=temperature,
                         average_log_prob=average_log_prob, refs=refs, **kwargs)
    per_pair = randn(B, dtype=dtype, generator=torch.Generator().manual_seed(seed))  # non-uniform: recompute branch
    weights = torch.full((B,), 1 / B, dtype=dtype) if upstream == "mean" else per_pair
    inputs = [t for t in (hidden, weight, bias, *refs) if t is not None]
    grads = torch.autograd.grad((out[0] * weights).sum(), inputs)
    expected_grads = torch.autograd.grad((expected[0] * weights).sum(), inputs)
    return out, expected, grads, expected_grads, labels


def check(dtype, **kwargs):
    out, expected, grads, expected_grads, labels = run_both(dtype, **kwargs)
    tol = TOL[dtype]
    for name, a, e in zip(("loss", "chosen rewards", "rejected rewards", "chosen logprobs", "rejected logprobs"),
                          out, expected, strict=True):
        assert a.shape == (B,), f"{name} must be per pair"
        assert_close(a, e, tol, name)
    for i, (g, e) in enumerate(zip(grads, expected_grads, strict=True)):
        assert_close(g, e, tol, f"gradient of input {i}")
    assert (grads[0][labels == IGNORE] == 0).all(), "prompt and padding positions get no gradient"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("loss_type,smoothing", list(loss_cases()))
@pytest.mark.parametrize("average_log_prob", [False, True], ids=["sum", "mean"])
def test_loss_types(dtype, loss_type, smoothing, average_log_prob):
    check(dtype, loss_type=loss_type, smoothing=smoothing, average_log_prob=average_log_prob, chunk_size=2)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5])
@pytest.mark.parametrize("upstream", ["mean", "per_pair"])
def test_chunk_sizes_and_upstream_gradients(dtype, chunk_size, upstream):
    """Chunks that do not divide B, more pairs per chunk than B, and non-uniform upstream gradients."""
    check(dtype, smoothing="per_pair", chunk_size=chunk_size, upstream=upstream)


@pytest.mark.parametrize("upstream", ["mean", "per_pair"])
def test_bias_and_temperature(upstream):
    check(torch.float64, with_bias=True, temperature=0.7, average_log_prob=True, chunk_size=2, upstream=upstream)


def test_frozen_head_and_no_grad(monkeypatch):
    """Only hidden needs a gradient (frozen LM head); under no_grad the forward skips the gradient work."""
    hidden, weight, labels, refs = make_batch(B, T, H, V, torch.float64, "cpu", seed=5)
    weight.requires_grad_(False)
    loss = fused_linear_preference_loss(hidden, weight, labels, ref_chosen=refs[0], ref_rejected=refs[1],
                                        strategy="chunked")[0]
    (grad,) = torch.autograd.grad(loss.sum(), hidden)
    expected = reference(hidden, weight, labels, refs=refs)[0]
    assert_close(grad, torch.autograd.grad(expected.sum(), hidden)[0], TOL[torch.float64], "hidden gradient")
    def no_gradient_work(*args, **kwargs):
        raise AssertionError("gradient work under torch.no_grad()")

    monkeypatch.setattr(chunked._Grads, "add_chunk", no_gradient_work)
    with torch.no_grad():
        again = fused_linear_preference_loss(hidden, weight, labels, ref_chosen=refs[0], ref_rejected=refs[1],
                                             strategy="chunked")[0]
    assert not again.requires_grad
    assert_close(again, loss.detach(), TOL[torch.float64], "no_grad loss")


def test_bfloat16_close_to_float32():
    """bf16 inputs: float32 statistics and a float32-accumulated weight gradient, within bf16 rounding."""
    hidden, weight, labels, refs = make_batch(B, T, H, V, torch.float32, "cpu", seed=9)
    low = [t.detach().to(torch.bfloat16).requires_grad_() for t in (hidden, weight)]
    loss = fused_linear_preference_loss(*low, labels, ref_chosen=refs[0], ref_rejected=refs[1], strategy="chunked")[0]
    grads = torch.autograd.grad(loss.mean(), low)
    expected = reference(*[t.detach().to(torch.bfloat16).float().requires_grad_() for t in (hidden, weight)],
                         labels, refs=refs)
    assert loss.dtype == torch.float32
    assert_close(loss, expected[0], (2e-4, 2e-4), "bf16 loss")
    assert all(g.dtype == torch.bfloat16 for g in grads)


def test_argument_errors():
    hidden, weight, labels, _ = make_batch(B, T, H, V, torch.float32, "cpu", seed=1)
    with pytest.raises(ValueError, match="strategy"):
        fused_linear_preference_loss(hidden, weight, labels, strategy="fast")
    with pytest.raises(ValueError, match="backend must be 'auto' or 'torch'"):
        fused_linear_preference_loss(hidden, weight, labels, strategy="chunked", backend="cpp")
    with pytest.raises(ValueError, match="chunk_size must be a positive"):
        fused_linear_preference_loss(hidden, weight, labels, strategy="chunked", chunk_size=0)
    with pytest.raises(ValueError, match="chunk_size applies"):
        fused_linear_preference_loss(hidden, weight, labels, chunk_size=2)
    with pytest.raises(ValueError, match="2B"):
        fused_linear_preference_loss(hidden[:5], weight, labels[:5], strategy="chunked")


@pytest.mark.parametrize("strategy", ["recompute", "chunked"])
@pytest.mark.parametrize("average_log_prob", [False, True], ids=["sum", "mean"])
@pytest.mark.parametrize("upstream", ["mean", "per_pair"])
def test_rpo_term(strategy, average_log_prob, upstream):
    """rpo_alpha adds alpha * the chosen answer's per-token NLL to each pair's loss (RPO), on both strategies:
    values and every gradient; the reference scores' gradients come from the preference loss alone."""
    dtype, alpha = torch.float64, 0.7
    hidden, weight, labels, refs = make_batch(B, T, H, V, dtype, "cpu", seed=5)
    refs = [r.requires_grad_() for r in refs]
    kwargs = dict(beta=0.3, loss_type="sigmoid", label_smoothing=0.1)
    out = fused_linear_preference_loss(hidden, weight, labels, ref_chosen=refs[0], ref_rejected=refs[1],
                                       rpo_alpha=alpha, average_log_prob=average_log_prob, return_logprobs=True,
                                       strategy=strategy, **kwargs)
    expected = list(reference(hidden, weight, labels, average_log_prob=average_log_prob, refs=refs, **kwargs))
    lengths = (labels[:B] != IGNORE).sum(-1).to(dtype)  # (B,) chosen tokens
    nll = -(expected[3] if average_log_prob else expected[3] / lengths)  # (B,)
    assert nll.min() > 1, "the RPO term is not negligible here"
    expected[0] = expected[0] + alpha * nll
    weights = torch.full((B,), 1 / B, dtype=dtype) if upstream == "mean" else randn(B, dtype=dtype)
    inputs = [hidden, weight, *refs]
    grads = torch.autograd.grad((out[0] * weights).sum(), inputs)
    expected_grads = torch.autograd.grad((expected[0] * weights).sum(), inputs)
    for name, a, e in zip(("loss", "chosen rewards", "rejected rewards", "chosen", "rejected"), out, expected,
                          strict=True):
        assert_close(a, e, TOL[dtype], name)
    for name, g, e in zip(("hidden", "weight", "ref_chosen", "ref_rejected"), grads, expected_grads, strict=True):
        assert_close(g, e, TOL[dtype], f"gradient of {name}")
