"""Does a pair's consistency C tell right self-made labels from wrong ones? Per rank stage of a `lit-align cream`
run: the mean C of the pairs whose chosen response the task checker scores higher (right), lower (wrong) or the same
(tie). CREAM-dyn helps only where right labels have the higher C (its eps = 1 - C damps the others).

    .venv/bin/python docs/cream/consistency_vs_label.py runs/cream_s0 runs/cream_s1 > docs/cream/consistency_vs_label.md
"""
import json
import sys
from pathlib import Path


def outcome(checker: list, pair: list) -> str:
    chosen, rejected = checker[pair[0]], checker[pair[1]]
    if chosen is None or rejected is None or chosen == rejected:
        return "tie"
    return "right" if chosen > rejected else "wrong"


def main() -> None:
    print("| run | stage | pairs | mean C, right labels | mean C, wrong labels | mean C, ties |")
    print("|---|---|---|---|---|---|")
    for run in map(Path, sys.argv[1:]):
        for folder in sorted(run.glob("*rank"), key=lambda p: (p.name.split("iter")[1], p.name)):
            groups: dict[str, list[float]] = {"right": [], "wrong": [], "tie": []}
            rows = [json.loads(line) for line in (folder / "rankings.jsonl").read_text().splitlines()]
            for r in rows:
                if r["pair"] is not None:
                    groups[outcome(r["checker"], r["pair"])].append(r["consistency"])
            means = {k: (f"{sum(v) / len(v):.3f} ({len(v)})" if v else "–") for k, v in groups.items()}
            print(f"| {run.name} | {folder.name} | {sum(map(len, groups.values()))} | {means['right']} | "
                  f"{means['wrong']} | {means['tie']} |")


if __name__ == "__main__":
    main()
