"""The DPO family: a policy, a reference, and lit_align.ops.fused_linear_preference_loss on the policy's hidden states.

The loss goes end to end through the fused op (LM head, token and sequence log-probs, preference loss, RPO term,
one pass, never the logits). Loss types and their papers: lit_align/losses/preference.py (DPO arXiv 2305.18290,
cDPO, rDPO 2403.00409, SLiC hinge 2305.10425, IPO 2310.12036, SimPO 2405.14734). `rpo_alpha` adds the NLL of the
chosen answer (RPO, Pang et al. arXiv 2404.19733, Eq. 3), which keeps small models from collapsing.
The reference is a frozen copy ("copy"), the LoRA-less base ("adapter", with `lora`), or scores computed once
before training and cached on disk ("precomputed", reusable by resumed and later runs: keyed by each pair's tokens
and the initial weights, see CachedReference); SimPO needs none ("none").
A batch with a `label_smoothing` column (a (B,) tensor from PreferenceCollator) smooths each pair by its own value
instead of the module's constant: CREAM's consistency-regularised DPO (Wang et al., arXiv 2410.12735, §3).
"""
from __future__ import annotations

import os
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info

from lit_align.data.tokenize import IGNORE_INDEX
from lit_align.errors import UserError
from lit_align.losses.preference import rpo_nll
from lit_align.metrics.preference import PreferenceMetrics
from lit_align.models.causal_lm import final_hidden_states, lm_head_parameters, sequence_logprobs
from lit_align.models.reference import (
    CachedReference,
    FrozenCopyReference,
    PeftAdapterReference,
    weights_digest,
)
from lit_align.modules.base import AlignModule
from lit_align.ops import LOSS_TYPES, fused_linear_preference_loss
from lit_align.ops.fused_linear_preference_loss import STRATEGIES


