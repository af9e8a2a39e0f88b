"""`make demo` / `lit-align demo`: the whole pipeline on the bundled task suite, from nothing, on a CPU.

    suite (data, tokenizer, tiny Llama) -> SFT -> reward model -> DPO, PPO, RLOO, GRPO, RLGAF (each from SFT)
      -> greedy evaluation on the held-out splits

for each seed, then a before/after table and PNG plots of the training curves. The default run is one seed with
DPO and RLOO; `--full` is the report of the README (seeds 0 and 1, DPO, PPO, RLOO, GRPO and RLGAF).

One source of truth: every training stage is the packaged recipe config (lit_align/configs/<recipe>.yaml, what
`lit-align fit --config <recipe>` runs): its model and data classes with their arguments and the trainer's
schedule (max_epochs, max_steps, gradient_clip_val). The demo puts only its own things on top: the paths (the
configs' artifacts/suite/... and artifacts/<stage> become --out/suite/... and --out/seed<s>/<stage>) and the seed.

Evaluation (greedy, on the first --limit rows of each held-out file): task success on the "test" prompts in
seen and unseen phrasings (trained families; an unseen phrasing uses a part of the grammar never trained) and
on the "transfer" prompts (the two held-out families), plus on the test prompts the checker score, the reward
model's score, KL to the SFT model and diversity (distinct words per response, distinct responses; success
alone can be gamed by repetition).

Every stage is a stage of lit_align.loops (the driver ReST runs on): --out/seed<s> is a RunDir and each stage
works in --out/seed<s>/<stage>.partial/, renamed to <stage>/ when complete, with a done.json holding a key: a
hash of the suite's manifest, the stage's settings and the keys of the stages it starts from. A rerun skips a
stage whose key matches and redoes one made from another suite or other settings (and, through the keys,
everything after it); a run killed during a training stage resumes that stage's fit from its last checkpoint
(lit_align.loops.trainer builds the Trainer, as for ReST), and the checkpoints are deleted once the model is exported.
"""
from __future__ import annotations

import argparse
import importlib
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_align.files import write_json
from lit_align.loops.driver import RunDir, Stage, digest

RECIPES = ("dpo", "ppo", "rloo", "grpo", "rlgaf")
ONLINE = ("ppo", "rloo", "grpo", "rlgaf")
DEFAULT_RUN = {"seeds": [0], "recipes": ["dpo", "rloo"]}
FULL_RUN = {"seeds": [0, 1], "recipes": list(RECIPES)}
EVAL = {"max_new_tokens": 24, "batch_size": 64}
"""Greedy evaluation; max_new_tokens is the online configs' (the longest answer the policies were trained on)."""
FIT_KEYS = ("max_epochs", "max_steps", "gradient_clip_val", "log_every_n_steps")
"""The trainer settings a recipe config decides; the demo's trainer is otherwise fixed (CPU, one device)."""


def read_config(recipe: str) -> dict[str, Any]:
    """The packaged recipe config (lit_align/configs/<recipe>.yaml) as a dict."""
    import yaml

    from lit_align.config_files import ROOT

    return yaml.safe_load((ROOT / f"{recipe}.yaml").read_text())


def relocate(path: str, suite: Path, root: Path) -> str:
    """A config path into the demo's folders: artifacts/suite/X -> <suite>/X, artifacts/<stage> -> <root>/<stage>."""
    parts = Path(path).parts
    if len(parts) < 2 or parts[0] != "artifacts":
        raise ValueError(f"config path {path!r}: the demo expects artifacts/suite/... or artifacts/<stage>")
    return str(suite.joinpath(*parts[2:]) if parts[1] == "suite" else root.joinpath(*parts[1:]))


PATH_ARGS = {"model": ("model", "expert_file"), "data": ("train_file", "tokenizer")}
"""The init_args that are paths (relocated); every other argument is the config's, as written."""


@dataclass
class Spec:
    """One training stage as the demo runs it: the config's classes and arguments, the demo's paths and seed."""

    recipe: str
    model_class: str
    model_args: dict[str, Any]
    data_class: str
    data_args: dict[str, Any]
    fit: dict[str, Any]
    config: dict[str, Any]  # the packaged config as read (hashed into the stage key)


def spec(recipe: str, suite: Path, root: Path, seed: int) -> Spec:
    """The stage `recipe` for one seed: the packaged config with the demo's paths and seed on top."""
    config = read_config(recipe)
    sections = {}
    for part in ("model", "data"):
        args = dict(config[part].get("init_args") or {})
        for name in PATH_ARGS[part]:
            if name in args:
                args[name] = relocate(args[name], suite, root)
        sections[part] = args
    sections["data"]["seed"] = seed
    if recipe in ONLINE:
        sections["model"]["seed"] = seed  # the sampling seeds
    trainer = config.get("trainer") or {}
    return Spec(recipe, config["model"]["class_path"], sections["model"], config["data"]["class_path"],
                sections["data"], {k: trainer[k] for k in FIT_KEYS if k in trainer}, config)


