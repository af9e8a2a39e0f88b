"""LearningDynamicsCallback: per-group learning dynamics of a DPO-family fit (Im & Li, arXiv 2403.18742).

Im & Li ("Understanding the Learning Dynamics of Alignment with Human Feedback", ICML 2024) show that under DPO
a behaviour b is learned the sooner the more *distinguishable* its preferred-"yes" and preferred-"no" examples are
in the model's last-layer representation (Sec. 4: Thm. 4.1 on the rate of weight updates, Thms. 4.2-4.3 on
training accuracy; experiments on Persona). Every `every_n_steps` optimizer steps (and before the first, and after
the last), this callback scores a fixed probe set of preference rows with a group column (the behaviour) and, for
Persona-like data, a label column (which class of the group a pair is in: 1 for "yes" preferred):

    distinguishability       d_b = ||mu_b+ - mu_b-||, the class means of the final hidden state h (H,)
    distinguishability_norm  d_b / s_b, s_b = sqrt(pooled within-class variance) = sqrt(sum ||h - mu_class||^2 / n)
    loss                     the module's per-pair loss (its loss_type, beta, smoothing, RPO term), mean over b
    accuracy                 share of pairs whose policy log-prob of the chosen answer beats the rejected one's
    reward_accuracy, margin  the implicit reward's (beta * (log pi - log pi_ref)): share chosen > rejected, mean gap
    grad_norm                ||grad of the group's mean loss|| over the trainable parameters

With a label column, h is the final hidden state at the last token the chosen and rejected sequences share (where
the two answers diverge, e.g. the end of the prompt): the representation the preference is decided on. Without one
(label_key None: any preference data), the classes are the preferred and dispreferred responses themselves, h the
final hidden state at each sequence's last token: + the chosen sequences, - the rejected ones.

The gradient comes from torch.autograd.grad on the probe batch: nothing is written to .grad, no optimizer or RNG
state is touched, and the model is scored in eval mode and put back: training is bitwise unchanged
(tests/callbacks/test_dynamics.py). Pass grad_norm=False to skip those backward passes.

DDP: each rank scores every world-th probe pair of each group; the sums (counts, hidden-state sums and squared
norms, losses, hits, margins) are torchmetrics states reduced by "sum", so every rank computes the numbers of the
whole probe set. The gradient norm is the mean over ranks of the norm of each rank's shard gradient (an all-reduce
of whole gradients per group would cost a model's size per group). Sharded models (FSDP) are refused.

Logged to the trainer's loggers as dynamics/<group>/<name> at the measured step; `history` (one row per step and
group) travels in the checkpoint, so a resumed fit continues the curves; at the end of fit rank 0 draws them
(`plot`, a PNG under the run folder unless an absolute path is given).

With reference="precomputed" the probes must be pairs of the training (or validation) file: the cache holds those.
"""
from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torchmetrics import Metric

from lit_align.models.causal_lm import final_hidden_states, text_config

NAMES = ("distinguishability", "distinguishability_norm", "loss", "accuracy", "reward_accuracy", "margin",
         "grad_norm")


class GroupDynamics(Metric):
    """Per-group sums over probe pairs (reduced by "sum" across processes); compute() gives NAMES per group."""

    full_state_update = False

    def __init__(self, groups: int, hidden_size: int):
        super().__init__()
        g, h = groups, hidden_size
        for name, shape in (("count", (2, g)), ("hidden_sum", (2, g, h)), ("hidden_sq", (2, g)), ("pairs", (g,)),
                            ("loss", (g,)), ("hits", (g,)), ("reward_hits", (g,)), ("margin", (g,)),
                            ("grad_norm", (g,)), ("grad_ranks", (g,))):
            self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, group: int, hidden: torch.Tensor, label: torch.Tensor, loss: torch.Tensor, hits: torch.Tensor,
               reward_hits: torch.Tensor, margin: torch.Tensor) -> None:
        """One batch of pairs of group `group`: hidden (N, H) and label (N,) bool of the N representations, and the
        per-pair loss/hits/margin (B,)."""
        hidden = hidden.detach().double()
        for side, mask in ((0, label), (1, ~label)):  # 0: the "+" class (label 1), 1: the "-" class
            self.count[side, group] += mask.sum()
            self.hidden_sum[side, group] += hidden[mask].sum(0)
            self.hidden_sq[side, group] += hidden[mask].pow(2).sum()
        self.pairs[group] += loss.numel()
        self.loss[group] += loss.detach().double().sum()
        self.hits[group] += hits.double().sum()
        self.reward_hits[group] += reward_hits.double().sum()
        self.margin[group] += margin.detach().double().sum()

    def update_grad_norm(self, group: int, norm: float) -> None:
        self.grad_norm[group] += norm
        self.grad_ranks[group] += 1

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp(min=1)  # (2, G)
        mean = self.hidden_sum / n[..., None]  # (2, G, H)
        d = (mean[0] - mean[1]).norm(dim=-1)  # (G,)
        within = (self.hidden_sq - n * mean.pow(2).sum(-1)).sum(0) / n.sum(0)  # pooled sum ||h - mu||^2 / n
        pairs = self.pairs.clamp(min=1)
        return {"distinguishability": d, "distinguishability_norm": d / within.clamp(min=1e-12).sqrt(),
                "loss": self.loss / pairs, "accuracy": self.hits / pairs, "reward_accuracy": self.reward_hits / pairs,
                "margin": self.margin / pairs, "grad_norm": self.grad_norm / self.grad_ranks.clamp(min=1),
                "pairs": self.pairs}


