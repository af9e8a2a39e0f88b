"""benchmarks/bench_rollout.py at tiny sizes: sampling (plain generate and ReST's chunked Grow) and both scoring
providers report numbers, and the scoring providers agree.

The benchmark itself is run at full size by hand (see its docstring); here it only has to build its model for the
session's small suite, sample, score with both providers (no-grad policy + reference, and the policy's forward +
backward), measure CPU peak memory in child processes, write its JSON and markdown, and show that lit_align's fused
path and the eager log_softmax path give the same per-token log-probs (and gradients) of the sampled tokens.
"""
import json

import pytest
import torch

from benchmarks import bench_rollout

# --suite: the session's small suite (tests/conftest.py); the benchmark builds its 32-wide model beside its tokenizer.
TINY = ["--device", "cpu", "--prompts", "3", "--samples", "2", "--max-new-tokens", "5", "--batch-sizes", "6,2",
        "--score-batch-size", "4", "--hidden-size", "32", "--layers", "1", "--heads", "2", "--repeats", "2",
        "--warmup", "1", "--chunk-prompts", "2"]


def test_sampling_and_both_providers_report_numbers_and_agree(suite, tmp_path, capsys):
    path, md = tmp_path / "rollout.json", tmp_path / "rollout.md"
    result = bench_rollout.main([*TINY, "--suite", str(suite.root), "--out-json", str(path), "--out-md", str(md)])
    saved = json.loads(path.read_text())
    assert saved == json.loads(json.dumps(result)), "the JSON holds what main() returns"
    assert set(saved) == {"meta", "sampling", "rows", "agreement"}

    meta = saved["meta"]
    assert "python benchmarks/bench_rollout.py --device cpu" in meta["command"]
    assert meta["device"] == "cpu" and meta["threads"] == 1 and meta["torch"] == torch.__version__
    assert len(meta["load_average"]) == 3 and len(meta["load_average_end"]) == 3
    assert meta["model"]["hidden_size"] == 32 and meta["model"]["vocab_size"] == 1024, "the suite tokenizer's"
    assert meta["sequences"] == 6 and meta["batch_sizes"] == [6, 2]
    assert meta["samplers"] == ["generate", "grow"] and meta["chunk_prompts"] == 2
    assert 6 <= meta["scored_tokens"] <= 6 * 5 < meta["input_tokens"], "prompts are input, not scored"
    assert meta["score_batches"] == 2 and [s[0] for s in meta["score_batch_shapes"]] == [4, 2]

    sampling = saved["sampling"]
    assert [(r["batch_size"], r["provider"]) for r in sampling] == [(6, "generate"), (6, "grow"), (2, "generate"),
                                                                    (2, "grow")]
    for row in sampling:
        assert row["time_na"] is None and row["time_ms"] > 0 and row["tokens_per_s"] > 0, row
        assert row["sequences"] == 6, "grow: 3 prompts x 2 samples committed, in chunks of 2 + 1 prompts"
        assert 6 <= row["tokens"] <= 6 * 5 and row["tokens_per_run"] == [row["tokens"]] * 2, "seeded: same tokens"
        assert row["tokens_per_s_ratio"] > 0 and row["chunk_prompts"] == (2 if row["provider"] == "grow" else None)
    for generate, grown in (sampling[:2], sampling[2:]):
        assert generate["tokens_per_s_ratio"] == 1.0
        assert grown["tokens_per_s_ratio"] == pytest.approx(grown["tokens_per_s"] / generate["tokens_per_s"])

    rows = {(r["phase"], r["provider"]): r for r in saved["rows"]}
    assert set(rows) == {(ph, p) for ph in ("score", "train") for p in ("lit_align", "eager")}
    for row in rows.values():
        assert row["time_na"] is None and row["memory_na"] is None, row
        assert row["time_ms"] > 0 and row["tokens_per_s"] > 0 and row["input_tokens_per_s"] > row["tokens_per_s"]
        assert isinstance(row["peak_mib"], float) and row["peak_mib"] >= 0, row
        assert row["time_ratio"] > 0 and row["tokens_per_s_ratio"] > 0, row
    for phase in ("score", "train"):
        assert rows[(phase, "eager")]["time_ratio"] == 1.0 and rows[(phase, "eager")]["tokens_per_s_ratio"] == 1.0

    agreement = saved["agreement"]
    assert agreement["tolerance"] == 1e-4 and agreement["agree"] is True
    assert agreement["score_max_abs_diff"] < 1e-4, "policy + reference log-probs: fused path == eager log_softmax"
    assert agreement["train_max_abs_diff"] < 1e-4
    assert agreement["grad_max_abs_diff"] <= 1e-4 * max(1.0, agreement["grad_max_abs"]), "the same gradients"

    assert "same work" in capsys.readouterr().out
    section = md.read_text()
    assert section.startswith("## Rollout: sampling and scoring (cpu)") and meta["command"] in section
    assert "| score | lit_align |" in section and "| train | eager |" in section
    assert "| 6 | grow (chunks of 2 prompts) |" in section and "| 2 | generate |" in section


def test_failing_provider_becomes_a_reason(suite, monkeypatch, capsys):
    def broken(model, batch):
        raise RuntimeError("logits exploded\nwith a long traceback")

    monkeypatch.setitem(bench_rollout.LOGPROBS, "eager", broken)
    result = bench_rollout.main([*TINY, "--suite", str(suite.root), "--batch-sizes", "6", "--phases", "score",
                                 "--skip-memory"])
    lit, eager = result["rows"]
    assert eager["time_na"] == "logits exploded" and eager["time_ms"] is None
    assert lit["time_ms"] > 0 and lit["time_ratio"] is None
    assert result["agreement"]["agree"] is None
    assert "n/a: logits exploded" in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(SystemExit):
        bench_rollout.main(["--device", "cpu", "--phases", "nope"])
    with pytest.raises(SystemExit):
        bench_rollout.main(["--device", "cpu", "--batch-sizes", "0"])
    with pytest.raises(SystemExit):
        bench_rollout.main(["--device", "cpu", "--samplers", "grow"])  # generate's samples are the ones scored
    with pytest.raises(SystemExit):
        bench_rollout.main(["--device", "cpu", "--chunk-prompts", "0"])


def test_sessions_sampler_reports_sessions_per_second(suite, tmp_path):
    md = tmp_path / "rollout.md"
    result = bench_rollout.main([*TINY, "--suite", str(suite.root), "--batch-sizes", "6", "--samplers",
                                 "generate,sessions", "--session-rounds", "2", "--phases", "score", "--providers",
                                 "lit_align", "--skip-memory", "--out-md", str(md)])
    generate, sessions = result["sampling"]
    assert sessions["provider"] == "sessions" and sessions["time_na"] is None, sessions
    assert sessions["sequences"] == 6 and sum(sessions["stops"].values()) == 6  # 3 prompts x 2 sessions
    assert 6 <= sessions["turns"] <= 6 * 3 and sessions["tokens"] <= sessions["turns"] * 5
    assert sessions["tokens_per_run"] == [sessions["tokens"]] * 2, "seeded: the same sessions each pass"
    assert sessions["sessions_per_s"] == pytest.approx(6 / (sessions["time_ms"] / 1e3))
    assert sessions["tokens_per_s_ratio"] == pytest.approx(sessions["tokens_per_s"] / generate["tokens_per_s"])
    assert "sessions_per_s" not in generate and result["meta"]["session_rounds"] == 2
    assert "| 6 | sessions (up to 2 rounds;" in md.read_text()
    with pytest.raises(SystemExit):
        bench_rollout.main(["--device", "cpu", "--session-rounds", "-1"])
