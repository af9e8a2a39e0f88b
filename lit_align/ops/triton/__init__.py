"""Triton kernels for lit_align.ops (the backend="triton" path), one file per op family.

    token_logprobs.py         online-logsumexp over the vocabulary, gradient from the saved (row max, log-sum)
    linear_token_logprobs.py  LM head + token log-probs without materialising logits (Cut Cross-Entropy style)
    sequence_logprobs.py      per-sequence sums/means of token log-probs (packed or padded), deterministic
    preference_loss.py        the DPO family and Bradley-Terry, one elementwise kernel per loss type
    _common.py                small jit helpers shared by the files above

Each file reads kernel -> launcher -> registration (torch.library.triton_op, so that torch.compile traces the
kernels, with the autograd formula the compiled op uses too: lit_align/ops/_autograd.py). Nothing here is imported
by `import lit_align.ops`: the public functions import these modules only when backend="triton" runs, so lit_align
works without triton installed.
On CPU tensors the kernels run under the Triton interpreter (TRITON_INTERPRET=1 set before this import).
"""
