"""The run directory's files and stage folders: atomic writes, the chunked samples file cut back to its last commit,
stages skipped / redone / resumed by key, and a resumed fit's CSV versions joined into one curve."""
from __future__ import annotations

import json

import pytest

from lit_align.files import read_json, write_json, write_jsonl
from lit_align.loops.driver import STATE, RunDir, Stage, digest
from lit_align.loops.rundir import ChunkedJSONL
from lit_align.loops.trainer import parse_interval, read_metrics


def test_atomic_writes_leave_the_old_file_when_they_fail(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"stages": 1})
    with pytest.raises(TypeError):
        write_json(path, {"stages": object()})  # not JSON: fails half way through the temporary file
    assert read_json(path) == {"stages": 1}
    assert write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}, {"a": "é"}]) == 2
    assert (tmp_path / "rows.jsonl").read_text(encoding="utf-8") == '{"a": 1}\n{"a": "é"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl", "summary.json"]  # no temporary left


def test_chunked_jsonl_resumes_at_the_next_chunk_and_drops_a_torn_tail(tmp_path):
    path = tmp_path / "samples.jsonl"
    out = ChunkedJSONL(path)
    assert (out.chunks, out.lines) == (0, 0)
    out.append([{"k": 0}, {"k": 1}])
    out.append([{"k": 2}])
    with open(path, "ab") as f:  # what a kill during the third chunk leaves: a whole line and half of another
        f.write(b'{"k": 3}\n{"k": 4, "te')
    again = ChunkedJSONL(path)  # the next run opens it
    assert (again.chunks, again.lines) == (2, 3)
    assert path.read_bytes() == b'{"k": 0}\n{"k": 1}\n{"k": 2}\n'
    again.append([{"k": 3}, {"k": 4}])
    assert [r["k"] for r in again.rows()] == [0, 1, 2, 3, 4] == [r["k"] for r in ChunkedJSONL.committed(path)]
    assert read_json(tmp_path / "samples.jsonl.chunks.json") == {"chunks": 3, "lines": 5, "bytes": path.stat().st_size}
    path.write_bytes(b'{"k": 0}\n')  # shorter than committed: changed by hand, refused rather than guessed
    with pytest.raises(ValueError, match="committed"):
        ChunkedJSONL(path)


def _stage(name: str, key: str, calls: list, fail: bool = False) -> Stage:
    def run(folder):
        calls.append(folder.name)
        (folder / "work.txt").write_text(f"{len(list(folder.iterdir()))} files before")
        if fail:
            raise KeyboardInterrupt  # killed half way
        return {"metrics": {"value": 1.5}, "note": key}

    return Stage(name, "test", key, run)


def test_stages_are_skipped_redone_and_resumed_by_key(tmp_path):
    run_dir, calls, lines = RunDir(tmp_path / "run", log=lambda line: None), [], []
    run_dir.log = lines.append
    first = run_dir.run(_stage("grow_1", "k1", calls))
    assert calls == ["grow_1.partial"] and first["metrics"]["value"] == 1.5 and first["attempts"] == 1
    assert set(first["metrics"]) == {"value", "seconds"} and first["kind"] == "test"
    folder = tmp_path / "run" / "grow_1"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "work.txt"]  # no .stage.json left
    mtime = (folder / "manifest.json").stat().st_mtime_ns

    assert run_dir.run(_stage("grow_1", "k1", calls)) == first and len(calls) == 1  # finished: skipped
    assert (folder / "manifest.json").stat().st_mtime_ns == mtime and "already done" in lines[-1]

    with pytest.raises(KeyboardInterrupt):  # other settings: redone; killed half way, the old folder stays
        run_dir.run(_stage("grow_1", "k2", calls, fail=True))
    assert read_json(folder / "manifest.json")["key"] == "k1"
    partial = tmp_path / "run" / "grow_1.partial"
    assert read_json(partial / STATE) == {"key": "k2", "attempts": 1}
    resumed = run_dir.run(_stage("grow_1", "k2", calls))  # the same key again: resumed in the same folder
    assert resumed["attempts"] == 2 and "resuming" in lines[-1]
    assert (folder / "work.txt").read_text() == "2 files before"  # it found the first attempt's file
    assert not partial.exists() and read_json(folder / "manifest.json")["key"] == "k2"

    with pytest.raises(KeyboardInterrupt):  # a partial folder of another key is started over
        run_dir.run(_stage("improve_1_1", "a", calls, fail=True))
    run_dir.run(_stage("improve_1_1", "b", calls))
    assert (tmp_path / "run" / "improve_1_1" / "work.txt").read_text() == "1 files before"


def test_a_kill_while_moving_the_finished_folder_is_completed_by_the_rerun(tmp_path):
    run_dir, calls = RunDir(tmp_path, log=lambda line: None), []
    partial = tmp_path / "base.partial"
    partial.mkdir()
    write_json(partial / STATE, {"key": "k", "attempts": 1})
    write_json(partial / "manifest.json", {"name": "base", "key": "k", "metrics": {"seconds": 1.0}})
    assert run_dir.run(_stage("base", "k", calls))["metrics"] == {"seconds": 1.0} and calls == []
    assert sorted(p.name for p in (tmp_path / "base").iterdir()) == ["manifest.json"]


def test_digest_is_stable_and_order_free():
    assert digest({"a": 1, "b": [1, 2]}, "x") == digest({"b": [1, 2], "a": 1}, "x") != digest({"a": 2}, "x")
    assert len(digest("x")) == 16


def test_read_metrics_joins_a_resumed_fits_versions(tmp_path):
    for version, rows in {0: [(0, 1.0), (1, 0.9), (2, 0.8)], 1: [(2, 0.7), (3, 0.6)]}.items():
        folder = tmp_path / "logs" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text("loss,step\n" + "".join(f"{v},{s}\n" for s, v in rows))
    assert [(int(r["step"]), float(r["loss"])) for r in read_metrics(tmp_path)] == [(0, 1.0), (1, 0.9), (2, 0.7),
                                                                                      (3, 0.6)]
    assert parse_interval("0:03:30").total_seconds() == 210 and parse_interval(None) is None
    with pytest.raises(ValueError, match="H:MM:SS"):
        parse_interval("3 minutes")


def test_stage_manifest_is_json(tmp_path):
    manifest = RunDir(tmp_path, log=lambda line: None).run(_stage("s", "k", []))
    assert json.loads((tmp_path / "s" / "manifest.json").read_text()) == manifest
