"""Test-wide setup. TRITON_INTERPRET must be set before any Triton kernel is defined, so it is set here,
before pytest imports a test module: Triton kernels then run on CPU tensors through the interpreter."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


import pytest  # noqa: E402


class Suite:
    """Paths of a small bundled-suite build: data/*.jsonl, tokenizer/, model/ (tiny Llama + tokenizer)."""

    def __init__(self, root):
        self.root, self.data, self.model = root, root / "data", root / "model"

    def file(self, name: str) -> str:
        return str(self.data / name)


@pytest.fixture(scope="session")
def suite(tmp_path_factory) -> Suite:
    """Built once per test session in about a second: a small task suite, its tokenizer, a tiny random Llama."""
    from lit_align.tasks.build import build_suite
    from lit_align.tasks.tiny_model import build_tiny_model
    from lit_align.tasks.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("suite")
    build_suite(root / "data", 0, sft_size=64, preference_size=48, prompts_size=16, expert_size=16, heldout_size=8)
    build_tokenizer(root / "tokenizer")
    torch.manual_seed(0)
    build_tiny_model(root / "model", root / "tokenizer", hidden_size=32, num_layers=1, num_heads=2,
                     intermediate_size=64)
    return Suite(root)
