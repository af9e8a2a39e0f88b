"""`lit-align dynamics`: the bundled, offline reproduction of Im & Li (arXiv 2403.18742) on Persona-shaped data.

    lit-align dynamics --out runs/dynamics --seeds 0 1 2        # resumable: re-running skips finished stages

Per seed, on the stage driver (loops/driver.py RunDir; each fit through loops/trainer.py, so a killed stage resumes
from its last.ckpt, and LearningDynamicsCallback's history travels in it):

    data_s<seed>          lit_align.tasks.persona rows: train.jsonl, probe.jsonl (other statements, same words),
                          flipped.jsonl (train with chosen and rejected swapped)
    base_s<seed>          a freshly initialised tiny Llama on the suite tokenizer (no SFT, see below)
    align_s<seed>         DPO from base on train.jsonl, the callback on probe.jsonl every `every` steps
    flip_aligned_s<seed>  DPO on flipped.jsonl from the aligned model (its reference: the aligned model)
    flip_base_s<seed>     DPO on flipped.jsonl from the base model

and summary.json with, per seed: each behaviour's initial distinguishability (the callback's, at step 0 of align),
its steps to `threshold` probe accuracy, their Spearman correlation (scipy.stats.spearmanr; the paper predicts it
negative: more distinguishable, learned sooner), and for the flipped runs the steps until the probe accuracy on the
*original* labels falls below 50% (and below 20%). A behaviour that never reaches the threshold counts as
max_steps + every (censored; rank-wise it is last) and is marked in the summary.

Why no SFT base: the Persona prompts are statements of the suite's one-token words; at random initialisation the
final hidden state at the answer position already mixes the statement's tokens through attention, so behaviours
whose two kinds differ in more words are measurably more distinguishable at step 0 (the callback measures d_b there).
That is the paper's premise (distinguishability of the base model's representation) with a known cause, and it
spares a fit per seed. The "base" of the flipped experiment is this random model, at ~50% accuracy.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from lit_align.files import read_json, write_json, write_jsonl
from lit_align.loops.driver import RunDir, Stage, digest

DEFAULTS = {"markers": [6, 4, 3, 2, 1], "per_behaviour": 64, "probe_per_behaviour": 32, "hidden_size": 64,
            "num_layers": 2, "num_heads": 4, "intermediate_size": 256, "batch_size": 32, "lr": 2e-4, "beta": 0.1,
            "align_steps": 100, "flip_steps": 100, "every": 1, "threshold": 0.8}


def steps_to(history: list[dict], group: str, key: str, test, censored: int, after: int = -1) -> tuple[int, bool]:
    """The first measured step > `after` at which `test(row[key])` holds for `group` (and True), else
    (censored, False)."""
    for row in sorted((r for r in history if r["group"] == group), key=lambda r: r["step"]):
        if row["step"] > after and test(row[key]):
            return int(row["step"]), True
    return censored, False


def _mean_curve(history: list[dict]) -> list[dict]:
    """The mean over groups of each measured step's numbers, as rows of a group "all"."""
    steps: dict[int, list[dict]] = {}
    for r in history:
        steps.setdefault(r["step"], []).append(r)
    return [{"group": "all", "step": k, **{n: sum(r[n] for r in v) / len(v) for n in
                                         ("accuracy", "reward_accuracy", "distinguishability_norm")}}
            for k, v in sorted(steps.items())]


