"""lit_align.ops: fused log-prob, sequence-score and preference-loss ops (contract: shared/DESIGN.md §3).

Each op has a plain PyTorch reference (`*_reference`), a C++ CPU kernel, a Triton kernel and CUDA kernels,
chosen by `backend="auto"|"torch"|"cpp"|"triton"|"cuda"`.
"""
from lit_align.ops._dispatch import BACKENDS, resolve_backend
from lit_align.ops._extension import extension_loaded
from lit_align.ops.fused_preference import fused_linear_preference_loss, sequence_scores
from lit_align.ops.linear_token_logprobs import linear_token_logprobs, linear_token_logprobs_reference
from lit_align.ops.preference_loss import LOSS_TYPES, preference_loss, preference_loss_reference
from lit_align.ops.sequence_logprobs import segment_logprobs_reference, sequence_logprobs
from lit_align.ops.token_logprobs import token_logprobs, token_logprobs_reference

if extension_loaded():
    import lit_align.ops._library  # noqa: F401  (fake kernels + autograd, so torch.compile traces the ops)

__all__ = [
    "BACKENDS", "LOSS_TYPES", "extension_loaded", "fused_linear_preference_loss", "linear_token_logprobs",
    "linear_token_logprobs_reference", "preference_loss", "preference_loss_reference", "resolve_backend",
    "segment_logprobs_reference", "sequence_logprobs", "sequence_scores", "token_logprobs",
    "token_logprobs_reference",
]
