"""RLGAF's discriminator game: D learns to tell expert responses from the policy's samples; its logit is the reward.

The game is not a LightningModule: lit_align/modules/rlgaf.py (RLGAFModule, RLGAFRLOOModule) builds one, takes
its reward through the RewardSource interface (lit_align.rollout.reward_sources) and updates it after each policy
step.

Yu et al., "Fine-Tuning Language Models with Generative Adversarial Reward Modelling" (RLGAF), arXiv 2305.06176;
the game is GAIL's (Ho & Ermon, arXiv 1606.03476, Eq. 17): D maximises log D(expert) + log(1 - D(policy)), the
policy maximises the reward logit D(x, y) (or log D). The policy never trains on the expert responses: they
only ever reach D.

  * Replay buffer: D sees the current rollout's samples and older ones drawn uniformly from a FIFO buffer of
    past policy samples, so it does not forget what the policy used to do (and the policy cannot cycle back).
  * k_D discriminator steps per policy step, each on `batch_size` expert and `batch_size` policy samples;
    D pauses (no steps) while its accuracy on the fresh rollout exceeds `pause_accuracy`, so it cannot run
    away from the policy; `warmup_steps` steps train it before the first reward is used.
  * One-sided label smoothing on the expert targets (lit_align.losses.discriminator).
  * Collapse: D answering one class for everything (or constant / non-finite logits) for `collapse_patience`
    consecutive checks is reported (disc/collapsed, a warning) rather than silently feeding a useless reward.

D is not a submodule of the LightningModule: it has its own optimizer, and under DDP its gradients are
averaged here with one all-reduce per step (so the policy's DDP reducer never waits for D's parameters);
its state (weights, optimizer, buffer) travels in the Lightning checkpoint via state_dict().
"""
from __future__ import annotations

import random
import warnings
from collections import deque
from typing import Any

import torch

from lit_align.losses.discriminator import discriminator_loss
from lit_align.models.scalar import sequence_scalar
from lit_align.rollout.generate import Generation
from lit_align.rollout.reward import padded_pairs, pair_ids
from lit_align.rollout.reward_sources import RewardSource

FORMS = ("logit", "log_d")


