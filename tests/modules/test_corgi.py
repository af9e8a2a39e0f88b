"""CORGI modules on the tiny model: a session rollout becomes the Experience PPO / RLOO train on, the loss reaches
every answer and no prompt or feedback token, PPO's GAE carries the session reward back across the turns, the
session reward options, and feedback_rounds=0 is exactly the single-attempt RLOO rollout."""
import pytest
import torch

from lit_align.errors import UserError
from lit_align.modules import PPOModule, RLOOModule
from lit_align.modules.corgi import CORGIPPOModule, CORGIRLOOModule
from lit_align.rollout import sessions as sessions_module
from lit_align.rollout.generate import Generation
from tests.modules.test_online import fit, logp_grad, make

SCORES = (0.2, 0.6, 0.4)  # the scripted environment's scores per turn (then it repeats the last one)


class Scripted:
    """Never satisfied: scores SCORES[turn] (+ 0.1 in every second session made), always gives feedback."""

    made = 0

    def __init__(self):
        self.bonus = 0.1 * (Scripted.made % 2)
        Scripted.made += 1

    def reset(self, row):
        self.turn = 0
        return [{"role": "user", "content": row["prompt"]}]

    def step(self, response):
        score = SCORES[min(self.turn, len(SCORES) - 1)] + self.bonus
        self.turn += 1
        return score, f"Feedback: try number {self.turn + 1}. Please try again.", False


def scripted_answers(tokenizer, words=(" wind", " lemon tree", " cat")):
    """rollout.generate replaced: answer k of a session is words[k] (+ the stop token)."""
    def fake(model, tok, prompts, **kwargs):
        turn = fake.turns
        fake.turns += 1
        ids = tokenizer(words[turn % len(words)], add_special_tokens=False)["input_ids"]
        return [Generation(list(p), ids, words[turn % len(words)].strip(), True, tokenizer.eos_token_id)
                for p in prompts]
    fake.turns = 0
    return fake


def session_rollout(cls, suite, monkeypatch, **kwargs):
    module, dm = make(cls, suite, feedback_rounds=2, feedback_env="tests.modules.test_corgi:Scripted", **kwargs)
    module.configure_model()
    module.setup("fit")
    module.on_fit_start()
    monkeypatch.setattr(sessions_module, "generate", scripted_answers(dm.tokenizer))
    Scripted.made = 0
    rows, prompts = module.prompt_rows(next(iter(dm.train_dataloader())))
    k = module.hparams.samples_per_prompt
    rows, prompts = [r for r in rows for _ in range(k)], [p for p in prompts for _ in range(k)]
    exp, rewards = module.rollout(rows, prompts, seed=5)
    return module, exp, rewards


@pytest.mark.parametrize("cls", [CORGIPPOModule, CORGIRLOOModule])
def test_loss_reaches_every_answer_and_no_prompt_or_feedback_token(cls, suite, monkeypatch):
    module, exp, _ = session_rollout(cls, suite, monkeypatch)
    sessions = module.sessions
    for i, s in enumerate(sessions):
        assert exp.batch["input_ids"][i, :len(s.ids)].tolist() == s.ids  # the transcript as sampled and spliced
        answer_tokens = {t - 1 for a, b in s.spans for t in range(a, b)}  # shifted positions
        assert set(exp.mask[i].nonzero().flatten().tolist()) == answer_tokens
        assert len(s.answers) == 3 and s.stop == "rounds"
    module.compute_advantages(exp)
    mb = exp.minibatch(torch.arange(len(exp)))
    grad = logp_grad(module, mb)  # (n, T-1)
    assert torch.all(grad[mb["mask"] == 0] == 0)
    assert torch.all(grad[mb["mask"] > 0] != 0)


