"""GRPOModule on the tiny model: group advantages from scripted responses, dynamic sampling's dropped groups, masked
truncations, the first update's loss against a hand computation, TRL metric names in a short fit, and two DDP
processes (identical policies; dapo's token normaliser summed over the ranks)."""
import lightning.pytorch as pl
import pytest
import torch
from transformers import AutoModelForCausalLM

from lit_align.modules import GRPOModule
from lit_align.rollout.reward_sources import RewardSource, score_rewards
from tests.modules.test_online import fit, make, scripted
from tests.test_ddp import run_fit


class LengthReward(RewardSource):
    """Reward = len(text) / 10."""

    name = "length"

    def __call__(self, rows, generations):
        return torch.tensor([len(g.text) / 10 for g in generations])


# 4 prompts x G = 2: groups 0 and 2 have equal rewards, groups 1 and 3 do not.
TEXTS = ["aa", "aa", "a", "abc", "xy", "xy", "x", "xyz"]


def grpo_rollout(suite, texts=TEXTS, finished=True, **kwargs):
    module, dm = make(GRPOModule, suite, num_generations=2, **kwargs)
    module.configure_model()
    module.setup("fit")
    rows, prompts = module.prompt_rows(next(iter(dm.train_dataloader())))
    rows, prompts = [r for r in rows for _ in range(2)], [p for p in prompts for _ in range(2)]
    gens = scripted(texts, module.tokenizer, finished=finished)(prompts, seed=0)
    exp = module.make_experience(rows, gens, score_rewards([LengthReward()], rows, gens))
    module.compute_advantages(exp)
    return module, exp


def sequence_advantages(exp):
    return exp.advantages.sum(-1) / exp.mask.sum(-1).clamp(min=1)


def test_group_advantages_and_dropped_groups(suite):
    module, exp = grpo_rollout(suite, dynamic_sampling=True)
    a = 0.1 / (0.2 ** 2 / 2) ** 0.5  # group (0.1, 0.3): (r - 0.2) / std, std = sqrt(0.02)
    expected = torch.tensor([0, 0, -a, a, 0, 0, -a, a]) * (0.1 * 2 ** 0.5) / (0.1 * 2 ** 0.5 + 1e-4)
    torch.testing.assert_close(sequence_advantages(exp), expected)
    rows_with_loss = exp.mask.sum(-1) > 0
    assert rows_with_loss.tolist() == [False, False, True, True, False, False, True, True]
    stats = module.after_update(exp)
    assert stats["frac_reward_zero_std"] == 0.5 and stats["rollout/dropped_groups"] == 2
    assert stats["rollout/dropped_groups_total"] == 2 and module.counts["dropped_groups"] == 2
    assert stats["reward"] == pytest.approx(sum(len(t) for t in TEXTS) / 10 / 8)
    assert module.num_items == float(exp.mask.sum()), "dapo: the rollout's tokens (one rank, one minibatch)"
    module.compute_advantages(exp)
    assert module.after_update(exp)["rollout/dropped_groups_total"] == 4, "the count accumulates over rollouts"


def test_without_dynamic_sampling_equal_groups_keep_their_tokens(suite):
    module, exp = grpo_rollout(suite, scale_rewards="none")
    assert (exp.mask.sum(-1) > 0).all()
    torch.testing.assert_close(sequence_advantages(exp), torch.tensor([0, 0, -.1, .1, 0, 0, -.1, .1]))
    assert module.after_update(exp)["rollout/dropped_groups"] == 0


def test_truncated_completions_masked_and_overlong_penalty(suite):
    module, exp = grpo_rollout(suite, finished=False, mask_truncated_completions=True)
    assert exp.mask.sum() == 0 and module.after_update(exp)["completions/clipped_ratio"] == 1.0
    # Overlong penalty (DAPO Eq. 13), L_max = 6, L_cache = 4: a response of n tokens loses (n - 2) / 4.
    texts = ["a b c", "a b c d e f g h"]
    module, exp = grpo_rollout(suite, texts=texts * 4, soft_punish_cache=4)
    n = [len(g.completion_ids) + 1 for g in exp.generations[:2]]  # + the stop token
    assert n[0] in (3, 4, 5, 6) and n[1] > 6, "the scripted responses should fall on the ramp and beyond L_max"
    reward = [len(t) / 10 - min(1, max(0, k - 2) / 4) for t, k in zip(texts, n, strict=True)]
    assert module.after_update(exp)["reward"] == pytest.approx(sum(reward) / 2, abs=1e-6)


