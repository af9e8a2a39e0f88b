"""Where a generated response ends: the stop tokens (EOS and the chat template's end-of-turn token) and
the stop strings that cut the decoded text.

Instruct models often end an assistant turn with a token other than the tokenizer's EOS (ChatML's
`<|im_end|>` with EOS `<|endoftext|>`, Llama 3's `<|eot_id|>`, Gemma's `<end_of_turn>`). Name lists go stale,
so the end-of-turn token is found from the template itself: render a conversation whose assistant message
is a probe string and read the first special token the template writes after it. For a template that ends
the turn with EOS (Mistral, the bundled suite tokenizer) that is EOS again and nothing is added.
The model's generation_config.eos_token_id is not consulted (the tokenizer and its template say where a
turn ends); `generate(..., stop_token_ids=[...])` replaces the stop tokens where more are needed.
"""
from __future__ import annotations

from typing import Any

from lit_align.errors import UserError

_PROBE = "lit_align_end_of_turn_probe"


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids of the tokenizer's special tokens (named ones and added tokens marked special)."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return ids | {i for i, token in added.items() if getattr(token, "special", False)}


def end_of_turn_token_id(tokenizer: Any) -> int | None:
    """The first special token the chat template writes after an assistant message, or None.

    None when the tokenizer has no template, the template fails on a plain user/assistant exchange, or it
    closes the turn with ordinary text only.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _PROBE}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception:  # noqa: BLE001 - templates raise anything (jinja errors, raise_exception(...))
        return None
    at = text.rfind(_PROBE)
    if at < 0:
        return None
    suffix = text[at + len(_PROBE):]
    specials = special_token_ids(tokenizer)
    ids = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    return next((i for i in ids if i in specials), None)


def stop_token_ids(tokenizer: Any) -> list[int]:
    """EOS, then the template's end-of-turn token when it is a different one."""
    stops = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    end_of_turn = end_of_turn_token_id(tokenizer)
    if end_of_turn is not None and end_of_turn not in stops:
        stops.append(end_of_turn)
    if not stops:
        raise UserError("the tokenizer has no eos_token and its chat template no end-of-turn token; "
                        "pass stop_token_ids to say where a response ends")
    return stops


def cut_at_stop_strings(text: str, stop_strings: list[str] | tuple[str, ...] | str | None) -> str:
    """`text` up to the earliest occurrence of any stop string (the whole text when none occurs)."""
    if not stop_strings:
        return text
    if isinstance(stop_strings, str):
        stop_strings = [stop_strings]
    cuts = [at for at in (text.find(s) for s in stop_strings if s) if at >= 0]
    return text[: min(cuts)] if cuts else text
