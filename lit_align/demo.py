"""`make demo` / `lit-align demo`: the whole pipeline on the bundled task suite, from nothing, on a CPU.

    suite (data, tokenizer, tiny Llama) -> SFT -> reward model -> DPO, PPO, RLOO, RLGAF (each from the SFT model)
      -> evaluation on held-out prompts

for each seed (`--recipes` picks the aligned recipes), then a before/after table (greedy task success on the
held-out "test" and "transfer" splits,
checker score, reward-model score, KL to the SFT model, distinct words per response — success alone can be
gamed by repetition) and PNG plots of the training curves. Every stage writes its output under
--out/seed<s>/<stage>/ through a temporary folder renamed when complete, plus a done.json; a rerun (or a
run restarted after a crash) skips the stages already done. Progress bars show training and evaluation.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

# Hyper-parameters measured on the 2-core CPU machine (see README, "The demo").
SETTINGS = {
    "sft": dict(epochs=3, lr=3e-3, batch_size=32),
    "reward": dict(epochs=1, lr=1e-3, batch_size=32),
    "dpo": dict(epochs=3, lr=1e-3, batch_size=16, beta=0.5, rpo_alpha=0.2),
    # Online recipes (reward: the task checker; RLGAF: a discriminator on expert.jsonl only); steps = optimizer steps;
    # the learning rate warms up over 5% of them, then decays (cosine) to 10%: a constant rate did worse.
    "ppo": dict(steps=1200, lr=2e-4, batch_size=64, update_epochs=2, mini_batches=2, kl_coef=0.05),
    "rloo": dict(steps=400, lr=5e-4, batch_size=16, samples_per_prompt=4, kl_coef=0.05),
    "rlgaf": dict(steps=400, lr=1e-4, batch_size=16, update_epochs=2, kl_coef=0.05, disc_lr=1e-4,
                  disc_warmup_steps=20),
    "eval": dict(max_new_tokens=24, limit=200),
}


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def stage(folder: Path, fn) -> dict:
    """Run fn(tmp_folder) unless folder/done.json exists; the folder appears only once fn has finished."""
    done = folder / "done.json"
    if done.exists():
        print(f"[demo] {folder}: already done, skipped")
        return json.loads(done.read_text())
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.time()
    info = fn(tmp) or {}
    info["seconds"] = round(time.time() - start, 1)
    write_json(tmp / "done.json", info)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return info


def trainer(logs: Path, name: str, epochs: int = -1, steps: int = -1):
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.loggers import CSVLogger

    return pl.Trainer(max_epochs=epochs, max_steps=steps, accelerator="cpu", devices=1,
                      logger=CSVLogger(logs, name=name, version=0), callbacks=[RichProgressBar(leave=True)],
                      enable_checkpointing=False, enable_model_summary=False, log_every_n_steps=5,
                      limit_val_batches=0)


def fit_and_export(module, data, out: Path, logs: Path, name: str, epochs: int = -1, steps: int = -1) -> dict:
    fit = trainer(logs, name, epochs, steps)
    fit.fit(module, data)
    module.export(str(out), data.tokenizer)
    return {k: float(v) for k, v in fit.callback_metrics.items()}


def online(suite: Path, root: Path, seed: int, name: str):
    """The stage function of an online recipe: from the SFT model, prompts.jsonl, the settings above."""
    import lightning.pytorch as pl

    from lit_align.data.datamodule import PromptDataModule
    from lit_align.modules import PPOModule, RLGAFModule, RLOOModule

    settings = dict(SETTINGS[name])
    steps, batch_size = settings.pop("steps"), settings.pop("batch_size")
    cls = {"ppo": PPOModule, "rloo": RLOOModule, "rlgaf": RLGAFModule}[name]
    extra = ({"expert_file": str(suite / "data" / "expert.jsonl"), "monitor": [{"kind": "checker"}]}
             if name == "rlgaf" else {"rewards": [{"kind": "checker"}]})

    def run(out):
        pl.seed_everything(seed)
        dm = PromptDataModule(str(suite / "data" / "prompts.jsonl"), str(root / "sft"), batch_size=batch_size,
                              max_length=128, seed=seed)
        module = cls(str(root / "sft"), max_new_tokens=SETTINGS["eval"]["max_new_tokens"], seed=seed, **extra,
                     **settings)
        return fit_and_export(module, dm, out, root / "logs", name, steps=steps)

    return run


def run_seed(suite: Path, root: Path, seed: int, recipes: list[str]) -> dict:
    import lightning.pytorch as pl

    from lit_align.data.datamodule import PreferenceDataModule, SFTDataModule
    from lit_align.modules import DPOModule, RewardModule, SFTModule

    data, logs = suite / "data", root / "logs"
    s, r, d = SETTINGS["sft"], SETTINGS["reward"], SETTINGS["dpo"]

    def sft(out):
        pl.seed_everything(seed)
        dm = SFTDataModule(str(data / "sft.jsonl"), str(suite / "model"), batch_size=s["batch_size"], max_length=128,
                           seed=seed)
        module = SFTModule(str(suite / "model"), lr=s["lr"], vocab_size=dm.vocab_size)
        return fit_and_export(module, dm, out, logs, "sft", s["epochs"])

    def reward(out):
        pl.seed_everything(seed)
        dm = PreferenceDataModule(str(data / "preference.jsonl"), str(root / "sft"), batch_size=r["batch_size"],
                                  max_length=128, seed=seed)
        module = RewardModule(str(root / "sft"), lr=r["lr"], pad_token_id=dm.pad_token_id)
        return fit_and_export(module, dm, out, logs, "reward", r["epochs"])

    def dpo(out):
        pl.seed_everything(seed)
        dm = PreferenceDataModule(str(data / "preference.jsonl"), str(root / "sft"), batch_size=d["batch_size"],
                                  max_length=128, seed=seed)
        module = DPOModule(str(root / "sft"), lr=d["lr"], beta=d["beta"], rpo_alpha=d["rpo_alpha"])
        return fit_and_export(module, dm, out, logs, "dpo", d["epochs"])

    stage(root / "sft", sft)
    stage(root / "reward", reward)
    for name in recipes:
        stage(root / name, dpo if name == "dpo" else online(suite, root, seed, name))
    first = ["sft", "dpo"] if "dpo" in recipes else ["sft"]
    results = stage(root / "evaluation", lambda out: evaluate(suite, root, first))
    for name in recipes:
        if name not in first:
            results.update(stage(root / f"evaluation_{name}", lambda out, n=name: evaluate(suite, root, [n])))
    results.pop("seconds", None)
    return results


def evaluate(suite: Path, root: Path, recipes: list[str]) -> dict:
    """Greedy evaluation of each named policy ("sft", "dpo", ...) on the test and transfer splits."""
    from lit_align.models.loading import load_causal_lm, load_sequence_classifier, load_tokenizer
    from lit_align.rollout.evaluate import evaluate_policy, read_task_rows

    e = SETTINGS["eval"]
    tokenizer = load_tokenizer(str(root / "sft"))
    sft_model = load_causal_lm(str(root / "sft"))
    reward_model = load_sequence_classifier(str(root / "reward"))
    results = {}
    for name in recipes:
        policy = sft_model if name == "sft" else load_causal_lm(str(root / name))
        for split in ("test", "transfer"):
            rows = read_task_rows(suite / "data" / f"{split}.jsonl", e["limit"])
            result = evaluate_policy(policy, tokenizer, rows, reward_model=reward_model, reward_tokenizer=tokenizer,
                                     reference=sft_model if split == "test" else None,
                                     max_new_tokens=e["max_new_tokens"], progress=f"{name} on {split}")
            results[f"{name}/{split}"] = result
    return results


COLUMNS = [("test", "success", "greedy success (test)", "{:.0%}"),
           ("transfer", "success", "success (transfer)", "{:.0%}"),
           ("test", "score", "checker score", "{:.2f}"), ("test", "reward", "reward", "{:+.2f}"),
           ("test", "kl", "KL to SFT", "{:.2f}"), ("test", "distinct_words", "distinct words", "{:.2f}"),
           ("test", "distinct_responses", "distinct responses", "{:.0%}")]


def table(results: dict[int, dict], recipes: list[str]) -> str:
    """A Markdown table: one row per (seed, model), then each recipe's gain over SFT in test success per seed."""
    head = "| seed | model | " + " | ".join(c[2] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for seed, res in results.items():
        for model in ["sft", *recipes]:
            cells = [fmt.format(res[f"{model}/{split}"].get(key, float("nan"))) for split, key, _, fmt in COLUMNS]
            lines.append(f"| {seed} | {model.upper()} | " + " | ".join(cells) + " |")
    lines.append("")
    for model in recipes:
        gains = [res[f"{model}/test"]["success"] - res["sft/test"]["success"] for res in results.values()]
        lines.append(f"{model.upper()} gain in held-out greedy success: " + ", ".join(
            f"seed {s}: {g * 100:+.0f} points" for s, g in zip(results, gains, strict=True)))
    return "\n".join(lines)


def read_curve(csv_path: Path, column: str) -> list[tuple[int, float]]:
    """(step, value) rows of a CSVLogger metrics.csv where `column` was logged."""
    import csv

    with open(csv_path) as handle:
        return [(int(row["step"]), float(row[column])) for row in csv.DictReader(handle) if row.get(column)]


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
                 ("rlgaf", "disc/acc_generated", "RLGAF: D accuracy on policy samples"),
                 ("rlgaf", "monitor/success", "RLGAF: task success of samples (unseen)")]


