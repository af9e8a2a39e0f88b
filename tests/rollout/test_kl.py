"""KL estimates: hand-computed k1/k3, zero KL of a model to itself, positive KL to another model."""
from __future__ import annotations

import math

import pytest
import torch

from lit_align.rollout.generate import generate
from lit_align.rollout.kl import kl_estimates, kl_to_reference


def test_kl_estimates_by_hand():
    pi = [torch.tensor([math.log(0.5), math.log(0.25)]), torch.tensor([math.log(0.5)])]
    ref = [torch.tensor([math.log(0.25), math.log(0.5)]), torch.tensor([math.log(0.5)])]
    # sample 1: log r = [log 1/2, log 2] -> k1 = 0, k3 = (1/2 - 1 + log 2) + (2 - 1 - log 2) = 1/2; sample 2: 0
    out = kl_estimates(pi, ref)
    assert out["kl"] == pytest.approx(0.0, abs=1e-12)
    assert out["kl_k3"] == pytest.approx(0.25)
    assert out["kl_k3_per_token"] == pytest.approx(0.5 / 3)


def test_kl_to_itself_is_zero_and_to_another_positive(model, other_model, tokenizer):
    prompts = [[100, 200, 300], [7, 8, 9, 10, 11, 12, 13]]
    samples = generate(model, tokenizer, prompts * 2, max_new_tokens=6, do_sample=True, seed=0)
    same = kl_to_reference(model, model, tokenizer, samples, batch_size=4)
    assert all(abs(v) < 1e-5 for v in same.values()), same
    other = kl_to_reference(model, other_model, tokenizer, samples, batch_size=4)
    assert other["kl_k3"] > 0 and other["kl_k3_per_token"] > 0
    assert all(math.isfinite(v) for v in other.values())
