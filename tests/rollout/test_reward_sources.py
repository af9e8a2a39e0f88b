"""Reward sources: CheckerReward against the task checker, score_rewards' failure isolation (one raising or
NaN sample is invalid and counted, a source failing on the whole batch raises naming itself), the weighted
sum by hand, and build_reward_sources' config errors (ValueError naming rewards[i])."""
from __future__ import annotations

import math
import re

import pytest
import torch

from lit_align.rollout.generate import Generation
from lit_align.rollout.reward_sources import CheckerReward, RewardSource, build_reward_sources, score_rewards
from lit_align.tasks.checkers import checker_from_dict

TASK = {"kind": "ends_with", "n": 2, "letter": "h", "known_only": True}


def gens(*texts):
    return [Generation([5, 6, 7], [8 + i, 9], t, True, 2) for i, t in enumerate(texts)]


def rows(n, task=TASK):
    return [{"prompt": f"p{i}", "task": task} for i in range(n)]


class Table(RewardSource):
    """Rewards looked up by response text; raises on texts in `bad`."""

    def __init__(self, name, table, weight=1.0, bad=()):
        self.name, self.table, self.weight, self.bad, self.calls = name, table, weight, set(bad), []

    def __call__(self, rows, generations):
        self.calls.append(len(generations))
        for g in generations:
            if g.text in self.bad:
                raise KeyError(f"cannot score {g.text!r}")
        return torch.tensor([self.table[g.text] for g in generations])


def test_checker_reward_uses_the_task_checker():
    texts = ("church cloth", "church", "church dog", "cloth church pith")
    out = CheckerReward()(rows(4), gens(*texts))
    assert out.dtype == torch.float32 and out.shape == (4,)
    assert out[0].item() == 1.0  # two known words ending in 'h'
    checker = checker_from_dict(TASK)
    expect = [checker.check(t).score for t in texts]
    torch.testing.assert_close(out, torch.tensor(expect, dtype=torch.float32))
    assert all(0 <= v < 1 for v in expect[1:])  # the others are partial credit


def test_checker_without_task_fails():
    with pytest.raises(ValueError, match="task"):
        CheckerReward()([{"prompt": "x"}], gens("church cloth"))
    # inside score_rewards only that sample is lost
    rs = rows(3)
    rs[1] = {"prompt": "x"}
    res = score_rewards([CheckerReward()], rs, gens("church cloth", "church cloth", "church dog"))
    assert res.valid.tolist() == [True, False, True]
    assert res.failures == {"checker": 1} and res.dropped == 1
    assert res.components["checker"][0].item() == 1.0
    assert math.isnan(res.components["checker"][1].item())
    assert res.total[2].item() == pytest.approx(checker_from_dict(TASK).check("church dog").score)


def test_one_raising_sample_is_isolated():
    table = {"a": 0.25, "b": -1.5, "c": 3.0, "d": 0.75}
    src = Table("t", table, bad={"c"})
    res = score_rewards([src], rows(4), gens("a", "b", "c", "d"))
    assert res.valid.tolist() == [True, True, False, True]
    assert res.failures == {"t": 1}
    assert res.dropped == 1
    comp = res.components["t"]
    assert comp[[0, 1, 3]].tolist() == [0.25, -1.5, 0.75] and math.isnan(comp[2].item())
    assert res.total.tolist() == [0.25, -1.5, 0.0, 0.75]  # invalid sample: finite placeholder, dropped by caller
    assert src.calls == [4, 1, 1, 1, 1]  # the batch call, then one call per sample


def test_nan_sample_is_invalid():
    src = Table("n", {"a": 1.0, "b": math.nan, "c": 2.5})
    other = Table("o", {"a": 0.5, "b": 0.5, "c": 0.5})
    res = score_rewards([src, other], rows(3), gens("a", "b", "c"))
    assert res.valid.tolist() == [True, False, True]
    assert res.failures == {"n": 1, "o": 0}
    assert res.total[0].item() == pytest.approx(1.5) and res.total[2].item() == pytest.approx(3.0)
    assert torch.isfinite(res.total).all()


def test_source_failing_on_every_sample_raises_naming_it():
    with pytest.raises(RuntimeError, match="'broken'.*KeyError"):
        score_rewards([Table("broken", {}, bad={"a", "b", "c"})], rows(3), gens("a", "b", "c"))
    with pytest.raises(FloatingPointError, match="'allnan'"):
        score_rewards([Table("allnan", {"a": math.nan, "b": math.inf})], rows(2), gens("a", "b"))
    # a batch of one is not "every sample" evidence: the sample is just invalid
    res = score_rewards([Table("one", {}, bad={"a"})], rows(1), gens("a"))
    assert res.valid.tolist() == [False] and res.failures == {"one": 1}