def plot(out: Path, seeds: list[int], panels: list[tuple[str, str, str]], name: str = "curves.png") -> Path:
    """PNG of the curves a person looks at (panels: (recipe, logged column, title))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2), squeeze=False)
    axes = axes[0]
    for ax, (recipe, column, title) in zip(axes, panels, strict=True):
        for seed in seeds:
            csv = out / f"seed{seed}" / "logs" / recipe / "version_0" / "metrics.csv"
            if not csv.exists():
                continue
            points = read_curve(csv, column)
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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--recipes", nargs="+", default=["dpo", "ppo", "rloo", "rlgaf"],
                        choices=["dpo", "ppo", "rloo", "rlgaf"], help="aligned recipes to run from the SFT model")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 is fastest for the tiny model and immune to a busy machine")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|eval mode|Total length of).*")
    import torch

    from lit_align.tasks.__main__ import main as build_suite

    torch.set_num_threads(args.threads)
    start = time.time()
    suite = args.out / "suite"
    build_suite(["--out", str(suite)])
    results = {seed: run_seed(suite, args.out / f"seed{seed}", seed, args.recipes) for seed in args.seeds}
    report = table(results, args.recipes)
    (args.out / "results.md").write_text(report + "\n")
    write_json(args.out / "results.json", {str(k): v for k, v in results.items()})
    pngs = [plot(args.out, args.seeds, OFFLINE_PANELS)]
    online_panels = [p for p in ONLINE_PANELS if p[0] in args.recipes]
    if online_panels:
        pngs.append(plot(args.out, args.seeds, online_panels, "curves_online.png"))
    print("\n" + report)
    print(f"\ncurves: {', '.join(map(str, pngs))}; results: {args.out / 'results.md'}; "
          f"total {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
