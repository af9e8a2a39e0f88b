"""Markdown tables of a `lit-align dynamics` run for docs/dynamics/results.md, and copies of its plots and summary.

    python docs/dynamics/tables.py runs/dynamics docs/dynamics     # prints the tables; copies summary + PNGs

The numbers come from <run>/summary.json (written by lit_align.dynamics.experiment); nothing is recomputed here
except a copy of each fit's per-behaviour curves (history.json, rounded) into <dest>/histories.json.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def _steps(b: dict, key: str) -> str:
    return f"{b[f'steps_{key}']}" + ("" if b[f"reached_{key}"] else " (never; censored)")


def tables(summary: dict) -> str:
    out = ["| seed | behaviour | markers (of 6) | d0 | d0 / spread | policy acc. at 0 | steps to 80% (reward acc.) "
           "| steps to 80% (policy acc.) |", "|---|---|---|---|---|---|---|---|"]
    for seed in summary["seeds"]:
        for b in seed["behaviours"]:
            out.append(f"| {seed['seed']} | {b['group']} | {b['markers']} | {b['d0']:.3f} | {b['d0_norm']:.3f} "
                       f"| {b['accuracy0']:.2f} | {_steps(b, 'reward_accuracy')} | {_steps(b, 'accuracy')} |")
    out += ["", "| seed | Spearman(d0/spread, steps) reward acc. | policy acc. | Spearman(markers, steps) reward acc. "
            "| policy acc. |", "|---|---|---|---|---|"]
    for seed in summary["seeds"]:
        s = seed["spearman"]
        out.append(f"| {seed['seed']} | {s['d0_norm_vs_steps_reward_accuracy']} | {s['d0_norm_vs_steps_accuracy']} "
                   f"| {s['markers_vs_steps_reward_accuracy']} | {s['markers_vs_steps_accuracy']} |")
    p = summary["pooled"]
    out.append(f"| mean | {p['mean_d0_norm_vs_steps_reward_accuracy']} | {p['mean_d0_norm_vs_steps_accuracy']} "
               f"| {p['mean_markers_vs_steps_reward_accuracy']} | {p['mean_markers_vs_steps_accuracy']} |")
    out.append(f"| all 15 points | {p['all_points_d0_norm_vs_steps_reward_accuracy']} "
               f"| {p['all_points_d0_norm_vs_steps_accuracy']} | | |")
    out += ["", "| seed | start | d/spread at 0 (mean of behaviours) | policy acc. at 0 | steps to policy acc. < 50% "
            "| < 20% | steps to reward acc. < 20% |", "|---|---|---|---|---|---|---|"]
    for seed in summary["seeds"]:
        for start in ("aligned", "base"):
            f = seed["flipped"][start]
            out.append(f"| {seed['seed']} | {start} | {f['d0_norm']:.2f} | {f['accuracy0']:.2f} "
                       f"| {f['accuracy_below_50']} | {f['accuracy_below_20']} | {f['reward_accuracy_below_20']} |")
    return "\n".join(out)


def main(run: str, dest: str) -> None:
    run_dir, out = Path(run), Path(dest)
    summary = json.loads((run_dir / "summary.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "summary.json", out / "summary.json")
    for name in ("accuracy.png", "flipped.png"):
        shutil.copy(run_dir / name, out / name)
    histories = {p.parent.name: [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}
                                 for row in json.loads(p.read_text())] for p in sorted(run_dir.glob("*/history.json"))}
    (out / "histories.json").write_text(json.dumps(histories, separators=(",", ":")))  # rounded to 4 decimals
    print(tables(summary))


if __name__ == "__main__":
    main(*sys.argv[1:3])
