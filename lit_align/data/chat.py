"""Chat templates: render a conversation into text spans marked trained (assistant turns) or not.

Why spans and not one rendered string: the loss must cover exactly the assistant turns, and the prompt
tokens must be an exact prefix of prompt + completion tokens (the reference log-prob cache, the
generation-time prompt and the training prompt all have to agree). So the conversation is rendered once,
cut at the character offsets where each trained turn starts (the text the template renders for the
history plus `add_generation_prompt=True`) and ends (the text it renders for the history including that
turn), and each span is tokenised separately (tokenize.py). A template that does not render every
history as a prefix of the whole conversation (e.g. one that rewrites earlier turns) cannot be cut this
way and is reported with the row's location.
"""
from __future__ import annotations

from typing import Any

from lit_align.errors import UserError

Message = dict[str, str]
Span = tuple[str, bool]  # (text, trained)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def as_messages(text: str | list[Message], role: str) -> list[Message]:
    """A plain string becomes one `role` message; a message list is returned as is."""
    return [{"role": role, "content": text}] if isinstance(text, str) else list(text)


def render(tokenizer: Any, messages: list[Message], *, add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def conversation_spans(tokenizer: Any, messages: list[Message], trained: list[bool], where: str) -> list[Span]:
    """Cut the rendered conversation into (text, trained) spans; `trained[i]` marks message i for the loss.

    Concatenating the texts gives the rendered conversation. A trained span runs from the end of the
    generation prompt for turn i to the end of turn i (so it includes the template's end-of-turn marker).
    """
    if len(trained) != len(messages):
        raise ValueError(f"{where}: {len(trained)} trained flags for {len(messages)} messages")
    full = render(tokenizer, messages)
    spans: list[Span] = []
    pos = 0
    for i, is_trained in enumerate(trained):
        if not is_trained:
            continue
        start = len(_prefix(tokenizer, messages[:i], True, full, where, i))
        end = len(_prefix(tokenizer, messages[: i + 1], False, full, where, i))
        spans += [(full[pos:start], False), (full[start:end], True)]
        pos = end
    spans.append((full[pos:], False))
    return [span for span in spans if span[0]]


def _prefix(tokenizer: Any, history: list[Message], generation_prompt: bool, full: str, where: str, turn: int) -> str:
    text = render(tokenizer, history, add_generation_prompt=generation_prompt)
    if not full.startswith(text):
        raise UserError(
            f"{where}: the chat template does not render the conversation up to turn {turn} as a prefix of the "
            "whole conversation, so the assistant turns cannot be located for loss masking; use a "
            "prefix-stable template (set tokenizer.chat_template) or use_chat_template=False")
    return text
