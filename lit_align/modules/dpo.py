"""The DPO family: a policy, a reference, and lit_align.ops.preference_loss on sequence log-probs.

Loss types and their papers are listed in lit_align/ops/preference_loss.py (DPO arXiv 2305.18290, cDPO,
rDPO 2403.00409, SLiC hinge 2305.10425, IPO 2310.12036, SimPO 2405.14734). `rpo_alpha` adds the NLL of the
chosen answer (RPO, Pang et al. arXiv 2404.19733, Eq. 3), which keeps small models from collapsing.
The reference is a frozen copy ("copy"), the LoRA-less base ("adapter", with `lora`), or scores computed once
before training and cached on disk ("precomputed", reusable by resumed and later runs: keyed by each pair's tokens
and the initial weights, see CachedReference); SimPO needs none ("none").
"""
from __future__ import annotations

import os
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info

from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.errors import UserError
from lit_align.metrics.preference import PreferenceMetrics
from lit_align.models.causal_lm import final_hidden_states, lm_head_parameters, sequence_logps
from lit_align.models.reference import (
    CachedReference,
    FrozenCopyReference,
    PeftAdapterReference,
    weights_digest,
)
from lit_align.modules.base import AlignModule
from lit_align.ops import LOSS_TYPES, preference_loss, sequence_logprobs
from lit_align.ops.linear_token_logprobs import linear_token_logprobs


