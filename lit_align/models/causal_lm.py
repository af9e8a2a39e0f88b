"""Final hidden states and LM-head parameters of a causal LM, so the fused ops can skip the logits.

Calling `model(...)` would compute (B, T, V) logits; the fused ops want the decoder's last hidden states and
the LM head's weight/bias instead. Works through PEFT wrappers (their LoRA layers sit inside the decoder).
"""
from __future__ import annotations

import torch

from lit_align.data.tokenize import IGNORE_INDEX

# Configs whose logits are not a plain linear map of the hidden states: the fused path would be wrong for them.
UNSUPPORTED_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")


def text_config(model):
    """The config of a model's text decoder (multimodal configs nest it: get_text_config), else its config."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def lm_head_parameters(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight (V, H), bias (V,) or None) of the output embedding; refuses models that rescale their logits."""
    config = text_config(model)
    for name in UNSUPPORTED_LOGIT_TRANSFORMS:
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise ValueError(f"{type(model).__name__} applies {name}={getattr(config, name)} to its logits; the fused "
                             "log-prob path supports plain linear LM heads only")
    head = model.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise ValueError(f"{type(model).__name__} has no linear output embedding (is it a causal LM?)")
    return head.weight, getattr(head, "bias", None)


def final_hidden_states(model, batch: dict) -> torch.Tensor:
    """The decoder's last hidden states (B, T, H) for a lit_align batch, without computing logits."""
    from lit_align.data.collate import model_inputs

    inputs = model_inputs(batch, dtype=model.dtype)  # input_ids, attention_mask, position_ids, use_cache=False
    return model.get_decoder()(**inputs).last_hidden_state  # (B, T, H)


def shifted_logps(model, batch: dict, *, temperature: float = 1.0, backend: str = "auto"):
    """Per-token log p(label_t | tokens < t): ((B, T-1) float32, labels (B, T-1)) through the fused LM head.

    batch["labels"] (B, T) are aligned with input_ids (HF convention, -100 on prompt and padding).
    """
    from lit_align.ops import linear_token_logprobs

    hidden = final_hidden_states(model, batch)[:, :-1]  # (B, T-1, H)
    labels = batch["labels"][:, 1:]  # (B, T-1)
    weight, bias = lm_head_parameters(model)
    return linear_token_logprobs(hidden, weight, labels, bias=bias, temperature=temperature, backend=backend), labels


def sequence_logps(model, batch: dict, *, average_log_prob: bool = False, temperature: float = 1.0,
                   backend: str = "auto") -> torch.Tensor:
    """(B,) sum (or mean) of the labelled tokens' log-probs."""
    from lit_align.ops import sequence_logprobs

    token_logp, labels = shifted_logps(model, batch, temperature=temperature, backend=backend)
    return sequence_logprobs(token_logp, mask=labels != IGNORE_INDEX, reduction="mean" if average_log_prob else "sum",
                             backend=backend)


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every dropout probability to 0 (nn.Dropout and HF attention dropout), as on-policy RL needs: the
    log-probs of the sampled tokens must not change between the rollout and the update by chance alone."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
