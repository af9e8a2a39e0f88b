"""The recipe configs that ship inside the package (lit_align/configs/*.yaml), for users who installed lit_align
with pip and have no clone: `lit-align configs ls` lists them with the command each opens with, `lit-align configs
cp NAME DEST` copies one to edit (torchtune's `tune ls` / `tune cp`), and `lit-align fit --config NAME` (e.g. `dpo`
or `strategy/ddp`) reads a packaged config when no file of that name exists.

In a clone, `configs/` at the repository root is a link to the same folder, so `--config configs/dpo.yaml` works too.
"""
from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from lit_align.errors import MissingFileError

ROOT = Path(__file__).resolve().parent / "configs"


def names() -> list[str]:
    """Every packaged config by name: "dpo", "strategy/ddp", ..."""
    return sorted(str(p.relative_to(ROOT).with_suffix("")) for p in ROOT.rglob("*.yaml"))


def packaged(name: str) -> Path | None:
    """The packaged config called `name` ("dpo", "dpo.yaml", "configs/dpo.yaml"), or None."""
    stem = name.removeprefix("configs/").removesuffix(".yaml")
    path = ROOT / f"{stem}.yaml"
    return path if stem in names() else None


def resolve(path: str) -> str:
    """`path` when it names a file, else the packaged config it names; neither is a MissingFileError."""
    if Path(path).exists():
        return path
    found = packaged(path)
    if found is None:
        raise MissingFileError(f"config {path!r}: no such file, and no packaged config of that name "
                               f"(`lit-align configs ls`: {', '.join(names())})")
    return str(found)


def resolve_config_args(argv: list[str]) -> list[str]:
    """argv with every `--config X` / `--config=X` resolved by `resolve`."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" and i + 1 < len(argv):
            out += [arg, resolve(argv[i + 1])]
            i += 2
            continue
        out.append(f"--config={resolve(arg.split('=', 1)[1])}" if arg.startswith("--config=") else arg)
        i += 1
    return out


def summary(path: Path) -> tuple[str, str]:
    """(the command a config opens with, its first line of description)."""
    lines = [line[1:].strip() for line in path.read_text().splitlines() if line.startswith("#")]
    return (lines[0] if lines else ""), (lines[1] if len(lines) > 1 else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lit-align configs", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("ls", help="list the packaged configs and the command each runs")
    cp = sub.add_parser("cp", help="copy a packaged config to edit it")
    cp.add_argument("name", help="a config name from `lit-align configs ls`, e.g. dpo")
    cp.add_argument("dest", help="a file or folder")
    args = parser.parse_args(argv)
    if args.action == "ls":
        for name in names():
            command, description = summary(ROOT / f"{name}.yaml")
            print(f"{name:16s} {command}\n{'':16s} {description}")
        return
    source = packaged(args.name)
    if source is None:
        raise MissingFileError(f"no packaged config {args.name!r}; `lit-align configs ls` lists them: {names()}")
    dest = Path(args.dest)
    dest = dest / source.name if dest.is_dir() or args.dest.endswith(os.sep) else dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest)
    print(f"copied {source.relative_to(ROOT)} to {dest}")
