"""What every training recipe shares: loading the HF model by path, optional LoRA, AdamW with warmup + cosine.

A LoRA fit's checkpoint holds only what training changes (the adapters, any trainable head, the buffers), not the
frozen base weights, which `configure_model` rebuilds from `model` on loading; a digest of them (FROZEN_BASE) tells
a checkpoint loaded against another base apart. Without LoRA, or with sharded parameters (FSDP), the checkpoint
holds the whole state_dict as Lightning writes it.

Recipes (sft.py, reward.py, discriminator.py, dpo.py) subclass AlignModule and only say how a batch becomes a
loss. Models are built in `configure_model` (Lightning's hook, so FSDP can shard them as they are created).
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Literal

import lightning.pytorch as pl
import torch

from lit_align.errors import UserError
from lit_align.models.loading import check_vocab, load_causal_lm
from lit_align.models.reference import tensors_digest

# Lightning warnings that every lit_align fit would print although nothing is wrong, silenced by their exact text:
# - the frozen reference (FrozenCopyReference) stays in eval mode by design (no dropout, no grad), which Lightning
#   reports as "module(s) in eval mode at the start of training";
# - a data module without a val/test file returns an empty list as that loader (Lightning then skips the split),
#   which Lightning reports as "Total length of `list` across ranks is zero".
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")
warnings.filterwarnings("ignore", message=r"Total length of `list` across ranks is zero")


class AlignModule(pl.LightningModule):
    """Base LightningModule.

    Args:
        model: HF model path or hub id (AutoModelForCausalLM.from_pretrained).
        dtype: parameter dtype of the loaded model ("float32", "bfloat16", ...).
        lr: peak learning rate of AdamW.
        weight_decay: AdamW weight decay.
        betas: AdamW's (beta1, beta2); a lower beta2 (0.95) forgets old gradient scales sooner.
        warmup_ratio: share of the optimizer steps spent warming the learning rate up linearly from 0.
        scheduler: "cosine" (decay to min_lr_ratio * lr), "linear" or "constant" after warm-up.
        min_lr_ratio: the final learning rate of the cosine/linear schedule, as a share of lr.
        lora: PEFT LoRA settings, e.g. {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]};
            None trains every parameter.
        gradient_checkpointing: recompute activations in the backward to save memory.
        trust_remote_code: passed to from_pretrained; keep False unless you trust the repository.
        backend: lit_align.ops backend ("auto", "torch", "cpp", "triton", "cuda").
        batch_invariant: run the fused ops in their batch-invariant mode: a row's log-probs do not depend on the
            other rows of the batch, given its hidden states (the LM head and log-softmax only; the transformer's
            own matmuls and attention still vary with the batch). Not with backend="torch".
        vocab_size: the tokenizer's size (linked from the data module); the embeddings are checked against it.
        pad_token_id: the tokenizer's pad id (linked from the data module).
    """

    def __init__(self, model: str, dtype: str = "float32", lr: float = 1e-3, weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.999), warmup_ratio: float = 0.05,
                 scheduler: Literal["cosine", "linear", "constant"] = "cosine",
                 min_lr_ratio: float = 0.1, lora: dict[str, Any] | None = None, gradient_checkpointing: bool = False,
                 trust_remote_code: bool = False, backend: str = "auto", batch_invariant: bool = False,
                 vocab_size: int | None = None, pad_token_id: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.model = None

    # ---- models ---------------------------------------------------------------------------------------
    def load_model(self):
        """The trained model; recipes with another model class (reward models) override this."""
        return load_causal_lm(self.hparams.model, dtype=self.hparams.dtype,
                              trust_remote_code=self.hparams.trust_remote_code)

    def configure_model(self) -> None:
        if self.model is not None:
            return
        model = self.load_model().train()  # from_pretrained returns eval mode; Lightning keeps modes as found
        self.check_vocab(model)
        if self.hparams.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if self.hparams.lora:
            model = apply_lora(model, self.hparams.lora)
        self.model = model
        self.build_extra_models()

    def build_extra_models(self) -> None:
        """Hook for models derived from the loaded policy (e.g. the frozen DPO reference)."""

    def check_vocab(self, model) -> None:
        check_vocab(model, self.hparams.vocab_size, self.hparams.model)

    # ---- optimisation -----------------------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.hparams.lr, betas=tuple(self.hparams.betas),
                                      weight_decay=self.hparams.weight_decay)
        total = self.total_steps()
        schedule = lr_schedule(total, self.hparams.warmup_ratio, self.hparams.scheduler, self.hparams.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def total_steps(self) -> int:
        """Optimizer steps of the whole fit (the length of the learning-rate schedule)."""
        return max(1, int(self.trainer.estimated_stepping_batches))

    # ---- checkpoints and export --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lit_align_class"] = f"{type(self).__module__}.{type(self).__qualname__}"
        if self.hparams.lora and not sharded(self):
            drop_frozen_base(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        restore_frozen_base(self, checkpoint)

    def export(self, out_dir: str, tokenizer=None) -> list[str]:
        """save_pretrained the trained model (LoRA merged) and its tokenizer: a folder plain transformers loads."""
        model = self.model
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model.save_pretrained(out_dir)
        save_tokenizer(tokenizer, self.hparams.model, out_dir)
        return [out_dir]

    # ---- steps: a recipe defines step(); training and validation run it with their own prefix ----------------
    def step(self, batch, prefix: str) -> torch.Tensor:
        """The loss of a batch, its metrics logged under `prefix` ("" in training, "val/" in validation)."""
        raise NotImplementedError(f"{type(self).__name__} defines no step()")

    def training_step(self, batch, batch_idx):
        return self.step(batch, "")

    def validation_step(self, batch, batch_idx):
        self.step(batch, "val/")

    def log_scalars(self, values: dict[str, torch.Tensor], batch_size: int, prefix: str = "") -> None:
        on_step = self.training
        for name, value in values.items():
            self.log(prefix + name, value, on_step=on_step, on_epoch=not on_step, prog_bar=name == "loss",
                     batch_size=batch_size, sync_dist=not on_step)

    def log_metrics(self, metrics, batch_size: int) -> None:
        """Log torchmetrics objects (e.g. PreferenceMetrics): per step in training, per epoch otherwise."""
        for name, metric in metrics.items():
            self.log(name, metric, on_step=self.training, on_epoch=not self.training, batch_size=batch_size)


def lr_schedule(total: int, warmup_ratio: float, kind: str, min_ratio: float):
    """step -> learning-rate multiplier: linear warm-up, then cosine/linear decay to min_ratio, or constant."""
    warmup = int(total * warmup_ratio)

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        decay = 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else 1 - progress
        return min_ratio + (1 - min_ratio) * decay

    return multiplier


def save_tokenizer(tokenizer, model_path: str, out_dir: str) -> None:
    """Save `tokenizer`, or the one stored with the model being trained, next to an exported model."""
    if tokenizer is None:
        from lit_align.models.loading import load_tokenizer
        try:
            tokenizer = load_tokenizer(model_path)
        except (OSError, ValueError):
            return  # the model folder has no tokenizer: `lit-align export --tokenizer PATH` supplies one
    tokenizer.save_pretrained(out_dir)


def apply_lora(model, settings: dict[str, Any]):
    try:
        import peft
    except ImportError as error:  # pragma: no cover - peft is a dev dependency
        raise ImportError("lora needs the peft package: pip install 'lit_align[peft]'") from error
    settings = dict(settings)  # the caller's dict (the saved hyper-parameters) stays whole
    config = peft.LoraConfig(task_type=settings.pop("task_type", "CAUSAL_LM"), **settings)
    return peft.get_peft_model(model, config)


FROZEN_BASE = "lit_align_frozen_base"  # checkpoint entry of a LoRA fit: {"model": path, "digest": str, "keys": int}


def sharded(module: pl.LightningModule) -> bool:
    """Whether the module's parameters are sharded over the ranks (FSDP, DeepSpeed, ModelParallel): each rank then
    holds a slice of every weight, so neither the frozen keys nor the digest are those of the whole model, and
    such fits keep Lightning's full (sharded) checkpoints."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    trainer = module._trainer
    return trainer is not None and isinstance(trainer.strategy, (FSDPStrategy, DeepSpeedStrategy,
                                                                 ModelParallelStrategy))


