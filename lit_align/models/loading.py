"""Loading Hugging Face models and tokenizers by local path or hub id, the way users expect.

`from_pretrained(path_or_id, dtype=...)` with trust_remote_code off unless a config turns it on. Nothing is
downloaded in tests: they save tiny models to folders and load them back by path through this same code.
"""
from __future__ import annotations

import os

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def _check_source(path: str) -> None:
    looks_local = path.startswith((".", "/", "~")) or os.sep in path.strip("/").split("/", 1)[-1]
    if looks_local and not os.path.isdir(os.path.expanduser(path)):
        raise FileNotFoundError(f"model path {path!r} does not exist (build the bundled model with "
                                "`lit-align suite --out DIR`, or pass a hub id)")


def load_tokenizer(path: str, *, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    _check_source(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.eos_token_id is None and tokenizer.sep_token_id is not None:
        tokenizer.eos_token = tokenizer.sep_token  # an encoder (BERT, MiniLM): [SEP] ends a scored text
    if tokenizer.pad_token_id is None:  # causal LMs often ship without one; padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(path: str, *, dtype: str | torch.dtype | None = "float32", trust_remote_code: bool = False,
                   attn_implementation: str | None = None):
    """AutoModelForCausalLM.from_pretrained(path, dtype=...)."""
    from transformers import AutoModelForCausalLM

    _check_source(path)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return AutoModelForCausalLM.from_pretrained(path, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code,
                                                **kwargs)


def load_sequence_classifier(path: str, *, dtype: str | torch.dtype | None = "float32",
                             trust_remote_code: bool = False, pad_token_id: int | None = None):
    """A scalar-output model (reward model, discriminator): AutoModelForSequenceClassification, num_labels=1.

    A causal-LM checkpoint gets a fresh score head on its backbone; an encoder (BERT, MiniLM) its pooler + head.
    The result saves with save_pretrained and loads back with plain transformers.
    """
    from transformers import AutoModelForSequenceClassification

    _check_source(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=resolve_dtype(dtype),
                                                               trust_remote_code=trust_remote_code)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    if model.config.pad_token_id is None:
        raise ValueError(f"{path}: the sequence classifier needs config.pad_token_id to find each sequence's last "
                         "token; pass pad_token_id (the tokenizer's)")
    return model
