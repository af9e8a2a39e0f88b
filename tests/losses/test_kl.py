"""token_kl (k1, k2, k3) by hand and against exact KL in expectation; AdaptiveKLController: fixed coefficient,
the hand-computed adaptive update (error clipped to +-0.2), state_dict round trip, argument validation."""
from __future__ import annotations

import math

import pytest
import torch

from lit_align.losses.kl import KL_ESTIMATORS, AdaptiveKLController, token_kl


def test_token_kl_by_hand():
    logp = torch.tensor([[math.log(0.5), math.log(0.25), math.log(0.2)]], dtype=torch.float64)
    ref = torch.tensor([[math.log(0.25), math.log(0.5), math.log(0.2)]], dtype=torch.float64)
    # log r = ref - logp = [-log 2, +log 2, 0]; r = [1/2, 2, 1]
    ln2 = math.log(2)
    k1 = [ln2, -ln2, 0.0]                        # -log r
    k2 = [0.5 * ln2 ** 2, 0.5 * ln2 ** 2, 0.0]   # (log r)^2 / 2 = 0.2402265...
    k3 = [-0.5 + ln2, 1.0 - ln2, 0.0]            # (r - 1) - log r = 0.1931472, 0.3068528, 0
    for name, expect in (("k1", k1), ("k2", k2), ("k3", k3)):
        torch.testing.assert_close(token_kl(logp, ref, name), torch.tensor([expect], dtype=torch.float64))
    torch.testing.assert_close(token_kl(logp, ref), torch.tensor([k1], dtype=torch.float64))  # default k1


def test_token_kl_random_odd_shape_matches_direct_formula_and_k3_nonnegative():
    g = torch.Generator().manual_seed(2024)
    logp = -torch.rand(3, 7, generator=g, dtype=torch.float64) * 6
    ref = -torch.rand(3, 7, generator=g, dtype=torch.float64) * 6
    ratio = torch.exp(ref) / torch.exp(logp)  # pi_ref(y) / pi(y) computed from probabilities
    torch.testing.assert_close(token_kl(logp, ref, "k1"), torch.log(1 / ratio))
    torch.testing.assert_close(token_kl(logp, ref, "k2"), 0.5 * torch.log(ratio) ** 2)
    torch.testing.assert_close(token_kl(logp, ref, "k3"), ratio - 1 - torch.log(ratio))
    wide = torch.randn(5, 11, generator=g) * 10
    assert (token_kl(wide, torch.randn(5, 11, generator=g) * 10, "k3") >= 0).all()
    assert (token_kl(logp, ref, "k2") >= 0).all()


def test_k1_and_k3_are_unbiased_estimates_of_kl():
    g = torch.Generator().manual_seed(5)
    pi = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64)
    ref = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64)
    exact = float((pi * (pi / ref).log()).sum())  # KL(pi || ref) = 0.2529...
    y = torch.multinomial(pi, 200_000, replacement=True, generator=g)
    logp, ref_logp = pi.log()[y][None], ref.log()[y][None]
    assert token_kl(logp, ref_logp, "k1").mean().item() == pytest.approx(exact, abs=0.01)
    assert token_kl(logp, ref_logp, "k3").mean().item() == pytest.approx(exact, abs=0.01)


def test_unknown_estimator_raises():
    x = torch.tensor([[0.1, -0.3]])
    with pytest.raises(ValueError, match="k4"):
        token_kl(x, x, "k4")
    assert KL_ESTIMATORS == ("k1", "k2", "k3")


def test_fixed_controller_stays_constant():
    ctl = AdaptiveKLController(0.037)
    for kl, n in ((100.0, 64), (0.0, 7), (-3.0, 1000)):
        assert ctl.update(kl, n) == 0.037
    assert ctl.value == 0.037


def test_adaptive_update_by_hand():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    # kl 9: e = 9/6 - 1 = 0.5 -> clipped 0.2; beta = 0.1 * (1 + 0.2 * 256/10000) = 0.1 * 1.00512 = 0.100512
    assert ctl.update(9.0, 256) == pytest.approx(0.100512, rel=1e-12)
    # kl 5.4: e = 0.9 - 1 = -0.1 (inside); beta *= 1 - 0.1 * 100/10000 = 0.999 -> 0.100411488
    assert ctl.update(5.4, 100) == pytest.approx(0.100411488, rel=1e-12)
    # kl 0: e = -1 -> clipped -0.2; beta *= 1 - 0.2 * 500/10000 = 0.99 -> 0.09940737312
    assert ctl.update(0.0, 500) == pytest.approx(0.09940737312, rel=1e-12)
    # kl on target: e = 0, unchanged
    assert ctl.update(6.0, 999) == pytest.approx(0.09940737312, rel=1e-12)
    assert ctl.value == pytest.approx(0.09940737312, rel=1e-12)


def test_state_dict_round_trip():
    a = AdaptiveKLController(0.2, target=3.0, horizon=500)
    a.update(4.5, 50)  # e = 0.5 -> 0.2; 0.2 * (1 + 0.2 * 0.1) = 0.204
    assert a.value == pytest.approx(0.204)
    b = AdaptiveKLController(0.9, target=3.0, horizon=500)
    b.load_state_dict(a.state_dict())
    assert b.value == a.value
    assert b.update(2.7, 10) == a.update(2.7, 10)  # the same update from the restored state
    assert isinstance(a.state_dict()["value"], float)


@pytest.mark.parametrize("kwargs", [dict(beta=-0.01), dict(beta=0.1, target=0.0), dict(beta=0.1, target=-2.0),
                                    dict(beta=0.1, target=1.0, horizon=0), dict(beta=0.1, target=1.0, horizon=-100)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        AdaptiveKLController(**kwargs)


def test_zero_beta_is_allowed_and_stays_zero():
    ctl = AdaptiveKLController(0.0, target=1.0)
    assert ctl.update(5.0, 100) == 0.0
