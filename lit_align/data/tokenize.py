"""Tokenise validated rows into input ids and completion-only labels, applying the length limits.

  * With a chat template (the tokenizer has one, or `use_chat_template=True`): strings are wrapped as a
    user prompt and an assistant completion; the conversation is cut into spans (chat.py) and each span is
    tokenised on its own, so the prompt tokens are an exact prefix of prompt + completion by construction
    and equal the tokens `encode_prompt` gives the same prompt at generation time.
  * Without one: prompt text (with the tokenizer's special tokens, e.g. BOS) + completion text.
  * EOS is appended to the last trained span unless that span already contains it (chat templates
    usually end the assistant turn with it).
  * labels = input_ids with -100 on every untrained token (prompt, user/system/feedback turns); padding
    gets -100 in the collators. Unshifted (HF convention): the model or loss shifts them.

Limits: a prompt over `max_prompt_length` keeps its last tokens ("truncate") or drops the example
("drop"); an example over `max_length` loses completion tokens from the end ("truncate") or is dropped
("drop"); an example whose prompt alone fills `max_length` is always dropped; "error" raises instead.
Empty completions, preference pairs with chosen == rejected and prompt-only rows with an empty prompt are
dropped (raise with `strict=True`). A preference row may carry a per-pair `label_smoothing` (the probability that its
label is wrong, a number in [0, 1]: CREAM's 1 - consistency, arXiv 2410.12735 §3, can exceed 0.5 when two
iterations rank the responses in opposite orders); it is checked here and passed through to the batch. Every drop
and truncation is counted in a DataReport. Bad options and a tokenizer without an EOS token raise a UserError
(lit_align.errors) up front.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lit_align.data.chat import Message, Span, as_messages, conversation_spans, has_chat_template, render
from lit_align.data.jsonl import passthrough
from lit_align.data.report import DROP_REASONS, DataReport
from lit_align.errors import UserError

IGNORE_INDEX = -100
Truncation = Literal["truncate", "drop", "error"]
TRUNCATION_MODES = ("truncate", "drop", "error")
_UNITS = {"sft": "examples", "preference": "pairs", "prompt": "prompts"}


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    prompt_length: int  # number of leading untrained tokens


class RowEncoder:
    """Turns rows of one format into token-id examples under one set of limits."""

    def __init__(self, tokenizer: Any, *, max_length: int | None = None, max_prompt_length: int | None = None,
                 truncation: Truncation = "truncate", strict: bool = False, use_chat_template: bool | None = None):
        if truncation not in TRUNCATION_MODES:
            raise UserError(f"truncation must be one of {TRUNCATION_MODES}, got {truncation!r}")
        for name, value in (("max_length", max_length), ("max_prompt_length", max_prompt_length)):
            if value is not None and value < 1:
                raise UserError(f"{name} must be a positive integer or None, got {value}")
        tokenizer_name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        if use_chat_template and not has_chat_template(tokenizer):
            raise UserError(f"use_chat_template=True but the tokenizer {tokenizer_name!r} has no chat_template")
        if tokenizer.eos_token_id is None:
            raise UserError(f"the tokenizer {tokenizer_name!r} has no eos_token, and every completion needs one to "
                            "end; set tokenizer.eos_token (or eos_token in its tokenizer_config.json)")
        self.tokenizer = tokenizer
        self.max_length, self.max_prompt_length = max_length, max_prompt_length
        self.truncation, self.strict = truncation, strict
        self.chat = has_chat_template(tokenizer) if use_chat_template is None else use_chat_template

    # ---- public entry points: one per row format -------------------------------------------------

    def sft(self, rows: list[dict], split: str = "train") -> tuple[list[dict], DataReport]:
        report = self._report(split, "sft", len(rows))
        out = []
        for row in rows:
            field = "completion" if "completion" in row else "messages"
            if _empty(row[field], assistant_only=field == "messages"):
                self._reject(report, "empty_completion", row, field=field)
                continue
            if field == "completion":
                spans = self._pair_spans(row, row["prompt"], row["completion"])
            else:
                spans = self._message_spans(row)
            enc = self._fit(self._encode(spans), row, report)
            if enc is not None:
                out.append(self._example(row, "sft", input_ids=enc.input_ids, labels=enc.labels))
        report.kept = len(out)
        return out, report

    def preference(self, rows: list[dict], split: str = "train") -> tuple[list[dict], DataReport]:
        report = self._report(split, "preference", len(rows))
        out = []
        for row in rows:
            _check_label_smoothing(row)
            empty = [k for k in ("chosen", "rejected") if _empty(row[k])]
            if empty:
                self._reject(report, "empty_completion", row, field=empty[0])
                continue
            if row["chosen"] == row["rejected"]:
                self._reject(report, "identical_pair", row, field="rejected")
                continue
            sides = [self._encode(self._pair_spans(row, row["prompt"], row[k])) for k in ("chosen", "rejected")]
            fitted = self._fit_all(sides, row, report)
            if fitted is None:
                continue
            chosen, rejected = fitted
            if chosen.input_ids == rejected.input_ids:
                report.drop("identical_after_truncation", row["id"])
                continue
            out.append(self._example(row, "preference", chosen_input_ids=chosen.input_ids,
                                     chosen_labels=chosen.labels, rejected_input_ids=rejected.input_ids,
                                     rejected_labels=rejected.labels))
        report.kept = len(out)
        return out, report

    def prompt(self, rows: list[dict], split: str = "train") -> tuple[list[dict], DataReport]:
        """Prompt-only rows for generation; the limit is max_prompt_length, else max_length."""
        limit = self.max_prompt_length if self.max_prompt_length is not None else self.max_length
        report = self._report(split, "prompt", len(rows))
        report.limits["max_prompt_length"] = limit
        out = []
        for row in rows:
            if _empty(row["prompt"]):
                self._reject(report, "empty_prompt", row, field="prompt")
                continue
            ids = self.encode_prompt(row["prompt"], row["_where"])
            if limit is not None and len(ids) > limit:
                if self.truncation != "truncate":
                    self._reject(report, "prompt_too_long", row, data_error=False, field="prompt")
                    continue
                ids = ids[len(ids) - limit:]
                report.truncate("prompt", row["id"])
            out.append(self._example(row, "prompt", input_ids=ids))
        report.kept = len(out)
        return out, report

    def encode_prompt(self, prompt: str | list[Message], where: str = "prompt") -> list[int]:
        """The prompt tokens a model generates from; equal to the untrained prefix of a training example."""
        if self.chat:
            return self._tokens(render(self.tokenizer, as_messages(prompt, "user"), add_generation_prompt=True))
        return self._tokens(self._plain(prompt, where), special=True)

    # ---- spans and tokens --------------------------------------------------------------------------

    def _pair_spans(self, row: dict, prompt: str | list[Message], completion: str | list[Message]) -> list[Span]:
        if not self.chat:
            return [(self._plain(prompt, row["_where"]), False), (self._plain(completion, row["_where"]), True)]
        p, c = as_messages(prompt, "user"), as_messages(completion, "assistant")
        trained = [False] * len(p) + [m["role"] == "assistant" for m in c]
        return conversation_spans(self.tokenizer, p + c, trained, row["_where"])

    def _message_spans(self, row: dict) -> list[Span]:
        messages = row["messages"]
        if not self.chat:
            self._plain(messages, row["_where"])  # a message list: raises "needs a chat template"
        return conversation_spans(self.tokenizer, messages, [m["role"] == "assistant" for m in messages],
                                  row["_where"])

    def _plain(self, text: str | list[Message], where: str) -> str:
        if isinstance(text, str):
            return text
        raise UserError(f"{where}: conversational rows (lists of messages) need a tokenizer with a chat "
                        "template, and this one has none (or use_chat_template=False was set)")

    def _tokens(self, text: str, special: bool = False) -> list[int]:
        return self.tokenizer(text, add_special_tokens=special)["input_ids"]

    def encode_pair(self, prompt: str | list[Message], completion: str | list[Message], where: str = "response"
                    ) -> list[int]:
        """Token ids of prompt + completion (+ EOS) exactly as a training pair is tokenised, without length limits
        or drops (an empty completion is encoded too): what reward models and discriminators score."""
        return self._encode(self._pair_spans({"_where": where}, prompt, completion)).input_ids

    def _encode(self, spans: list[Span]) -> Encoded:
        """Tokenise each span, label the trained ones, make sure the last trained span ends with EOS."""
        ids: list[int] = []
        labels: list[int] = []
        last = None  # (start, end) of the last trained span
        for k, (text, trained) in enumerate(spans):
            tokens = self._tokens(text, special=(k == 0 and not self.chat))
            if trained:
                last = (len(ids), len(ids) + len(tokens))
            ids += tokens
            labels += tokens if trained else [IGNORE_INDEX] * len(tokens)
        eos = self.tokenizer.eos_token_id
        if last is not None and eos not in ids[last[0]:last[1]]:
            ids.insert(last[1], eos)
            labels.insert(last[1], eos)
        prompt_length = next((i for i, label in enumerate(labels) if label != IGNORE_INDEX), len(labels))
        return Encoded(ids, labels, prompt_length)

    # ---- limits ----------------------------------------------------------------------------------

    def _fit(self, enc: Encoded, row: dict, report: DataReport) -> Encoded | None:
        fitted = self._fit_all([enc], row, report)
        return None if fitted is None else fitted[0]

    def _fit_all(self, encs: list[Encoded], row: dict, report: DataReport) -> list[Encoded] | None:
        """Apply the limits to the sequences of one row (1 for SFT, 2 for a pair): all kept or none."""
        fitted, truncated = [], set()
        for enc in encs:
            result = self._limit(enc)
            if isinstance(result, str):
                self._reject(report, result, row, data_error=False)
                return None
            fitted.append(result[0])
            truncated |= result[1]
        for part in sorted(truncated):
            report.truncate(part, row["id"])
        return fitted

    def _limit(self, enc: Encoded) -> tuple[Encoded, set[str]] | str:
        """The encoding within the limits and the truncated parts, or the reason it must be dropped."""
        ids, labels, p = enc.input_ids, enc.labels, enc.prompt_length
        truncated = set()
        if self.max_prompt_length is not None and p > self.max_prompt_length:
            if self.truncation != "truncate":
                return "prompt_too_long"
            cut = p - self.max_prompt_length  # keep the end of the prompt, nearest the completion
            ids, labels, p = ids[cut:], labels[cut:], self.max_prompt_length
            truncated.add("prompt")
        if self.max_length is not None and len(ids) > self.max_length:
            if p >= self.max_length:
                return "prompt_exceeds_max_length"
            if self.truncation != "truncate":
                return "too_long"
            ids, labels = ids[: self.max_length], labels[: self.max_length]
            truncated.add("completion")
        return Encoded(ids, labels, p), truncated

    # ---- bookkeeping -----------------------------------------------------------------------------

    def _report(self, split: str, fmt: str, total: int) -> DataReport:
        limits = {"max_length": self.max_length, "max_prompt_length": self.max_prompt_length}
        return DataReport(split=split, unit=_UNITS[fmt], limits=limits, total=total)

    def _reject(self, report: DataReport, reason: str, row: dict, *, data_error: bool = True,
                field: str | None = None) -> None:
        """Count a dropped row, or raise: data errors under strict=True, limit breaches under 'error'."""
        if (data_error and self.strict) or (not data_error and self.truncation == "error"):
            what = DROP_REASONS[reason].format(**report.limits)
            at = f": field {field!r}" if field else ""
            raise UserError(f"{row['_where']}{at}: example {what} (id {row['id']!r})")
        report.drop(reason, row["id"])

    @staticmethod
    def _example(row: dict, fmt: str, **tensors: Any) -> dict:
        return {"id": row["id"], "index": row["_index"], **tensors, "extra": passthrough(row, fmt)}


def _check_label_smoothing(row: dict) -> None:
    """A preference row's optional `label_smoothing`: a finite number in [0, 1] (bool and strings are errors)."""
    if "label_smoothing" not in row:
        return
    value = row["label_smoothing"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise UserError(f"{row['_where']}: field 'label_smoothing': expected a number in [0, 1] (the probability "
                        f"that the pair's label is wrong), got {value!r}")


def _empty(text: str | list[Message], assistant_only: bool = False) -> bool:
    """True when a text holds nothing but whitespace (for `messages`, no assistant turn with text)."""
    if isinstance(text, str):
        return not text.strip()
    return not any(m["content"].strip() for m in text if not assistant_only or m["role"] == "assistant")


def tokenize_rows(rows: list[dict], fmt: str, tokenizer: Any, *, split: str = "train", **options: Any
                  ) -> tuple[list[dict], DataReport]:
    """Tokenise rows of `fmt` ("sft" | "preference" | "prompt"); `options` are RowEncoder's limits."""
    encoder = RowEncoder(tokenizer, **options)
    if fmt not in _UNITS:
        raise UserError(f"unknown row format {fmt!r}; expected one of {sorted(_UNITS)}")
    return getattr(encoder, fmt)(rows, split)
