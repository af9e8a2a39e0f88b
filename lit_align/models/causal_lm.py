"""A causal LM's log-probs of a batch through the fused ops: final hidden states + LM-head parameters, no logits.

Calling `model(...)` would compute (B, T, V) logits; the fused ops want the decoder's last hidden states and
the LM head's weight/bias instead. Works through PEFT wrappers (their LoRA layers sit inside the decoder).
token_logprobs(model, batch) and sequence_logprobs(model, batch) are the model-level entries of the ops of the
same names: every recipe, reference and scorer gets its log-probs from them.
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


def token_logprobs(model, batch: dict, *, hidden: torch.Tensor | None = None, temperature: float = 1.0,
                   backend: str = "auto", batch_invariant: bool = False) -> torch.Tensor:
    """Per-token log p(label_t | tokens < t) (B, T-1) float32 of a lit_align batch, through the fused LM head
    (lit_align.ops.linear_token_logprobs): never the (B, T, V) logits; 0 where the label is ignored.

    batch["labels"] (B, T) are aligned with input_ids (HF convention, -100 on prompt and padding); the log-prob of
    position t scores labels[t + 1]. hidden: the model's final hidden states (B, T, H) when the caller has them
    already (a value head reads them too); computed here otherwise. batch_invariant: a row's log-probs do not depend
    on the other rows, given its hidden states (the LM head and log-softmax only; see lit_align.ops).
    """
    from lit_align.ops import linear_token_logprobs

    if hidden is None:
        hidden = final_hidden_states(model, batch)
    weight, bias = lm_head_parameters(model)
    return linear_token_logprobs(hidden[:, :-1], weight, batch["labels"][:, 1:], bias=bias, temperature=temperature,
                                 backend=backend, batch_invariant=batch_invariant)  # (B, T-1)


def sequence_logprobs(model, batch: dict, *, average_log_prob: bool = False, temperature: float = 1.0,
                      backend: str = "auto", batch_invariant: bool = False) -> torch.Tensor:
    """(B,) sum (or mean) of the labelled tokens' log-probs of a lit_align batch: the one way lit_align scores
    sequences with a model (lit_align.ops.linear_sequence_logprobs on the final hidden states)."""
    from lit_align.ops import linear_sequence_logprobs

    weight, bias = lm_head_parameters(model)
    return linear_sequence_logprobs(final_hidden_states(model, batch)[:, :-1], weight, batch["labels"][:, 1:],
                                    bias=bias, ignore_index=IGNORE_INDEX, average_log_prob=average_log_prob,
                                    temperature=temperature, backend=backend, batch_invariant=batch_invariant)


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every dropout probability to 0 (nn.Dropout and HF attention dropout), as on-policy RL needs: the
    log-probs of the sampled tokens must not change between the rollout and the update by chance alone."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0
