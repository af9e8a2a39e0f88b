"""lit_align.losses.preference against values computed by hand (log(1 + e^-x) written out), and the op's
reference built on it."""
import math

import pytest
import torch

from lit_align.losses.preference import (
    LOSSES,
    bradley_terry_loss,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    preference_margin,
    preference_rewards,
    robust_dpo_loss,
    rpo_nll,
    simpo_loss,
)
from lit_align.ops import LOSS_TYPES, preference_loss_reference

SOFTPLUS_M1 = math.log(1 + math.exp(-1))  # -logsigmoid(1) = 0.3133
SOFTPLUS_P1 = math.log(1 + math.e)  # -logsigmoid(-1) = 1.3133


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_margin_and_rewards():
    assert preference_margin(t(1.0), t(2.0), t(0.5), t(3.0)).item() == pytest.approx((1 - 2) - 0.5 + 3)
    assert preference_margin(t(1.0), t(2.0)).item() == -1.0  # reference-free
    assert preference_rewards(t(-3.0), t(-5.0), 0.1, "sigmoid").item() == pytest.approx(0.2)
    assert preference_rewards(t(-3.0), None, 0.5, "simpo").item() == -1.5
    assert preference_rewards(t(-3.0), None, 0.5, "bt").item() == -3.0  # raw scores, no beta


def test_dpo_and_its_label_smoothing():
    assert dpo_loss(t(2.0), beta=0.5).item() == pytest.approx(SOFTPLUS_M1)
    # cDPO / CREAM: the label flipped with probability 0.25
    assert dpo_loss(t(2.0), beta=0.5, label_smoothing=0.25).item() == pytest.approx(0.75 * SOFTPLUS_M1
                                                                                    + 0.25 * SOFTPLUS_P1)
    per_pair = dpo_loss(t(2.0, 2.0), beta=0.5, label_smoothing=t(0.0, 1.0))  # one epsilon per pair
    assert per_pair.tolist() == pytest.approx([SOFTPLUS_M1, SOFTPLUS_P1])


def test_robust_dpo():
    assert robust_dpo_loss(t(2.0), beta=0.5, label_smoothing=0.25).item() == pytest.approx(
        (0.75 * SOFTPLUS_M1 - 0.25 * SOFTPLUS_P1) / 0.5)
    assert robust_dpo_loss(t(2.0), beta=0.5, label_smoothing=0.0).item() == pytest.approx(SOFTPLUS_M1)


def test_hinge_ipo_bt_simpo():
    assert hinge_loss(t(1.0, 3.0), beta=0.5).tolist() == [0.5, 0.0]
    assert ipo_loss(t(2.0, 0.0), beta=0.5).tolist() == [1.0, 1.0]  # (m - 1)^2 around the target margin 1/(2b)
    assert bradley_terry_loss(t(1.0)).item() == pytest.approx(SOFTPLUS_M1)
    assert simpo_loss(t(2.0), beta=0.5, gamma=0.5).item() == pytest.approx(math.log(1 + math.exp(-0.5)))


def test_rpo_nll():
    assert rpo_nll(t(-6.0, -2.0), t(3.0, 4.0)).tolist() == [2.0, 0.5]  # per-token NLL of the chosen answer
    assert rpo_nll(t(-1.5)).item() == 1.5  # already a per-token mean


def test_the_op_reference_uses_this_table():
    assert tuple(LOSSES) == LOSS_TYPES
    pc, pr, rc, rr = t(-4.0, -2.0), t(-6.0, -1.0), t(-5.0, -2.5), t(-5.5, -2.0)
    for loss_type in LOSS_TYPES:
        refs = (None, None) if loss_type in ("bt", "simpo") else (rc, rr)
        smoothing = 0.1 if loss_type in ("sigmoid", "robust", "bt", "simpo") else 0.0
        loss, chosen, rejected = preference_loss_reference(pc, pr, *refs, beta=0.5, loss_type=loss_type,
                                                           label_smoothing=smoothing, gamma=0.3)
        expected = LOSSES[loss_type](preference_margin(pc, pr, *refs), 0.5, smoothing, 0.3)
        assert torch.equal(loss, expected), loss_type
        assert torch.equal(chosen, preference_rewards(pc, refs[0], 0.5, loss_type))
        assert torch.equal(rejected, preference_rewards(pr, refs[1], 0.5, loss_type))
