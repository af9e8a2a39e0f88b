"""A callback for the multi-process tests: saves each rank's final weights and its per-step losses."""
import os

import lightning.pytorch as pl
import torch


class RecordReplica(pl.Callback):
    def __init__(self, out_dir: str):
        self.out_dir, self.losses, self.ids = out_dir, [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))
        self.ids.append(list(batch["ids"]))

    def on_fit_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().flatten().double() for p in pl_module.model.parameters()])
        os.makedirs(self.out_dir, exist_ok=True)
        torch.save({"weights": flat, "losses": self.losses, "ids": self.ids, "world_size": trainer.world_size},
                   os.path.join(self.out_dir, f"rank{trainer.global_rank}.pt"))


class RecordDiscriminator(pl.Callback):
    """Saves each rank's RLGAF discriminator weights (it lives outside the DDP wrapper) and its step count."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_fit_end(self, trainer, pl_module):
        flat = torch.cat([p.detach().flatten().double() for p in pl_module.game.model.parameters()])
        torch.save({"weights": flat, "steps": pl_module.game.total_steps},
                   os.path.join(self.out_dir, f"disc{trainer.global_rank}.pt"))
