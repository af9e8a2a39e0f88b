"""Read alignment rows (TRL's dataset columns) from JSONL files, HF `datasets`, or lists of dicts.

Row formats (the columns TRL uses, so the same files work in both):

  * "sft":        {"prompt", "completion"}  or  {"messages"}  (conversational: the assistant turns are trained)
  * "preference": {"prompt", "chosen", "rejected"}
  * "prompt":     {"prompt"}  (online RL / generation; extra columns such as "task" pass through)

A text field is a string or, for conversational data, a list of {"role", "content"} messages. Every bad
row stops the run with a ValueError naming the file, the line and the field (a malformed JSON line, a
missing or misspelt column with a "did you mean" hint, a non-string value) instead of a traceback deep
inside tokenisation. Each returned row gains "id" (its own "id" if it has one, else "<file stem>:<line>")
and two private keys, "_index" (0-based position in the source, stable across runs: the reference
log-prob cache and CREAM's consistencies are keyed by it) and "_where" (the location used in later errors).
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

# The alternative column sets each format accepts (the first is the one named in errors).
SCHEMAS: dict[str, tuple[tuple[str, ...], ...]] = {
    "sft": (("prompt", "completion"), ("messages",)),
    "preference": (("prompt", "chosen", "rejected"),),
    "prompt": (("prompt",),),
}
# Columns a batch uses for itself: a row may not pass a column of these names through to the collator.
RESERVED = frozenset({"input_ids", "attention_mask", "labels", "ids", "index", "position_ids", "segment_ids",
                      "cu_seqlens", "max_seqlen"})


def read_rows(source: str | Path | Iterable[Mapping[str, Any]], fmt: str, *, name: str | None = None
              ) -> list[dict[str, Any]]:
    """Validated rows of `fmt` from a JSONL path, an HF `datasets.Dataset` or any iterable of dicts.

    `name` labels in-memory sources in error messages and default ids (default "rows").
    """
    if fmt not in SCHEMAS:
        raise ValueError(f"unknown row format {fmt!r}; expected one of {sorted(SCHEMAS)}")
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"data file not found: {path}")
        stem, records = path.stem, _jsonl_records(path)
    else:
        stem = name or "rows"
        records = ((f"{stem}: row {i}", i, row) for i, row in enumerate(source))
    rows, seen = [], {}
    for index, (where, number, row) in enumerate(records):
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
        row = dict(row)
        validate_row(row, fmt, where)
        row_id = str(row["id"]) if row.get("id") is not None else f"{stem}:{number}"
        if row_id in seen:
            raise ValueError(f"{where}: id {row_id!r} repeats the id of {seen[row_id]}; ids must be unique "
                             "(they key the reference log-prob cache)")
        seen[row_id] = where
        rows.append({**row, "id": row_id, "_index": index, "_where": where})
    return rows


def _jsonl_records(path: Path) -> Iterator[tuple[str, int, Any]]:
    """(where, line number, parsed object) for each non-blank line; malformed JSON names file and line."""
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}: line {number}"
            try:
                yield where, number, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: malformed JSON: {e.msg} (column {e.colno})") from None


def validate_row(row: Mapping[str, Any], fmt: str, where: str) -> None:
    """Check that `row` has one of `fmt`'s column sets with well-typed values; raise ValueError otherwise."""
    columns = _pick_schema(row, fmt, where)
    conversational = {field: _check_text(row[field], field, where) for field in columns}
    if len(set(conversational.values())) > 1:
        kinds = ", ".join(f"{f}={'messages' if c else 'string'}" for f, c in conversational.items())
        raise ValueError(f"{where}: fields must all be strings or all be message lists, got {kinds}")
    clash = RESERVED.intersection(row)
    if clash:
        raise ValueError(f"{where}: column {sorted(clash)[0]!r} is reserved for batch tensors; rename it")


def _pick_schema(row: Mapping[str, Any], fmt: str, where: str) -> tuple[str, ...]:
    schemas = SCHEMAS[fmt]
    for columns in schemas:
        if all(c in row for c in columns):
            return columns
    # Name the missing field of the closest schema (the one sharing most columns with the row).
    columns = max(schemas, key=lambda cs: sum(c in row for c in cs))
    missing = next(c for c in columns if c not in row)
    expected = " or ".join("/".join(cs) for cs in schemas)
    known = {c for cs in schemas for c in cs} | {"id"}
    hints = [f"{key!r} -> did you mean {match[0]!r}?" for key in row if key not in known
             for match in [difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)] if match]
    hint = f"; unknown column {', '.join(hints)}" if hints else ""
    raise ValueError(f"{where}: missing field {missing!r} (expected columns {expected}; "
                     f"found {', '.join(map(repr, row)) or 'none'}){hint}")


def _check_text(value: Any, field: str, where: str) -> bool:
    """Validate a text field; return True when it is conversational (a list of messages)."""
    if isinstance(value, str):
        if field == "messages":
            raise ValueError(f"{where}: field 'messages' must be a list of {{role, content}} messages, got str")
        return False
    if not isinstance(value, list):
        raise ValueError(f"{where}: field {field!r} must be a string or a list of {{role, content}} messages, "
                         f"got {type(value).__name__}")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            raise ValueError(f"{where}: field '{field}[{i}]' must be a {{role, content}} object, "
                             f"got {type(message).__name__}")
        for key in ("role", "content"):
            if not isinstance(message.get(key), str):
                got = "nothing" if key not in message else type(message[key]).__name__
                raise ValueError(f"{where}: field '{field}[{i}].{key}' must be a string, got {got}")
    return True


def passthrough(row: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    """The extra columns a row carries into its batch (e.g. "task", "group", "weight").

    Text columns consumed by tokenisation stay out, except for the "prompt" format, whose raw prompt is
    passed along (generation loops need it to add feedback turns or to write samples).
    """
    consumed = {"id"} if fmt == "prompt" else {c for cs in SCHEMAS[fmt] for c in cs} | {"id"}
    return {k: v for k, v in row.items() if k not in consumed and not k.startswith("_")}