class ReplayBuffer:
    """A FIFO of the last `capacity` (prompt, response) policy samples, sampled uniformly."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.items: deque = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, items: list[tuple[Any, str]]) -> None:
        self.items.extend(items)

    def sample(self, n: int, rng: random.Random) -> list[tuple[Any, str]]:
        return [self.items[rng.randrange(len(self.items))] for _ in range(n)] if self.items else []

    def state_dict(self) -> dict:
        return {"capacity": self.items.maxlen, "items": list(self.items)}

    def load_state_dict(self, state: dict) -> None:
        self.items = deque(state["items"], maxlen=state["capacity"])


class DiscriminatorGame(RewardSource):
    """The discriminator, its optimizer, the expert data and the replay buffer; a RewardSource for the policy.

    Args:
        model: a scalar sequence classifier (lit_align.models.load_sequence_classifier), logit = "expert".
        tokenizer, encoder: how (prompt, response) pairs are tokenised (a RowEncoder, as the reward model's).
        expert_rows: rows with "prompt" and "completion" (the expert demonstrations).
        form: reward = "logit" (log D - log(1 - D), RLGAF) or "log_d" (log D, GAIL's form).
    """

    name = "discriminator"

    def __init__(self, model, tokenizer, encoder, expert_rows: list[dict], *, lr: float = 1e-4,
                 label_smoothing: float = 0.1, steps: int = 1, batch_size: int = 32, pause_accuracy: float = 0.9,
                 warmup_steps: int = 0, replay_size: int = 2048, fresh_fraction: float = 0.5,
                 form: str = "logit", max_grad_norm: float | None = 1.0, collapse_patience: int = 5, seed: int = 0):
        if form not in FORMS:
            raise ValueError(f"discriminator reward form={form!r}; expected one of {FORMS}")
        if not expert_rows:
            raise ValueError("the discriminator needs expert rows (prompt, completion)")
        if not 0 <= fresh_fraction <= 1:
            raise ValueError(f"fresh_fraction must lie in [0, 1], got {fresh_fraction}")
        self.model, self.tokenizer, self.encoder = model, tokenizer, encoder
        self.expert = [(row["prompt"], row["completion"]) for row in expert_rows]
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
        self.label_smoothing, self.steps, self.batch_size = label_smoothing, steps, batch_size
        self.pause_accuracy, self.warmup_steps, self.form = pause_accuracy, warmup_steps, form
        self.fresh_fraction, self.max_grad_norm = fresh_fraction, max_grad_norm
        self.collapse_patience = collapse_patience
        self.replay = ReplayBuffer(replay_size)
        self.rng = random.Random(seed)
        self.warmed_up = warmup_steps == 0
        self.total_steps = self.paused_rounds = self.collapse_streak = self.collapses = 0

    # ---- scoring -----------------------------------------------------------------------------------------
    def device(self) -> torch.device:
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def logits(self, pairs: list[tuple[Any, str]]) -> torch.Tensor:
        """(n,) float32 logits of "expert" for (prompt, response) pairs, on D's device (grad when enabled)."""
        seqs = [pair_ids(self.encoder, p, r, f"sample {i}") for i, (p, r) in enumerate(pairs)]
        input_ids, attention_mask = padded_pairs(seqs, self.tokenizer, self.device())  # (n, T) each
        return sequence_scalar(self.model, input_ids, attention_mask)

    def __call__(self, rows: list[dict], generations: list[Generation]) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                logits = self.logits([(row["prompt"], g.text) for row, g in zip(rows, generations, strict=True)])
        finally:
            self.model.train(was_training)
        reward = logits if self.form == "logit" else torch.nn.functional.logsigmoid(logits)
        return reward.float().cpu()

    # ---- training ----------------------------------------------------------------------------------------
    def expert_batch(self) -> list[tuple[Any, str]]:
        return [self.expert[self.rng.randrange(len(self.expert))] for _ in range(self.batch_size)]

    def generated_batch(self, fresh: list[tuple[Any, str]]) -> list[tuple[Any, str]]:
        n_fresh = min(len(fresh), round(self.batch_size * self.fresh_fraction)) if len(self.replay) else self.batch_size
        n_fresh = min(n_fresh, len(fresh))
        picked = self.rng.sample(fresh, n_fresh) if n_fresh else []
        return picked + self.replay.sample(self.batch_size - len(picked), self.rng)

    def step(self, fresh: list[tuple[Any, str]]) -> dict[str, float]:
        """One D update on an expert batch and a policy batch (fresh samples + replay); its statistics."""
        self.model.train()
        loss, stats = discriminator_loss(self.logits(self.expert_batch()), self.logits(self.generated_batch(fresh)),
                                         self.label_smoothing)
        stats = {"loss": float(loss.detach()), **{k: float(v) for k, v in stats.items()}}
        # Every process skips together (a skipped all-reduce on one process would hang the others).
        if _global_mean(float(torch.isfinite(loss)), self.device()) < 1:
            return {**stats, "loss": float("nan")}
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _all_reduce_grads(self.model)
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.total_steps += 1
        return stats

    @torch.no_grad()
    def measure(self, fresh: list[tuple[Any, str]]) -> dict[str, float]:
        """D's accuracy on an expert batch and on the fresh samples, without updating it."""
        self.model.eval()
        _, stats = discriminator_loss(self.logits(self.expert_batch()), self.logits(fresh[: self.batch_size]))
        return {k: float(v) for k, v in stats.items()}

    def update(self, rows: list[dict], generations: list[Generation]) -> dict[str, float]:
        """After a policy step: k_D steps unless D is ahead (accuracy > pause_accuracy); collapse check; metrics."""
        fresh = [(row["prompt"], g.text) for row, g in zip(rows, generations, strict=True)]
        before = self.measure(fresh)
        paused = _global_mean(before["accuracy"], self.device()) > self.pause_accuracy  # one decision, every process
        after = before
        if not paused:
            for _ in range(self.steps):
                after = self.step(fresh)
        self.paused_rounds += paused
        self.replay.add(fresh)
        collapsed = self.check_collapse(after)
        return {**{f"disc/{k}": v for k, v in before.items()}, "disc/loss": after.get("loss", float("nan")),
                "disc/paused": float(paused), "disc/collapsed": float(collapsed), "disc/steps_total": self.total_steps,
                "disc/replay": float(len(self.replay))}

    def warm_up(self, rows: list[dict], generations: list[Generation]) -> None:
        """`warmup_steps` D steps on the first rollout (and the expert data) before its reward is first used."""
        if self.warmed_up:
            return
        fresh = [(row["prompt"], g.text) for row, g in zip(rows, generations, strict=True)]
        for _ in range(self.warmup_steps):
            self.step(fresh)
        self.replay.add(fresh)
        self.warmed_up = True

    def check_collapse(self, stats: dict[str, float]) -> bool:
        one_class = min(stats["acc_expert"], stats["acc_generated"]) < 0.05 and \
            max(stats["acc_expert"], stats["acc_generated"]) > 0.95
        flat = abs(stats["logit_expert"] - stats["logit_generated"]) < 1e-3
        broken = not all(map(lambda v: v == v, stats.values()))  # NaN anywhere
        self.collapse_streak = self.collapse_streak + 1 if (one_class or flat or broken) else 0
        if self.collapse_streak == self.collapse_patience:
            self.collapses += 1
            warnings.warn(f"the discriminator has collapsed for {self.collapse_patience} checks in a row "
                          f"(accuracy on expert {stats['acc_expert']:.2f}, on policy {stats['acc_generated']:.2f}): "
                          "its reward carries no signal; lower disc_lr, raise label_smoothing or disc_pause_accuracy",
                          stacklevel=2)
        return self.collapse_streak >= self.collapse_patience

    # ---- state -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "replay": self.replay.state_dict(), "rng": self.rng.getstate(), "warmed_up": self.warmed_up,
                "counters": [self.total_steps, self.paused_rounds, self.collapse_streak, self.collapses]}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.replay.load_state_dict(state["replay"])
        self.rng.setstate(state["rng"])
        self.warmed_up = state["warmed_up"]
        self.total_steps, self.paused_rounds, self.collapse_streak, self.collapses = state["counters"]


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def _global_mean(value: float, device: torch.device) -> float:
    """The mean of a number over the processes (the number itself in one process)."""
    if not _distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t) / torch.distributed.get_world_size()


def _all_reduce_grads(model: torch.nn.Module) -> None:
    """Average D's gradients over the processes (D lives outside the DDP wrapper)."""
    if not _distributed():
        return
    world = torch.distributed.get_world_size()
    for p in model.parameters():
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad /= world


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Make every process start from rank 0's D (its fresh score head is random)."""
    if _distributed():
        for p in model.state_dict().values():
            torch.distributed.broadcast(p, src=0)
