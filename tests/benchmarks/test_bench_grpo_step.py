"""benchmarks/bench_grpo_step.py at tiny sizes: both providers run a real GRPO step on the same rollout and compute the
same loss, before and after one AdamW update, for every loss_type, GSPO's sequence ratio and both KL variants; the
rollout's advantages equal TRL's formula; the run writes its JSON. (Peak memory runs in forkserver children that
import TRL, about a minute on a busy 2-core machine: measured by the full-size run, --skip-memory here; the
children's code, benchmarks/memory.py, is exercised by test_bench_dpo_step.py.)"""
import json

import pytest
import torch

pytest.importorskip("trl")
pytest.importorskip("datasets")

from benchmarks import bench_dpo_step, bench_grpo_step  # noqa: E402

TINY = ["--device", "cpu", "--vocab", "500", "--hidden", "32", "--prompt-len", "8", "--completion-len", "24",
        "--prompts", "2", "--generations", "4", "--repeats", "1"]


def test_both_providers_report_numbers_and_agree(tmp_path, capsys):
    path = tmp_path / "rows.json"
    rows = bench_grpo_step.main([*TINY, "--skip-memory", "--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    assert saved["meta"]["advantage_diff"] < 1e-6, "group_advantages = TRL's formula"
    lit, trl = rows
    for row in rows:
        assert row["time_ms"] > 0 and row["tokens_per_s"] > 0 and row["memory_na"].startswith("skipped"), row
    assert trl["time_ratio"] == 1.0 and lit["time_ratio"] > 0
    assert lit["losses"] == pytest.approx(trl["losses"], rel=1e-4)
    assert lit["losses"][1] != pytest.approx(lit["losses"][0], abs=1e-4), "the update changed the loss"
    assert "same work" in capsys.readouterr().out


@pytest.mark.parametrize("loss_type, level, beta, bias", [("grpo", "token", 0.04, True), ("bnpo", "token", 0.0, True),
                                                          ("dr_grpo", "token", 0.04, False),
                                                          ("grpo", "sequence", 0.04, True)])
def test_losses_agree(tmp_path, loss_type, level, beta, bias):
    setup = bench_grpo_step.Setup(str(tmp_path), 300, 16, 1, 2, 32, prompts=2, generations=2, prompt_len=4,
                                  completion_len=12, dtype="float32", lr=1e-3, seed=1, loss_type=loss_type,
                                  importance_sampling_level=level, beta=beta, epsilon=0.2, epsilon_high=0.28,
                                  use_bias_correction_kl=bias)
    with bench_dpo_step.quiet():
        bench_dpo_step.build_model(setup)
        losses = {p: [float(bench_grpo_step.BUILDERS[p](setup, "cpu").step())] for p in ("lit_align", "trl")}
    assert losses["lit_align"] == pytest.approx(losses["trl"], rel=1e-5)


def test_lit_batch_holds_the_rollout():
    rollout = {"prompt_ids": torch.tensor([[5, 6], [5, 6]]), "prompt_mask": torch.ones(2, 2, dtype=torch.long),
               "completion_ids": torch.tensor([[7, 8, 9], [10, 0, 0]]),
               "completion_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
               "old_per_token_logps": torch.tensor([[-1.0, -2.0, -3.0], [-4.0, 0.0, 0.0]]),
               "ref_per_token_logps": torch.tensor([[-1.5, -2.5, -3.5], [-4.5, 0.0, 0.0]]),
               "advantages": torch.tensor([0.5, -0.5])}
    batch = bench_grpo_step.lit_batch(rollout)
    assert batch["labels"].tolist() == [[-100, -100, 7, 8, 9], [-100, -100, 10, -100, -100]]
    assert batch["mask"].tolist() == [[0, 1, 1, 1], [0, 1, 0, 0]]  # position t scores token t + 1
    assert batch["old_logp"].tolist() == [[0, -1, -2, -3], [0, -4, 0, 0]]
    assert batch["advantages"].tolist() == [[0, 0.5, 0.5, 0.5], [0, -0.5, 0, 0]]
