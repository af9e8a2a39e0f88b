"""Read alignment rows (TRL's dataset columns) from JSONL files, HF `datasets`, or lists of dicts.

Row formats (the columns TRL uses, so the same files work in both):

  * "sft":        {"prompt", "completion"}  or  {"messages"}  (conversational: the assistant turns are trained)
  * "preference": {"prompt", "chosen", "rejected"}  or  {"chosen", "rejected"} with an implicit prompt
  * "prompt":     {"prompt"}  (online RL / generation; extra columns such as "task" pass through)

A text field is a string or, for conversational data, a list of {"role", "content"} messages whose role is
one of ROLES. A preference row without "prompt" is TRL's implicit-prompt format (trl.extract_prompt): the
leading messages chosen and rejected share are the prompt, the rest are the two responses; for strings the
shared prefix up to its last whitespace is the prompt (TRL cuts at the first differing character, which can
split a word; the whitespace goes with the responses in both). Files are UTF-8; a leading byte-order mark is
skipped, as pandas and datasets do (also at the start of a later line: files concatenated with `cat`).

Every bad row stops the run with a UserError (a ValueError; lit_align.errors) naming the file, the line, the
field and what was expected (bytes that are not UTF-8, a malformed JSON line, an empty file, a missing or
misspelt column or role with a "did you mean" hint, a non-string value, an unpaired "\\ud800" escape) instead
of a traceback deep inside tokenisation. Each returned row gains "id" (its own "id" if it has one, else
"<file stem>:<line>") and two private keys, "_index" (0-based position in the source, stable across runs: the
reference log-prob cache and CREAM's consistencies are keyed by it) and "_where" (the location used in later
errors).
"""
from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lit_align.errors import MissingFileError, UserError

# The alternative column sets each format accepts (the first is the one named in errors).
SCHEMAS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sft": (("prompt", "completion"), ("messages",)),
    "preference": (("prompt", "chosen", "rejected"), ("chosen", "rejected")),
    "prompt": (("prompt",),),
}
# Message roles (TRL's: trl.data_utils.prepare_multimodal_messages) and common misnamings, named in errors.
ROLES = ("system", "user", "assistant", "tool")
_ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant", "ai": "assistant"}
_UTF8_BOM = b"\xef\xbb\xbf"
# Columns a batch uses for itself: a row may not pass a column of these names through to the collator.
RESERVED = frozenset({"input_ids", "attention_mask", "labels", "ids", "index", "position_ids", "segment_ids",
                      "cu_seqlens", "max_seqlen"})


def read_rows(source: str | Path | Iterable[Mapping[str, Any]], fmt: str, *, name: str | None = None
              ) -> list[dict[str, Any]]:
    """Validated rows of `fmt` from a JSONL path, an HF `datasets.Dataset` or any iterable of dicts.

    `name` labels in-memory sources in error messages and default ids (default "rows").
    """
    if fmt not in SCHEMAS:
        raise UserError(f"unknown row format {fmt!r}; expected one of {sorted(SCHEMAS)}")
    from_file = isinstance(source, (str, Path))
    if from_file:
        path = _data_file(source)
        stem, records = path.stem, _jsonl_records(path)
    else:
        stem = name or "rows"
        records = ((f"{stem}: row {i}", i, row) for i, row in enumerate(source))
    rows, seen = [], {}
    for index, (where, number, row) in enumerate(records):
        if not isinstance(row, Mapping):
            array = " (the file must be JSON Lines: one object per line, not a JSON array)" if from_file else ""
            raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}{array}")
        row = dict(row)
        validate_row(row, fmt, where)
        if fmt == "preference" and "prompt" not in row:
            row.update(extract_prompt(row["chosen"], row["rejected"], where))
        row_id = _row_id(row.get("id"), where) if row.get("id") is not None else f"{stem}:{number}"
        if row_id in seen:
            raise UserError(f"{where}: id {row_id!r} repeats the id of {seen[row_id]}; ids must be unique "
                            "(they key the reference log-prob cache)")
        seen[row_id] = where
        rows.append({**row, "id": row_id, "_index": index, "_where": where})
    if not rows and from_file:
        raise UserError(f"{source}: no rows (the file is empty or holds only blank lines); expected one JSON "
                        "object per line")
    return rows


def _data_file(source: str | Path) -> Path:
    if not str(source).strip():
        raise UserError("data file path is empty; expected a JSONL file")
    path = Path(source)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; expected a JSONL file")
    if not path.is_file():
        raise MissingFileError(f"data file not found: {path}")
    return path


def _jsonl_records(path: Path) -> Iterator[tuple[str, int, Any]]:
    """(where, line number, parsed object) for each non-blank line; bad bytes or JSON name file and line.

    Read as bytes and decoded line by line, so that a byte that is not UTF-8 is reported with its line.
    """
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            where = f"{path}: line {number}"
            if raw.startswith(_UTF8_BOM):  # the file's first line, or a file concatenated onto another
                raw = raw[len(_UTF8_BOM):]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                column = len(raw[:e.start].decode("utf-8", errors="replace")) + 1
                raise UserError(f"{where}: invalid UTF-8 (byte 0x{raw[e.start]:02x} at column {column}); "
                                "expected UTF-8 text (re-save the file as UTF-8)") from None
            if not line.strip():
                continue
            try:
                yield where, number, json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}: malformed JSON: {e.msg} (column {e.colno}); expected one JSON object "
                                "per line") from None