class LearningDynamicsCallback(Callback):
    """Per-group distinguishability, loss, accuracy, reward margin and gradient norm on a probe set during DPO.

    Args:
        probe_file: JSONL preference rows with a `group_key` (and `label_key`) column, e.g. lit_align.tasks.persona;
            None: the data module's training file.
        every_n_steps: measure after every N-th optimizer step (and at step 0 and at the end of fit).
        group_key: the row column naming the group (behaviour).
        label_key: the row column splitting a group into its two classes (truthy: "+", e.g. "yes" preferred);
            None: chosen vs rejected sequences (see the module docstring).
        limit_per_group: probe pairs per group (the first ones in the file; None: all).
        batch_size: probe pairs per forward pass.
        grad_norm: also measure the per-group gradient norm (one backward per group and batch).
        plot: PNG of the curves at the end of fit (relative: under trainer.default_root_dir; None: no plot).
    """

    def __init__(self, probe_file: str | None = None, every_n_steps: int = 10, group_key: str = "group",
                 label_key: str | None = "label", limit_per_group: int | None = 64, batch_size: int = 64,
                 grad_norm: bool = True, plot: str | None = "dynamics.png"):
        super().__init__()
        if every_n_steps < 1:
            raise ValueError(f"LearningDynamicsCallback: every_n_steps must be >= 1, got {every_n_steps}")
        if limit_per_group is not None and limit_per_group < 2:
            raise ValueError(f"LearningDynamicsCallback: limit_per_group must be >= 2 or None, got {limit_per_group}")
        self.probe_file, self.every_n_steps = probe_file, every_n_steps
        self.group_key, self.label_key, self.limit_per_group = group_key, label_key, limit_per_group
        self.batch_size, self.grad_norm, self.plot = batch_size, grad_norm, plot
        self.groups: list[str] = []
        self.rows: list[dict] | None = None
        self.history: list[dict[str, Any]] = []
        self._measured_step: int | None = None
        self._probes: list[list[dict]] | None = None  # this rank's tokenised pairs, per group
        self.metric: GroupDynamics | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(probe_file=str(self.probe_file), group_key=self.group_key,
                                        label_key=self.label_key, limit_per_group=self.limit_per_group)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(h) for h in self.history], "measured_step": self._measured_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [dict(h) for h in state_dict["history"]]
        self._measured_step = state_dict["measured_step"]

    # ---- setup ---------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from lit_align.rollout.runtime import is_sharded

        if is_sharded(trainer.strategy):
            raise ValueError(f"LearningDynamicsCallback reads whole hidden states and gradients, which a sharded model "
                             f"({type(trainer.strategy).__name__}) does not hold on one rank; use DDP")
        if not (hasattr(pl_module, "pair_losses") and hasattr(pl_module, "reference_scores")):
            raise ValueError(f"LearningDynamicsCallback needs a DPO-family module (pair_losses, reference_scores), "
                             f"not {type(pl_module).__name__}")
        if self.rows is None:  # every rank reads (cheap), so a bad file fails everywhere instead of hanging
            source = self.probe_file
            if source is None:
                source = getattr(trainer.datamodule, "files", {}).get("train")
                if source is None:
                    raise ValueError("LearningDynamicsCallback: probe_file=None takes the data module's train_file, "
                                     "and there is none; pass probe_file")
            self.rows = self.read_probes(source)

    def read_probes(self, source=None) -> list[dict]:
        """The probe rows, at most limit_per_group per group; bad rows raise a ValueError naming file, line, field."""
        from lit_align.data.jsonl import read_rows

        rows, kept = read_rows(source if source is not None else self.probe_file, "preference"), {}
        keys = (self.group_key,) if self.label_key is None else (self.group_key, self.label_key)
        for row in rows:
            for key in keys:
                if row.get(key) is None:
                    raise ValueError(f"{row['_where']}: field {key!r} is missing; LearningDynamicsCallback needs a "
                                     f"group column ({self.group_key!r})" + (
                                         f" and a class column ({self.label_key!r})" if self.label_key else ""))
            group = kept.setdefault(str(row[self.group_key]), [])
            if self.limit_per_group is None or len(group) < self.limit_per_group:
                group.append(row)
        self.groups = sorted(kept)
        return [row for g in self.groups for row in kept[g]]

    def _tokenised(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[list[dict]]:
        """This rank's share of each group's probe pairs, tokenised like the training data."""
        if self._probes is None:
            datamodule = trainer.datamodule
            if datamodule is None or not hasattr(datamodule, "encoder"):
                raise ValueError("LearningDynamicsCallback needs a lit_align data module (its RowEncoder tokenises "
                                 "the probes like the training rows)")
            examples, _ = datamodule.encoder.preference(self.rows, "probe")
            rank, world = trainer.global_rank, trainer.world_size
            by_group: dict[str, list[dict]] = {g: [] for g in self.groups}
            for ex in examples:
                by_group[str(ex["extra"][self.group_key])].append(ex)
            self._probes = [by_group[g][rank::world] for g in self.groups]
            hidden = text_config(pl_module.model).hidden_size
            self.metric = GroupDynamics(len(self.groups), hidden).to(pl_module.device)
        return self._probes

    # ---- when ----------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._measure(trainer, pl_module)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module)  # the last step, unless measured already (or a finished fit resumed)
        if self.plot and trainer.is_global_zero and self.history:
            path = self.plot if os.path.isabs(self.plot) else os.path.join(trainer.default_root_dir, self.plot)
            plot_history(self.history, path)

    # ---- what ----------------------------------------------------------------------------------------
    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = trainer.global_step
        if self._measured_step == step:
            return
        values = self.measure(trainer, pl_module)
        self._measured_step = step
        rows = [{"step": step, "group": g, **{k: values[k][i] for k in NAMES}, "pairs": int(values["pairs"][i])}
                for i, g in enumerate(self.groups)]
        self.history.extend(rows)
        logged = {f"dynamics/{r['group']}/{k}": r[k] for r in rows for k in NAMES}
        for logger in trainer.loggers:  # loggers write on rank 0 only; every rank holds the same numbers
            logger.log_metrics(logged, step=step)

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, list[float]]:
        """Score the probes with the current policy: NAMES -> one float per group (synced across processes)."""
        from lit_align.data.collate import PreferenceCollator

        probes = self._tokenised(trainer, pl_module)
        model, collate = pl_module.model, PreferenceCollator(trainer.datamodule.pad_token_id)
        params = [p for p in model.parameters() if p.requires_grad]
        self.metric.reset()
        was_training = model.training
        model.eval()
        try:
            for g, examples in enumerate(probes):
                grads = None
                for start in range(0, len(examples), self.batch_size):
                    batch = collate(examples[start:start + self.batch_size])
                    batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
                    losses = self._score(pl_module, g, batch)
                    if self.grad_norm and params:
                        new = torch.autograd.grad(losses.sum(), params, allow_unused=True)
                        grads = new if grads is None else [a if b is None else b if a is None else a + b
                                                           for a, b in zip(grads, new, strict=True)]
                if grads is not None:
                    squares = sum(x.float().pow(2).sum() for x in grads if x is not None)
                    self.metric.update_grad_norm(g, float(torch.as_tensor(squares).sqrt()) / len(examples))
        finally:
            model.train(was_training)
        result = self.metric.compute()  # all-reduces the sums under DDP (every rank gets here at the same step)
        return {k: [float(x) for x in v] for k, v in result.items()}

    def _score(self, pl_module, group: int, batch: dict) -> torch.Tensor:
        """Update the metric with one probe batch; returns the per-pair losses (B,) (with a graph when grad_norm)."""
        ids, mask = batch["input_ids"], batch["attention_mask"]  # (2B, T)
        b = ids.shape[0] // 2
        with torch.no_grad():
            ref_chosen, ref_rejected = pl_module.reference_scores(batch)
        with torch.set_grad_enabled(self.grad_norm):
            hidden = final_hidden_states(pl_module.model, batch)  # (2B, T, H)
            losses, chosen_rewards, rejected_rewards, chosen, rejected = pl_module.pair_losses(
                hidden[:, :-1], batch["labels"][:, 1:], ref_chosen, ref_rejected)
        if self.label_key is None:  # + the chosen sequences, - the rejected ones, at their last token (right-padded)
            last = mask.sum(-1) - 1  # (2B,)
            h = hidden[torch.arange(2 * b, device=ids.device), last]  # (2B, H)
            label = torch.arange(2 * b, device=ids.device) < b  # (2B,)
        else:
            differ = (ids[:b] != ids[b:]) | (mask[:b] != mask[b:])  # (B, T): where the two answers part
            last_shared = differ.int().argmax(-1).clamp(min=1) - 1  # (B,)
            h = hidden[:b][torch.arange(b, device=ids.device), last_shared]  # (B, H)
            label = torch.tensor([bool(x) for x in batch[self.label_key]], device=ids.device)  # (B,)
        self.metric.update(group, h, label, losses, chosen > rejected, chosen_rewards > rejected_rewards,
                           chosen_rewards - rejected_rewards)
        return losses


def plot_history(history: list[dict[str, Any]], path: str,
                 names: tuple[str, ...] = ("accuracy", "loss", "margin", "distinguishability_norm", "grad_norm"),
                 title: str | None = None) -> str:
    """One panel per metric, one line per group, against optimizer steps; written to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(r["group"] for r in history))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for group in groups:
            rows = [r for r in history if r["group"] == group]
            ax.plot([r["step"] for r in rows], [r[name] for r in rows], label=group, marker=".", markersize=3)
        if name == "accuracy":
            ax.axhline(0.8, color="grey", lw=0.8, ls="--")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("optimizer step", fontsize=8)
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
