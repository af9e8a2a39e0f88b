"""lit_align.models: loading/saving Hugging Face models, hidden states without logits, scalar heads, references."""
from lit_align.models.causal_lm import final_hidden_states, lm_head_parameters, sequence_logprobs, token_logprobs
from lit_align.models.loading import load_causal_lm, load_sequence_classifier, load_tokenizer, resolve_dtype
from lit_align.models.reference import CachedReference, FrozenCopyReference, PeftAdapterReference
from lit_align.models.scalar import RewardEnsemble, sequence_scalar

__all__ = [
    "CachedReference", "FrozenCopyReference", "PeftAdapterReference", "RewardEnsemble", "final_hidden_states",
    "lm_head_parameters", "load_causal_lm", "load_sequence_classifier", "load_tokenizer", "resolve_dtype",
    "sequence_logprobs", "sequence_scalar", "token_logprobs",
]