def load_class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def build(s: Spec):
    """(module, data module) of a stage; the data's vocabulary size and pad id are linked as `lit-align fit` does."""
    data = load_class(s.data_class)(**s.data_args)
    module = load_class(s.model_class)(**s.model_args, vocab_size=data.vocab_size, pad_token_id=data.pad_token_id)
    return module, data


def train(s: Spec, out: Path) -> dict:
    """Fit the stage on CPU in `out` (resuming out/checkpoints/last.ckpt after a kill), its curves in out/logs;
    export the model into out and delete the checkpoints."""
    import lightning.pytorch as pl

    from lit_align.loops.trainer import build_trainer, fit

    pl.seed_everything(s.data_args["seed"])
    module, data = build(s)
    trainer = build_trainer(out, accelerator="cpu", **s.fit)
    result = fit(trainer, module, data)
    module.export(str(out), data.tokenizer)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return {"metrics": result["metrics"], "steps": result["steps"], "resumed_from_step": result["resumed_from"],
            "fit": s.fit}


def run_seed(suite: Path, root: Path, seed: int, recipes: list[str], limit: int | None) -> dict[str, dict]:
    """Train and evaluate every stage of one seed; returns {model: evaluation} for "sft" and each recipe."""
    stages = RunDir(root, marker="done.json")
    fingerprint = digest((suite / "data" / "manifest.json").read_text())
    keys: dict[str, str] = {}
    for recipe in ["sft", "reward", *recipes]:
        s = spec(recipe, suite, root, seed)
        after = keys["sft"] if recipe != "sft" else None  # every stage after SFT starts from the SFT model
        keys[recipe] = digest(fingerprint, s.config, seed, after)
        stages.run(Stage(recipe, "train", keys[recipe], lambda out, s=s: train(s, out)))
    results = {}
    for model in ["sft", *recipes]:
        key = digest(keys[model], keys["sft"], keys["reward"], EVAL, limit)
        info = stages.run(Stage(f"eval_{model}", "eval", key, lambda out, m=model: evaluate(suite, root, m, limit)))
        results[model] = {split: info[split] for split in ("test", "transfer")}
    return results


def evaluate(suite: Path, root: Path, model: str, limit: int | None) -> dict:
    """Greedy evaluation of one policy ("sft", "dpo", ...) on the test and transfer splits, by phrasing/family."""
    from lit_align.models.loading import load_causal_lm, load_sequence_classifier, load_tokenizer
    from lit_align.rollout.evaluate import evaluate_policy, read_task_rows
    from lit_align.tasks.evaluate import score_by

    tokenizer = load_tokenizer(str(root / "sft"))
    sft = load_causal_lm(str(root / "sft"))
    reward_model = load_sequence_classifier(str(root / "reward"))
    policy = sft if model == "sft" else load_causal_lm(str(root / model))
    results = {}
    for split in ("test", "transfer"):
        rows = read_task_rows(suite / "data" / f"{split}.jsonl", limit)
        result = evaluate_policy(policy, tokenizer, rows, reward_model=reward_model, reward_tokenizer=tokenizer,
                                 reference=sft if split == "test" else None, progress=f"{model} on {split}",
                                 num_examples=len(rows), **EVAL)
        responses = [example["response"] for example in result["examples"]]  # every row's greedy answer
        result["examples"] = result["examples"][:5]
        for column in ("phrasing", "family"):
            result[column] = score_by(rows, responses, column)
        results[split] = result
    return results


def seen(res: dict) -> float:
    return res["test"]["phrasing"]["seen"]["success_rate"]


def unseen(res: dict) -> float:
    return res["test"]["phrasing"]["unseen"]["success_rate"]


def transfer(res: dict) -> float:
    return res["transfer"]["success"]


COLUMNS = [("success (test, seen phrasings)", seen, "{:.0%}"),
           ("success (test, unseen phrasings)", unseen, "{:.0%}"),
           ("success (transfer)", transfer, "{:.0%}"),
           ("checker score", lambda r: r["test"]["score"], "{:.2f}"),
           ("reward", lambda r: r["test"]["reward"], "{:+.2f}"),
           ("KL to SFT", lambda r: r["test"]["kl"], "{:.2f}"),
           ("distinct words", lambda r: r["test"]["distinct_words"], "{:.2f}"),
           ("distinct responses", lambda r: r["test"]["distinct_responses"], "{:.0%}")]


