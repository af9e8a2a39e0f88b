"""benchmarks/bench_dpo_step.py at tiny sizes: both providers run a real DPO step, and they do the same work.

The benchmark itself is run at full size by hand (see its docstring); here it only has to run end to end,
measure CPU peak memory in child processes, write its JSON, and show that lit_align's DPOModule and TRL's
DPOTrainer compute the same losses and log-probs on the same model and batch.
"""
import json

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("datasets")

from benchmarks import bench_dpo_step  # noqa: E402

TINY = ["--device", "cpu", "--vocab", "500", "--hidden", "32", "--seq-len", "32", "--pairs", "2", "--repeats", "1"]


def test_both_providers_report_numbers_and_agree(tmp_path, capsys):
    path = tmp_path / "rows.json"
    rows = bench_dpo_step.main([*TINY, "--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["rows"] == json.loads(json.dumps(rows)), "the JSON holds the rows main() returns"
    by_provider = {r["provider"]: r for r in rows}
    assert set(by_provider) == {"lit_align", "trl"}
    for row in rows:
        assert row["time_na"] is None and row["memory_na"] is None, row
        assert row["time_ms"] > 0 and row["tokens_per_s"] > 0, row
        assert isinstance(row["peak_mib"], float) and row["peak_mib"] > 0, row
    lit, trl = by_provider["lit_align"], by_provider["trl"]
    assert trl["time_ratio"] == 1.0 and lit["time_ratio"] > 0 and lit["memory_ratio"] > 0
    assert lit["losses"][0] == pytest.approx(0.6931472, abs=1e-5), "step 1: the policy is its own reference"
    assert lit["losses"][:2] == pytest.approx(trl["losses"][:2], rel=1e-4), "the same loss, before and after an update"
    assert lit["logprobs"] == pytest.approx(trl["logprobs"], rel=1e-4), "the same tokens scored"
    assert lit["losses"][1] != pytest.approx(lit["losses"][0], abs=1e-4), "the update changed the loss"
    assert lit["max_rel_diff"] < 1e-4
    assert "same work" in capsys.readouterr().out


def test_batches_match():
    """lit_align's labels are TRL's input_ids off the completion; the batch is (2B, T), chosen rows first."""
    setup = bench_dpo_step.Setup("unused", 100, 8, 1, 1, 16, pairs=3, seq_len=24, dtype="float32", lr=1e-4, seed=0)
    examples = bench_dpo_step.make_examples(setup)
    trl = bench_dpo_step.trl_batch(examples)
    lit = bench_dpo_step.lit_batch(trl)
    assert trl["input_ids"].shape == (6, 24)
    assert torch.equal(lit["input_ids"], trl["input_ids"])
    completion = trl["completion_mask"].bool()
    assert torch.equal(lit["labels"] != -100, completion)
    assert torch.equal(lit["labels"][completion], trl["input_ids"][completion])
    first = examples[0]
    assert trl["input_ids"][0].tolist() == first["prompt_ids"] + first["chosen_ids"]
    rejected = first["prompt_ids"] + first["rejected_ids"]
    assert trl["input_ids"][3, :len(rejected)].tolist() == rejected


def test_failing_provider_becomes_a_reason(monkeypatch, capsys):
    """E.g. a GPU machine without TRL: the trl row says why, lit_align's row still has its numbers."""
    def missing(setup, device):
        raise ModuleNotFoundError("No module named 'trl'")

    monkeypatch.setitem(bench_dpo_step.BUILDERS, "trl", missing)
    rows = bench_dpo_step.main([*TINY, "--skip-memory"])
    lit, trl = rows
    assert trl["time_na"] == "No module named 'trl'" and trl["time_ms"] is None
    assert lit["time_ms"] > 0 and lit["time_ratio"] is None and lit["max_rel_diff"] is None
    assert "n/a: No module named 'trl'" in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(SystemExit):
        bench_dpo_step.main(["--device", "cpu", "--providers", "nope"])


def test_a_given_model_folder_is_benchmarked_as_it_is(suite, tmp_path):
    """--model PATH (e.g. SmolLM2 from `lit-align models smollm2`): sizes from its config, padding with its
    tokenizer's pad id (TRL's collator pads with it: the batch check would fail otherwise), the same work."""
    import shutil

    from transformers import AutoConfig, AutoTokenizer

    model = tmp_path / "model"  # the suite's tiny model, padding with its EOS as SmolLM2 does (pad = <|im_end|>)
    shutil.copytree(suite.model, model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(model)
    assert tokenizer.pad_token_id != bench_dpo_step.PAD  # else the pad id would go unchecked
    path = tmp_path / "rows.json"
    rows = bench_dpo_step.main(["--device", "cpu", "--model", str(model), "--seq-len", "24", "--pairs", "2",
                                "--repeats", "1", "--skip-memory", "--json", str(path)])
    meta = json.loads(path.read_text())["meta"]
    config = AutoConfig.from_pretrained(model)
    assert meta["setup_args"]["pad"] == tokenizer.pad_token_id and meta["setup_args"]["pretrained"]
    assert (meta["setup_args"]["vocab"], meta["setup_args"]["hidden"]) == (config.vocab_size, config.hidden_size)
    lit, trl = rows
    assert lit["time_ms"] > 0 and trl["time_ms"] > 0
    assert lit["losses"][:2] == pytest.approx(trl["losses"][:2], rel=1e-4) and lit["max_rel_diff"] < 1e-4
