"""Preference metrics under TRL's names: rewards/chosen, rewards/rejected, rewards/margins, rewards/accuracies,
logps/chosen, logps/rejected. Each is a torchmetrics MeanMetric, so Lightning syncs them across ranks and
resets them per epoch when they are logged as objects."""
from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric

NAMES = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
         "logps/rejected")


class PreferenceMetrics(nn.Module):
    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix
        # ModuleDict keys may not contain "/": store with "__" and log with "/".
        self.means = nn.ModuleDict({n.replace("/", "__"): MeanMetric() for n in NAMES})

    def update(self, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
               chosen_logps: torch.Tensor | None = None, rejected_logps: torch.Tensor | None = None) -> None:
        values = {"rewards/chosen": chosen_rewards, "rewards/rejected": rejected_rewards,
                  "rewards/margins": chosen_rewards - rejected_rewards,
                  "rewards/accuracies": (chosen_rewards > rejected_rewards).float(),
                  "logps/chosen": chosen_logps, "logps/rejected": rejected_logps}
        for name, value in values.items():
            if value is not None:
                self.means[name.replace("/", "__")](value.detach().float())  # forward: batch value + running mean

    def items(self):
        """(name, metric) pairs for LightningModule.log: `for k, m in metrics.items(): self.log(k, m)`."""
        for key, metric in self.means.items():
            if metric.update_count:
                yield self.prefix + key.replace("__", "/"), metric
