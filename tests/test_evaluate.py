"""`lit-align evaluate` (lit_align/evaluate.py) on the suite's tiny model: the metrics table on stdout, the JSON
result written atomically, the KL of the model to itself (zero), and a missing prompts file as a one-line error
with exit status 2; reached through `lit-align`'s command table too."""
from __future__ import annotations

import json

import pytest

from lit_align.evaluate import main


def test_command(suite, tmp_path, capsys):
    out = tmp_path / "out" / "eval.json"
    code = main(["--model", str(suite.model), "--prompts", suite.file("val.jsonl"), "--reference", str(suite.model),
                 "--max-new-tokens", "4", "--limit", "3", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["n"] == 3 and abs(result["kl"]) < 1e-5 and len(result["examples"]) == 3
    assert result["sources"]["model"] == str(suite.model)
    assert "success" in capsys.readouterr().out
    assert not list(out.parent.glob(".*tmp"))  # written atomically, no temporary left
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(suite.model), "--prompts", str(tmp_path / "missing.jsonl")])
    assert exit_info.value.code == 2
    assert "data file not found" in capsys.readouterr().err


def test_listed_as_a_lit_align_command():
    import importlib

    from lit_align.cli import TOOLS

    assert importlib.import_module(TOOLS["evaluate"][0]).main is main
