"""`python -m lit_align.tasks build` (= `lit-align suite`): builds data, tokenizer and model, skips what is built,
and rebuilds data of an older suite format together with the tokenizer trained on it."""

import json

from lit_align.tasks.__main__ import main

SIZES = {"sft": 8, "preference": 8, "prompts": 4, "expert": 4, "heldout": 4}
SMALL = [f"--{name}-size={n}" for name, n in SIZES.items()]


def test_build_skip_and_rebuild_an_old_format(tmp_path, capsys):
    assert main(["--out", str(tmp_path), *SMALL]) == 0
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["format"] == 2 and manifest["files"]["sft.jsonl"]["rows"] == 8
    assert (tmp_path / "tokenizer" / "tokenizer.json").exists() and (tmp_path / "model" / "model.safetensors").exists()
    capsys.readouterr()
    main(["--out", str(tmp_path), *SMALL])
    assert capsys.readouterr().out.count("already built") == 3
    (tmp_path / "data" / "manifest.json").write_text(json.dumps({**manifest, "format": 1}))  # a v1 suite
    main(["--out", str(tmp_path), *SMALL])
    assert "already built" not in capsys.readouterr().out
    assert json.loads((tmp_path / "data" / "manifest.json").read_text())["format"] == 2