def test_weighted_sum_by_hand():
    a = Table("a", {"x": 1.0, "y": 2.0, "z": -3.0}, weight=0.5)
    b = Table("b", {"x": 0.25, "y": -1.0, "z": 4.0}, weight=-2.0)
    res = score_rewards([a, b], rows(3), gens("x", "y", "z"))
    # 0.5 * [1, 2, -3] - 2 * [0.25, -1, 4] = [0.5 - 0.5, 1 + 2, -1.5 - 8] = [0, 3, -9.5]
    torch.testing.assert_close(res.total, torch.tensor([0.0, 3.0, -9.5]))
    assert set(res.components) == {"a", "b"} and res.valid.all() and res.dropped == 0
    torch.testing.assert_close(res.components["b"], torch.tensor([0.25, -1.0, 4.0]))


def test_no_sources_raises():
    with pytest.raises(ValueError, match="no reward sources"):
        score_rewards([], rows(1), gens("a"))


def test_build_checker_with_weight():
    (src,) = build_reward_sources([{"kind": "checker", "weight": 0.7}])
    assert isinstance(src, CheckerReward) and src.weight == 0.7


@pytest.mark.parametrize("specs,index,pattern", [
    ([{"kind": "checker"}, {"kind": "nope"}], 1, "kind"),
    (["checker"], 0, "kind"),
    ([{"weight": 1.0}], 0, "kind"),
    ([{"kind": "checker"}, {"kind": "checker"}, {"kind": "model", "weight": 1.0}], 2, "path"),
    ([{"kind": "discriminator"}], 0, "RLGAF"),
    ([{"kind": "checker", "colour": "red"}], 0, "colour"),
])
def test_build_errors_name_the_index(specs, index, pattern):
    with pytest.raises(ValueError, match=rf"rewards\[{index}\]") as info:
        build_reward_sources(specs)
    assert re.search(pattern, str(info.value))


def test_build_discriminator_from_the_game():
    game = Table("discriminator", {})
    out = build_reward_sources([{"kind": "checker"}, {"kind": "discriminator", "weight": 0.3}], discriminator=game)
    assert out[1] is game and game.weight == 0.3
    with pytest.raises(ValueError, match=r"rewards\[0\].*unexpected"):
        build_reward_sources([{"kind": "discriminator", "form": "logit"}], discriminator=game)


def test_two_sources_with_one_name_keep_their_failures_apart():
    """A second source of the same name must not hide the first one's NaN (found by review)."""
    first = Table("m", {"a": 1.0, "b": math.nan, "c": 3.0})
    second = Table("m", {"a": 1.0, "b": 2.0, "c": 3.0})
    result = score_rewards([first, second], rows(3), gens("a", "b", "c"))
    assert result.valid.tolist() == [True, False, True]
    assert sorted(result.failures.values()) == [0, 1] and len(result.components) == 2
    assert result.total[[0, 2]].tolist() == [2.0, 6.0]


def test_wrong_reward_count_is_not_taken_from_the_per_sample_retry():
    class Four(RewardSource):
        name = "four"

        def __call__(self, rows, generations):
            return torch.tensor([5.0, 6.0, 7.0, 8.0])

    with pytest.raises(RuntimeError, match="four"):
        score_rewards([Four()], rows(3), gens("a", "b", "c"))


@pytest.mark.parametrize("reduction", ["mean", "min", "mean_minus_std"])
def test_model_reward_ensemble_reduces_its_members(suite, tmp_path, reduction):
    """A folder of member_* reward models scores like the members' own reward_scores, reduced as asked."""
    from lit_align.models.loading import load_sequence_classifier, load_tokenizer
    from lit_align.rollout.reward import reward_scores
    from lit_align.rollout.reward_sources import ModelReward

    tokenizer = load_tokenizer(str(suite.model))
    members = []
    for i in range(2):
        torch.manual_seed(10 + i)  # a different fresh score head per member
        member = load_sequence_classifier(str(suite.model), pad_token_id=tokenizer.pad_token_id)
        member.save_pretrained(tmp_path / f"member_{i}")
        tokenizer.save_pretrained(tmp_path / f"member_{i}")
        members.append(member.eval())
    prompts, texts = ["List 2 different words that end with 'h'.", "Name 3 words."], ["church cloth", "apple"]
    source = ModelReward(str(tmp_path), reduction=reduction, k=2.0)
    got = source([{"prompt": p} for p in prompts], gens(*texts))
    each = torch.stack([reward_scores(m, tokenizer, prompts, texts) for m in members])  # (2, 2)
    expected = {"mean": each.mean(0), "min": each.min(0).values,
                "mean_minus_std": each.mean(0) - 2.0 * each.std(0, unbiased=False)}[reduction]
    assert not torch.allclose(each[0], each[1]), "the members should differ"
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