class DPOModule(AlignModule):
    """DPO-family recipe.

    Args:
        loss_type: one of lit_align.ops.LOSS_TYPES except "bt" (sigmoid = DPO, robust, hinge, ipo, simpo).
        beta: the KL-regularisation strength (SimPO: the reward scale).
        label_smoothing: the probability that a preference label is flipped (cDPO / robust DPO).
        gamma: SimPO's target margin.
        average_log_prob: length-normalised sequence scores (None: True for ipo and simpo, as in their papers).
        rpo_alpha: weight of the chosen answer's NLL added to the loss (0 disables it).
        reference: "copy", "adapter", "precomputed" or "none" (reference-free, SimPO).
        reference_cache: file of the precomputed reference scores (default: <default_root_dir>/reference_logps.pt,
            the run folder, so a resumed run finds it).
        (other arguments: see AlignModule)
    """

    def __init__(self, model: str, loss_type: str = "sigmoid", beta: float = 0.1, label_smoothing: float = 0.0,
                 gamma: float = 0.0, average_log_prob: bool | None = None, rpo_alpha: float = 0.0,
                 reference: Literal["copy", "adapter", "precomputed", "none"] = "copy",
                 reference_cache: str | None = None, **kwargs: Any):
        super().__init__(model, **kwargs)
        if loss_type not in LOSS_TYPES or loss_type == "bt":
            raise UserError(f"loss_type={loss_type!r}; expected one of {[t for t in LOSS_TYPES if t != 'bt']}")
        if (loss_type == "simpo") != (reference == "none"):
            raise UserError("loss_type='simpo' is reference-free: use it with reference='none' (and only it)")
        if reference == "adapter" and not kwargs.get("lora"):
            raise UserError("reference='adapter' needs `lora` settings (the reference is the adapter switched off)")
        self.average = average_log_prob if average_log_prob is not None else loss_type in ("ipo", "simpo")
        self.reference = None
        self.train_metrics, self.val_metrics = PreferenceMetrics(), PreferenceMetrics("val/")

    def build_extra_models(self) -> None:
        kind = self.hparams.reference
        if kind == "copy":
            self.reference = FrozenCopyReference(self.model, self.average)
        elif kind == "adapter":
            self.reference = PeftAdapterReference(self.average)
        elif kind == "precomputed":  # the path is known once a trainer is attached (on_fit_start)
            self.reference = CachedReference(weights_digest(self.model), average_log_prob=self.average,
                                             model=self.hparams.model)

    def cache_path(self) -> str | None:
        """`reference_cache`, else the run folder's reference_logps.pt (None, in memory only, without a trainer)."""
        if self.hparams.reference_cache:
            return self.hparams.reference_cache
        return os.path.join(self.trainer.default_root_dir, "reference_logps.pt") if self._trainer is not None else None

    def on_fit_start(self) -> None:
        """With reference='precomputed', score every train/val pair with the initial policy, before any update.

        On resume (a checkpoint given to fit) the restored policy is trained: the file must then cover every pair.
        """
        if isinstance(self.reference, CachedReference):
            resumed = self.trainer.ckpt_path is not None or self.global_step > 0
            self.precompute_reference(self.trainer.datamodule, may_score=not resumed)

    def precompute_reference(self, datamodule, may_score: bool = True) -> int:
        """Fill the reference cache for the data module's train and val pairs; returns how many were scored."""
        if datamodule is None:
            raise UserError("reference='precomputed' scores the whole data before training: fit with a data "
                            "module (e.g. PreferenceDataModule), not bare dataloaders")
        loaders = [datamodule.train_dataloader(), datamodule.val_dataloader()]
        sources = [(loader.dataset, loader.collate_fn, loader.batch_size or 1) for loader in loaders
                   if isinstance(loader, torch.utils.data.DataLoader)]
        self.reference.path = self.cache_path()
        was_training = self.model.training
        self.model.eval()  # no dropout: the scores of the frozen-copy reference
        try:
            computed = self.reference.fill(sources, self._initial_scores, may_score=may_score)
        finally:
            self.model.train(was_training)
        rank_zero_info(f"[lit_align.dpo] reference scores of {len(self.reference.cache)} pairs in "
                       f"{self.reference.path or 'memory'} ({computed} scored now)")
        return computed

    @torch.no_grad()
    def _initial_scores(self, batch) -> torch.Tensor:
        batch = self.transfer_batch_to_device(batch, self.device, 0)
        return sequence_logps(self.model, batch, backend=self.hparams.backend)  # (2B,) sums

    # ---- the loss --------------------------------------------------------------------------------------
    def pair_scores(self, batch):
        """Policy sequence scores (2B,) (differentiable), token sums (2B,) and token counts (2B,)."""
        hidden = final_hidden_states(self.model, batch)[:, :-1]  # (2B, T-1, H)
        labels = batch["labels"][:, 1:]  # (2B, T-1)
        weight, bias = lm_head_parameters(self.model)
        token_logp = linear_token_logprobs(hidden, weight, labels, bias=bias, backend=self.hparams.backend)
        mask = labels != IGNORE_INDEX
        sums = sequence_logprobs(token_logp, mask=mask, backend=self.hparams.backend)  # (2B,)
        counts = mask.sum(-1).clamp(min=1)  # (2B,)
        return (sums / counts if self.average else sums), sums, counts

    def reference_scores(self, batch):
        if self.reference is None:
            return None, None
        ref = self.reference.scores(self.model, batch)  # (2B,) sums (or means, by the reference's setting)
        b = ref.shape[0] // 2
        return ref[:b], ref[b:]

    def step(self, batch, metrics: PreferenceMetrics, prefix: str):
        ref_chosen, ref_rejected = self.reference_scores(batch)  # first: a cache lookup reads the batch on the CPU
        scores, sums, counts = self.pair_scores(batch)
        b = scores.shape[0] // 2
        losses, chosen_rewards, rejected_rewards = preference_loss(
            scores[:b], scores[b:], ref_chosen, ref_rejected, beta=self.hparams.beta,
            loss_type=self.hparams.loss_type, label_smoothing=self.hparams.label_smoothing,
            gamma=self.hparams.gamma, backend=self.hparams.backend)
        loss = losses.mean()
        values = {"loss": loss}
        if self.hparams.rpo_alpha:
            nll = (-sums[:b] / counts[:b]).mean()  # per-sequence length-normalised (RPO Eq. 3), mean over pairs
            loss = loss + self.hparams.rpo_alpha * nll
            values.update(loss=loss, nll=nll)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite DPO loss at step {self.global_step} (batch ids {batch['ids'][:4]}...)"
                                     "; lower lr or beta, or check the data")
        metrics.update(chosen_rewards, rejected_rewards, sums[:b].detach(), sums[b:].detach())
        self.log_scalars(values, batch_size=b, prefix=prefix)
        self.log_metrics(metrics, batch_size=b)
        return loss

    def training_step(self, batch, batch_idx):
        return self.step(batch, self.train_metrics, "")

    def validation_step(self, batch, batch_idx):
        self.step(batch, self.val_metrics, "val/")
