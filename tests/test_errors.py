"""User errors on the command line: one `lit-align: error: ...` line on stderr and exit status 2, no traceback,
unless --debug or LIT_ALIGN_DEBUG=1; bugs keep their traceback (lit_align.errors)."""
import os
import subprocess
import sys

import pytest

from lit_align.cli import main
from lit_align.errors import DEBUG_ENV, UserError, run_reporting_user_errors


def test_fit_on_a_bad_jsonl_line_prints_one_line_and_exits_2(suite, tmp_path):
    """A data error raised in the data module's setup(), inside Lightning's trainer.fit, in a real process."""
    data = tmp_path / "pairs.jsonl"
    good = open(suite.file("preference.jsonl"), "rb").read().splitlines()[:3]
    bad = b'{"prompt": "p", "chosen": "\xff", "rejected": "b"}'
    data.write_bytes(b"\n".join([*good, bad]) + b"\n")
    cmd = [sys.executable, "-m", "lit_align.cli", "fit", "--config", "configs/dpo.yaml",
           "--model.init_args.model", str(suite.model), "--data.init_args.tokenizer", str(suite.model),
           "--data.init_args.train_file", str(data), "--trainer.default_root_dir", str(tmp_path / "run"),
           "--trainer.max_steps", "1", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
    env = {k: v for k, v in os.environ.items() if k != DEBUG_ENV}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**env, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    column = bad.index(b"\xff") + 1
    assert errors == [f"lit-align: error: {data}: line 4: invalid UTF-8 (byte 0xff at column {column}); expected "
                      "UTF-8 text (re-save the file as UTF-8)"], done.stderr[-3000:]
    assert done.stderr.rstrip().endswith(errors[0])
    assert "not recommended to provide both args and command line arguments" not in done.stderr


def test_tools_report_missing_files_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err == f"lit-align: error: {tmp_path / 'nope'}: no checkpoint file, and no last.ckpt under it\n"


def test_debug_flag_and_environment_show_the_traceback(tmp_path, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    export = ["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    with pytest.raises(FileNotFoundError, match="no last.ckpt"):
        main(["--debug", *export])  # the flag is taken out before the tool parses its arguments
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(FileNotFoundError, match="no last.ckpt"):
        main(export)


def test_wrapped_user_errors_are_found_and_bugs_keep_their_traceback(capsys, monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    seen = []

    def wrapped(argv):  # what jsonargparse does with an error raised while instantiating the data module
        seen.append(argv)
        try:
            raise UserError("data.jsonl: line 3: missing field 'chosen'")
        except UserError as error:
            raise ValueError("Does not validate against any of the Union subtypes") from error

    with pytest.raises(SystemExit) as exit_info:
        run_reporting_user_errors(wrapped, ["fit", "--debug=no"])
    assert exit_info.value.code == 2 and seen == [["fit", "--debug=no"]]
    assert capsys.readouterr().err == "lit-align: error: data.jsonl: line 3: missing field 'chosen'\n"

    def bug(argv):
        raise ValueError("not a user error")  # a plain ValueError is a bug: it keeps its traceback

    with pytest.raises(ValueError, match="not a user error"):
        run_reporting_user_errors(bug, [])
    assert capsys.readouterr().err == ""
