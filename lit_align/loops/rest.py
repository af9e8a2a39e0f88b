"""ReST: Reinforced Self-Training (Gulcehre et al., arXiv 2308.08998) on the loop driver, and `lit-align rest`.

    lit-align rest --config configs/rest.yaml --out runs/rest

    base                      evaluate the starting policy (the BC / SFT model)
    for g in 1..G:            Grow: N samples per training prompt from the current policy (temperature 0.8 in the
      grow_g                  paper), scored by the reward sources; the original SFT rows are scored too (they stay
                              in the pool, as the paper's D_g = D ∪ samples)
      for i in 1..I:          Improve: fine-tune the current policy on the pool rows whose reward clears threshold
        improve_g_i           tau_i (rising: absolute, or per-prompt quantile levels; lit_align.loops.thresholds);
                              BC = SFT's NLL by default (the paper's best), or reward-weighted; then evaluate
                              the new policy; early stopping: a step whose validation reward falls below its
                              input policy's (minus a tolerance) is not kept (the next, higher threshold starts
                              from its input again), and `early_stop_patience` such steps in a row end the Grow

The thresholds restart at tau_1 after each Grow. Each stage is a folder of the run directory (lit_align.loops.driver):

    runs/rest/config.json            the resolved configuration
    runs/rest/summary.json           every finished stage with its metrics (rewritten after each stage)
    runs/rest/base/                  eval.json, manifest.json
    runs/rest/grow_1/                samples.jsonl (+ .chunks.json), original.jsonl, manifest.json
    runs/rest/improve_1_1/           train.jsonl (the filtered pool), model/ (save_pretrained), logs/, eval.json,
                                     manifest.json (checkpoints/ while it trains; kept with keep_checkpoints)

Killed at any moment (kill -9), the same command continues: finished stages are skipped, an interrupted Grow
resumes at its first uncommitted chunk, an interrupted fit resumes from its last checkpoint, and with the same seed
the summary's metrics and the final weights equal an uninterrupted run's (tests/loops/test_kill.py). A stage is
redone when anything it depends on changed (settings, data files, the policy it starts from); see its key below.
Everything runs in one process on one device (the fits too: devices=1).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from lit_align.errors import UserError
from lit_align.files import read_jsonl, write_json, write_jsonl
from lit_align.loops.config import runtime_device
from lit_align.loops.driver import RunDir, Stage, digest, file_digest, folder_fingerprint
from lit_align.loops.evaluation import EvalSettings, evaluate_for_loop
from lit_align.loops.rundir import ChunkedJSONL
from lit_align.loops.sampling import SamplingSettings, sample_chunks
from lit_align.loops.thresholds import check_thresholds, passing, reward_weights

PAPER = "Gulcehre et al., Reinforced Self-Training (ReST) for Language Modeling, arXiv 2308.08998"
SUMMARY_FIELDS = ("val_reward", "test_success", "samples", "kept", "seconds")
"""Every stage's metrics in summary.json carry at least these (a Grow stage: its sampling policy's val/test)."""
NOT_IN_IMPROVE_KEY = {"thresholds", "early_stop", "early_stop_tolerance", "early_stop_patience", "keep_checkpoints",
                      "checkpoint_every_n_steps", "checkpoint_interval"}
"""Improve settings that do not change a step's result (a step's own threshold is in its key; the early-stopping
decision is made again from the manifests on every run), so changing them redoes nothing."""


@dataclass
class ImproveSettings:
    """ReST's Improve steps: one per threshold.

    Args:
        thresholds: tau_1 <= tau_2 <= ...: one Improve step each (the paper: 0, 0.7, 0.8, 0.9, 0.95, 0.99).
        threshold_mode: "absolute" (keep reward >= tau) or "quantile" (tau is a level in [0, 1]: keep reward >= the
            tau-quantile of the sampled rewards of the same prompt; an SFT row whose prompt was not sampled is held
            to the tau-quantile of all samples).
        min_reward: an absolute floor on top of either mode (None: none).
        original: the original SFT rows in the pool: "filtered" (by the same threshold, as the samples), "all", "none".
        loss: "bc" (NLL on the kept rows) or "reward_weighted" (NLL weighted by exp(r / weight_temperature),
            normalised to mean 1).
        weight_temperature: the temperature of the reward weights.
        dedupe: keep one copy of identical (prompt, response) rows.
        drop_unfinished: never keep a sample that ran out of max_new_tokens before its stop token.
        epochs: passes over the kept rows per Improve step.
        max_steps: cap on optimizer steps per Improve step (-1: none).
        lr: peak learning rate (AdamW, warm-up then `scheduler`).
        batch_size: rows per optimizer step.
        max_length: the longest row in tokens (longer ones are truncated).
        warmup_ratio: share of the steps spent warming up.
        scheduler: "cosine", "linear" or "constant".
        gradient_clip_val: gradient-norm clipping (None: off).
        checkpoint_every_n_steps: save last.ckpt every N steps (None: every checkpoint_interval).
        checkpoint_interval: save last.ckpt this often (H:MM:SS) when checkpoint_every_n_steps is None.
        keep_checkpoints: keep each finished step's checkpoints/ (the exported model/ is always kept).
        early_stop: reject an Improve step whose validation reward falls below its input's (minus the tolerance):
            the next step starts from the input again, at the next threshold.
        early_stop_tolerance: how far below still counts as no worse.
        early_stop_patience: end a Grow's Improve steps after this many rejected steps in a row.
    """

    thresholds: list[float] = field(default_factory=lambda: [0.8, 0.9, 1.0])
    threshold_mode: Literal["absolute", "quantile"] = "absolute"
    min_reward: float | None = None
    original: Literal["filtered", "all", "none"] = "filtered"
    loss: Literal["bc", "reward_weighted"] = "bc"
    weight_temperature: float = 1.0
    dedupe: bool = True
    drop_unfinished: bool = True
    epochs: int = 1
    max_steps: int = -1
    lr: float = 1.0e-3
    batch_size: int = 32
    max_length: int = 128
    warmup_ratio: float = 0.05
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    gradient_clip_val: float | None = 1.0
    checkpoint_every_n_steps: int | None = None
    checkpoint_interval: str | None = "0:03:00"
    keep_checkpoints: bool = False
    early_stop: bool = True
    early_stop_tolerance: float = 0.0
    early_stop_patience: int = 2


@dataclass
class RestConfig:
    """`lit-align rest`: ReST (Grow + Improve, repeated) from a policy on task prompts.

    Args:
        policy: the starting policy (a save_pretrained folder with its tokenizer, e.g. the SFT model).
        prompts_file: JSONL prompt rows to sample from (with a "task" checker when the checker is a reward).
        prompts_limit: use the first N prompt rows only (None: all).
        sft_file: the original SFT rows (prompt/completion), kept in the pool; None: samples only.
        rewards: reward sources as in the online recipes: [{kind: checker}], [{kind: model, path: artifacts/reward,
            reduction: min}] (an ensemble folder), weighted sums ({..., weight: 0.5}).
        grow_steps: G, the number of Grow steps.
        out: the run directory.
        seed: the run's seed (every sampling chunk and fit derives its own from it).
        device: "auto" (cuda when available), "cpu" or "cuda" for sampling, evaluation and the fits.
        dtype: the policy's dtype ("float32", "bfloat16", ...).
        threads: torch CPU threads (None: torch's default).
        progress: progress bars for sampling, scoring, fits and evaluation.
        trainer: extra pl.Trainer arguments for the Improve fits (e.g. {precision: bf16-mixed}).
        grow: how Grow samples.
        improve: how Improve filters and fine-tunes.
        eval: how each policy is evaluated.
    """

    policy: str = "artifacts/sft"
    prompts_file: str = "artifacts/suite/data/prompts.jsonl"
    prompts_limit: int | None = None
    sft_file: str | None = "artifacts/suite/data/sft.jsonl"
    rewards: list[dict[str, Any]] = field(default_factory=lambda: [{"kind": "checker"}])
    grow_steps: int = 2
    out: str = "runs/rest"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: str = "float32"
    threads: int | None = None
    progress: bool = True
    trainer: dict[str, Any] = field(default_factory=dict)
    grow: SamplingSettings = field(default_factory=SamplingSettings)
    improve: ImproveSettings = field(default_factory=ImproveSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)


@dataclass
class Policy:
    """A policy the loop has made: its folder, the key of the stage that made it, and its evaluation."""

    path: str
    key: str
    metrics: dict[str, float]
    stage: str


def accept(new_val_reward: float, old_val_reward: float, settings: ImproveSettings) -> bool:
    """Whether an Improve step's policy replaces its input (early stopping on the validation reward)."""
    return not settings.early_stop or new_val_reward >= old_val_reward - settings.early_stop_tolerance


class Rest:
    """One ReST run: builds the stages, runs them through a RunDir, writes summary.json (see the module docstring)."""

    def __init__(self, config: RestConfig, log=print):
        check_thresholds(config.improve.thresholds, config.improve.threshold_mode)
        if config.grow_steps < 1 or config.improve.early_stop_patience < 1:
            raise UserError(f"grow_steps and improve.early_stop_patience must be >= 1, got {config.grow_steps} and "
                            f"{config.improve.early_stop_patience}")
        self.config, self.log = config, log
        self.device = runtime_device(config.device, config.threads)
        self.run_dir = RunDir(config.out, log=log)
        self._sources = None
        self.manifests: list[dict[str, Any]] = []

    # ---- inputs --------------------------------------------------------------------------------------------
    @property
    def sources(self) -> list:
        """The reward sources, built on first use (a reward model loads once per process)."""
        if self._sources is None:
            from lit_align.rollout.reward_sources import build_reward_sources

            self._sources = build_reward_sources(self.config.rewards, device=self.device)
        return self._sources

    def prompt_rows(self) -> list[dict]:
        from lit_align.data.jsonl import read_rows

        return read_rows(self.config.prompts_file, "prompt")[:self.config.prompts_limit]

    def original_rows(self) -> list[dict]:
        from lit_align.data.jsonl import read_rows

        if not self.config.sft_file:
            return []
        rows = read_rows(self.config.sft_file, "sft")
        bad = next((row for row in rows if "completion" not in row), None)
        if bad is not None:
            raise UserError(f"{bad['_where']}: ReST's sft_file needs prompt/completion rows (conversational "
                            "`messages` rows cannot be scored as one response)")
        return rows

    def load(self, path: str):
        from lit_align.models.loading import load_causal_lm, load_tokenizer

        return load_causal_lm(path, dtype=self.config.dtype).to(self.device), load_tokenizer(path)

    # ---- keys: what each stage's result depends on ------------------------------------------------------------
    def eval_key(self) -> dict[str, Any]:
        e = self.config.eval
        files = {name: file_digest(path) for name, path in (("val", e.val_file), ("test", e.test_file)) if path}
        return {"eval": asdict(e), "files": files, "rewards": self.rewards_key()}

    def rewards_key(self) -> list[dict[str, Any]]:
        """The reward specs, a reward model's folder fingerprinted (another model there redoes the stages)."""
        return [{**spec, "fingerprint": folder_fingerprint(spec["path"])} if spec.get("path") else spec
                for spec in self.config.rewards]

    def data_key(self) -> dict[str, Any]:
        c = self.config
        return {"prompts": file_digest(c.prompts_file), "limit": c.prompts_limit,
                "sft": file_digest(c.sft_file) if c.sft_file else None}

    # ---- the loop -----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        c = self.config
        write_json(self.run_dir.root / "config.json", asdict(c))
        base_key = digest("base", folder_fingerprint(c.policy), c.dtype, self.eval_key())
        base = self.stage(Stage("base", "eval", base_key, partial(self.evaluate, c.policy, label="base")))
        policy = Policy(c.policy, base_key, base["metrics"], "base")
        for g in range(1, c.grow_steps + 1):
            name = f"grow_{g}"
            key = digest(name, asdict(c.grow), self.rewards_key(), self.data_key(), c.seed, policy.key)
            grow = self.stage(Stage(name, "grow", key, partial(self.grow, policy, name)))
            rejected = 0
            for i, threshold in enumerate(c.improve.thresholds, start=1):
                name = f"improve_{g}_{i}"
                settings = {k: v for k, v in asdict(c.improve).items() if k not in NOT_IN_IMPROVE_KEY}
                key = digest(name, settings, threshold, c.trainer, c.dtype, c.seed, self.eval_key(), grow["key"],
                             policy.key)
                step = self.stage(Stage(name, "improve", key, partial(self.improve, policy, grow, threshold, name)))
                step["accepted"] = not step.get("skipped") and accept(
                    step["metrics"]["val_reward"], policy.metrics["val_reward"], c.improve)
                self.write_summary(None, finished=False)
                if step["accepted"]:
                    policy, rejected = Policy(step["policy"], step["key"], step["metrics"], name), 0
                    continue
                rejected += 1
                why = step.get("skipped") or (f"validation reward {step['metrics']['val_reward']:.4f} < "
                                              f"{policy.metrics['val_reward']:.4f} of {policy.stage}")
                self.log(f"[rest] {name}: {why}: rejected, keeping {policy.stage}")
                if rejected >= c.improve.early_stop_patience:
                    self.log(f"[rest] {rejected} rejected Improve steps in a row: no more on {grow['name']}")
                    break
        return self.write_summary(policy, finished=True)

    def stage(self, stage: Stage) -> dict[str, Any]:
        """Run (or skip) a stage and rewrite summary.json."""
        manifest = self.run_dir.run(stage)
        self.manifests.append(manifest)
        self.write_summary(None, finished=False)
        return manifest

    def write_summary(self, policy: Policy | None, finished: bool) -> dict[str, Any]:
        """summary.json: every finished stage with its metrics, the policy the run ends with, the best by val_reward."""
        stages = [{"name": m["name"], "kind": m["kind"], **{k: m[k] for k in ("accepted", "skipped", "policy")
                                                           if k in m}, "metrics": m["metrics"]} for m in self.manifests]
        evaluated = [s for s in stages if s["kind"] != "grow" and "skipped" not in s
                     and s["metrics"].get("val_reward") is not None]
        best = max(evaluated, key=lambda s: s["metrics"]["val_reward"], default=None)
        summary = {"method": "rest", "paper": PAPER, "finished": finished, "stages": stages,
                   "best": None if best is None else {"stage": best["name"], "policy": best.get("policy"),
                                                       "val_reward": best["metrics"]["val_reward"]}}
        if policy is not None:
            summary["final"] = {"stage": policy.stage, "policy": policy.path, **{k: policy.metrics.get(k) for k in
                                                                                ("val_reward", "test_success")}}
        self.run_dir.write_summary(summary)
        return summary

    # ---- stages --------------------------------------------------------------------------------------------------
    def evaluate(self, path: str, folder: Path, label: str = "policy", model=None, tokenizer=None) -> dict[str, Any]:
        if model is None:
            model, tokenizer = self.load(path)
        metrics = evaluate_for_loop(model, tokenizer, self.sources, self.config.eval, folder=folder,
                                    temperature=self.config.grow.temperature, top_p=self.config.grow.top_p,
                                    seed=self.config.seed, progress=self.config.progress, label=label)
        return {"policy": path, "metrics": {**metrics, "samples": 0, "kept": 0}}

    def grow(self, policy: Policy, name: str, folder: Path) -> dict[str, Any]:
        """Sample N responses per prompt from `policy` (chunked, resumable) and score them; score the SFT rows."""
        from lit_align.rollout.generate import Generation
        from lit_align.rollout.reward_sources import score_rewards

        c = self.config
        rows = self.prompt_rows()
        model, tokenizer = self.load(policy.path)
        samples = ChunkedJSONL(folder / "samples.jsonl")
        resumed = samples.chunks or None  # chunks committed by an interrupted attempt
        throughput = sample_chunks(model, tokenizer, rows, samples, self.score, c.grow, seed=c.seed, stage=name,
                                   progress=c.progress)
        original = self.original_rows()
        if original:  # their rewards, for the filter: reward sources read the response text only
            texts = [_completion_text(row["completion"]) for row in original]
            result = score_rewards(self.sources, original, [Generation([], [], t, finished=False) for t in texts])
            write_jsonl(folder / "original.jsonl", [
                {"id": row["id"], "prompt": row["prompt"], "completion": row["completion"], **fields}
                for row, fields in zip(original, _reward_fields(result), strict=True)])
        lines = samples.rows()
        valid = [line["reward"] for line in lines if line["valid"]]
        metrics = {"samples": len(lines), "kept": len(valid), "mean_reward": sum(valid) / max(1, len(valid)),
                   "tokens": sum(line["num_tokens"] for line in lines),
                   "finished_share": sum(line["finished"] for line in lines) / max(1, len(lines)),
                   "original_rows": len(original), **throughput,
                   **{k: policy.metrics.get(k) for k in ("val_reward", "test_success")}}
        if lines and "checker" in lines[0]["rewards"]:
            metrics["sample_success"] = sum(line["rewards"]["checker"] == 1.0 for line in lines) / len(lines)
        return {"policy": policy.path, "resumed_from_chunk": resumed, "metrics": metrics}

    def score(self, rows: list[dict], generations: list) -> list[dict[str, Any]]:
        from lit_align.rollout.reward_sources import score_rewards

        return _reward_fields(score_rewards(self.sources, rows, generations))

    def improve(self, policy: Policy, grow: dict[str, Any], threshold: float, name: str, folder: Path
                ) -> dict[str, Any]:
        """Filter grow's pool at `threshold`, fine-tune `policy` on it (resuming a killed fit), export, evaluate."""
        s = self.config.improve
        pool = self.pool(grow, threshold)
        kept = [row for row in pool if row["kept"]]
        counts = {"samples": sum(row["source"] == "sample" for row in pool), "kept": len(kept),
                  "kept_samples": sum(row["source"] == "sample" for row in kept),
                  "kept_original": sum(row["source"] == "original" for row in kept),
                  "duplicates": sum(row.get("duplicate", False) for row in pool), "threshold": threshold}
        if not kept:
            self.log(f"[rest] {name}: no response passed threshold {threshold}; nothing to train on")
            return {"policy": policy.path, "skipped": "no response passed the threshold",
                    "metrics": {**policy.metrics, **counts, "seconds": 0.0}}
        if s.loss == "reward_weighted":
            for row, weight in zip(kept, reward_weights([row["reward"] for row in kept], s.weight_temperature),
                                   strict=True):
                row["weight"] = weight
        write_jsonl(folder / "train.jsonl", [{k: row[k] for k in ("id", "prompt", "completion", "source", "reward",
                                                                 "weight") if k in row} for row in kept])
        trained = self.fit(policy, name, folder)
        if not s.keep_checkpoints:
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        path = str(self.run_dir.folder(name) / "model")  # where model/ lives once the stage folder is in place
        evaluated = self.evaluate(path, folder, name, *self.load(str(folder / "model")))
        resumed = trained.pop("resumed_from_step")
        return {"policy": path, "threshold": threshold, "resumed_from_step": resumed,
                "metrics": {**evaluated["metrics"], **counts, **trained}}

    def pool(self, grow: dict[str, Any], threshold: float) -> list[dict[str, Any]]:
        """Grow's samples and the scored SFT rows, each marked `kept` by the Improve filter at `threshold`."""
        s = self.config.improve
        folder = self.run_dir.folder(grow["name"])
        rows = [{"id": f"{line['prompt_id']}#{line['sample']}", "prompt": line["prompt"], "completion": line["text"],
                 "reward": line["reward"], "valid": line["valid"] and (line["finished"] or not s.drop_unfinished),
                 "source": "sample"} for line in ChunkedJSONL.committed(folder / "samples.jsonl")]
        if s.original != "none" and (folder / "original.jsonl").exists():
            rows += [{"id": line["id"], "prompt": line["prompt"], "completion": line["completion"],
                     "reward": line["reward"], "valid": line["valid"], "source": "original"}
                     for line in read_jsonl(folder / "original.jsonl")]
        groups = [_group(row["prompt"]) for row in rows]
        passed = passing([row["reward"] if row["valid"] else 0.0 for row in rows], [row["valid"] for row in rows],
                         groups, threshold, s.threshold_mode, s.min_reward,
                         reference=[row["source"] == "sample" for row in rows])
        seen = set()
        for row, group, ok in zip(rows, groups, passed, strict=True):
            row["kept"] = ok or (row["source"] == "original" and s.original == "all")
            if row["kept"] and s.dedupe:
                pair = (group, row["completion"] if isinstance(row["completion"], str) else _group(row["completion"]))
                row["duplicate"] = pair in seen
                row["kept"] = not row["duplicate"]
                seen.add(pair)
            if row["kept"] and row["reward"] is None:  # an unscored original row kept by original="all"
                row["reward"] = 0.0
        return rows

    def fit(self, policy: Policy, name: str, folder: Path) -> dict[str, Any]:
        """SFT of `policy` on folder/train.jsonl, resuming folder/checkpoints/last.ckpt; exports folder/model."""
        import lightning.pytorch as pl

        from lit_align.data import SFTDataModule
        from lit_align.loops.trainer import build_trainer, fit
        from lit_align.modules import SFTModule

        c, s = self.config, self.config.improve
        seed = int(digest(c.seed, name), 16) % (2 ** 31)
        pl.seed_everything(seed, verbose=False)
        data = SFTDataModule(train_file=str(folder / "train.jsonl"), tokenizer=policy.path, batch_size=s.batch_size,
                             max_length=s.max_length, seed=seed)
        module = SFTModule(policy.path, weight_column="weight" if s.loss == "reward_weighted" else None, lr=s.lr,
                           warmup_ratio=s.warmup_ratio, scheduler=s.scheduler, dtype=c.dtype,
                           vocab_size=data.vocab_size, pad_token_id=data.pad_token_id)
        accelerator = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}[c.device]
        trainer = build_trainer(folder, max_epochs=s.epochs, max_steps=s.max_steps,
                                checkpoint_every_n_steps=s.checkpoint_every_n_steps,
                                checkpoint_interval=s.checkpoint_interval, progress=c.progress, log_every_n_steps=5,
                                accelerator=accelerator, gradient_clip_val=s.gradient_clip_val, **c.trainer)
        start = time.monotonic()
        result = fit(trainer, module, data, log=self.log)
        module.export(str(folder / "model"), data.tokenizer)
        return {"steps": result["steps"], "train_loss": result["metrics"].get("loss"),
                "resumed_from_step": result["resumed_from"], "fit_seconds": round(time.monotonic() - start, 2)}