def table(results: dict[int, dict], recipes: list[str]) -> str:
    """A Markdown table: one row per (seed, model), then each recipe's gains over SFT per seed."""
    lines = ["| seed | model | " + " | ".join(c[0] for c in COLUMNS) + " |", "|" + "---|" * (len(COLUMNS) + 2)]
    for seed, res in results.items():
        for model in ["sft", *recipes]:
            cells = [fmt.format(get(res[model])) for _, get, fmt in COLUMNS]
            lines.append(f"| {seed} | {model.upper()} | " + " | ".join(cells) + " |")
    lines.append("")
    for model in recipes:
        parts = []
        for what, get in (("seen", seen), ("unseen", unseen), ("transfer", transfer)):
            gains = ", ".join(f"{(get(res[model]) - get(res['sft'])) * 100:+.0f}" for res in results.values())
            parts.append(f"{what} {gains}")
        lines.append(f"{model.upper()} gain in greedy success over SFT, points (seed {', '.join(map(str, results))}): "
                     + "; ".join(parts))
    return "\n".join(lines)


def read_curve(folder: Path, column: str) -> list[tuple[int, float]]:
    """(step, value) rows of a training stage's logged metrics where `column` was logged (every logs/version_N of
    the stage, a resumed fit's steps replacing the ones it redid)."""
    from lit_align.loops.trainer import read_metrics

    return [(int(row["step"]), float(row[column])) for row in read_metrics(folder) if row.get(column)]


def smooth(values, window: int = 5) -> list[float]:
    return [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
            for i in range(len(values))]


OFFLINE_PANELS = [("sft", "loss", "SFT loss"), ("reward", "rewards/accuracies", "reward model accuracy"),
                  ("dpo", "loss", "DPO loss"), ("dpo", "rewards/margins", "DPO reward margin"),
                  ("dpo", "rewards/accuracies", "DPO reward accuracy")]
ONLINE_PANELS = [("ppo", "objective/scores", "PPO: checker reward of samples"),
                 ("ppo", "objective/kl", "PPO: KL to SFT"),
                 ("rloo", "objective/scores", "RLOO: checker reward of samples"),
                 ("rloo", "objective/kl", "RLOO: KL to SFT"),
                 ("grpo", "objective/scores", "GRPO: checker reward of samples"),
                 ("grpo", "objective/kl", "GRPO: KL to SFT"),
                 ("rlgaf", "disc/acc_generated", "RLGAF: D accuracy on policy samples"),
                 ("rlgaf", "monitor/success", "RLGAF: task success of samples (unseen)")]


def plot(out: Path, seeds: list[int], panels: list[tuple[str, str, str]], name: str = "curves.png") -> Path:
    """PNG of the curves a person looks at (panels: (recipe, logged column, title))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    for ax, (recipe, column, title) in zip(axes[0], panels, strict=True):
        for seed in seeds:
            points = read_curve(out / f"seed{seed}" / recipe, column)
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, smooth(values, 9 if name != "curves.png" else 5), label=f"seed {seed}")
        ax.set_title(title)
        ax.set_xlabel("step" if name == "curves.png" else "rollout (training batch)")
        ax.legend()
    fig.tight_layout()
    path = out / name
    fig.savefig(path, dpi=90)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lit-align demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("artifacts/demo"))
    parser.add_argument("--full", action="store_true",
                        help=f"the README's report: seeds {FULL_RUN['seeds']}, recipes {' '.join(FULL_RUN['recipes'])} "
                             f"(default: seeds {DEFAULT_RUN['seeds']}, recipes {' '.join(DEFAULT_RUN['recipes'])})")
    parser.add_argument("--seeds", type=int, nargs="+", help="seeds to run (overrides --full's)")
    parser.add_argument("--recipes", nargs="+", choices=RECIPES, help="aligned recipes to run from the SFT model")
    parser.add_argument("--limit", type=int, default=400, help="evaluate the first N prompts of each held-out file")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 is fastest for the tiny model and immune to a busy machine")
    args = parser.parse_args(argv)
    run = FULL_RUN if args.full else DEFAULT_RUN
    seeds, recipes = args.seeds or run["seeds"], args.recipes or run["recipes"]
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|eval mode|Total length of).*")
    import torch

    from lit_align.tasks.__main__ import main as build_suite

    torch.set_num_threads(args.threads)
    start = time.time()
    suite = args.out / "suite"
    build_suite(["--out", str(suite)])
    results = {seed: run_seed(suite, args.out / f"seed{seed}", seed, recipes, args.limit) for seed in seeds}
    report = table(results, recipes)
    (args.out / "results.md").write_text(report + "\n")
    write_json(args.out / "results.json", {str(k): v for k, v in results.items()})
    pngs = [plot(args.out, seeds, [p for p in OFFLINE_PANELS if p[0] in ("sft", "reward", *recipes)])]
    online_panels = [p for p in ONLINE_PANELS if p[0] in recipes]
    if online_panels:
        pngs.append(plot(args.out, seeds, online_panels, "curves_online.png"))
    print("\n" + report)
    print(f"\ncurves: {', '.join(map(str, pngs))}; results: {args.out / 'results.md'}; "
          f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
