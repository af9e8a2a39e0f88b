"""fused_linear_preference_loss: the end-to-end DPO path against the reference composition."""
import pytest
import torch

from lit_align.ops import (
    fused_linear_preference_loss,
    linear_token_logprobs_reference,
    preference_loss_reference,
)
from tests.ops._cases import DEVICE_BACKENDS, IGNORE, assert_close, randn, skip_if_missing

ALL = DEVICE_BACKENDS + [pytest.param("cpu", "torch", id="cpu-torch")]


def make_batch(b, t, h, v, dtype, device, seed):
    """2B rows (chosen then rejected), each with a prompt (ignored), a completion, then padding (ignored)."""
    gen = torch.Generator().manual_seed(seed)
    hidden = randn(2 * b, t, h, dtype=dtype, generator=gen, device=device).requires_grad_()
    weight = randn(v, h, scale=h ** -0.5, dtype=dtype, generator=gen, device=device).requires_grad_()
    labels = torch.randint(0, v, (2 * b, t), generator=gen)
    for row in range(2 * b):
        prompt = int(torch.randint(1, t // 2, (1,), generator=gen))
        end = int(torch.randint(prompt + 1, t + 1, (1,), generator=gen))
        labels[row, :prompt] = IGNORE
        labels[row, end:] = IGNORE
    refs = [randn(b, scale=5.0, dtype=dtype, generator=gen, device=device) for _ in range(2)]
    return hidden, weight, labels.to(device), refs


def reference(hidden, weight, labels, refs, *, average_log_prob, **kwargs):
    b = hidden.shape[0] // 2
    token = linear_token_logprobs_reference(hidden.flatten(0, 1), weight, labels.flatten()).view(labels.shape)
    mask = labels != IGNORE
    seq = token.sum(-1) / (mask.sum(-1) if average_log_prob else 1)
    if kwargs["loss_type"] in ("bt", "simpo"):
        refs = [None, None]
    return preference_loss_reference(seq[:b], seq[b:], *refs, **kwargs), seq


@pytest.mark.parametrize("device,backend", ALL)
@pytest.mark.parametrize("loss_type,average_log_prob", [("sigmoid", False), ("ipo", True), ("simpo", True),
                                                        ("robust", False), ("hinge", False)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_reference(device, backend, loss_type, average_log_prob, dtype):
    skip_if_missing(backend)
    hidden, weight, labels, refs = make_batch(3, 11, 12, 97, dtype, device, seed=7)
    smoothing = 0.1 if loss_type in ("sigmoid", "robust", "simpo") else 0.0
    kwargs = dict(beta=0.2, loss_type=loss_type, label_smoothing=smoothing, gamma=0.3)
    ref_kw = dict(ref_chosen=refs[0], ref_rejected=refs[1]) if loss_type not in ("simpo",) else {}
    loss, chosen, rejected, logp_c, logp_r = fused_linear_preference_loss(
        hidden, weight, labels, average_log_prob=average_log_prob, return_logprobs=True, backend=backend,
        **ref_kw, **kwargs)
    grads = torch.autograd.grad(loss.mean(), (hidden, weight))
    (ref_loss, ref_chosen, ref_rejected), ref_seq = reference(hidden, weight, labels, refs,
                                                              average_log_prob=average_log_prob, **kwargs)
    ref_grads = torch.autograd.grad(ref_loss.mean(), (hidden, weight))
    tol = (1e-9, 1e-9) if dtype == torch.float64 else (1e-4, 1e-4)
    assert_close(loss, ref_loss, tol, "loss")
    assert_close(chosen, ref_chosen, tol, "chosen rewards")
    assert_close(rejected, ref_rejected, tol, "rejected rewards")
    assert_close(torch.cat([logp_c, logp_r]), ref_seq, tol, "sequence log-probs")
    for g, r in zip(grads, ref_grads, strict=True):
        assert_close(g, r, tol, "gradient")
    assert (grads[0][labels == IGNORE] == 0).all(), "prompt and padding positions get no gradient"


def test_layout_errors():
    with pytest.raises(ValueError, match="2B"):
        fused_linear_preference_loss(torch.randn(3, 4, 5), torch.randn(7, 5), torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"expected hidden \(2B, T, H\)"):
        fused_linear_preference_loss(torch.randn(4, 5), torch.randn(7, 5), torch.zeros(4, dtype=torch.long))
