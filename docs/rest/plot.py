"""Plot docs/rest/rest.png: greedy test success per ReST stage, checker- vs reward-model-trained runs, both seeds.

Reads the summary.json files copied next to this script (summary_<reward>_s<seed>.json, written by `lit-align rest`)
and draws the greedy test success per stage (SFT, Grow 1 / Improve 1..3, Grow 2 / Improve 1..3) of every run; a
rejected Improve step (validation reward fell; the loop goes on from the previous policy) is an open marker. The
second panel puts the reward-model-trained runs' validation reward (the RM score they climb) next to the checker's
success on the same validation answers.

    .venv/bin/python docs/rest/plot.py
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).parent
RUNS = [("checker", 0, "tab:blue", "-"), ("checker", 1, "tab:blue", "--"),
        ("rm", 0, "tab:red", "-"), ("rm", 1, "tab:red", "--")]


def stages(summary: dict) -> list[dict]:
    """The eval and Improve stages of a run, in order (Grow stages carry no new policy)."""
    return [s for s in summary["stages"] if s["kind"] in ("eval", "improve")]


def label(name: str) -> str:
    """'base' -> 'SFT', 'improve_1_2' -> 'G1/I2'."""
    if name == "base":
        return "SFT"
    _, grow, step = name.split("_")
    return f"G{grow}/I{step}"


def main() -> None:
    fig, (ax_success, ax_rm) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax_val = ax_rm.twinx()
    names: list[str] = []
    for reward, seed, color, style in RUNS:
        path = HERE / f"summary_{reward}_s{seed}.json"
        if not path.exists():
            continue
        rows = stages(json.loads(path.read_text()))
        names = max(names, [label(s["name"]) for s in rows], key=len)
        xs = list(range(len(rows)))
        open_ = ["white" if s.get("accepted") is False else color for s in rows]
        title = f"trained on {'checker' if reward == 'checker' else 'reward model'}, seed {seed}"
        curves = [(ax_success, "test_success", 100, color, title)]
        if reward == "rm":
            curves += [(ax_rm, "val_reward", 1, "tab:red", f"RM score (val), seed {seed}"),
                       (ax_val, "val_success", 100, "tab:green", f"checker success (val), seed {seed}")]
        for ax, key, scale, c, name in curves:
            ys = [s["metrics"][key] * scale for s in rows]
            ax.plot(xs, ys, style, color=c, label=name)
            for x, y, face in zip(xs, ys, open_, strict=True):
                ax.plot(x, y, "o", color=c, mfc="white" if face == "white" else c)
    for ax in (ax_success, ax_rm):
        ax.set_xticks(range(len(names)), names)
        ax.grid(alpha=0.3)
    ax_success.set_ylabel("greedy test success, checker (%)")
    ax_success.set_title("checker success on 200 test prompts")
    ax_success.legend(fontsize=8)
    ax_rm.set_ylabel("reward model score, greedy, 200 val prompts", color="tab:red")
    ax_val.set_ylabel("checker success, same answers (%)", color="tab:green")
    ax_val.set_ylim(0, 100)
    ax_rm.set_title("RM-trained runs: the reward they climb vs the checker")
    lines = ax_rm.get_legend_handles_labels()[0] + ax_val.get_legend_handles_labels()[0]
    ax_rm.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="lower right")
    fig.suptitle("ReST (G=2 Grow, N=8 samples, 3 Improve each) on the suite; open marker = rejected Improve step")
    fig.tight_layout()
    fig.savefig(HERE / "rest.png", dpi=90)


if __name__ == "__main__":
    main()
