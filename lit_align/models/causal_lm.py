"""Final hidden states and LM-head parameters of a causal LM, so the fused ops can skip the logits.

Calling `model(...)` would compute (B, T, V) logits; the fused ops want the decoder's last hidden states and
the LM head's weight/bias instead. Works through PEFT wrappers (their LoRA layers sit inside the decoder).
"""
from __future__ import annotations

import torch

# Configs whose logits are not a plain linear map of the hidden states: the fused path would be wrong for them.
UNSUPPORTED_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier")


def lm_head_parameters(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight (V, H), bias (V,) or None) of the output embedding; refuses models that rescale their logits."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for name in UNSUPPORTED_LOGIT_TRANSFORMS:
        if getattr(config, name, None) not in (None, 1, 1.0):
            raise ValueError(f"{type(model).__name__} applies {name}={getattr(config, name)} to its logits; the fused "
                             "log-prob path supports plain linear LM heads only")
    head = model.get_output_embeddings()
    if head is None or not hasattr(head, "weight"):
        raise ValueError(f"{type(model).__name__} has no linear output embedding (is it a causal LM?)")
    return head.weight, getattr(head, "bias", None)


def final_hidden_states(model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        position_ids: torch.Tensor | None = None) -> torch.Tensor:
    """The decoder's last hidden states (B, T, H), without computing logits."""
    decoder = model.get_decoder()
    out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state  # (B, T, H)


def sequence_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, *,
                   average_log_prob: bool = False, temperature: float = 1.0, backend: str = "auto") -> torch.Tensor:
    """(B,) sum (or mean) of log p(label_t | tokens < t) over the labelled tokens, through the fused path.

    labels (B, T) are aligned with input_ids (HF convention, -100 on prompt and padding); shifted here.
    """
    from lit_align.ops import sequence_scores

    hidden = final_hidden_states(model, input_ids, attention_mask)[:, :-1]  # (B, T-1, H)
    weight, bias = lm_head_parameters(model)
    return sequence_scores(hidden, weight, labels[:, 1:], bias=bias, average_log_prob=average_log_prob,
                           temperature=temperature, backend=backend)
