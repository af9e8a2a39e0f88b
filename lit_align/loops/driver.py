"""The stage driver of multi-stage loops (ReST, CREAM) and of the demo: one folder per stage, redone only when what
it depends on changed, resumed where a kill left it.

    run/
      summary.json            every finished stage with its metrics, rewritten after each stage (the loop's job)
      grow_1/                 a finished stage: its files and manifest.json (the done marker, written last)
      improve_1_1.partial/    a stage in progress: resumed by the next run with the same key, else started over

A Stage is (name, kind, key, run): `key` digests everything the stage's result depends on (its settings, its input
files, the keys of the stages it starts from), so a rerun with other settings redoes that stage and, through the keys,
every stage after it, while a rerun with the same settings skips what is finished. `run(folder)` works inside
`<name>.partial/` and may find there what an interrupted attempt left (a checkpoint, committed sample chunks): making
use of it is how a stage resumes. When `run` returns, manifest.json is written into the folder and the folder is
renamed to `<name>/` (replacing an outdated one), so a folder without `.partial` is always complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_align.files import read_json, write_json

STATE = ".stage.json"
"""Inside a `.partial` folder: {key, attempts} of the stage being built there."""


def digest(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (dict order does not matter)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    """A hash of a file's bytes (data files: a stage made from other data is redone)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]


def folder_fingerprint(path: str | os.PathLike) -> str:
    """A hash of a model folder's file names, sizes and modification times (cheap for big weights); a hub id or a
    missing folder hashes to its name."""
    root = Path(path)
    if not root.is_dir():
        return digest(str(path))
    files = sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in root.rglob("*") if p.is_file())
    return digest(str(path), files)


@dataclass
class Stage:
    """One step of a loop. `run(folder)` does the work in `folder` and returns the manifest's fields, "metrics" (a
    dict of numbers) among them; `seconds` and `attempts` are added by the driver."""

    name: str
    kind: str
    key: str
    run: Callable[[Path], dict[str, Any]]


class RunDir:
    """A run directory of stage folders (see the module docstring).

    Args:
        root: the run directory (created).
        marker: the done marker written last into each finished stage folder.
        log: where progress lines go (print by default).
    """

    def __init__(self, root: str | os.PathLike, marker: str = "manifest.json", log: Callable[[str], Any] = print):
        self.root, self.marker, self.log = Path(root), marker, log
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, name: str) -> Path:
        """Where the finished stage `name` lives."""
        return self.root / name

    def finished(self, stage: Stage) -> dict[str, Any] | None:
        """The manifest of `stage` if it is finished with its current key, else None."""
        marker = self.folder(stage.name) / self.marker
        if not marker.exists():
            return None
        manifest = read_json(marker)
        return manifest if manifest.get("key") == stage.key else None

    def run(self, stage: Stage) -> dict[str, Any]:
        """The stage's manifest: read back if finished, else made (resuming an interrupted attempt of the same key)."""
        done = self.finished(stage)
        if done is not None:
            self.log(f"[{self.root.name}] {stage.name}: already done, skipped")
            return done
        final, partial = self.folder(stage.name), self.root / f"{stage.name}.partial"
        if (partial / self.marker).exists() and read_json(partial / self.marker).get("key") == stage.key:
            return self._finalize(partial, final)  # killed while moving the finished folder into place
        if final.exists():
            self.log(f"[{self.root.name}] {stage.name}: made with other settings or inputs, redone")
        state = read_json(partial / STATE) if (partial / STATE).exists() else None
        if state is not None and state.get("key") == stage.key:
            attempts = state["attempts"] + 1
            self.log(f"[{self.root.name}] {stage.name}: resuming an interrupted attempt (attempt {attempts})")
        else:
            shutil.rmtree(partial, ignore_errors=True)  # another key's leftovers (or nothing)
            attempts = 1
        partial.mkdir(parents=True, exist_ok=True)
        write_json(partial / STATE, {"key": stage.key, "attempts": attempts})
        start = time.monotonic()
        info = dict(stage.run(partial) or {})
        seconds = round(time.monotonic() - start, 2)
        metrics = {**info.pop("metrics", {}), "seconds": seconds}
        manifest = {"name": stage.name, "kind": stage.kind, "key": stage.key, **info, "metrics": metrics,
                    "attempts": attempts, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_json(partial / self.marker, manifest)
        return self._finalize(partial, final)

    def _finalize(self, partial: Path, final: Path) -> dict[str, Any]:
        """Move a finished `.partial` folder (its marker written) over the stage's folder."""
        (partial / STATE).unlink(missing_ok=True)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        return read_json(final / self.marker)

    def write_summary(self, summary: dict[str, Any], name: str = "summary.json") -> Path:
        """Write the loop's summary atomically at the top of the run directory."""
        path = self.root / name
        write_json(path, summary)
        return path