def test_ppo_gae_carries_the_session_reward_back_to_the_first_answer(suite, monkeypatch):
    module, exp, _ = session_rollout(CORGIPPOModule, suite, monkeypatch, gamma=1.0, lam=1.0, kl_coef=0.0)
    exp.values = torch.zeros_like(exp.values)  # no baseline: every model token's advantage is the session reward
    plain = PPOModule.compute_advantages  # the same GAE on the transcript's own layout restarts at each feedback gap
    unpacked = torch.clone(exp.mask)
    module.compute_advantages(exp)
    first = [s.spans[0] for s in module.sessions]
    per_session = [exp.advantages[i][exp.mask[i] > 0] for i in range(len(exp))]
    for adv in per_session:
        assert torch.allclose(adv, adv[0].expand_as(adv), atol=1e-5)  # the same on all three answers
    rewards = exp.scores
    order = torch.argsort(rewards)
    assert torch.all(torch.stack([a[0] for a in per_session])[order].diff() >= -1e-6)  # higher reward, higher advantage
    assert rewards.unique().numel() == 2  # every second session scores 0.1 more
    # Without packing, the first answer would only see the (zero) value at its end: not the session reward.
    exp.mask, exp.advantages = unpacked, None
    plain(module, exp)
    firsts = torch.stack([exp.advantages[i, a - 1:b - 1] for i, (a, b) in enumerate(first)])
    lasts = torch.stack([exp.advantages[i][exp.mask[i] > 0][-1] for i in range(len(exp))])
    assert not torch.allclose(firsts[:, 0], lasts)


@pytest.mark.parametrize("kind, expected", [("max", 0.6), ("last", 0.4), ("mean", 0.4), ("discounted", 0.5 * 0.6)])
def test_session_reward_options(kind, expected, suite, monkeypatch):
    _, exp, rewards = session_rollout(CORGIRLOOModule, suite, monkeypatch, samples_per_prompt=2, session_reward=kind,
                                      reward_discount=0.5)
    bonus = torch.tensor([0.1 * (i % 2) for i in range(len(exp))])
    expected = torch.full_like(exp.scores, expected) + bonus * (0.5 if kind == "discounted" else 1.0)
    assert torch.allclose(exp.scores, expected) and torch.equal(rewards.total, exp.scores)


def test_zero_rounds_is_the_single_attempt_rloo_rollout(suite):
    corgi, dm = make(CORGIRLOOModule, suite, samples_per_prompt=2, feedback_rounds=0)
    plain, _ = make(RLOOModule, suite, samples_per_prompt=2)
    out = []
    for module in (corgi, plain):
        torch.manual_seed(0)
        module.configure_model()
        module.setup("fit")
        module.on_fit_start()
        rows, prompts = module.prompt_rows(next(iter(dm.train_dataloader())))
        rows, prompts = [r for r in rows for _ in range(2)], [p for p in prompts for _ in range(2)]
        out.append(module.rollout(rows, prompts, seed=11)[0])
    assert len({len(s.answers) for s in corgi.sessions}) == 1 and len(corgi.sessions[0].answers) == 1
    a, b = out
    assert torch.equal(a.batch["input_ids"], b.batch["input_ids"])  # the same samples
    for name in ("mask", "scores"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    for name in ("old_logp", "ref_logp", "kl"):  # two scoring passes of one batch can differ by rounding (~5e-7)
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-5), name


@pytest.mark.parametrize("cls, k", [(CORGIRLOOModule, 2), (CORGIPPOModule, 1)])
def test_fit_logs_session_metrics(cls, k, suite):
    module, dm = make(cls, suite, samples_per_prompt=k, feedback_rounds=2)
    trainer = fit(module, dm, steps=1 if k == 2 else 2)
    metrics = trainer.callback_metrics
    assert {"session/success@0", "session/success@2", "session/mean_rounds"} <= set(metrics)
    assert torch.isfinite(metrics["loss/total"])
    assert module.counts["samples"] == 4 * k
    assert 4 * k <= module.counts["answers"] == metrics["session/answers_total"] <= 3 * 4 * k


@pytest.mark.parametrize("kwargs, message", [
    ({"feedback_rounds": -1}, "feedback_rounds must be >= 0"),
    ({"session_reward": "best"}, "session_reward must be one of max, last, mean, discounted"),
    ({"reward_discount": 0.0}, "reward_discount must lie in"),
    ({"session_max_length": 6}, "session_max_length \\(6\\) must exceed max_new_tokens"),
])
def test_bad_settings(kwargs, message, suite):
    with pytest.raises(UserError, match=message):
        make(CORGIRLOOModule, suite, **kwargs)