def frozen_keys(module: torch.nn.Module) -> set[str]:
    """state_dict keys of `module`'s frozen parameters (requires_grad False), tied names included."""
    return {name for name, param in module.named_parameters(remove_duplicate=False) if not param.requires_grad}


def frozen_base_digest(model: torch.nn.Module) -> str:
    """weights_digest of the trained model's frozen parameters, named as in the model without PEFT's wrapping
    (`.base_layer`), so the digest names the base weights whatever the LoRA targets. PEFT's `original_module`
    copies (of heads in modules_to_save, e.g. SEQ_CLS's score head) are left out: the trained copy replaces them,
    and a fresh head's is random, drawn anew by each process that builds the model (export)."""
    return tensors_digest((name.replace(".base_layer", ""), param) for name, param in model.named_parameters()
                          if not param.requires_grad and ".original_module." not in name)


def drop_frozen_base(module: AlignModule, checkpoint: dict) -> None:
    """Leave the frozen parameters out of a LoRA checkpoint's state_dict; record the base they came from."""
    frozen = frozen_keys(module)
    state = checkpoint["state_dict"]
    checkpoint["state_dict"] = type(state)((k, v) for k, v in state.items() if k not in frozen)
    checkpoint[FROZEN_BASE] = {"model": module.hparams.model, "digest": frozen_base_digest(module.model),
                               "keys": len(state) - len(checkpoint["state_dict"])}


def restore_frozen_base(module: AlignModule, checkpoint: dict, source: str | None = None) -> None:
    """Complete a LoRA checkpoint's state_dict with the module's own frozen weights (rebuilt from `model` by
    configure_model), after checking that they are those the checkpoint was trained on; then a strict
    load_state_dict loads the saved subset. A no-op on a full checkpoint, and on one already completed."""
    base = checkpoint.get(FROZEN_BASE)
    if base is None:
        return
    source = source or getattr(module._trainer, "ckpt_path", None) or "the checkpoint"
    if sharded(module):
        raise UserError(f"{source}: a LoRA checkpoint without its frozen base, written without sharding, cannot "
                        "be resumed under a sharded strategy (FSDP, DeepSpeed); resume it as it was written")
    if module.model is None:
        module.configure_model()
    digest = frozen_base_digest(module.model)
    if digest != base["digest"]:
        raise UserError(
            f"{source}: a LoRA checkpoint trained on the base model {base['model']!r} (frozen weights "
            f"{base['digest']}), but the base model here, {module.hparams.model!r}, has frozen weights {digest}: "
            "load it with the model (and dtype, LoRA settings) it was trained with")
    state, own = checkpoint["state_dict"], module.state_dict()
    missing = own.keys() - state.keys()
    trained = sorted(missing - frozen_keys(module))
    if trained:
        raise UserError(f"{source}: the LoRA checkpoint lacks {len(trained)} entries that are not frozen base "
                        f"weights, e.g. {trained[:3]}: it was written by another recipe or other settings")
    state.update((k, own[k]) for k in missing)
