"""The DPO family: a policy, a reference, and lit_align.ops.preference_loss on sequence log-probs.

Loss types and their papers are listed in lit_align/ops/preference_loss.py (DPO arXiv 2305.18290, cDPO,
rDPO 2403.00409, SLiC hinge 2305.10425, IPO 2310.12036, SimPO 2405.14734). `rpo_alpha` adds the NLL of the
chosen answer (RPO, Pang et al. arXiv 2404.19733, Eq. 3), which keeps small models from collapsing.
The reference is a frozen copy ("copy"), the LoRA-less base ("adapter", with `lora`), or scores computed once
before training and cached on disk ("precomputed", reusable by later runs); SimPO needs none ("none").
"""
from __future__ import annotations

import os
from typing import Any, Literal

import torch

from lit_align.metrics.preference import PreferenceMetrics
from lit_align.models.causal_lm import final_hidden_states, lm_head_parameters
from lit_align.models.reference import CachedReference, FrozenCopyReference, PeftAdapterReference
from lit_align.modules.base import AlignModule
from lit_align.ops import LOSS_TYPES, preference_loss, sequence_logprobs
from lit_align.ops.linear_token_logprobs import linear_token_logprobs


class _InitialPolicy(torch.nn.Module):
    """The policy itself as reference: valid only before its first update (used to fill the cache)."""

    @torch.no_grad()
    def scores(self, policy, batch):
        from lit_align.models.causal_lm import sequence_logps
        return sequence_logps(policy, batch, average_log_prob=False)


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
        reference_cache: file of the precomputed reference scores (default: <log_dir>/reference_logps.pt).
        (other arguments: see AlignModule)
    """

    def __init__(self, model: str, loss_type: str = "sigmoid", beta: float = 0.1, label_smoothing: float = 0.0,
                 gamma: float = 0.0, average_log_prob: bool | None = None, rpo_alpha: float = 0.0,
                 reference: Literal["copy", "adapter", "precomputed", "none"] = "copy",
                 reference_cache: str | None = None, **kwargs: Any):
        super().__init__(model, **kwargs)
        if loss_type not in LOSS_TYPES or loss_type == "bt":
            raise ValueError(f"loss_type={loss_type!r}; expected one of {[t for t in LOSS_TYPES if t != 'bt']}")
        if (loss_type == "simpo") != (reference == "none"):
            raise ValueError("loss_type='simpo' is reference-free: use it with reference='none' (and only it)")
        if reference == "adapter" and not kwargs.get("lora"):
            raise ValueError("reference='adapter' needs `lora` settings (the reference is the adapter switched off)")
        self.average = average_log_prob if average_log_prob is not None else loss_type in ("ipo", "simpo")
        self.reference = None
        self.train_metrics, self.val_metrics = PreferenceMetrics(), PreferenceMetrics("val/")

    def build_extra_models(self) -> None:
        kind = self.hparams.reference
        if kind == "copy":
            self.reference = FrozenCopyReference(self.model, self.average)
        elif kind == "adapter":
            self.reference = PeftAdapterReference(self.average)
        elif kind == "precomputed":
            self.reference = CachedReference(_InitialPolicy(), self.cache_path(), self.fingerprint())

    def cache_path(self) -> str:
        if self.hparams.reference_cache:
            return self.hparams.reference_cache
        root = self.trainer.log_dir if self._trainer is not None and self.trainer.log_dir else "."
        return os.path.join(root, "reference_logps.pt")

    def fingerprint(self) -> str:
        return f"{self.hparams.model}|dtype={self.hparams.dtype}|sum"

    def on_fit_start(self) -> None:
        """With reference='precomputed', score every train/val pair with the initial policy once."""
        if not isinstance(self.reference, CachedReference):
            return
        datamodule = self.trainer.datamodule
        loaders = [datamodule.train_dataloader(), datamodule.val_dataloader()] if datamodule else []
        self.model.eval()
        for loader in loaders:
            for batch in loader:
                batch = self.transfer_batch_to_device(batch, self.device, 0)
                self.reference.scores(self.model, batch)
        self.model.train()
        if self.trainer.is_global_zero:
            self.reference.save()
        self.print(f"[lit_align.dpo] reference scores cached for {len(self.reference.cache)} pairs "
                   f"in {self.reference.path}")

    # ---- the loss --------------------------------------------------------------------------------------
    def pair_scores(self, batch):
        """Policy sequence scores (2B,) (differentiable), token sums (2B,) and token counts (2B,)."""
        hidden = final_hidden_states(self.model, batch)[:, :-1]  # (2B, T-1, H)
        labels = batch["labels"][:, 1:]  # (2B, T-1)
        weight, bias = lm_head_parameters(self.model)
        token_logp = linear_token_logprobs(hidden, weight, labels, bias=bias, backend=self.hparams.backend)
        mask = labels != -100
        sums = sequence_logprobs(token_logp, mask=mask, backend=self.hparams.backend)  # (2B,)
        counts = mask.sum(-1).clamp(min=1)  # (2B,)
        return (sums / counts if self.average else sums), sums, counts

    def reference_scores(self, batch):
        if self.reference is None:
            return None, None
        ref = self.reference.scores(self.model, batch)  # (2B,) sums (or means, by the reference's setting)
        if isinstance(self.reference, CachedReference) and self.average:
            ref = ref / (batch["labels"][:, 1:] != -100).sum(-1).clamp(min=1)
        b = ref.shape[0] // 2
        return ref[:b], ref[b:]

    def step(self, batch, metrics: PreferenceMetrics, prefix: str):
        scores, sums, counts = self.pair_scores(batch)
        b = scores.shape[0] // 2
        ref_chosen, ref_rejected = self.reference_scores(batch)
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
