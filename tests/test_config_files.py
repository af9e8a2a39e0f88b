"""The packaged configs: `lit-align configs ls|cp`, `--config NAME` from any folder, and the overview of
`lit-align --help`."""
import subprocess
import sys

import pytest
import yaml

from lit_align.cli import TOOLS, main
from lit_align.config_files import ROOT, names, resolve, resolve_config_args
from lit_align.errors import MissingFileError


def test_every_recipe_config_ships_in_the_package():
    assert {"sft", "reward", "discriminator", "dpo", "ppo", "rloo", "rlgaf", "strategy/ddp"} <= set(names())
    for name in names():
        text = (ROOT / f"{name}.yaml").read_text()
        first = text.splitlines()[0]
        assert first.startswith("# lit-align ") and f" --config configs/{name}.yaml" in first, \
            f"{name} must open with the command that runs it"
        yaml.safe_load(text)


def test_config_names_resolve_to_packaged_files_and_paths_stay(tmp_path):
    assert resolve("dpo") == str(ROOT / "dpo.yaml") == resolve("dpo.yaml")
    assert resolve("strategy/ddp") == str(ROOT / "strategy" / "ddp.yaml")
    own = tmp_path / "dpo.yaml"
    own.write_text("seed_everything: 1\n")
    assert resolve(str(own)) == str(own)  # a file of that name wins
    assert resolve_config_args(["fit", "--config", "sft", f"--config={own}"]) == \
        ["fit", "--config", str(ROOT / "sft.yaml"), f"--config={own}"]
    with pytest.raises(MissingFileError, match="no packaged config.*dpo"):
        resolve("nosuch")


def test_configs_ls_and_cp(tmp_path, capsys):
    main(["configs", "ls"])
    out = capsys.readouterr().out
    assert all(name in out for name in names()) and "lit-align fit --config configs/dpo.yaml" in out
    assert "lit-align rest --config configs/rest.yaml" in out
    main(["configs", "cp", "rloo", str(tmp_path) + "/"])
    assert (tmp_path / "rloo.yaml").read_text() == (ROOT / "rloo.yaml").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["configs", "cp", "nosuch", str(tmp_path)])
    assert exit_info.value.code == 2


def test_fit_reads_a_packaged_config_by_name_from_any_folder(tmp_path):
    done = subprocess.run([sys.executable, "-m", "lit_align.cli", "fit", "--config", "dpo", "--print_config"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lit_align.modules.DPOModule" in done.stdout


def test_help_lists_every_command(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    for command in ["fit", "validate", "test", "predict", *TOOLS]:
        assert f"  {command} " in out
