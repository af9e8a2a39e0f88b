"""The ReST loop's plan with canned stage results (no model): which policy each stage starts from, early stopping
(a worse step is rejected, the next threshold starts from its input again, `early_stop_patience` rejections in a row
end the Grow) and the summary's accepted flags, final policy and best stage."""
from __future__ import annotations

import pytest

from lit_align.files import read_json
from lit_align.loops.rest import ImproveSettings, Rest, RestConfig

VAL = {"base": 0.5, "improve_1_1": 0.6, "improve_1_2": 0.55, "improve_1_3": 0.7, "improve_2_1": 0.65,
       "improve_2_2": 0.68, "improve_2_3": 0.9}


class Canned(Rest):
    """Rest whose stages return VAL instead of sampling, training and evaluating."""

    def __init__(self, config):
        super().__init__(config, log=lambda line: None)
        self.calls = []

    def evaluate(self, path, folder, label="policy", model=None, tokenizer=None):
        return {"policy": path, "metrics": {"val_reward": VAL["base"], "test_success": 0.0, "samples": 0, "kept": 0}}

    def grow(self, policy, name, folder):
        self.calls.append((name, policy.stage))
        return {"policy": policy.path, "metrics": {"val_reward": policy.metrics["val_reward"], "samples": 8, "kept": 8}}

    def improve(self, policy, grow, threshold, name, folder):
        self.calls.append((name, policy.stage))
        return {"policy": f"{name}/model", "metrics": {"val_reward": VAL[name], "test_success": 0.0, "kept": 4}}


@pytest.mark.parametrize("patience, calls, final", [
    (2, [("grow_1", "base"), ("improve_1_1", "base"), ("improve_1_2", "improve_1_1"), ("improve_1_3", "improve_1_1"),
         ("grow_2", "improve_1_3"), ("improve_2_1", "improve_1_3"), ("improve_2_2", "improve_1_3")], "improve_1_3"),
    (1, [("grow_1", "base"), ("improve_1_1", "base"), ("improve_1_2", "improve_1_1"), ("grow_2", "improve_1_1"),
         ("improve_2_1", "improve_1_1"), ("improve_2_2", "improve_2_1"), ("improve_2_3", "improve_2_2")],
     "improve_2_3"),
])
def test_early_stopping_plan(suite, tmp_path, patience, calls, final):
    config = RestConfig(policy=str(suite.model), prompts_file=suite.file("prompts.jsonl"), sft_file=None,
                        out=str(tmp_path / "run"), progress=False,
                        improve=ImproveSettings(thresholds=[0.1, 0.2, 0.3], early_stop_patience=patience))
    config.eval.val_file, config.eval.test_file = suite.file("val.jsonl"), suite.file("test.jsonl")
    rest = Canned(config)
    summary = rest.run()
    assert rest.calls == calls and summary["final"]["stage"] == final
    accepted = {s["name"]: s["accepted"] for s in summary["stages"] if s["kind"] == "improve"}
    previous = VAL["base"]
    for name, _ in calls:  # a step is accepted exactly when it does not lower the validation reward of its input
        if name.startswith("improve"):
            assert accepted[name] == (VAL[name] >= previous)
            previous = VAL[name] if accepted[name] else previous
    assert read_json(tmp_path / "run" / "summary.json") == summary
    assert summary["best"]["stage"] == max((n for n, _ in calls if n.startswith("improve")), key=VAL.get)
