"""CORGI: on-policy RL over multi-turn sessions with corrective feedback, on PPO or RLOO.

Bezalel, Orgad & Globerson, "Teaching Models to Improve on Tape", arXiv 2411.01483 (AAAI 2025). A rollout is
a batch of sessions (rollout/sessions.py): the policy answers, the feedback environment (rollout/feedback.py,
by default the task suite's checker) scores the answer and says what is wrong as a new user turn, and the
policy tries again, for at most `feedback_rounds` rounds (K = 3 in the paper's training). The session's reward
is R = max_k s_k (or the last / mean / discounted score: `session_reward`).

A session becomes one sample of the Experience the online modules already train on (modules/online.py): the
whole transcript (prompt, answers, feedback turns, as the token ids that were sampled and spliced) is one
sequence, scored by the old / reference / value passes in one go through the fused log-prob op, and the mask
covers every assistant span (each answer and its stop token) and no prompt or feedback token. The rest is the
recipe's own code, unchanged:

  * PPO (CORGIPPOModule, as the paper's fork of TRL's PPO): KL penalty on every model token, the session
    reward at the last model token, GAE across the turns. GAE runs over the answer tokens packed next to
    each other (the feedback tokens are the environment's move, not a step of the policy), so the reward at
    the end of answer K reaches answer 0 through the values, discounted per model token as in one response;
    run on the transcript's own layout, GAE would restart at every feedback gap (losses/ppo.py zeroes the
    carried value outside the mask) and earlier answers would never see the session's reward.
  * RLOO (CORGIRLOOModule): the session reward is the sample's reward, k sessions per prompt, each against
    the mean of the other k - 1 (the KL in the reward is summed over every model token of the session).

`feedback_rounds: 0` is the single-attempt baseline with everything else equal (the same prompt encoding,
sampler, reward and update). Transcripts grow with the turns: `session_max_length` (default: the model's
max_position_embeddings) stops a session before a turn that would not fit (counted: session/stop_length).
The configured `rewards` score validation answers only; a session's reward comes from its environment.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from lit_align.errors import UserError
from lit_align.modules.online import Experience
from lit_align.modules.ppo import PPOModule
from lit_align.modules.rloo import RLOOModule
from lit_align.rollout.feedback import DEFAULT_TEMPLATE, env_factory
from lit_align.rollout.reward_sources import RewardResult
from lit_align.rollout.sessions import answer_mask, sample_sessions, session_reward, summarize

REWARDS = ("max", "last", "mean", "discounted")


class _Sessions:
    """Turns an OnlineRLModule's rollout into feedback sessions (see the module docstring).

    Args:
        feedback_rounds: K, the most feedback rounds per session (0: one attempt, the baseline).
        session_reward: "max" (R = max_k s_k), "last", "mean" or "discounted" (max_k reward_discount^k s_k).
        reward_discount: the per-round discount of "discounted".
        feedback_env: "checker" (the suite's checker, rollout/feedback.py CheckerEnv) or the dotted path of a
            callable making an environment ("package.module:Name").
        feedback_env_args: keyword arguments of feedback_env (e.g. {template: "..."} for the checker).
        session_max_length: the longest transcript in tokens (None: the model's max_position_embeddings).
        (other arguments: see PPOModule / RLOOModule)
    """

    def __init__(self, model: str, feedback_rounds: int = 3, session_reward: str = "max",
                 reward_discount: float = 0.9, feedback_env: str = "checker",
                 feedback_env_args: dict[str, Any] | None = None, session_max_length: int | None = None,
                 **kwargs: Any):
        super().__init__(model, **kwargs)
        if feedback_rounds < 0:
            raise UserError(f"feedback_rounds must be >= 0, got {feedback_rounds}")
        if session_reward not in REWARDS:
            raise UserError(f"session_reward must be one of {', '.join(REWARDS)}, got {session_reward!r}")
        if not 0 < reward_discount <= 1:
            raise UserError(f"reward_discount must lie in (0, 1], got {reward_discount}")
        if session_max_length is not None and session_max_length <= self.hparams.max_new_tokens:
            raise UserError(f"session_max_length ({session_max_length}) must exceed max_new_tokens "
                            f"({self.hparams.max_new_tokens})")
        self.make_env = None
        self.sessions: list = []  # the latest rollout's sessions (for metrics)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        args = dict(self.hparams.feedback_env_args or {})
        if self.hparams.feedback_env == "checker":
            args.setdefault("template", DEFAULT_TEMPLATE)
        self.make_env = env_factory(self.hparams.feedback_env, args)

    def rollout(self, rows: list[dict], prompts: list[list[int]], seed: int) -> tuple[Experience, RewardResult]:
        """Sessions instead of single answers; the environment's opening messages are encoded with the data
        module's RowEncoder (for the checker environment: exactly `prompts`)."""
        h = self.hparams
        sessions = sample_sessions(self.model, self.tokenizer, rows, self.make_env, rounds=h.feedback_rounds,
                                   encoder=self.encoder, max_new_tokens=h.max_new_tokens, do_sample=True,
                                   temperature=h.temperature, top_p=h.top_p, batch_size=h.generation_batch_size,
                                   seed=seed, max_length=h.session_max_length, stop_strings=h.stop_strings)
        empty = next((s for s in sessions if not s.answers), None)
        if empty is not None:
            raise UserError(f"{empty.row.get('_where', 'a prompt')}: {empty.prompt_length} prompt tokens leave no "
                            f"room for an answer of {h.max_new_tokens} tokens within the session's maximum length")
        total = torch.tensor([session_reward(s.scores, h.session_reward, h.reward_discount) for s in sessions])
        rewards = RewardResult(total, {"session": total}, torch.ones(len(sessions), dtype=torch.bool))
        exp = self.make_experience(rows, [s.as_generation() for s in sessions], rewards)
        answers = answer_mask(sessions, exp.mask.shape[1]).to(exp.mask)  # (n, T-1)
        exp.mask, exp.kl = exp.mask * answers, exp.kl * answers
        if exp.values is not None:
            exp.values = exp.values * answers
        self.sessions = sessions
        return exp, rewards

    def compute_advantages(self, exp: Experience) -> None:
        """The recipe's advantages on the answer tokens packed to the left (see the module docstring), then put
        back in place; positions outside the answers stay outside the mask."""
        order = torch.argsort((exp.mask <= 0).to(torch.int8), dim=1, stable=True)  # (n, T-1): answer tokens first

        def pack(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x.gather(1, order)

        def unpack(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else torch.zeros_like(x).scatter_(1, order, x)

        packed = dataclasses.replace(exp, mask=pack(exp.mask), kl=pack(exp.kl), values=pack(exp.values),
                                     old_logp=pack(exp.old_logp), ref_logp=pack(exp.ref_logp))
        super().compute_advantages(packed)
        exp.mask, exp.advantages, exp.returns = unpack(packed.mask), unpack(packed.advantages), unpack(packed.returns)

    def after_update(self, exp: Experience) -> dict[str, float]:
        metrics = super().after_update(exp)
        summary = summarize(self.sessions, self.hparams.feedback_rounds)
        metrics.update({f"session/{k}": v for k, v in summary.items() if not math.isnan(v)})
        self.counts["answers"] += sum(len(s.answers) for s in self.sessions)  # sampled responses so far
        metrics["session/answers_total"] = float(self.counts["answers"])
        metrics["session/answer_tokens"] = sum(a.num_tokens for s in self.sessions for a in s.answers) / len(exp)
        metrics["session/transcript_tokens"] = sum(len(s.ids) for s in self.sessions) / len(exp)
        return metrics


class CORGIPPOModule(_Sessions, PPOModule):
    """CORGI on PPO (the paper's recipe): a value head over the whole transcript, GAE across the turns."""


class CORGIRLOOModule(_Sessions, RLOOModule):
    """CORGI on RLOO: k sessions per prompt, the session reward against the other sessions' mean."""