class DPOModule(AlignModule):
    """DPO-family recipe.

    Args:
        loss_type: one of lit_align.ops.LOSS_TYPES except "bt" (sigmoid = DPO, robust, hinge, ipo, simpo).
        beta: the KL-regularisation strength (SimPO: the reward scale).
        label_smoothing: the probability that a preference label is flipped (cDPO / robust DPO); a batch's own
            per-pair `label_smoothing` column (B,) replaces it (CREAM).
        gamma: SimPO's target margin.
        average_log_prob: length-normalised sequence scores (None: True for ipo and simpo, as in their papers).
        rpo_alpha: weight of the chosen answer's NLL added to the loss (0 disables it).
        reference: "copy", "adapter", "precomputed" or "none" (reference-free, SimPO).
        reference_cache: file of the precomputed reference scores (default: <default_root_dir>/reference_logps.pt,
            the run folder, so a resumed run finds it).
        head_strategy: how the fused op computes the LM head's gradient: "recompute" (kernels per `backend`,
            logit tiles recomputed in the backward) or "chunked" (Liger-style, gradient in the forward, plain
            PyTorch: backend "auto" or "torch"). See lit_align/ops/fused_linear_preference_loss.py.
        (other arguments: see AlignModule; `batch_invariant` applies to the policy's and the reference's log-probs)
    """

    def __init__(self, model: str, loss_type: str = "sigmoid", beta: float = 0.1, label_smoothing: float = 0.0,
                 gamma: float = 0.0, average_log_prob: bool | None = None, rpo_alpha: float = 0.0,
                 reference: Literal["copy", "adapter", "precomputed", "none"] = "copy",
                 reference_cache: str | None = None, head_strategy: Literal["recompute", "chunked"] = "recompute",
                 **kwargs: Any):
        super().__init__(model, **kwargs)
        if loss_type not in LOSS_TYPES or loss_type == "bt":
            raise UserError(f"loss_type={loss_type!r}; expected one of {[t for t in LOSS_TYPES if t != 'bt']}")
        if (loss_type == "simpo") != (reference == "none"):
            raise UserError("loss_type='simpo' is reference-free: use it with reference='none' (and only it)")
        if head_strategy not in STRATEGIES:
            raise UserError(f"head_strategy={head_strategy!r}; expected one of {STRATEGIES}")
        if head_strategy == "chunked" and self.hparams.backend not in ("auto", "torch"):
            raise UserError(f"head_strategy='chunked' is plain PyTorch: use backend 'auto' or 'torch', "
                            f"not {self.hparams.backend!r}")
        if reference == "adapter" and not kwargs.get("lora"):
            raise UserError("reference='adapter' needs `lora` settings (the reference is the adapter switched off)")
        self.average = average_log_prob if average_log_prob is not None else loss_type in ("ipo", "simpo")
        self.reference = None
        self.train_metrics, self.val_metrics = PreferenceMetrics(), PreferenceMetrics("val/")

    def build_extra_models(self) -> None:
        kind, settings = self.hparams.reference, (self.average, self.hparams.backend, self.hparams.batch_invariant)
        if kind == "copy":
            self.reference = FrozenCopyReference(self.model, *settings)
        elif kind == "adapter":
            self.reference = PeftAdapterReference(*settings)
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
        return sequence_logprobs(self.model, batch, backend=self.hparams.backend,
                                 batch_invariant=self.hparams.batch_invariant)  # (2B,) sums

    # ---- the loss --------------------------------------------------------------------------------------
    def reference_scores(self, batch):
        if self.reference is None:
            return None, None
        ref = self.reference.scores(self.model, batch)  # (2B,) sums (or means, by the reference's setting)
        b = ref.shape[0] // 2
        return ref[:b], ref[b:]

    def pair_losses(self, hidden: torch.Tensor, labels: torch.Tensor, ref_chosen=None, ref_rejected=None,
                    label_smoothing: torch.Tensor | None = None):
        """Per-pair (loss, chosen_rewards, rejected_rewards, chosen_logprobs, rejected_logprobs), (B,) each, from the
        policy's final hidden states (2B, T, H) and shifted labels (2B, T) (chosen rows, then rejected), through
        lit_align.ops.fused_linear_preference_loss; the loss includes the RPO term, the log-probs are detached.
        `label_smoothing` (B,) per pair replaces the module's constant when given."""
        h = self.hparams
        weight, bias = lm_head_parameters(self.model)
        smoothing = h.label_smoothing if label_smoothing is None else label_smoothing
        return fused_linear_preference_loss(
            hidden, weight, labels, bias=bias, ref_chosen=ref_chosen, ref_rejected=ref_rejected, beta=h.beta,
            loss_type=h.loss_type, label_smoothing=smoothing, gamma=h.gamma, rpo_alpha=h.rpo_alpha,
            ignore_index=IGNORE_INDEX, average_log_prob=self.average, return_logprobs=True, backend=h.backend,
            strategy=h.head_strategy, batch_invariant=h.batch_invariant)

    def step(self, batch, prefix: str):
        metrics = self.train_metrics if self.training else self.val_metrics
        ref_chosen, ref_rejected = self.reference_scores(batch)  # first: a cache lookup reads the batch on the CPU
        hidden = final_hidden_states(self.model, batch)[:, :-1]  # (2B, T-1, H)
        labels = batch["labels"][:, 1:]  # (2B, T-1)
        smoothing = batch.get("label_smoothing")  # (B,) per pair, or None: the module's constant
        losses, chosen_rewards, rejected_rewards, chosen, rejected = self.pair_losses(hidden, labels, ref_chosen,
                                                                                     ref_rejected, smoothing)
        b = chosen.shape[0]
        loss = losses.mean()
        values = {"loss": loss}
        lengths = (labels != IGNORE_INDEX).sum(-1).clamp(min=1)  # (2B,)
        if self.hparams.rpo_alpha:  # already in the loss, per pair (RPO Eq. 3): logged alone too
            values["nll"] = rpo_nll(chosen, None if self.average else lengths[:b]).mean()
        if self.average:  # the metrics log sums (the loss used per-token means)
            chosen, rejected = chosen * lengths[:b], rejected * lengths[b:]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite DPO loss at step {self.global_step} (batch ids {batch['ids'][:4]}...)"
                                     "; lower lr or beta, or check the data")
        metrics.update(chosen_rewards, rejected_rewards, chosen, rejected)
        self.log_scalars(values, batch_size=b, prefix=prefix)
        self.log_metrics(metrics, batch_size=b)
        return loss
