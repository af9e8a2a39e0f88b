"""benchmarks/bench_ops.py at tiny sizes: every row carries numbers or an explicit n/a reason.

The benchmark itself is run at full size by hand (see its docstring); here it only has to run end to end,
write its JSON, measure CPU peak memory in child processes, and turn a failing provider into a reason.
"""
import json

import pytest

from benchmarks import bench_ops

TINY = ["--device", "cpu", "--token-rows", "64", "--rows", "64", "--hidden", "32", "--vocab", "512", "--pairs", "2",
        "--seq-len", "24", "--repeats", "2", "--warmup", "1"]
NO_COMPILE = ",".join(sorted({name for op in bench_ops.OPS for name in bench_ops.PROVIDERS[op]} - {"compile"}))


def run(tmp_path, *extra):
    path = tmp_path / "rows.json"
    rows = bench_ops.main([*TINY, "--json", str(path), *extra])
    saved = json.loads(path.read_text())
    assert saved["rows"] == json.loads(json.dumps(rows)), "the JSON holds the rows main() returns"
    return saved["rows"]


def assert_complete(rows):
    for row in rows:
        for value, reason in (("time_ms", "time_na"), ("peak_mib", "memory_na")):
            ok = isinstance(row[value], float) or (isinstance(row[reason], str) and row[reason])
            assert ok, f"{row['op']} / {row['provider']} / {row['mode']}: no {value} and no n/a reason"


def test_every_provider_reports_a_time_or_a_reason(tmp_path):
    rows = run(tmp_path, "--providers", NO_COMPILE, "--skip-memory")
    assert {(r["op"], r["mode"]) for r in rows} == {(op, m) for op in bench_ops.OPS for m in bench_ops.MODES}
    assert_complete(rows)
    by_key = {(r["op"], r["provider"], r["mode"]): r for r in rows}
    for op in bench_ops.OPS:
        eager = by_key[(op, "eager", "full")]
        assert eager["time_ms"] > 0 and eager["time_ratio"] == 1.0
        assert "CUDA" in by_key[(op, "lit_align:cuda", "full")]["time_na"]
    assert "CUDA only" in by_key[("token_logprobs", "liger", "full")]["time_na"]
    assert by_key[("fused_dpo", "liger", "full")]["time_ms"] > 0, "Liger's chunked DPO loss runs on CPU"
    assert by_key[("fused_dpo", "lit_align:chunked", "full")]["time_ms"] > 0
    for op in ("linear_token_logprobs", "fused_dpo"):  # the cost of batch invariance is measured on CPU
        assert by_key[(op, "lit_align:cpp:invariant", "full")]["time_ms"] > 0
        assert "CUDA" in by_key[(op, "lit_align:cuda:invariant", "full")]["time_na"]


def test_cpu_peak_memory_in_child_processes(tmp_path):
    """Peak RSS growth per call: the chunked DPO path holds one chunk's logits, eager all of them."""
    rows = run(tmp_path, "--ops", "fused_dpo", "--providers", "eager,lit_align:chunked", "--modes", "full",
               "--vocab", "8192", "--seq-len", "64")
    assert_complete(rows)
    peak = {r["provider"]: r["peak_mib"] for r in rows}
    assert all(isinstance(v, float) for v in peak.values()), rows
    assert 0 < peak["lit_align:chunked"] < peak["eager"], peak


def test_failing_provider_becomes_a_reason(tmp_path, monkeypatch, capsys):
    def broken(op, inputs, sizes):
        raise RuntimeError("compiler exploded\nwith a long traceback")

    monkeypatch.setitem(bench_ops.PROVIDERS["token_logprobs"], "compile", broken)
    rows = run(tmp_path, "--ops", "token_logprobs", "--providers", "eager,compile", "--skip-memory")
    failed = [r for r in rows if r["provider"] == "compile"]
    assert failed and all(r["time_na"] == "compiler exploded" and r["time_ratio"] is None for r in failed)
    assert "n/a: compiler exploded" in capsys.readouterr().out, "the table lists the reason"


def test_bad_arguments():
    with pytest.raises(SystemExit):
        bench_ops.main(["--device", "cpu", "--ops", "nope"])
