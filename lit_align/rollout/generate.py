"""Batched generation from token-id prompts with Hugging Face `generate` (KV cache, left padding).

`generate` is the sampler every recipe shares (evaluation, ReST's Grow step, CORGI sessions, PPO/RLOO
rollouts, CREAM's candidates); `generate_from_rows` encodes dataset rows with the same RowEncoder as
training, so a model is asked exactly the prompt tokens it was trained on.

  * Prompts are left-padded with the tokenizer's pad id (EOS when it has none) under an attention mask,
    batched by length, and the results returned in input order.
  * A response ends at EOS or at the chat template's end-of-turn token (stopping.py); the stop token is
    kept apart (`stop_token_id`), not in `completion_ids`, and scoring (score.py) adds it back.
  * Only the arguments given shape the sampling distribution: the model's generation_config may not slip in
    top-k, repetition penalties or the like (they would bias RL and KL estimates), so those are set neutral.
  * A seed makes sampling reproducible without moving the global RNG (runtime.seeded).
  * Stop strings cut the decoded `text` only; the token ids stay as generated, so log-probs refer to the
    tokens the model actually sampled.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lit_align.data.collate import pad
from lit_align.rollout.progress import track
from lit_align.rollout.runtime import batches_by_length, evaluating, model_device, seeded
from lit_align.rollout.stopping import cut_at_stop_strings
from lit_align.rollout.stopping import stop_token_ids as default_stop_token_ids

# Knobs a checkpoint's generation_config may set, pinned to "off" so that only our arguments count:
# for every decoding, and for sampling (greedy decoding ignores these and HF warns when they are set).
NEUTRAL = {"repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0, "num_beams": 1,
           "num_return_sequences": 1}
NEUTRAL_SAMPLING = {"top_k": 0, "min_p": 0.0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}


@dataclass
class Generation:
    """One generated response.

    completion_ids: generated tokens without padding and without the final stop token.
    text: decoded completion (special tokens skipped), stripped and cut at the first stop string; may be "".
    finished: True when the model emitted a stop token (EOS / end-of-turn), False when max_new_tokens ran out.
    stop_token_id: the stop token that ended it (None when not finished).
    num_tokens: tokens generated, the stop token included when finished (= len(generated_ids)).
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    finished: bool
    stop_token_id: int | None = None
    num_tokens: int = field(init=False)

    def __post_init__(self):
        if self.finished and self.stop_token_id is None:
            raise ValueError("a finished Generation needs the stop_token_id that ended it")
        self.num_tokens = len(self.completion_ids) + int(self.finished)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Generation:
        """Rebuild from `dataclasses.asdict(generation)` (e.g. a line of a samples JSONL file)."""
        return cls(d["prompt_ids"], d["completion_ids"], d["text"], d["finished"], d.get("stop_token_id"))

    @property
    def generated_ids(self) -> list[int]:
        """What the model generated after the prompt: completion_ids plus the stop token when finished."""
        return self.completion_ids + ([self.stop_token_id] if self.finished else [])


def pad_token_id(tokenizer: Any, stops: list[int] | None = None) -> int:
    """The tokenizer's pad id, else the first stop token (padding is masked either way)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return (stops or default_stop_token_ids(tokenizer))[0]


def generate(model, tokenizer, prompt_ids: list[list[int]], *, max_new_tokens: int = 32, do_sample: bool = False,
             temperature: float = 1.0, top_p: float = 1.0, batch_size: int = 64,
             stop_strings: list[str] | str | None = None, stop_token_ids: list[int] | None = None,
             seed: int | None = None, progress: bool | str = False) -> list[Generation]:
    """Generate one response per prompt (greedy, or sampled at `temperature`/`top_p`), in input order.

    `stop_token_ids` overrides the stop tokens found from the tokenizer (EOS + end-of-turn).
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if do_sample and temperature <= 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {temperature}")
    empty = next((i for i, p in enumerate(prompt_ids) if len(p) == 0), None)
    if empty is not None:
        raise ValueError(f"prompt {empty} has no tokens; a causal LM needs at least one token to continue")
    stops = list(stop_token_ids) if stop_token_ids is not None else default_stop_token_ids(tokenizer)
    pad_id = pad_token_id(tokenizer, stops)
    config = _generation_config(max_new_tokens, do_sample, temperature, top_p, stops, pad_id)
    device = model_device(model)
    batches = batches_by_length([len(p) for p in prompt_ids], batch_size)
    out: list[Generation | None] = [None] * len(prompt_ids)
    with evaluating(model), seeded(seed if do_sample else None, device):
        for idx in track(batches, len(batches), progress, "generating"):
            prompts = [prompt_ids[i] for i in idx]
            input_ids = pad(prompts, pad_id, left=True).to(device)  # (B, T)
            attention_mask = pad([[1] * len(p) for p in prompts], 0, left=True).to(device)  # (B, T)
            sequences = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
            new_tokens = sequences[:, input_ids.shape[1]:].tolist()  # (B, <= max_new_tokens)
            for i, tokens in zip(idx, new_tokens, strict=True):
                out[i] = _generation(prompt_ids[i], tokens, stops, tokenizer, stop_strings)
    return out  # type: ignore[return-value]


def _generation_config(max_new_tokens: int, do_sample: bool, temperature: float, top_p: float, stops: list[int],
                       pad_id: int):
    from transformers import GenerationConfig

    sampling = {"temperature": temperature, "top_p": top_p, **NEUTRAL_SAMPLING} if do_sample else {}
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=do_sample, use_cache=True, eos_token_id=stops,
                            pad_token_id=pad_id, **NEUTRAL, **sampling)


def _generation(prompt: list[int], tokens: list[int], stops: list[int], tokenizer: Any,
                stop_strings: list[str] | str | None) -> Generation:
    """Cut the new tokens at the first stop token (what follows it is padding) and decode."""
    end = next((k for k, t in enumerate(tokens) if t in stops), None)
    completion = tokens if end is None else tokens[:end]
    text = tokenizer.decode(completion, skip_special_tokens=True).strip()
    return Generation(list(prompt), completion, cut_at_stop_strings(text, stop_strings).strip(),
                      finished=end is not None, stop_token_id=None if end is None else tokens[end])


def encode_prompts(tokenizer: Any, rows: list[dict], encoder: Any = None) -> list[list[int]]:
    """The prompt tokens of each row's "prompt" (a string or a message list), exactly as in training.

    `encoder` is a lit_align.data.tokenize.RowEncoder (e.g. the data module's, with its chat-template
    setting); by default one is built for `tokenizer` (chat template when it has one).
    """
    from lit_align.data.tokenize import RowEncoder

    encoder = encoder if encoder is not None else RowEncoder(tokenizer)
    prompts = []
    for i, row in enumerate(rows):
        where = row.get("_where", f"row {i}")
        if "prompt" not in row:
            raise ValueError(f"{where}: missing field 'prompt' (found {', '.join(map(repr, row)) or 'none'})")
        prompts.append(encoder.encode_prompt(row["prompt"], where))
    return prompts


def generate_from_rows(model, tokenizer, rows: list[dict], encoder: Any = None, **kwargs: Any) -> list[Generation]:
    """`generate` on the rows' "prompt" column, encoded as in training (see encode_prompts)."""
    return generate(model, tokenizer, encode_prompts(tokenizer, rows, encoder), **kwargs)


__all__ = ["Generation", "encode_prompts", "generate", "generate_from_rows", "pad_token_id"]
