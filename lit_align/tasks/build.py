"""Write the suite's JSONL files in TRL's columns, atomically, with a manifest.

Files (every row has an "id", the checker as a "task" dict, rebuilt by `checker_from_dict`, and its "family"):

- sft.jsonl          prompt, completion, task, family, score, mistake — `imperfect_share` of the rows (exactly
                     round(share * rows)) carry a near-miss completion, named by "mistake" (null otherwise)
- preference.jsonl   prompt, chosen, rejected, task, family, chosen_score, rejected_score, mistake — chosen
                     is a correct answer and rejected the same answer with one mistake (named by "mistake"),
                     so the pair differs only by that mistake; the checker scores chosen strictly higher
- prompts.jsonl      prompt, task, family — training prompts for online RL (PPO/RLOO/CORGI/ReST/CREAM)
- expert.jsonl       prompt, completion, task, family — correct answers only (RLGAF's expert demonstrations)
- val.jsonl, test.jsonl, transfer.jsonl   prompt, task, family, split, phrasing ("seen"/"unseen") — held-out
                     prompts, each once, balanced over families and phrasings in every prefix (see `suite.py`)

Training files hold trained families in seen phrasings only; no held-out prompt text occurs in them. The
manifest lists the families (trained / held out), the phrasing grammar's template counts, the generators'
settings and, per file, its rows, distinct prompts and counts by family, phrasing and mistake.

Each file is written under a temporary name and renamed (`os.replace`), manifest.json last, so a crash
never leaves a half-written file and a present manifest means a complete suite.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lit_align.files import read_jsonl, write_json, write_jsonl  # noqa: F401 (read_jsonl: the suite's reader)

from .responses import COMMON_FIRST, MISTAKE_WEIGHTS, SEPARATOR, ZIPF_EXPONENT, bad_response, good_response, good_words
from .suite import Task, describe, make_tasks

HELDOUT_SPLITS = ("val", "test", "transfer")
FORMAT = 2
"""The manifest's "format": 2 is suite v2 (families, phrasing grammar); `lit-align suite` rebuilds older data."""
SIZES = {"sft": 8000, "preference": 3000, "prompts": 1000, "expert": 1000, "heldout": 400}
"""Default rows per file (per held-out split for "heldout"): the SFT and preference sizes of the suite v2
experiment (8000 SFT rows, 3000 pairs)."""


def _rng(seed: int | str, name: str) -> random.Random:
    return random.Random(f"lit_align.tasks.build:{name}:{seed}")


def sft_rows(
    tasks: list[Task], seed: int | str, imperfect_share: float = 0.5, mistakes: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    if not 0.0 <= imperfect_share <= 1.0:
        raise ValueError(f"imperfect_share must be in [0, 1], got {imperfect_share}")
    rng = _rng(seed, "sft")
    imperfect = set(rng.sample(range(len(tasks)), round(imperfect_share * len(tasks))))
    rows = []
    for i, t in enumerate(tasks):
        if i in imperfect:
            completion, mistake = bad_response(t.checker, rng, weights=mistakes)
        else:
            completion, mistake = good_response(t.checker, rng), None
        score = t.checker.check(completion).score
        rows.append({"id": f"sft-{i:05d}", **t.row(), "completion": completion, "score": score, "mistake": mistake})
    return rows


def preference_rows(
    tasks: list[Task], seed: int | str, mistakes: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    rng = _rng(seed, "preference")
    rows = []
    for i, t in enumerate(tasks):
        words = good_words(t.checker, rng)
        chosen = SEPARATOR.join(words)
        rejected, mistake = bad_response(t.checker, rng, base=words, weights=mistakes)  # chosen with one mistake
        cs, rs = t.checker.check(chosen).score, t.checker.check(rejected).score
        if not cs > rs:  # the generators guarantee it; a silent bad pair would poison DPO
            raise AssertionError(f"pair {i}: chosen {chosen!r} ({cs}) does not beat rejected {rejected!r} ({rs})")
        rows.append({"id": f"pref-{i:05d}", **t.row(), "chosen": chosen, "rejected": rejected,
                     "chosen_score": cs, "rejected_score": rs, "mistake": mistake})
    return rows


def expert_rows(tasks: list[Task], seed: int | str) -> list[dict[str, Any]]:
    rng = _rng(seed, "expert")
    return [{"id": f"expert-{i:05d}", **t.row(), "completion": good_response(t.checker, rng)}
            for i, t in enumerate(tasks)]


def prompt_rows(tasks: list[Task], name: str) -> list[dict[str, Any]]:
    return [{"id": f"{name}-{i:05d}", **t.row()} for i, t in enumerate(tasks)]


def heldout_rows(split: str, size: int, seed: int | str) -> list[dict[str, Any]]:
    tasks = make_tasks(size, seed, split)
    rows = prompt_rows(tasks, split)
    return [{**row, "split": split, "phrasing": t.phrasing} for row, t in zip(rows, tasks, strict=True)]


def build_suite(
    out_dir: str | os.PathLike,
    seed: int = 0,
    *,
    sft_size: int = SIZES["sft"],
    preference_size: int = SIZES["preference"],
    prompts_size: int = SIZES["prompts"],
    expert_size: int = SIZES["expert"],
    heldout_size: int = SIZES["heldout"],
    imperfect_share: float = 0.5,
    mistakes: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write every file of the suite into `out_dir` and return the manifest (also written, last)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[dict[str, Any]]] = {
        "sft.jsonl": sft_rows(make_tasks(sft_size, f"{seed}:sft", "train"), seed, imperfect_share, mistakes),
        "preference.jsonl": preference_rows(make_tasks(preference_size, f"{seed}:preference", "train"), seed, mistakes),
        "prompts.jsonl": prompt_rows(make_tasks(prompts_size, f"{seed}:prompts", "train"), "prompt"),
        "expert.jsonl": expert_rows(make_tasks(expert_size, f"{seed}:expert", "train"), seed),
        **{f"{s}.jsonl": heldout_rows(s, heldout_size, seed) for s in HELDOUT_SPLITS},
    }
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "seed": seed,
        "imperfect_share": imperfect_share,
        "sizes": {"sft": sft_size, "preference": preference_size, "prompts": prompts_size,
                  "expert": expert_size, "heldout": heldout_size},
        **describe(),
        "generators": {"zipf_exponent": ZIPF_EXPONENT, "common_first": COMMON_FIRST,
                       "mistake_weights": dict(mistakes or MISTAKE_WEIGHTS)},
        "files": {},
    }
    for name, rows in files.items():
        write_jsonl(out / name, rows)
        manifest["files"][name] = _file_entry(rows)
    write_json(out / "manifest.json", manifest, sort_keys=True)
    return manifest


def _file_entry(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A file's rows, distinct prompts and counts by family (and phrasing, mistake where the rows have them)."""
    entry: dict[str, Any] = {"rows": len(rows), "unique_prompts": len({r["prompt"] for r in rows})}
    for column, key in (("family", "families"), ("phrasing", "phrasings"), ("mistake", "mistakes")):
        if rows and column in rows[0]:
            entry[key] = _counts(r[column] for r in rows)
    return entry


def _counts(values: Iterable[str | None]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[str(v)] = counts.get(str(v), 0) + 1
    return dict(sorted(counts.items()))
