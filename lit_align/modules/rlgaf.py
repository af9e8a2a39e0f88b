"""RLGAF: online RL whose reward is a discriminator trained on expert responses vs the policy's own samples.

Yu et al., arXiv 2305.06176 (the game: rlgaf_game.py, beside this file). Each rollout: sample from the policy,
reward = logit D(x, y) (no reward model, no checker: only the expert responses of `expert_file`, which only
D ever sees), a PPO (RLGAFModule) or RLOO (RLGAFRLOOModule) policy update, then k_D discriminator steps on
the expert data vs the fresh samples and the replay buffer, unless D is ahead (accuracy > disc_pause_accuracy).
Logged: disc/acc_expert, disc/acc_generated (D's accuracy on policy samples, which falls toward chance as
the policy learns), disc/paused, disc/collapsed, objective/scores (the reward), objective/kl, and with
`monitor: [{kind: checker}]` the task success of the samples (monitor/success), which the policy never sees.
"""
from __future__ import annotations

from typing import Any

from lit_align.modules.online import Experience
from lit_align.modules.ppo import PPOModule
from lit_align.modules.rloo import RLOOModule


class _Adversarial:
    """Adds the discriminator game to an OnlineRLModule (PPO or RLOO).

    Args:
        expert_file: JSONL rows with "prompt" and "completion": the expert demonstrations D learns from.
        discriminator: D's starting checkpoint (a causal LM gets a fresh score head; an encoder its pooler + head);
            default: the policy's checkpoint.
        disc_lr: D's learning rate (AdamW).
        disc_label_smoothing: one-sided smoothing of the expert targets.
        disc_steps: k_D, D steps per policy step.
        disc_batch_size: expert and policy samples per D step (each).
        disc_pause_accuracy: no D steps while its accuracy on the fresh rollout exceeds this.
        disc_warmup_steps: D steps on the first rollout before its reward is first used.
        disc_replay_size: capacity of the replay buffer of past policy samples.
        disc_fresh_fraction: share of each D step's policy samples taken from the current rollout.
        disc_reward: "logit" (RLGAF) or "log_d" (GAIL's log D).
        (other arguments: see PPOModule / RLOOModule; `rewards` defaults to the discriminator alone)
    """

    def __init__(self, model: str, expert_file: str, discriminator: str | None = None, disc_lr: float = 1e-4,
                 disc_label_smoothing: float = 0.1, disc_steps: int = 1, disc_batch_size: int = 32,
                 disc_pause_accuracy: float = 0.9, disc_warmup_steps: int = 20, disc_replay_size: int = 2048,
                 disc_fresh_fraction: float = 0.5, disc_reward: str = "logit", **kwargs: Any):
        super().__init__(model, **kwargs)
        self.game = None

    default_rewards = [{"kind": "discriminator"}]

    def build_rewards(self, specs):
        from lit_align.rollout.reward_sources import build_reward_sources

        if self.game is None:
            self.game = self.build_game()
        return build_reward_sources(specs, device=self.device, discriminator=self.game)

    def build_game(self):
        from lit_align.data.jsonl import read_rows
        from lit_align.data.tokenize import RowEncoder
        from lit_align.models.loading import load_sequence_classifier, load_tokenizer
        from lit_align.modules.rlgaf_game import DiscriminatorGame, broadcast_parameters

        h = self.hparams
        path = h.discriminator or h.model
        try:
            tokenizer, encoder = load_tokenizer(path), None
        except (OSError, ValueError):
            tokenizer, encoder = self.tokenizer, self.encoder
        encoder = encoder or RowEncoder(tokenizer)
        model = load_sequence_classifier(path, dtype=h.dtype, pad_token_id=tokenizer.pad_token_id).to(self.device)
        broadcast_parameters(model)
        expert = read_rows(h.expert_file, "sft", name="expert")
        return DiscriminatorGame(model, tokenizer, encoder, expert, lr=h.disc_lr,
                                 label_smoothing=h.disc_label_smoothing,
                                 steps=h.disc_steps, batch_size=h.disc_batch_size, pause_accuracy=h.disc_pause_accuracy,
                                 warmup_steps=h.disc_warmup_steps, replay_size=h.disc_replay_size,
                                 fresh_fraction=h.disc_fresh_fraction, form=h.disc_reward,
                                 seed=h.seed * 1009 + self.global_rank)

    def before_rewards(self, rows: list[dict], generations) -> None:
        self.game.warm_up(rows, generations)

    def after_update(self, exp: Experience) -> dict[str, float]:
        return self.game.update(exp.rows, exp.generations)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.game is not None:
            checkpoint["lit_align_discriminator"] = self.game.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self._pending_game_state = checkpoint.get("lit_align_discriminator")

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.restore_game()

    def restore_game(self) -> None:
        """Load the discriminator state read from a checkpoint (on_load_checkpoint) into the game, building the
        game first when no fit built it (export)."""
        state = getattr(self, "_pending_game_state", None)
        if state is None:
            return
        if self.game is None:
            if self.tokenizer is None:
                self.setup("export")  # the tokenizer and encoder the game tokenises with
            self.game = self.build_game()
        self.game.load_state_dict(state)
        self._pending_game_state = None

    def export(self, out_dir: str, tokenizer=None) -> list[str]:
        """The policy, and the discriminator in out_dir/discriminator (a sequence classifier)."""
        import os

        self.restore_game()
        paths = super().export(out_dir, tokenizer)
        if self.game is not None:
            self.game.model.save_pretrained(os.path.join(out_dir, "discriminator"))
            self.game.tokenizer.save_pretrained(os.path.join(out_dir, "discriminator"))
            paths.append(os.path.join(out_dir, "discriminator"))
        return paths


class RLGAFModule(_Adversarial, PPOModule):
    """RLGAF with PPO, as in the paper."""


class RLGAFRLOOModule(_Adversarial, RLOOModule):
    """RLGAF with RLOO's leave-one-out baseline instead of a value head."""
