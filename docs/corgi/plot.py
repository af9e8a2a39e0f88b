"""Tables, summary JSON and the success@k figure of the CORGI experiment from docs/corgi/eval_seed*_*.json.

    python docs/corgi/plot.py            # writes docs/corgi/summary.json, success_at_k.png; prints the tables

Each eval JSON is docs/corgi/evaluate_all.py's output for one (seed, model): success@0..K, per-round fix and worse
rates on test (seen / unseen phrasings) and transfer. Means are over the seeds present.
"""
import json
from pathlib import Path

HERE = Path(__file__).parent
MODELS = {"sft": "SFT (no RL)", "single": "single-attempt RL", "corgi": "CORGI (K = 3)",
          "corgi_last": "CORGI, reward = last score (ablation)"}
SPLITS = {"test_seen": "test, seen phrasings", "test_unseen": "test, unseen phrasings",
          "transfer": "transfer (held-out families)"}


def load() -> dict:
    out = {}
    for path in sorted(HERE.glob("eval_seed*_*.json")):
        seed, model = path.stem.removeprefix("eval_seed").split("_", 1)
        out[(int(seed), model)] = json.loads(path.read_text())
    return out


def mean(values):
    values = [v for v in values if v == v]
    return sum(values) / len(values) if values else float("nan")


def tables(results: dict) -> tuple[str, dict]:
    seeds = sorted({s for s, _ in results})
    rounds = max(r["rounds"] for r in results.values())
    summary: dict = {"seeds": seeds, "rounds": rounds, "success_at_k": {}, "fix_rate": {}, "worse_rate": {}}
    lines = []
    for split, title in SPLITS.items():
        lines += [f"### success@k, {title}", "", "| model | seed | " + " | ".join(f"@{k}" for k in range(rounds + 1))
                  + " |", "|---|---|" + "---|" * (rounds + 1)]
        for model, name in MODELS.items():
            per_seed = {s: results[(s, model)][split] for s in seeds if (s, model) in results}
            for s, r in per_seed.items():
                lines.append(f"| {name} | {s} | " + " | ".join(f"{r[f'success@{k}']:.1%}" for k in range(rounds + 1))
                             + " |")
            if per_seed:
                avg = [mean(r[f"success@{k}"] for r in per_seed.values()) for k in range(rounds + 1)]
                summary["success_at_k"].setdefault(split, {})[model] = avg
                lines.append(f"| **{name}** | mean | " + " | ".join(f"**{v:.1%}**" for v in avg) + " |")
        lines.append("")
    lines += ["### per feedback round: fix rate / worse rate (mean over seeds)", "",
              "| model | split | " + " | ".join(f"round {r}" for r in range(1, rounds + 1)) + " |",
              "|---|---|" + "---|" * rounds]
    for model, name in MODELS.items():
        for split in SPLITS:
            per_seed = [results[(s, model)][split] for s in seeds if (s, model) in results]
            if not per_seed:
                continue
            fix = [mean(r[f"fix_rate@{k}"] for r in per_seed) for k in range(1, rounds + 1)]
            worse = [mean(r[f"worse_rate@{k}"] for r in per_seed) for k in range(1, rounds + 1)]
            summary["fix_rate"].setdefault(split, {})[model] = fix
            summary["worse_rate"].setdefault(split, {})[model] = worse
            cells = [f"{f:.1%} / {w:.1%}" for f, w in zip(fix, worse, strict=True)]
            lines.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
    return "\n".join(lines), summary


def plot(summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SPLITS), figsize=(13, 3.8), sharey=False)
    for ax, (split, title) in zip(axes, SPLITS.items(), strict=True):
        for model, name in MODELS.items():
            values = summary["success_at_k"].get(split, {}).get(model)
            if values:
                ax.plot(range(len(values)), [100 * v for v in values], marker="o", label=name)
        ax.set_title(title)
        ax.set_xlabel("feedback rounds k")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("success@k (%), mean of seeds")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(HERE / "success_at_k.png", dpi=110)


def main() -> None:
    results = load()
    text, summary = tables(results)
    (HERE / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(summary)
    print(text)


if __name__ == "__main__":
    main()
