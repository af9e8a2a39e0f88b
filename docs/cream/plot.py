"""Plot docs/cream/cream.png and print the tables of docs/cream/results.md from the runs' summary.json files.

Reads summary_s<seed>.json (and summary_<tag>_s<seed>.json for extra runs) copied next to this script (written by
`lit-align cream`) and draws, per iteration (0 = M1, the SFT model) and variant (CREAM-dyn, CREAM-avg, SRLM), one
line per seed: greedy test success, test checker score, the mean consistency C of the iteration's self-labelled
data, and the self-labelling accuracy (share of pairs whose chosen response the checker scores higher, among the
pairs it does not tie).

    .venv/bin/python docs/cream/plot.py            # writes cream.png, prints the markdown tables
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
COLORS = {"dyn": "tab:blue", "avg": "tab:green", "srlm": "tab:red"}
NAMES = {"dyn": "CREAM-dyn", "avg": "CREAM-avg", "srlm": "SRLM"}
PANELS = [("test_success", 100, "greedy test success (%)"), ("test_score", 1, "test checker score"),
          ("mean_consistency", 1, "mean consistency C of the iteration's data"),
          ("label_accuracy_untied", 100, "self-labelling accuracy, untied pairs (%)")]


def runs(tag: str = "") -> dict[int, dict]:
    prefix = f"summary_{tag}_s" if tag else "summary_s"
    return {int(p.stem.rsplit("_s", 1)[1]): json.loads(p.read_text()) for p in sorted(HERE.glob(f"{prefix}*.json"))}


def fmt(value, scale: float) -> str:
    if value is None:
        return "–"
    return f"{value * scale:.1f}" if scale == 100 else f"{value:.3f}"


def table(summaries: dict[int, dict]) -> str:
    """One markdown row per (variant, iteration, seed)."""
    head = ("| variant | iter | seed | test success % | test score | val success % | mean C | mean tau | pairs | "
            "label correct % | wrong % | tie % | accuracy untied % | mean eps | unfinished/untokenizable pairs |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for variant in NAMES:
        for seed, summary in summaries.items():
            for row in summary["table"]:
                if row["variant"] != variant:
                    continue
                m = row
                lines.append(f"| {NAMES[variant]} | {m['iteration']} | {seed} | {fmt(m.get('test_success'), 100)} | "
                             f"{fmt(m.get('test_score'), 1)} | {fmt(m.get('val_success'), 100)} | "
                             f"{fmt(m.get('mean_consistency'), 1)} | {fmt(m.get('mean_tau'), 1)} | "
                             f"{m.get('pairs_trained', '–')} | {fmt(m.get('label_correct'), 100)} | "
                             f"{fmt(m.get('label_wrong'), 100)} | {fmt(m.get('label_tie'), 100)} | "
                             f"{fmt(m.get('label_accuracy_untied'), 100)} | {fmt(m.get('mean_eps'), 1)} | "
                             f"{m.get('pairs_untokenizable', '–')} |")
    return "\n".join(lines)


def plot(summaries: dict[int, dict], out: Path, title: str) -> None:
    fig, axes = plt.subplots(1, len(PANELS), figsize=(18, 4.2))
    for ax, (key, scale, name) in zip(axes, PANELS, strict=True):
        for variant, color in COLORS.items():
            for seed, summary in summaries.items():
                rows = [r for r in summary["table"] if r["variant"] == variant and r.get(key) is not None]
                if rows:
                    ax.plot([r["iteration"] for r in rows], [r[key] * scale for r in rows], "o-" if seed == 0 else
                            "s--", color=color, label=f"{NAMES[variant]}, seed {seed}")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("iteration (0 = M1, the SFT model)")
        ax.set_xticks(range(0, 4))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def main() -> None:
    tag = sys.argv[1] if len(sys.argv) > 1 else ""
    summaries = runs(tag)
    name = f"cream_{tag}.png" if tag else "cream.png"
    plot(summaries, HERE / name, "CREAM vs SRLM on the suite (T=3, 300 prompts x N=5 per iteration, beta 0.1)"
         + (f" [{tag}]" if tag else ""))
    print(table(summaries))


if __name__ == "__main__":
    main()
