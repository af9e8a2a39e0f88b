"""lit_align.ops: fused log-prob, sequence log-prob and preference-loss ops (contract: shared/DESIGN.md §3).

Each op has a plain PyTorch reference (`*_reference`), a C++ CPU kernel, a Triton kernel and CUDA kernels,
chosen by `backend="auto"|"torch"|"cpp"|"triton"|"cuda"`. One file per op, named after it:

    token_logprobs.py                logits -> per-token log-probs
    linear_token_logprobs.py         hidden states -> LM head -> per-token log-probs, never the logits
    sequence_logprobs.py             per-token -> per-sequence log-probs (and linear_sequence_logprobs from hidden)
    preference_loss.py               the DPO family / Bradley-Terry on sequence log-probs (formulas: lit_align.losses)
    fused_linear_preference_loss.py  hidden states -> per-pair DPO loss, end to end (+ its _chunked strategy)
    _autograd.py, _library.py        the autograd formulas shared by both registrations; the compiled ops' fakes
"""
from lit_align.ops._dispatch import BACKENDS, resolve_backend
from lit_align.ops._extension import extension_loaded
from lit_align.ops.fused_linear_preference_loss import fused_linear_preference_loss
from lit_align.ops.linear_token_logprobs import linear_token_logprobs, linear_token_logprobs_reference
from lit_align.ops.preference_loss import LOSS_TYPES, preference_loss, preference_loss_reference
from lit_align.ops.sequence_logprobs import linear_sequence_logprobs, sequence_logprobs, sequence_logprobs_reference
from lit_align.ops.token_logprobs import token_logprobs, token_logprobs_reference

if extension_loaded():
    import lit_align.ops._library  # noqa: F401  (fake kernels + autograd, so torch.compile traces the ops)

__all__ = [
    "BACKENDS", "LOSS_TYPES", "extension_loaded", "fused_linear_preference_loss", "linear_sequence_logprobs",
    "linear_token_logprobs", "linear_token_logprobs_reference", "preference_loss", "preference_loss_reference",
    "resolve_backend", "sequence_logprobs", "sequence_logprobs_reference", "token_logprobs",
    "token_logprobs_reference",
]