class Experiment:
    """The stages of one run directory (see the module docstring); `settings` overrides DEFAULTS."""

    def __init__(self, out: str | Path, settings: dict[str, Any] | None = None, log=print):
        self.settings = {**DEFAULTS, **(settings or {})}
        self.run_dir, self.log = RunDir(out, log=log), log

    # ---- stages ------------------------------------------------------------------------------------------
    def data_stage(self, seed: int) -> Stage:
        s = self.settings
        keys = ("markers", "per_behaviour", "probe_per_behaviour")

        def run(folder: Path) -> dict:
            from lit_align.tasks.persona import flip_labels, persona_rows

            markers = tuple(s["markers"])
            train = persona_rows(s["per_behaviour"], seed, "train", markers)
            write_jsonl(folder / "train.jsonl", train)
            write_jsonl(folder / "probe.jsonl", persona_rows(s["probe_per_behaviour"], seed, "probe", markers))
            write_jsonl(folder / "flipped.jsonl", flip_labels(train))
            return {"metrics": {"pairs": len(train)}}

        return Stage(f"data_s{seed}", "data", digest("data", seed, {k: s[k] for k in keys}), run)

    def base_stage(self, seed: int) -> Stage:
        s = self.settings
        keys = ("hidden_size", "num_layers", "num_heads", "intermediate_size")

        def run(folder: Path) -> dict:
            from lit_align.tasks.tiny_model import build_tiny_model
            from lit_align.tasks.tokenizer import build_tokenizer

            build_tokenizer(folder / "tokenizer")
            model = build_tiny_model(folder / "model", folder / "tokenizer", seed=seed, **{k: s[k] for k in keys})
            return {"metrics": {"parameters": sum(p.numel() for p in model.parameters())}}

        return Stage(f"base_s{seed}", "base", digest("base", seed, {k: s[k] for k in keys}), run)

    def fit_stage(self, name: str, seed: int, start: Stage, model_dir: Path, train: Path, probe: Path,
                  steps: int, inputs: list[Stage]) -> Stage:
        """A DPO fit of `steps` steps from `model_dir` on `train`, the callback on `probe`; exports the policy."""
        s = self.settings
        keys = ("batch_size", "lr", "beta", "every")
        key = digest("dpo", name, seed, steps, {k: s[k] for k in keys}, [i.key for i in inputs], start.key)

        def run(folder: Path) -> dict:
            import lightning.pytorch as pl

            from lit_align.callbacks import LearningDynamicsCallback
            from lit_align.data.datamodule import PreferenceDataModule
            from lit_align.loops.trainer import build_trainer, fit
            from lit_align.modules.dpo import DPOModule

            pl.seed_everything(seed, verbose=False)
            callback = LearningDynamicsCallback(str(probe), every_n_steps=s["every"], limit_per_group=None,
                                                plot="dynamics.png")
            data = PreferenceDataModule(str(train), str(model_dir), batch_size=s["batch_size"], max_length=64,
                                        seed=seed)
            module = DPOModule(str(model_dir), beta=s["beta"], lr=s["lr"], warmup_ratio=0.0, scheduler="constant")
            trainer = build_trainer(folder, max_steps=steps, checkpoint_every_n_steps=30, progress=False,
                                    accelerator="cpu", callbacks=[callback], log_every_n_steps=s["every"])
            result = fit(trainer, module, data, log=self.log)
            write_json(folder / "history.json", callback.history)
            module.model.save_pretrained(folder / "model")
            data.tokenizer.save_pretrained(folder / "model")
            return {"metrics": {"steps": result["steps"]}}

        return Stage(name, "dpo", key, run)

    # ---- the run ------------------------------------------------------------------------------------------
    def run_seed(self, seed: int) -> dict[str, Any]:
        rd = self.run_dir
        data, base = self.data_stage(seed), self.base_stage(seed)
        rd.run(data)
        rd.run(base)
        d, b = rd.folder(data.name), rd.folder(base.name) / "model"
        s = self.settings
        align = self.fit_stage(f"align_s{seed}", seed, base, b, d / "train.jsonl", d / "probe.jsonl",
                               s["align_steps"], [data])
        rd.run(align)
        flips = {}
        for start, model_dir in (("aligned", rd.folder(align.name) / "model"), ("base", b)):
            origin = align if start == "aligned" else base
            stage = self.fit_stage(f"flip_{start}_s{seed}", seed, origin, model_dir, d / "flipped.jsonl",
                                   d / "probe.jsonl", s["flip_steps"], [data])
            rd.run(stage)
            flips[start] = read_json(rd.folder(stage.name) / "history.json")
        return self.seed_summary(seed, read_json(rd.folder(align.name) / "history.json"), flips)

    def seed_summary(self, seed: int, history: list[dict], flips: dict[str, list[dict]]) -> dict[str, Any]:
        """One seed's numbers: per behaviour d0, d0_norm and the steps to the threshold (policy and implicit-reward
        accuracy), their Spearman correlations, and the flipped runs' steps to accuracy < 50% / < 20%."""
        s = self.settings
        censored = s["align_steps"] + s["every"]
        groups = sorted({r["group"] for r in history})
        rows = []
        for g in groups:
            first = min((r for r in history if r["group"] == g), key=lambda r: r["step"])
            row = {"group": g, "markers": int(g.rsplit("_m", 1)[1]) if "_m" in g else None,
                   "d0": first["distinguishability"], "d0_norm": first["distinguishability_norm"],
                   "accuracy0": first["accuracy"]}
            for key in ("reward_accuracy", "accuracy"):
                step, reached = steps_to(history, g, key, lambda a: a >= s["threshold"], censored)
                row[f"steps_{key}"], row[f"reached_{key}"] = step, reached
            rows.append(row)
        correlations = {f"{d}_vs_steps_{key}": _spearman([r[d] for r in rows], [r[f"steps_{key}"] for r in rows])
                        for d in ("d0_norm", "d0", "markers") for key in ("reward_accuracy", "accuracy")}
        flip = {}
        for start, hist in flips.items():
            fcens = s["flip_steps"] + s["every"]
            curve = _mean_curve(hist)
            flip[start] = {"accuracy0": curve[0]["accuracy"], "d0_norm": curve[0]["distinguishability_norm"],
                           "accuracy_below_50": steps_to(curve, "all", "accuracy", lambda a: a < 0.5, fcens)[0],
                           "accuracy_below_20": steps_to(curve, "all", "accuracy", lambda a: a < 0.2, fcens)[0],
                           "reward_accuracy_below_20": steps_to(curve, "all", "reward_accuracy", lambda a: a < 0.2,
                                                                fcens, after=0)[0],
                           "per_group_accuracy_below_50": {g: steps_to(hist, g, "accuracy", lambda a: a < 0.5,
                                                                       fcens)[0] for g in groups}}
        return {"seed": seed, "behaviours": rows, "spearman": correlations, "flipped": flip}

    def run(self, seeds: list[int]) -> dict[str, Any]:
        per_seed = [self.run_seed(seed) for seed in seeds]
        summary = {"settings": self.settings, "seeds": per_seed, "pooled": self.pooled(per_seed)}
        self.run_dir.write_summary(summary)
        self.plot(seeds)
        return summary

    @staticmethod
    def pooled(per_seed: list[dict]) -> dict[str, Any]:
        """Over seeds: the mean of each per-seed Spearman, and Spearman over all (seed, behaviour) points."""
        out: dict[str, Any] = {}
        for name in per_seed[0]["spearman"]:
            values = [p["spearman"][name] for p in per_seed if p["spearman"][name] is not None]
            out[f"mean_{name}"] = _num(sum(values) / len(values)) if values else None
        rows = [r for p in per_seed for r in p["behaviours"]]
        for key in ("reward_accuracy", "accuracy"):
            out[f"all_points_d0_norm_vs_steps_{key}"] = _spearman([r["d0_norm"] for r in rows],
                                                                  [r[f"steps_{key}"] for r in rows])
        return out

    def plot(self, seeds: list[int]) -> None:
        """accuracy.png (align runs) and flipped.png (flipped runs, original labels): one column per seed, rows
        the policy's preference accuracy and the implicit reward's, one line per behaviour."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rd, keys = self.run_dir, ("accuracy", "reward_accuracy")
        for name, runs in (("accuracy", [("align", "-")]), ("flipped", [("flip_aligned", "-"), ("flip_base", ":")])):
            fig, axes = plt.subplots(len(keys), len(seeds), figsize=(4.2 * len(seeds), 3.2 * len(keys)),
                                     squeeze=False)
            for column, seed in enumerate(seeds):
                for row, key in enumerate(keys):
                    ax = axes[row][column]
                    for prefix, style in runs:
                        history = read_json(rd.folder(f"{prefix}_s{seed}") / "history.json")
                        for i, g in enumerate(sorted({r["group"] for r in history})):
                            steps, values = zip(*sorted((r["step"], r[key]) for r in history if r["group"] == g),
                                                strict=True)
                            label = g if len(runs) == 1 else f"{g} ({prefix})"
                            ax.plot(steps, values, ls=style, color=f"C{i}", label=label, lw=1.2)
                    ax.axhline(self.settings["threshold"] if name == "accuracy" else 0.5, color="grey", lw=0.8,
                               ls="--")
                    ax.set_title(f"seed {seed}: {key}" + (" (original labels)" if name == "flipped" else ""),
                                 fontsize=9)
                    ax.set_xlabel("optimizer step", fontsize=8)
            axes[0][0].legend(fontsize=6)
            fig.tight_layout()
            fig.savefig(rd.root / f"{name}.png", dpi=110)
            plt.close(fig)


def _spearman(x: list[float], y: list[float]) -> float | None:
    """scipy.stats.spearmanr's rho, None when either side is constant (every behaviour censored, say)."""
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return _num(spearmanr(x, y).statistic)


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lit-align dynamics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/dynamics", help="the run directory (re-running resumes it)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    for k, v in DEFAULTS.items():
        kind = type(v[0]) if isinstance(v, list) else type(v)
        parser.add_argument(f"--{k.replace('_', '-')}", type=kind, nargs="+" if isinstance(v, list) else None,
                            default=v)
    args = vars(parser.parse_args(argv))
    out, seeds = args.pop("out"), args.pop("seeds")
    import torch

    torch.set_num_threads(1)  # tiny models: one thread, and the machine's other cores stay free
    summary = Experiment(out, args).run(seeds)
    for p in summary["seeds"]:
        flipped = {k: v["accuracy_below_50"] for k, v in p["flipped"].items()}
        print(f"seed {p['seed']}: spearman {p['spearman']}; flipped, steps to accuracy < 50%: {flipped}")


if __name__ == "__main__":
    main()
