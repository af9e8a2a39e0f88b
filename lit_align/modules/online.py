"""On-policy RL shared by PPO, RLOO and RLGAF: sample, score, build the experience, then update (manual optimisation).

One training batch of prompts is one rollout:

    prompts (P) --generate k samples each--> responses (n = P*k)        (HF generate, KV cache, seeded per rank)
      --reward sources--> scores (n,), invalid samples dropped and counted    (rollout/reward_sources.py)
      --one no-grad pass--> old log-probs and values (n, T-1), reference log-probs (n, T-1), per-token KL
      --subclass--> advantages                                               (PPO: GAE; RLOO: leave-one-out)
      --update_epochs x mini_batches optimizer steps--> clipped policy loss (+ value loss)

Every log-prob goes through lit_align.models.causal_lm.token_logprobs (lit_align.ops.linear_token_logprobs on the
decoder's hidden states, no (B, T, V) logits); the sampler's own scores are not trusted for training. Masks: only
generated tokens (the completion and the stop token that ended it) carry loss; prompt and padding tokens never do.

batch_invariant=True (AlignModule) runs the LM head and log-softmax in the ops' batch-invariant mode, for the policy
and the reference: given a row's final hidden states, its log-probs are bitwise the same whatever else is in the
batch (verl#6280). Only that part becomes batch invariant: the transformer's own matmuls and attention (HF's
kernels) still vary with the batch shape, so the hidden states themselves, and with them the log-probs, can still
move by rounding when a row is scored in another batch.

Under DDP each rank samples its own prompts with its own seed (sharded strategies are refused: HF generate
needs the whole policy on the rank); every rank runs the same number of backward
passes (a rank whose samples were all dropped backpropagates a zero loss), so the gradient all-reduce never
waits on a rank that skipped. Metric names follow TRL's PPO/RLOO trainers (objective/kl, objective/scores,
policy/clipfrac_avg, ...).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import torch

from lit_align.losses import AdaptiveKLController, token_kl
from lit_align.models.causal_lm import disable_dropout, final_hidden_states, token_logprobs
from lit_align.models.reference import FrozenCopyReference, PeftAdapterReference
from lit_align.modules.base import AlignModule
from lit_align.rollout.generate import Generation, generate, pad_token_id
from lit_align.rollout.reward_sources import RewardResult, build_reward_sources, score_rewards
from lit_align.rollout.runtime import is_sharded
from lit_align.rollout.score import completion_batch


@dataclass
class Experience:
    """One rollout on the module's device. Token tensors are shifted: position t scores label t+1."""

    rows: list[dict]  # (n) the prompt row each sample answered
    generations: list[Generation]  # (n)
    batch: dict[str, torch.Tensor]  # input_ids, attention_mask, labels (n, T): prompt + generated, right-padded
    mask: torch.Tensor  # (n, T-1) float: 1 on generated tokens of valid samples
    old_logp: torch.Tensor  # (n, T-1) policy log-probs at sampling time
    ref_logp: torch.Tensor  # (n, T-1)
    kl: torch.Tensor  # (n, T-1) per-token KL estimate (0 outside the mask)
    scores: torch.Tensor  # (n,) rewards from the sources (0 where invalid)
    valid: torch.Tensor  # (n,) bool
    values: torch.Tensor | None = None  # (n, T-1) PPO's value estimates at sampling time
    advantages: torch.Tensor | None = None  # (n, T-1)
    returns: torch.Tensor | None = None  # (n, T-1)

    def __len__(self) -> int:
        return len(self.generations)

    def minibatch(self, idx: torch.Tensor) -> dict[str, Any]:
        """The rows `idx` of every tensor, trimmed to the longest sequence among them."""
        length = int(self.batch["attention_mask"][idx].sum(-1).max())
        out = {k: v[idx, :length] for k, v in self.batch.items()}
        for name in ("mask", "old_logp", "ref_logp", "values", "advantages", "returns"):
            value = getattr(self, name)
            out[name] = None if value is None else value[idx, : length - 1]
        return out


