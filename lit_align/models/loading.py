"""Loading Hugging Face models and tokenizers by local path or hub id, the way users expect.

`from_pretrained(path_or_id, dtype=...)` with trust_remote_code off unless a config turns it on. Nothing is
downloaded in tests: they save tiny models to folders and load them back by path through this same code.

What users get wrong here is reported as a one-line UserError (lit_align.errors), not a traceback: a local path
that does not exist, a folder or hub id that from_pretrained cannot load, a tokenizer without an EOS token
(a missing pad token falls back to EOS, and says so), a model whose embeddings are fewer than the tokenizer's
tokens (ids would index past the embedding table: an IndexError on CPU, a device-side assert on GPU).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from lit_align.errors import MissingFileError, UserError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16, "float64": torch.float64}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UserError(f"dtype={dtype!r}; expected one of {sorted(DTYPES)}")
    return DTYPES[dtype]


def check_source(path: str, what: str = "model") -> None:
    """Refuse an empty path, and a local-looking path that is not a folder (a hub id passes), naming `what`."""
    if not isinstance(path, str) or not path.strip():
        raise UserError(f"{what} path is {path!r}; expected a folder or a hub id")
    looks_local = path.startswith((".", "/", "~")) or os.sep in path.strip("/").split("/", 1)[-1]
    if looks_local and not os.path.isdir(os.path.expanduser(path)):
        raise MissingFileError(f"{what} path {path!r} does not exist (build the bundled model with "
                               "`lit-align suite --out DIR`, or pass a hub id)")


def _from_pretrained(what: str, path: str, load: Callable[[], Any]) -> Any:
    """load(), with from_pretrained's "cannot find or read that" errors as one-line UserErrors naming `path`."""
    check_source(path, what)
    try:
        return load()
    except (OSError, ValueError) as error:  # not found offline, no config.json, unknown model type, no tokenizer
        message = " ".join(str(error).split())
        raise UserError(f"cannot load the {what} {path!r}: {message}") from error


def load_tokenizer(path: str, *, trust_remote_code: bool = False):
    """AutoTokenizer; an encoder's [SEP] serves as EOS, a missing pad token falls back to EOS (logged).

    A tokenizer with neither an EOS nor a SEP token is refused: every completion ends with EOS.
    """
    from transformers import AutoTokenizer

    tokenizer = _from_pretrained("tokenizer", path, lambda: AutoTokenizer.from_pretrained(
        path, trust_remote_code=trust_remote_code))
    if tokenizer.eos_token_id is None and tokenizer.sep_token_id is not None:
        tokenizer.eos_token = tokenizer.sep_token  # an encoder (BERT, MiniLM): [SEP] ends a scored text
    if tokenizer.eos_token_id is None:
        raise UserError(f"the tokenizer {path!r} has no eos_token (nor a sep_token), and every completion needs one "
                        "to end; set eos_token in its tokenizer_config.json")
    if tokenizer.pad_token_id is None:  # causal LMs often ship without one; padding is masked out anyway
        from lightning.pytorch.utilities import rank_zero_info

        tokenizer.pad_token = tokenizer.eos_token
        rank_zero_info(f"tokenizer {path!r} has no pad token; padding with eos {tokenizer.eos_token!r}")
    return tokenizer


def check_vocab(model: torch.nn.Module, vocab_size: int | None, path: str) -> None:
    """Refuse a model with fewer embedding rows than the tokenizer has tokens (len(tokenizer))."""
    rows = model.get_input_embeddings().weight.shape[0]
    if vocab_size is not None and vocab_size > rows:
        raise UserError(f"the tokenizer has {vocab_size} tokens but the model {path!r} embeds only {rows}: token ids "
                        "would fall outside its vocabulary; use the model's own tokenizer, or resize the model's "
                        "embeddings (model.resize_token_embeddings(len(tokenizer))) and save it")


def load_causal_lm(path: str, *, dtype: str | torch.dtype | None = "float32", trust_remote_code: bool = False,
                   attn_implementation: str | None = None, vocab_size: int | None = None):
    """AutoModelForCausalLM.from_pretrained(path, dtype=...); `vocab_size` (len(tokenizer)) is checked against it."""
    from transformers import AutoModelForCausalLM

    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = _from_pretrained("model", path, lambda: AutoModelForCausalLM.from_pretrained(
        path, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code, **kwargs))
    check_vocab(model, vocab_size, path)
    return model


def load_sequence_classifier(path: str, *, dtype: str | torch.dtype | None = "float32",
                             trust_remote_code: bool = False, pad_token_id: int | None = None,
                             vocab_size: int | None = None):
    """A scalar-output model (reward model, discriminator): AutoModelForSequenceClassification, num_labels=1.

    A causal-LM checkpoint gets a fresh score head on its backbone; an encoder (BERT, MiniLM) its pooler + head.
    The result saves with save_pretrained and loads back with plain transformers.
    """
    from transformers import AutoModelForSequenceClassification

    model = _from_pretrained("model", path, lambda: AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, dtype=resolve_dtype(dtype), trust_remote_code=trust_remote_code))
    check_vocab(model, vocab_size, path)
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    if model.config.pad_token_id is None:
        raise UserError(f"{path}: the sequence classifier needs config.pad_token_id to find each sequence's last "
                        "token; pass pad_token_id (the tokenizer's)")
    return model
