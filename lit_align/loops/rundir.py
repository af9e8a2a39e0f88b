"""Files of a loop's run directory that survive `kill -9` at any moment: atomic JSON/JSONL writes and an appendable,
chunked JSONL file for samples.

    write_json(path, obj) / write_jsonl(path, rows)   lit_align.files: `.<name>.tmp`, fsynced, renamed over `path`
    ChunkedJSONL(path)                               `samples.jsonl` + `samples.jsonl.chunks.json` (its commit record)

A multi-stage loop (ReST's Grow, CREAM's sampling) writes thousands of samples before it can move on; killing it half
way must not lose the chunks already written, and must never leave a half line that a later reader would choke on.
ChunkedJSONL appends one chunk (a list of rows) at a time: the lines are appended and fsynced, then the commit record
{chunks, lines, bytes} is replaced atomically. On opening, the data file is cut back to the committed size, so what a
kill left after the last commit (a half line, or a whole chunk whose commit never happened) is dropped, and the writer
resumes at chunk `chunks`. Whoever makes the chunks must make chunk k the same on every run (a seed per chunk).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lit_align.files import read_json, write_json


class ChunkedJSONL:
    """An appendable JSONL file committed chunk by chunk (see the module docstring).

    `chunks` and `lines` count what is committed; `append(rows)` commits one more chunk; `rows()` reads the
    committed lines back. Opening cuts off anything written after the last commit.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.record = self.path.with_name(self.path.name + ".chunks.json")
        state = read_json(self.record) if self.record.exists() else {"chunks": 0, "lines": 0, "bytes": 0}
        self.chunks, self.lines, self.bytes = state["chunks"], state["lines"], state["bytes"]
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < self.bytes:
            raise ValueError(f"{self.path}: {size} bytes on disk but {self.bytes} committed in {self.record}; "
                             "the file was changed by hand (delete both to start the chunks over)")
        with open(self.path, "ab") as f:  # creates it; cuts a half-written chunk after the last commit
            f.truncate(self.bytes)

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append `rows` as one chunk and commit it (an empty chunk is committed too: it counts as done)."""
        data = b"".join(json.dumps(row, ensure_ascii=False).encode("utf-8") + b"\n" for row in rows)
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        self.chunks, self.lines, self.bytes = self.chunks + 1, self.lines + len(rows), self.bytes + len(data)
        write_json(self.record, {"chunks": self.chunks, "lines": self.lines, "bytes": self.bytes})

    def rows(self) -> list[dict[str, Any]]:
        """The committed rows."""
        return _read_lines(self.path, self.bytes)

    @classmethod
    def committed(cls, path: str | os.PathLike) -> list[dict[str, Any]]:
        """The committed rows of a file written by ChunkedJSONL, read without opening it for writing."""
        path = Path(path)
        return _read_lines(path, read_json(path.with_name(path.name + ".chunks.json"))["bytes"])


def _read_lines(path: Path, size: int) -> list[dict[str, Any]]:
    with open(path, "rb") as f:
        data = f.read(size)
    rows = []
    for number, line in enumerate(data.splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number}: malformed JSON ({error.msg})") from None
    return rows
