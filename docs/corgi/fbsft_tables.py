"""Markdown tables of the feedback-SFT follow-up (docs/corgi/results.md): per-seed success@k, 2-seed means,
fix/worse rates, from docs/corgi/eval_seed{S}_fbsft*.json. Missing files are skipped.

    python docs/corgi/fbsft_tables.py
"""
import json
from pathlib import Path

D = Path("docs/corgi")
MODELS = [("fbsft", "feedback-SFT"), ("fbsft_single", "single-attempt RL from feedback-SFT (40 steps)"),
          ("fbsft_corgi", "CORGI K = 3 from feedback-SFT (40 steps)"),
          ("fbsft_single_120steps", "single-attempt RL from feedback-SFT (120 steps)"),
          ("fbsft_corgi_120steps", "CORGI K = 3 from feedback-SFT (120 steps)")]
SPLITS = [("test_seen", "test, seen phrasings (201 prompts)"), ("test_unseen", "test, unseen phrasings (199)"),
          ("transfer", "transfer, held-out families (400)")]


def load(seed, key):
    p = D / f"eval_seed{seed}_{key}.json"
    return json.loads(p.read_text()) if p.exists() else None


def pct(x):
    return f"{100 * x:.1f}%"


for split, title in SPLITS:
    print(f"\n### success@k, {title}, feedback-SFT start\n")
    print("| model | seed | @0 | @1 | @2 | @3 | @4 | @5 |\n|---|---|---|---|---|---|---|---|")
    for key, name in MODELS:
        rows = {s: load(s, key) for s in (0, 1)}
        rows = {s: r for s, r in rows.items() if r}
        for s, r in rows.items():
            print(f"| {name} | {s} | " + " | ".join(pct(r[split][f"success@{k}"]) for k in range(6)) + " |")
        if len(rows) == 2:
            print(f"| **{name}** | mean | " + " | ".join(
                f"**{pct(sum(r[split][f'success@{k}'] for r in rows.values()) / 2)}**" for k in range(6)) + " |")

print("\n### fix rate / worse rate per feedback round, seed 1 (and 120-step seed 0)\n")
print("| model | seed | split | round 1 | round 2 | round 3 | round 4 | round 5 |\n|---|---|---|---|---|---|---|---|")
for key, name in MODELS:
    for s in (1, 0):
        if s == 0 and "120" not in key:
            continue
        r = load(s, key)
        if not r:
            continue
        for split, _ in SPLITS:
            print(f"| {name} | {s} | {split} | " + " | ".join(
                f"{pct(r[split][f'fix_rate@{k}'])} / {pct(r[split][f'worse_rate@{k}'])}" for k in range(1, 6)) + " |")

print("\n### differences, CORGI minus baseline (points), k = 0..5\n")
for steps in ("", "_120steps"):
    for s in (0, 1, "mean"):
        seeds = (0, 1) if s == "mean" else (s,)
        b = [load(x, "fbsft_single" + steps) for x in seeds]
        c = [load(x, "fbsft_corgi" + steps) for x in seeds]
        if not all(b) or not all(c):
            continue
        for split, _ in SPLITS:
            pairs = list(zip(b, c, strict=True))
            d = [100 * sum(cc[split][f"success@{k}"] - bb[split][f"success@{k}"] for bb, cc in pairs) / len(seeds)
                 for k in range(6)]
            print(f"steps{steps or '_40'} seed {s} {split}: " + ", ".join(f"{x:+.1f}" for x in d))
