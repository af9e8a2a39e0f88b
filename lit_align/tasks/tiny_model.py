"""The tiny Llama-style policy of the demo and the tests: ~0.6M parameters, random init, saved by path.

No weights can be downloaded, so recipes and tests start from this model: a `LlamaConfig` sized to the
suite tokenizer (its vocabulary and bos/eos/pad ids), initialised from a seed, written with
`save_pretrained` (safetensors) beside the tokenizer and a generation config that stops at `<|eos|>`.
`AutoModelForCausalLM.from_pretrained(path)` and `AutoTokenizer.from_pretrained(path)` load it like any
Hugging Face checkpoint. At the defaults (hidden 128, 2 layers, 4 heads, MLP 512, tied embeddings,
vocabulary 1024) it has about 0.65M parameters: small enough to learn the suite in a minute on 2 CPU cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase


def tiny_llama_config(
    tokenizer: PreTrainedTokenizerBase,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    intermediate_size: int = 512,
    max_position_embeddings: int = 256,
    tie_word_embeddings: bool = True,
) -> LlamaConfig:
    """A Llama config whose vocabulary and special-token ids match `tokenizer`."""
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_tiny_model(out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike, *, seed: int = 0,
                     **shape: int | bool) -> LlamaForCausalLM:
    """Build a randomly initialised tiny Llama for the tokenizer at `tokenizer_dir` and save both to `out_dir`;
    `shape` overrides tiny_llama_config's sizes (hidden_size, num_layers, ...)."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = tiny_llama_config(tokenizer, **shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=32,
    )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return model