def _row_id(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise UserError(f"{where}: field 'id' must be a non-empty string or an integer, got {value!r}")
    return str(value)


def validate_row(row: Mapping[str, Any], fmt: str, where: str) -> None:
    """Check that `row` has one of `fmt`'s column sets with well-typed values; raise UserError otherwise."""
    columns = _pick_schema(row, fmt, where)
    conversational = {field: _check_text(row[field], field, where) for field in columns}
    if len(set(conversational.values())) > 1:
        kinds = ", ".join(f"{f}={'messages' if c else 'string'}" for f, c in conversational.items())
        implicit = fmt == "preference" and not conversational["prompt"] and conversational["chosen"]
        hint = ("; if chosen and rejected hold the whole conversations, drop 'prompt' (TRL's implicit-prompt "
                "format: the turns they share are the prompt)") if implicit else ""
        raise UserError(f"{where}: fields must all be strings or all be message lists, got {kinds}{hint}")
    clash = RESERVED.intersection(row)
    if clash:
        raise UserError(f"{where}: column {sorted(clash)[0]!r} is reserved for batch tensors; rename it")


def extract_prompt(chosen: str | list, rejected: str | list, where: str) -> dict[str, str | list]:
    """TRL's implicit prompt (trl.extract_prompt): {"prompt", "chosen", "rejected"} from two whole texts.

    Messages: the leading messages both share are the prompt. Strings: their common prefix up to the
    whitespace run before the first differing word (so no word is split; the whitespace starts both
    responses). Nothing shared, or one side being the start of the other (no response left), is an error.
    """
    shortest = min(len(chosen), len(rejected))
    n = next((i for i in range(shortest) if chosen[i] != rejected[i]), shortest)
    unit = "message" if isinstance(chosen, list) else "text"
    if n == shortest:
        what = "are identical" if len(chosen) == len(rejected) else \
            f"{'chosen' if n == len(chosen) else 'rejected'} is the start of the other"
        raise UserError(f"{where}: no 'prompt' column, and chosen and rejected {what}, so no response is left "
                        "after their shared prompt; expected chosen and rejected that differ after a shared prompt, "
                        "or an explicit 'prompt' column")
    if isinstance(chosen, str):
        prefix = chosen[:n]
        if not (chosen[n].isspace() and rejected[n].isspace()):  # they differ inside a word: leave it out
            prefix = re.sub(r"\S+$", "", prefix)
        n = len(prefix.rstrip())
    if n == 0:
        raise UserError(f"{where}: no 'prompt' column, and chosen and rejected share no leading {unit} to take "
                        "as the prompt (TRL's implicit-prompt format); expected an explicit 'prompt' column")
    return {"prompt": chosen[:n], "chosen": chosen[n:], "rejected": rejected[n:]}


def _pick_schema(row: Mapping[str, Any], fmt: str, where: str) -> tuple[str, ...]:
    schemas = SCHEMAS[fmt]
    for columns in schemas:
        if all(c in row for c in columns):
            return columns
    # Name the missing field of the closest schema (the one sharing most columns with the row, then missing fewest).
    columns = max(schemas, key=lambda cs: (sum(c in row for c in cs), -sum(c not in row for c in cs)))
    missing = next(c for c in columns if c not in row)
    expected = " or ".join("/".join(cs) for cs in schemas)
    known = {c for cs in schemas for c in cs} | {"id"}
    hints = [f"{key!r} -> did you mean {match[0]!r}?" for key in row if key not in known
             for match in [difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)] if match]
    hint = f"; unknown column {', '.join(hints)}" if hints else ""
    raise UserError(f"{where}: missing field {missing!r} (expected columns {expected}; "
                    f"found {', '.join(map(repr, row)) or 'none'}){hint}")


def _check_text(value: Any, field: str, where: str) -> bool:
    """Validate a text field; return True when it is conversational (a list of messages)."""
    if isinstance(value, str):
        if field == "messages":
            raise UserError(f"{where}: field 'messages' must be a list of {{role, content}} messages, got str")
        _check_unicode(value, field, where)
        return False
    if not isinstance(value, list):
        raise UserError(f"{where}: field {field!r} must be a string or a list of {{role, content}} messages, "
                        f"got {type(value).__name__}")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise UserError(f"{where}: field '{field}[{i}]' must be a {{role, content}} object, "
                            f"got {type(message).__name__}")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                got = "nothing" if key not in message else type(message[key]).__name__
                sharegpt = " (ShareGPT's from/value messages: rename them role/content)" if "from" in message else ""
                raise UserError(f"{where}: field '{field}[{i}].{key}' must be a string, got {got}{sharegpt}")
        _check_role(message["role"], f"{field}[{i}]", where)
        _check_unicode(message["content"], f"{field}[{i}].content", where)
    return True


def _check_unicode(text: str, field: str, where: str) -> None:
    """A lone surrogate (JSON "\\ud800" without its pair) is valid JSON but no text: tokenizers fail on it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UserError(f"{where}: field {field!r} holds an unpaired surrogate {text[e.start]!r} at character "
                        f"{e.start + 1} (a broken \\u escape); expected valid Unicode text") from None


def _check_role(role: str, field: str, where: str) -> None:
    if role in ROLES:
        return
    guess = _ROLE_ALIASES.get(role.lower()) or next(iter(difflib.get_close_matches(role.lower(), ROLES, n=1)), None)
    hint = f" (did you mean {guess!r}?)" if guess else ""
    raise UserError(f"{where}: field '{field}.role' is {role!r}; expected one of {', '.join(map(repr, ROLES))}{hint}")


def passthrough(row: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    """The extra columns a row carries into its batch (e.g. "task", "group", "weight").

    Text columns consumed by tokenisation stay out, except for the "prompt" format, whose raw prompt is
    passed along (generation loops need it to add feedback turns or to write samples).
    """
    consumed = {"id"} if fmt == "prompt" else {c for cs in SCHEMAS[fmt] for c in cs} | {"id"}
    return {k: v for k, v in row.items() if k not in consumed and not k.startswith("_")}
