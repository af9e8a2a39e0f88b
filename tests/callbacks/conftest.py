"""Fixtures for the callback tests: the session's tiny suite model (tests/conftest.py `suite`), an 8-row SFT file
(2 optimizer steps at batch size 4) and 6 held-out task rows as evaluation prompts. Torch runs on one thread,
as in the rollout tests (tiny models: a second thread only adds hand-offs)."""
from __future__ import annotations

import pytest

from tests.threads import one_thread  # noqa: F401  (autouse, package scope)


@pytest.fixture
def files(tmp_path):
    from lit_align.files import write_jsonl
    from lit_align.tasks.build import heldout_rows, sft_rows
    from lit_align.tasks.suite import make_tasks

    write_jsonl(tmp_path / "sft.jsonl", sft_rows(make_tasks(8, 0, "train"), seed=0))
    write_jsonl(tmp_path / "val.jsonl", heldout_rows("val", 6, seed=0))
    return tmp_path / "sft.jsonl", tmp_path / "val.jsonl"
