"""`lit-align suite --out DIR [--seed S] [--force]`: the suite, tokenizer and tiny model.

Writes DIR/data (the JSONL files and manifest.json, see `build.py`), DIR/tokenizer and DIR/model (the tiny
Llama with its tokenizer, loadable by path). Idempotent: a part already built with the same settings is
skipped (data: its manifest matches, format included, so data of an older suite version is rebuilt;
tokenizer/model: their files exist), unless --force. A rebuilt data part rebuilds the tokenizer and model
too, since the tokenizer is trained on the data's text.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .build import FORMAT, SIZES, build_suite


def _data_is_built(data: Path, want: dict) -> bool:
    try:
        manifest = json.loads((data / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return all(manifest.get(k) == v for k, v in want.items())


def build(out: Path, seed: int, force: bool, imperfect_share: float, sizes: dict[str, int], vocab_size: int) -> None:
    data, tok_dir, model_dir = out / "data", out / "tokenizer", out / "model"
    want = {"format": FORMAT, "seed": seed, "imperfect_share": imperfect_share, "sizes": sizes}
    if force or not _data_is_built(data, want):
        force = True  # the tokenizer (and the model sized to it) follow the data
        manifest = build_suite(data, seed, imperfect_share=imperfect_share,
                               **{f"{k}_size": v for k, v in sizes.items()})
        counts = ", ".join(f"{name} {entry['rows']}" for name, entry in manifest["files"].items())
        print(f"data: {data} ({counts})")
    else:
        print(f"data: {data} (already built)")
    # Imported here: transformers is slow to import and the data part does not need it.
    from .tiny_model import build_tiny_model
    from .tokenizer import build_tokenizer

    if force or not (tok_dir / "tokenizer.json").exists():
        tok = build_tokenizer(tok_dir, seed, vocab_size)
        print(f"tokenizer: {tok_dir} (vocabulary {len(tok)})")
    else:
        print(f"tokenizer: {tok_dir} (already built)")
    if force or not (model_dir / "model.safetensors").exists():
        model = build_tiny_model(model_dir, tok_dir, seed=seed)
        print(f"model: {model_dir} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters)")
    else:
        print(f"model: {model_dir} (already built)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lit-align suite", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="rebuild parts that are already there")
    parser.add_argument("--imperfect-share", type=float, default=0.5, help="share of SFT rows with a near-miss answer")
    parser.add_argument("--vocab-size", type=int, default=1024)
    for name, default in SIZES.items():
        parser.add_argument(f"--{name}-size", type=int, default=default)
    args = parser.parse_args(argv)
    sizes = {k: getattr(args, f"{k}_size") for k in SIZES}
    build(args.out, args.seed, args.force, args.imperfect_share, sizes, args.vocab_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
