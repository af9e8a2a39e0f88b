"""`lit-align cream` end to end on the tiny suite: the stage folders, rewards and rankings against an independent
recomputation, pairs and their label smoothing per variant, the DPO reference read from the log-prob cache (never
rescored), scorings computed vs reused, a second run that skips every stage, and kill -9 resumption."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from scipy.stats import kendalltau

from lit_align.cli import main
from lit_align.errors import UserError
from lit_align.files import read_json, read_jsonl
from lit_align.loops.cream import DPOSettings
from lit_align.loops.cream import main as cream_main
from tests.loops.stall import killed_at

TIMING = {"seconds", "sampling_seconds", "scoring_seconds", "responses_per_s", "tokens_per_s", "fit_seconds",
          "scoring_tokens_per_s"}


@pytest.fixture(scope="module")
def m1(suite, tmp_path_factory) -> str:
    """M1: the suite's tiny model after 40 SFT steps, enough to end its answers with EOS (an untrained model never
    stops, and unfinished samples cannot become DPO pairs whose tokens match their scores)."""
    import lightning.pytorch as pl

    from lit_align.data import SFTDataModule
    from lit_align.loops.trainer import build_trainer, fit
    from lit_align.modules import SFTModule

    folder = tmp_path_factory.mktemp("m1")
    pl.seed_everything(0, verbose=False)
    data = SFTDataModule(train_file=suite.file("sft.jsonl"), tokenizer=str(suite.model), batch_size=8, max_length=64)
    module = SFTModule(str(suite.model), lr=1e-2, vocab_size=data.vocab_size, pad_token_id=data.pad_token_id)
    fit(build_trainer(folder, max_steps=40, max_epochs=None, progress=False), module, data, log=lambda *_: None)
    module.export(str(folder / "model"), data.tokenizer)
    return str(folder / "model")


def cream_args(suite, m1: str, out: Path, *extra: str) -> list[str]:
    """2 iterations of 4 prompts x 3 samples (chunks of 2 prompts), M0 = 2 SFT steps of the untrained model, DPO of
    2 steps with a checkpoint each step, evaluation on 4 val and 4 test prompts."""
    data = suite.data
    return ["--config", "cream", "--policy", m1, "--m0.base", str(suite.model), "--m0.steps", "2",
            "--sft_file", str(data / "sft.jsonl"), "--prompts_file", str(data / "prompts.jsonl"),
            "--prompts_per_iteration", "4", "--iterations", "2", "--out", str(out), "--threads", "1",
            "--progress", "false", "--sampling.samples_per_prompt", "3", "--sampling.chunk_prompts", "2",
            "--sampling.max_new_tokens", "8", "--sampling.batch_size", "8", "--dpo.max_steps", "2",
            "--dpo.batch_size", "2", "--dpo.checkpoint_every_n_steps", "1", "--eval.val_file",
            str(data / "val.jsonl"), "--eval.test_file", str(data / "test.jsonl"), "--eval.limit", "4",
            "--eval.max_new_tokens", "6", *extra]


STAGES = ["m0", "m1", "iter1_rank", "dyn_iter1_dpo", "srlm_iter1_dpo", "dyn_iter2_rank", "dyn_iter2_dpo",
          "srlm_iter2_rank", "srlm_iter2_dpo"]


def test_cream_runs_every_stage_then_skips_them(suite, m1, tmp_path, capsys):
    from lit_align.models.loading import load_causal_lm, load_tokenizer
    from lit_align.rollout.generate import Generation
    from lit_align.rollout.score import completion_logprobs

    out = tmp_path / "run"
    main(["cream", *cream_args(suite, m1, out, "--variants", "[dyn, srlm]")])  # through `lit-align`'s table
    summary = read_json(out / "summary.json")
    assert summary["finished"] and [s["name"] for s in summary["stages"]] == STAGES
    stages = {s["name"]: s for s in summary["stages"]}

    # iteration 1: rewards from M1 and M0, recomputed here through the fused op, not the cache
    scored = read_jsonl(out / "iter1_rank" / "scored.jsonl")
    lines = read_jsonl(out / "iter1_rank" / "samples.jsonl")
    assert len(scored) == 12 and [(s["prompt_id"], s["sample"]) for s in scored] == \
        [(line["prompt_id"], line["sample"]) for line in lines]
    gens = [Generation.from_dict(line) for line in lines]
    tok = load_tokenizer(m1)
    for path, field in ((m1, "logp_current"), (str(out / "m0" / "model"), "logp_previous")):
        fresh = completion_logprobs(load_causal_lm(path), tok, gens, batch_size=5)  # other batches than the loop's
        torch.testing.assert_close(torch.tensor([s[field] for s in scored]), fresh, atol=1e-4, rtol=1e-5)
    for s in scored:
        assert s["reward"] == pytest.approx(s["logp_current"] - s["logp_previous"])
        assert s["previous_reward"] == pytest.approx(s["logp_previous"] / s["tokens"])  # t = 1: M0's per-token
    for s in read_jsonl(out / "dyn_iter2_rank" / "scored.jsonl"):  # t = 2: (M2, M1) and (M1, M0)
        assert s["previous_reward"] == pytest.approx(s["logp_previous"] - s["logp_older"])

    # rankings: tau-b of the two rewards per prompt, C, and the (argmax, argmin) pair
    rankings = read_jsonl(out / "iter1_rank" / "rankings.jsonl")
    by_prompt = {}
    for s in scored:
        by_prompt.setdefault(s["prompt_id"], []).append(s)
    assert [r["prompt_id"] for r in rankings] == sorted(by_prompt)
    for r in rankings:
        current = [s["reward"] for s in by_prompt[r["prompt_id"]]]
        tau = kendalltau(current, [s["previous_reward"] for s in by_prompt[r["prompt_id"]]]).statistic
        assert r["tau"] == pytest.approx(0.0 if math.isnan(tau) else tau) and r["consistency"] == \
            pytest.approx((r["tau"] + 1) / 2)
        if r["pair"] is not None:
            assert current[r["pair"][0]] == max(current) and current[r["pair"][1]] == min(current)
    assert stages["iter1_rank"]["metrics"]["mean_consistency"] == \
        pytest.approx(sum(r["consistency"] for r in rankings) / 4)

    # pairs: eps = 1 - C (dyn) or 0 (srlm); the DPO reference is M1's cached score of each side
    paired = {r["prompt_id"]: r for r in rankings if r["pair"] is not None}
    pairs = {v: read_jsonl(out / f"{v}_iter1_dpo" / "pairs.jsonl") for v in ("dyn", "srlm")}
    assert pairs["dyn"] and [p["id"] for p in pairs["dyn"]] == [p["id"] for p in pairs["srlm"]]
    logp = {s["key"]: s["logp_current"] for s in scored}
    for dyn, srlm in zip(pairs["dyn"], pairs["srlm"], strict=True):
        assert dyn["label_smoothing"] == pytest.approx(1 - paired[dyn["id"]]["consistency"])
        assert srlm["label_smoothing"] == 0.0
        assert [dyn["chosen"], dyn["rejected"]] == [by_prompt[dyn["id"]][k]["text"] for k in paired[dyn["id"]]["pair"]]
    reference = torch.load(out / "dyn_iter1_dpo" / "reference_logps.pt", weights_only=True)
    assert sorted(reference["scores"].flatten().tolist()) == pytest.approx(
        sorted(logp[p[k]] for p in pairs["dyn"] for k in ("chosen_key", "rejected_key")))
    dpo = stages["dyn_iter1_dpo"]["metrics"]
    assert dpo["reference_scored_in_fit"] == 0 and dpo["steps"] == 2 and dpo["pairs_trained"] == len(pairs["dyn"])
    assert dpo["scorings_computed"] == 0 and dpo["scorings_reused"] == 2 * len(pairs["dyn"])
    rank = stages["iter1_rank"]["metrics"]
    assert rank["scorings_computed"] == 2 * 12 and rank["scorings_reused"] == 12  # M0's scores serve twice
    total = summary["scorings"]
    assert total["scorings_computed"] == sum(s["metrics"].get("scorings_computed", 0) for s in summary["stages"])
    assert (out / "dyn_iter2_dpo" / "model" / "model.safetensors").exists()
    rows = {(r["variant"], r["iteration"]) for r in summary["table"]}
    assert rows == {(v, t) for v in ("dyn", "srlm") for t in (0, 1, 2)}

    mtimes = {name: (out / name / "manifest.json").stat().st_mtime_ns for name in STAGES}
    capsys.readouterr()
    cream_main(cream_args(suite, m1, out, "--variants", "[dyn, srlm]"))  # again: nothing to do
    assert capsys.readouterr().out.count("already done, skipped") == len(STAGES)
    assert mtimes == {name: (out / name / "manifest.json").stat().st_mtime_ns for name in STAGES}


def test_killed_in_a_fit_ends_like_an_uninterrupted_run(suite, m1, tmp_path):
    """kill -9 inside iteration 1's DPO fit (after step 1 of 2, the rank stage and the log-prob cache written); the
    same command then skips what was finished, resumes the fit from its checkpoint without rescoring the reference,
    and ends with the metrics and weights of an uninterrupted run. (Sampling resumes through sample_chunks, whose
    kill test is tests/loops/test_kill.py; one subprocess keeps this test short.)"""
    baseline, run = tmp_path / "baseline", tmp_path / "run"
    args = cream_args(suite, m1, run, "--variants", "[dyn]", "--iterations", "1")
    cream_main(cream_args(suite, m1, baseline, "--variants", "[dyn]", "--iterations", "1"))

    killed_at("step/dyn_iter1_dpo/1", args, run, "lit_align.loops.cream")
    assert torch.load(run / "dyn_iter1_dpo.partial" / "checkpoints" / "last.ckpt", weights_only=True)[
        "global_step"] == 1
    rank = (run / "iter1_rank" / "manifest.json").stat().st_mtime_ns
    cream_main(args)
    manifest = read_json(run / "dyn_iter1_dpo" / "manifest.json")
    assert manifest["resumed_from_step"] == 1 and manifest["attempts"] == 2
    assert manifest["metrics"]["reference_scored_in_fit"] == 0
    assert (run / "iter1_rank" / "manifest.json").stat().st_mtime_ns == rank  # not redone

    def metrics(root):
        return [(s["name"], {k: v for k, v in s["metrics"].items() if k not in TIMING})
                for s in read_json(root / "summary.json")["stages"]]

    assert metrics(run) == metrics(baseline)
    assert (run / "iter1_rank" / "scored.jsonl").read_bytes() == (baseline / "iter1_rank" / "scored.jsonl").read_bytes()
    final = [load_file(root / "dyn_iter1_dpo" / "model" / "model.safetensors") for root in (run, baseline)]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[1])


def test_killed_while_scoring_keeps_the_scores_it_saved(suite, m1, tmp_path):
    """kill -9 in iteration 1's rank stage after M1's log-probs were scored and saved, before M0's: the same command
    reuses the sampled chunks and M1's saved scores (only M0's are computed) and ends like an uninterrupted run."""
    baseline, run = tmp_path / "baseline", tmp_path / "run"
    args = cream_args(suite, m1, run, "--variants", "[srlm]", "--iterations", "1", "--dpo.max_steps", "1")
    cream_main(cream_args(suite, m1, baseline, "--variants", "[srlm]", "--iterations", "1", "--dpo.max_steps", "1"))

    killed_at("scores/iter1_rank/1", args, run, "lit_align.loops.cream")
    assert (run / "iter1_rank.partial").is_dir() and not (run / "iter1_rank").exists()
    saved = {p.name: len(read_json(p)["scores"]) for p in (run / "logprobs").glob("*.json")}
    assert len(saved) == 1 and set(saved.values()) == {12}, saved  # M1's 4 prompts x 3 samples, nothing of M0's
    cream_main(args)

    def rank(root):
        return read_json(root / "iter1_rank" / "manifest.json")

    assert rank(run)["resumed_from_chunk"] == 2  # both sampling chunks were committed before the kill: not redone
    assert rank(run)["metrics"]["scorings_computed"] == rank(baseline)["metrics"]["scorings_computed"] - 12
    assert (run / "iter1_rank" / "scored.jsonl").read_bytes() == (baseline / "iter1_rank" / "scored.jsonl").read_bytes()
    assert [s["metrics"].get("test_success") for s in read_json(run / "summary.json")["stages"]] == \
        [s["metrics"].get("test_success") for s in read_json(baseline / "summary.json")["stages"]]


def test_settings_and_errors(suite, m1, tmp_path, capsys):
    import yaml

    from lit_align.config_files import packaged

    dpo = yaml.safe_load(packaged("dpo").read_text())  # CREAM's DPO starts from the packaged DPO recipe
    s = DPOSettings()
    assert (s.lr, list(s.betas), s.batch_size, s.max_length, s.gradient_clip_val) == (
        dpo["model"]["init_args"]["lr"], dpo["model"]["init_args"]["betas"], dpo["data"]["init_args"]["batch_size"],
        dpo["data"]["init_args"]["max_length"], dpo["trainer"]["gradient_clip_val"])
    with pytest.raises(UserError, match="16 prompts, but 5 iterations of 4"):
        cream_main(cream_args(suite, m1, tmp_path / "a", "--iterations", "5"))
    with pytest.raises(UserError, match="at most once"):
        cream_main(cream_args(suite, m1, tmp_path / "b", "--variants", "[dyn, dyn]"))
    with pytest.raises(SystemExit):
        main(["cream", "--config", "cream", "--print_config"])
    assert "prompts_per_iteration: 300" in capsys.readouterr().out
