"""Atomic file writes for everything lit_align leaves on disk (suite files, manifests, run directories, summaries):
written to `.<name>.tmp` in the same folder, fsynced, then renamed over the target, so a crash or `kill -9` leaves
the old file or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def fsync_replace(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Flush the finished file `tmp` to disk and rename it over `path` (the last step of every atomic write here, and
    of checkpoints and caches written by other libraries' savers)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = False) -> None:
    """`obj` as indented JSON, written to a temporary name, fsynced and renamed over `path`."""
    path = Path(path)
    tmp = _tmp(path)
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=sort_keys) + "\n", encoding="utf-8")
    fsync_replace(tmp, path)


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """One JSON object per line, written to a temporary name, fsynced and renamed over `path`; returns the count."""
    path = Path(path)
    tmp, count = _tmp(path), 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    fsync_replace(tmp, path)
    return count


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a JSONL file this module wrote (a malformed line names the file and line)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise ValueError(f"{path}: line {number}: malformed JSON ({error.msg})") from None
    return rows