def _completion_text(completion: Any) -> str:
    """The response text of an SFT completion (a string, or the assistant messages of a message list)."""
    if isinstance(completion, str):
        return completion.strip()
    return "".join(m["content"] for m in completion if m.get("role") == "assistant").strip()


def _group(prompt: Any) -> str:
    """The key that groups responses to the same prompt (a string, or a message list as canonical JSON)."""
    import json

    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def _reward_fields(result) -> list[dict[str, Any]]:
    """Per response: {"rewards": {source: score or None}, "reward": the total or None, "valid"} (JSON has no NaN)."""
    import math

    out = []
    for k in range(len(result.valid)):
        valid = bool(result.valid[k])
        components = {name: (float(v[k]) if math.isfinite(float(v[k])) else None)
                      for name, v in result.components.items()}
        out.append({"rewards": components, "reward": float(result.total[k]) if valid else None, "valid": valid})
    return out


def run_rest(config: RestConfig, log=print) -> dict[str, Any]:
    """Run (or continue) the ReST loop of `config`; returns the summary (also in <out>/summary.json)."""
    return Rest(config, log=log).run()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`lit-align rest --config configs/rest.yaml [--key.sub value ...]` (see lit_align.loops.config)."""
    from lit_align.loops.config import parse

    config = parse(RestConfig, argv, "lit-align rest", __doc__.splitlines()[0])
    summary = run_rest(config)
    final = summary["final"]
    print(f"[rest] done: {final['stage']} ({final['policy']}): val_reward {final['val_reward']:.4f}, "
          f"test_success {final['test_success']}; summary: {Path(config.out) / 'summary.json'}")
    return summary


if __name__ == "__main__":
    from lit_align.errors import run_reporting_user_errors

    run_reporting_user_errors(main, __import__("sys").argv[1:])