def test_first_update_loss_by_hand(suite):
    """Before any update the ratio is 1: dapo's loss is -sum_i A_i |o_i| / sum_i |o_i| (+ beta * k3 KL)."""
    module, exp = grpo_rollout(suite, beta=0.0)
    idx = torch.arange(len(exp))
    loss, stats = module.minibatch_loss(exp.minibatch(idx))
    adv, tokens = sequence_advantages(exp), exp.mask.sum(-1)
    torch.testing.assert_close(loss, -(adv * tokens).sum() / tokens.sum(), atol=1e-5, rtol=1e-4)
    assert stats["clip_ratio/region_mean"] == 0


@pytest.mark.parametrize("options", [dict(samples_per_prompt=8), dict(kl_coef=0.1), dict(loss_type="ppo"),
                                     dict(num_generations=1), dict(scale_rewards="std")])
def test_bad_options(suite, options):
    with pytest.raises(ValueError, match="GRPOModule"):
        GRPOModule(str(suite.model), **options)


def test_short_fit_logs_trl_names(suite):
    module, dm = make(GRPOModule, suite, num_generations=2, num_iterations=2, beta=0.05, epsilon_high=0.28)
    trainer = fit(module, dm, steps=2)  # one rollout, two update epochs
    logged = trainer.callback_metrics
    for name in ("reward", "reward_std", "frac_reward_zero_std", "kl", "clip_ratio/low_mean", "clip_ratio/high_mean",
                 "clip_ratio/region_mean", "completions/mean_length", "objective/kl", "loss/total"):
        assert name in logged, name
    assert trainer.global_step == 2


class RecordNumItems(pl.Callback):
    """Saves each rank's dapo normaliser and its own rollout's token count (the DDP test's subprocesses)."""

    def __init__(self, out_dir: str):
        self.out_dir, self.rows = out_dir, []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.rows.append(module.num_items)

    def on_fit_end(self, trainer, module):
        torch.save(self.rows, f"{self.out_dir}/items{trainer.global_rank}.pt")


def test_two_processes(suite, tmp_path):
    out = tmp_path / "grpo"
    run_fit("configs/grpo.yaml", suite, out, "--data.init_args.train_file", suite.file("prompts.jsonl"),
            "--data.init_args.batch_size", "2", f"--trainer.callbacks.prompts_file={suite.file('val.jsonl')}",
            "--trainer.callbacks.limit=4", "--model.init_args.max_new_tokens", "6", "--model.init_args.lr", "3e-3",
            "--model.init_args.num_generations", "2", "--trainer.max_steps", "2", "--trainer.strategy", "ddp",
            "--trainer.devices", "2", "--trainer.accelerator", "cpu",
            "--trainer.callbacks+=tests.modules.test_grpo.RecordNumItems", f"--trainer.callbacks.out_dir={out}")
    rank0, rank1 = (torch.load(out / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(rank0["weights"], rank1["weights"]), "DDP ranks diverged"
    initial = AutoModelForCausalLM.from_pretrained(suite.model)
    start = torch.cat([p.detach().flatten().double() for p in initial.parameters()])
    assert (rank0["weights"] - start).abs().max() > 1e-4, "training did not change the weights"
    assert set(rank0["ids"][0]).isdisjoint(rank1["ids"][0]), "the ranks should sample different prompts"
    items0, items1 = (torch.load(out / f"items{r}.pt") for r in (0, 1))
    assert items0 == items1 and items0[0] > 0, "dapo's normaliser is the same all-reduced number on both ranks"