class OnlineRLModule(AlignModule):
    """Base of the on-policy recipes (subclasses: PPOModule, RLOOModule, RLGAFModule).

    Args:
        rewards: reward sources summed into the reward (rollout/reward_sources.py), default [{kind: checker}].
        monitor: sources logged (monitor/<name>, monitor/success) but not rewarded, e.g. the checker in RLGAF.
        samples_per_prompt: responses sampled per prompt (k).
        max_new_tokens: the longest response.
        temperature, top_p: sampling; log-probs are taken at the same temperature.
        stop_strings: strings that end a response's text for the reward (the tokens stay as sampled).
        kl_coef: the KL coefficient beta (the initial value when kl_target is set).
        kl_target: target KL per sequence for the adaptive coefficient (None: fixed beta).
        kl_horizon: the adaptive controller's horizon in samples (Ziegler et al. 2019).
        kl_estimator: "k1", "k2" or "k3" (lit_align.losses.kl).
        update_epochs: passes over each rollout.
        mini_batches: optimizer steps per pass (the rollout split into this many parts).
        clip: the policy-ratio clip range.
        max_grad_norm: gradient-norm clipping (None: off).
        missing_eos_penalty: subtracted from the reward of responses that ran out of tokens without a stop token.
        reference: "copy" (frozen copy of the initial policy) or "adapter" (the policy with LoRA switched off).
        keep_dropout: keep the model's dropout (default off: log-prob ratios must not change by chance).
        seed: base of the per-rollout, per-rank sampling seeds.
        generation_batch_size: prompts per generate call.
        (other arguments: see AlignModule)
    """

    default_samples_per_prompt = 1
    default_rewards: list[dict[str, Any]] = [{"kind": "checker"}]  # when `rewards` is not given

    def __init__(self, model: str, rewards: list[dict[str, Any]] | None = None,
                 monitor: list[dict[str, Any]] | None = None, samples_per_prompt: int | None = None,
                 max_new_tokens: int = 32, temperature: float = 1.0, top_p: float = 1.0,
                 stop_strings: list[str] | None = None, kl_coef: float = 0.05,
                 kl_target: float | None = None, kl_horizon: int = 10000,
                 kl_estimator: Literal["k1", "k2", "k3"] = "k1", update_epochs: int = 1, mini_batches: int = 1,
                 clip: float = 0.2, max_grad_norm: float | None = 1.0, missing_eos_penalty: float = 0.0,
                 reference: Literal["copy", "adapter"] = "copy", keep_dropout: bool = False, seed: int = 0,
                 generation_batch_size: int = 64, **kwargs: Any):
        super().__init__(model, **kwargs)
        k = samples_per_prompt if samples_per_prompt is not None else self.default_samples_per_prompt
        self.hparams.samples_per_prompt = k
        for name, value, low in (("samples_per_prompt", k, 1), ("max_new_tokens", max_new_tokens, 1),
                                 ("update_epochs", update_epochs, 1), ("mini_batches", mini_batches, 1)):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if reference == "adapter" and not kwargs.get("lora"):
            raise ValueError("reference='adapter' needs `lora` settings (the reference is the adapter switched off)")
        self.automatic_optimization = False
        self.kl_ctl = AdaptiveKLController(kl_coef, kl_target, kl_horizon)
        self.reference = None
        self.value_head = None
        self.reward_sources: list = []
        self.monitor_sources: list = []
        self.tokenizer = self.encoder = None  # the data module's (set in setup)
        self.counts: dict[str, int] = defaultdict(int)  # dropped / truncated / empty samples so far

    # ---- set-up ---------------------------------------------------------------------------------------
    def build_extra_models(self) -> None:
        if not self.hparams.keep_dropout:
            disable_dropout(self.model)
        settings = dict(backend=self.hparams.backend, batch_invariant=self.hparams.batch_invariant)
        self.reference = (FrozenCopyReference(self.model, **settings) if self.hparams.reference == "copy"
                          else PeftAdapterReference(**settings))

    def setup(self, stage: str) -> None:
        if self._trainer is not None and is_sharded(self.trainer.strategy):
            raise ValueError(f"{type(self).__name__} samples with HF generate on each rank's whole policy, which a "
                             f"sharded strategy ({type(self.trainer.strategy).__name__}) does not hold; use DDP")
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "tokenizer"):
            self.tokenizer, self.encoder = datamodule.tokenizer, getattr(datamodule, "encoder", None)
        else:
            from lit_align.data.tokenize import RowEncoder
            from lit_align.models.loading import load_tokenizer

            self.tokenizer = load_tokenizer(self.hparams.model)
            self.encoder = RowEncoder(self.tokenizer)

    def on_fit_start(self) -> None:
        self.reward_sources = self.build_rewards(self.hparams.rewards or self.default_rewards)
        self.monitor_sources = build_reward_sources(self.hparams.monitor or [], device=self.device)

    def build_rewards(self, specs: list[dict[str, Any]]) -> list:
        return build_reward_sources(specs, device=self.device)

    def total_steps(self) -> int:
        """Optimizer (and scheduler) steps of the fit: a rollout makes update_epochs * mini_batches of them."""
        per_rollout = self.hparams.update_epochs * self.hparams.mini_batches
        if self.trainer.max_steps is not None and self.trainer.max_steps > 0:
            return self.trainer.max_steps
        return max(1, int(self.trainer.estimated_stepping_batches) * per_rollout)

    # ---- model outputs --------------------------------------------------------------------------------
    def policy_outputs(self, batch: dict, hidden: torch.Tensor | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token log-probs (n, T-1) of the labels through the fused LM head, and values (n, T-1) with a value head.
        hidden: the policy's final hidden states (n, T, H), computed here when not given."""
        hidden = final_hidden_states(self.model, batch) if hidden is None else hidden  # (n, T, H)
        logp = token_logprobs(self.model, batch, hidden=hidden, temperature=self.hparams.temperature,
                              backend=self.hparams.backend, batch_invariant=self.hparams.batch_invariant)
        return logp, self.values(hidden[:, :-1], batch)

    def values(self, hidden: torch.Tensor, batch: dict) -> torch.Tensor | None:
        """(n, T-1) values from the policy's hidden states (n, T-1, H); None without a value function."""
        return self.value_head(hidden) if self.value_head is not None else None

    # ---- one rollout ----------------------------------------------------------------------------------
    @staticmethod
    def prompt_rows(batch: dict) -> tuple[list[dict], list[list[int]]]:
        """Prompt rows (passthrough columns, e.g. prompt and task) and prompt token ids of a PromptCollator batch."""
        columns = [k for k, v in batch.items() if isinstance(v, list) and k != "ids"]
        rows = [{"id": i, "_where": f"prompt {i}", **{c: batch[c][j] for c in columns}}
                for j, i in enumerate(batch["ids"])]
        prompts = [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"],
                                                                     strict=True)]
        return rows, prompts

    def sample(self, prompts: list[list[int]], seed: int) -> list[Generation]:
        h = self.hparams
        return generate(self.model, self.tokenizer, prompts, max_new_tokens=h.max_new_tokens, do_sample=True,
                        temperature=h.temperature, top_p=h.top_p, batch_size=h.generation_batch_size, seed=seed,
                        stop_strings=h.stop_strings)

    def rollout_seed(self, batch_idx: int) -> int:
        rollout = self.current_epoch * max(1, self.trainer.num_training_batches) + batch_idx
        return (self.hparams.seed * 1_000_003 + rollout) * 1009 + self.global_rank

    @torch.no_grad()
    def make_experience(self, rows: list[dict], generations: list[Generation], rewards: RewardResult) -> Experience:
        batch = {k: v.to(self.device) for k, v in
                 completion_batch(self.tokenizer, generations, pad_token_id(self.tokenizer)).items()}
        valid = rewards.valid.to(self.device)
        mask = (batch["labels"][:, 1:] != -100).float() * valid[:, None].float()  # (n, T-1)
        old_logp, values = self.policy_outputs(batch)
        ref_logp = self.reference.token_logprobs(self.model, batch, temperature=self.hparams.temperature)
        kl = token_kl(old_logp, ref_logp, self.hparams.kl_estimator) * mask
        unfinished = torch.tensor([not g.finished for g in generations], device=self.device)
        scores = rewards.total.to(self.device) - self.hparams.missing_eos_penalty * unfinished.float()
        scores = torch.where(valid, scores, torch.zeros_like(scores))
        return Experience(rows, generations, batch, mask, old_logp, ref_logp, kl, scores, valid,
                          values=None if values is None else values * mask)

    def compute_advantages(self, exp: Experience) -> None:
        """Fill exp.advantages (and exp.returns); subclasses say how."""
        raise NotImplementedError

    def minibatch_loss(self, mb: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The loss of one minibatch (from Experience.minibatch) and its statistics."""
        raise NotImplementedError

    def optimize(self, exp: Experience, seed: int) -> dict[str, float]:
        """update_epochs passes of mini_batches optimizer steps each; the mean statistics."""
        optimizer = self.optimizers()
        optimizer = optimizer[0] if isinstance(optimizer, list) else optimizer
        scheduler = self.lr_schedulers()
        generator = torch.Generator().manual_seed(seed)
        totals: dict[str, float] = defaultdict(float)
        steps = 0
        for _ in range(self.hparams.update_epochs):
            order = torch.randperm(len(exp), generator=generator)
            for idx in order.chunk(self.hparams.mini_batches):
                loss, stats = self.minibatch_loss(exp.minibatch(idx.to(self.device)))
                optimizer.zero_grad()
                self.manual_backward(loss)
                if self.hparams.max_grad_norm:
                    self.clip_gradients(optimizer, gradient_clip_val=self.hparams.max_grad_norm,
                                        gradient_clip_algorithm="norm")
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                for name, value in {"loss": loss.detach(), **stats}.items():
                    totals[name] += float(value)
                steps += 1
        return {name: value / steps for name, value in totals.items()}

    def before_rewards(self, rows: list[dict], generations: list[Generation]) -> None:
        """Hook between sampling and scoring (RLGAF warms its discriminator up here)."""

    def after_update(self, exp: Experience) -> dict[str, float]:
        """Hook after the policy update (RLGAF trains its discriminator here); returns metrics to log."""
        return {}

    def rollout(self, rows: list[dict], prompts: list[list[int]], seed: int) -> tuple[Experience, RewardResult]:
        """Sample one response per (repeated) prompt, score it, build the experience; session recipes override."""
        generations = self.sample(prompts, seed)
        self.before_rewards(rows, generations)
        rewards = score_rewards(self.reward_sources, rows, generations)
        return self.make_experience(rows, generations, rewards), rewards

    def training_step(self, batch, batch_idx):
        rows, prompts = self.prompt_rows(batch)
        k = self.hparams.samples_per_prompt
        rows, prompts = [r for r in rows for _ in range(k)], [p for p in prompts for _ in range(k)]  # prompt-major
        seed = self.rollout_seed(batch_idx)
        exp, rewards = self.rollout(rows, prompts, seed)
        self.compute_advantages(exp)
        stats = self.optimize(exp, seed)
        seq_kl = float(exp.kl.sum()) / n_valid(exp)
        metrics = {**self.rollout_metrics(exp, rewards, seq_kl), **self.renamed(stats), **self.after_update(exp)}
        # One coefficient for every process: the controller sees the KL averaged over the ranks.
        mean_kl = self.trainer.strategy.reduce(torch.tensor(seq_kl, device=self.device), reduce_op="mean")
        self.kl_ctl.update(float(mean_kl), len(exp) * self.trainer.world_size)
        shown = {"objective/scores", "objective/kl"}
        for name, value in metrics.items():
            self.log(name, value, on_step=True, on_epoch=False, prog_bar=name in shown, batch_size=len(exp))
        return {"loss": torch.tensor(stats["loss"])}

    @staticmethod
    def renamed(stats: dict[str, float]) -> dict[str, float]:
        names = {"loss": "loss/total", "pg_loss": "loss/policy_avg", "vf_loss": "loss/value_avg",
                 "clipfrac": "policy/clipfrac_avg", "approx_kl": "policy/approxkl_avg", "ratio": "val/ratio",
                 "vf_clipfrac": "val/clipfrac_avg", "kl_loss": "loss/kl_avg"}
        return {names.get(k, k): v for k, v in stats.items()}

    def rollout_metrics(self, exp: Experience, rewards: RewardResult, seq_kl: float) -> dict[str, float]:
        gens, n = exp.generations, len(exp)
        valid = exp.valid.cpu()
        self.counts["samples"] += n
        self.counts["dropped"] += rewards.dropped
        self.counts["truncated"] += sum(not g.finished for g in gens)
        self.counts["empty"] += sum(len(g.completion_ids) == 0 for g in gens)
        scores = exp.scores.cpu()[valid]
        mean_score = float(scores.mean()) if len(scores) else 0.0
        metrics = {
            "objective/scores": mean_score,
            "objective/kl": seq_kl,
            "objective/non_score_reward": -self.kl_ctl.value * seq_kl,
            "objective/rlhf_reward": mean_score - self.kl_ctl.value * seq_kl,
            "objective/entropy": float(-(exp.old_logp * exp.mask).sum()) / n_valid(exp),  # sampled-token estimate
            "objective/kl_coef": self.kl_ctl.value,
            "val/num_eos_tokens": float(sum(g.finished for g in gens)),
            "val/length": sum(g.num_tokens for g in gens) / n,
            "rollout/dropped": float(rewards.dropped),
            "rollout/dropped_total": float(self.counts["dropped"]),
            "rollout/truncated_total": float(self.counts["truncated"]),
            "rollout/empty_total": float(self.counts["empty"]),
        }
        if len(rewards.components) > 1:  # each source of a weighted sum
            for name, values in rewards.components.items():
                metrics[f"objective/scores_{name}"] = float(values[torch.isfinite(values)].mean())
        metrics.update(self.monitor_metrics(exp))
        return metrics

    def monitor_metrics(self, exp: Experience) -> dict[str, float]:
        if not self.monitor_sources:
            return {}
        result = score_rewards(self.monitor_sources, exp.rows, exp.generations)
        out = {}
        for name, values in result.components.items():
            finite = values[torch.isfinite(values)]
            out[f"monitor/{name}"] = float(finite.mean()) if len(finite) else float("nan")
            if name == "checker":
                out["monitor/success"] = float((finite == 1.0).float().mean()) if len(finite) else float("nan")
        return out

    # ---- validation: greedy answers scored by the reward (and monitor) sources -------------------------
    def validation_step(self, batch, batch_idx):
        if not self.reward_sources:  # `validate` without `fit`
            self.on_fit_start()
        rows, prompts = self.prompt_rows(batch)
        generations = generate(self.model, self.tokenizer, prompts, max_new_tokens=self.hparams.max_new_tokens,
                               batch_size=self.hparams.generation_batch_size, stop_strings=self.hparams.stop_strings)
        result = score_rewards(self.reward_sources, rows, generations)
        values = {"val/scores": result.total[result.valid].mean()}
        if self.monitor_sources:
            monitor = score_rewards(self.monitor_sources, rows, generations)
            values.update({f"val/monitor_{k}": v[torch.isfinite(v)].mean() for k, v in monitor.components.items()})
        self.log_dict(values, on_epoch=True, batch_size=len(rows), sync_dist=True)

    # ---- checkpoints ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["lit_align_online"] = {"kl_ctl": self.kl_ctl.state_dict(), "counts": dict(self.counts)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)  # a LoRA checkpoint's frozen base (AlignModule)
        state = checkpoint.get("lit_align_online")
        if state:
            self.kl_ctl.load_state_dict(state["kl_ctl"])
            self.counts.update(state["counts"])


def n_valid(exp: Experience) -> float:
    """Number of valid samples (at least 1), so per-token means can be turned into per-sequence ones."""
    return max(1.0, float(exp.valid.sum()))
