"""SFTModule's weight_column (ReST's reward-weighted Improve): each example's summed NLL times its weight, over the
batch's token count; weights of 1 give plain SFT; a missing or negative weight is an error naming the row."""
from __future__ import annotations

import pytest
import torch

from lit_align.data import SFTDataModule
from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.errors import UserError
from lit_align.models.causal_lm import token_logprobs
from lit_align.modules import SFTModule

ROWS = [{"id": "r0", "prompt": "Name two fruits.", "completion": "apple pear", "weight": 0.25},
        {"id": "r1", "prompt": "Name a color.", "completion": "red", "weight": 2.0},
        {"id": "r2", "prompt": "Name three birds, please.", "completion": "owl crow wren", "weight": 0.75}]


def batch_of(suite, rows):
    data = SFTDataModule(train_file=rows, tokenizer=str(suite.model), batch_size=len(rows), shuffle=False)
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def module(suite, weight_column):
    m = SFTModule(str(suite.model), weight_column=weight_column, backend="torch")
    m.configure_model()
    return m


def test_weighted_nll_matches_the_hand_sum(suite):
    batch = batch_of(suite, ROWS)
    weighted = module(suite, "weight")
    with torch.no_grad():
        token_logp, labels = token_logprobs(weighted.model, batch, backend="torch"), batch["labels"][:, 1:]  # (B, T-1)
        per_example = token_logp.sum(1)  # (B,) prompt and padding positions are 0
        tokens = (labels != IGNORE_INDEX).sum()
        weights = torch.tensor([row["weight"] for row in ROWS])
        loss, _ = weighted.nll(batch)
        assert loss.item() == pytest.approx((-(weights * per_example).sum() / tokens).item(), rel=1e-6)
        plain, _ = module(suite, None).nll(batch)
        assert plain.item() == pytest.approx((-per_example.sum() / tokens).item(), rel=1e-6)
        assert abs(loss.item() - plain.item()) > 1e-3  # the weights matter
        ones, _ = weighted.nll(batch_of(suite, [{**row, "weight": 1} for row in ROWS]))
        assert ones.item() == pytest.approx(plain.item(), rel=1e-6)
    assert weighted.hparams.weight_column == "weight"  # saved: an exported checkpoint rebuilds the same module


@pytest.mark.parametrize("value, match", [(None, "must be a finite number >= 0, got None"), (-1.0, "got -1.0"),
                                          (float("nan"), "got nan")])
def test_bad_weights_name_the_row(suite, value, match):
    rows = [dict(ROWS[0]), {**ROWS[1], "weight": value}]
    with pytest.raises(UserError, match=f"row 'r1'.*{match}"):
        module(suite, "weight").nll(batch_of(suite, rows))
    with pytest.raises(UserError, match="no such column"):
        module(suite, "reward").nll(batch_of(suite, ROWS))
