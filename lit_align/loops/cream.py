"""CREAM: Consistency Regularized Self-Rewarding Language Models (Wang et al., arXiv 2410.12735, ICLR 2025; code
Raibows/CREAM) and its baseline SRLM (Yuan et al., arXiv 2401.10020, with CREAM's implicit-DPO reward) on the loop
driver, and `lit-align cream`.

    lit-align cream --config configs/cream.yaml --out runs/cream

    m0                   M0: a short SFT of `m0.base` (the suite's untrained model), or the folder `m0.path`; evaluated
    m1                   M1 = the finished SFT (`policy`), evaluated
    for t in 1..T, for each variant v in {dyn, avg, srlm}:
      iter{t}_rank       (iteration 1: shared by the variants, whose M1 and M0 are the same; then {v}_iter{t}_rank)
                         N samples per prompt of the t-th disjoint slice of `prompts_file` from M_t (temperature 0.8,
                         top-p 0.95), scored by the task checker (for the report only) and by the log-probs of
                         M_t, M_{t-1}, M_{t-2} (lit_align.loops.logprob_cache: each (model, response) once);
                         current reward r_t = log pi_{M_t}(y|x) - log pi_{M_{t-1}}(y|x) (the implicit DPO reward
                         without beta), previous r_{t-1} = the same with (M_{t-1}, M_{t-2}) (at t = 1 the
                         length-normalised log-likelihood of M0); per prompt Kendall tau-b of the two rankings,
                         consistency C = (tau + 1) / 2 and the pair (argmax r_t, argmin r_t), ties skipped
                         (lit_align.loops.consistency)
      {v}_iter{t}_dpo    M_{t+1} = DPO from M_t with reference M_t (beta 0.1), each pair smoothed by eps = 1 - C_i
                         (dyn), 1 - mean C (avg) or 0 (srlm); the reference log-probs are M_t's scores above, fed
                         through the precomputed-reference file (models/reference.py CachedReference), not rescored;
                         then M_{t+1} is evaluated (greedy held-out success and checker score, eval.json)

    runs/cream/config.json, summary.json (every stage; the per-variant table; scorings computed vs reused)
    runs/cream/logprobs/<weights digest>.json     the log-prob cache
    runs/cream/m0/        model/ (when trained), eval.json, manifest.json
    runs/cream/iter1_rank/  samples.jsonl (+ .chunks.json: the sampled tokens, text, checker score), scored.jsonl
                          (per response: both rewards and the three log-probs), rankings.jsonl (per prompt: tau, C,
                          the pair, both rankings), manifest.json
    runs/cream/dyn_iter1_dpo/  pairs.jsonl (prompt, chosen, rejected, label_smoothing = eps, C, tau, checker scores),
                          reference_logps.pt, model/, eval.json, logs/, manifest.json

Killed at any moment (kill -9), the same command continues (lit_align.loops.driver): finished stages are skipped,
sampling resumes at its first uncommitted chunk, scoring at its first unsaved batch, a fit from its last checkpoint.
Everything runs in one process on one device.
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
from lit_align.loops.consistency import VARIANTS, labelling_accuracy, rank_prompt, smoothing
from lit_align.loops.driver import RunDir, Stage, digest, file_digest, folder_fingerprint
from lit_align.loops.evaluation import EvalSettings, evaluate_for_loop
from lit_align.loops.logprob_cache import LogprobCache, sample_key
from lit_align.loops.rundir import ChunkedJSONL
from lit_align.loops.sampling import SamplingSettings, sample_chunks

PAPER = "Wang et al., CREAM: Consistency Regularized Self-Rewarding Language Models, arXiv 2410.12735"


@dataclass
class M0Settings:
    """M0, the model before SFT: our tiny model has no pretraining, so M0 is an early SFT checkpoint.

    Args:
        path: a ready M0 folder (None: train one as below).
        base: the untrained model the short SFT starts from (the suite's model).
        steps: optimizer steps of that SFT (the demo's full SFT makes 1500).
        lr, batch_size, max_length, warmup_ratio: as configs/sft.yaml.
    """

    path: str | None = None
    base: str = "artifacts/suite/model"
    steps: int = 150
    lr: float = 3.0e-3
    batch_size: int = 16
    max_length: int = 128
    warmup_ratio: float = 0.05


@dataclass
class DPOSettings:
    """Each iteration's DPO: the packaged configs/dpo.yaml's optimiser and data settings (lr, betas, batch size,
    max length, gradient clipping), with CREAM's beta = 0.1 and no RPO term (the paper's plain DPO loss).

    Args:
        beta: DPO's beta.
        rpo_alpha: weight of the chosen answer's NLL (0: off, as in CREAM).
        lr, betas, batch_size, max_length, gradient_clip_val, warmup_ratio, scheduler: as dpo.yaml / AlignModule.
        epochs: passes over an iteration's pairs.
        max_steps: cap on optimizer steps (-1: none).
        checkpoint_every_n_steps: save last.ckpt every N steps (None: every 3 minutes).
        keep_checkpoints: keep checkpoints/ once the model is exported.
    """

    beta: float = 0.1
    rpo_alpha: float = 0.0
    lr: float = 1.0e-3
    betas: tuple[float, float] = (0.9, 0.95)
    batch_size: int = 16
    max_length: int = 128
    gradient_clip_val: float | None = 1.0
    warmup_ratio: float = 0.05
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    epochs: int = 2
    max_steps: int = -1
    checkpoint_every_n_steps: int | None = None
    keep_checkpoints: bool = False


@dataclass
class CreamConfig:
    """`lit-align cream`: CREAM / SRLM self-rewarding DPO iterations from an SFT model on unlabeled prompts.

    Args:
        policy: M1, the finished SFT model (a save_pretrained folder with its tokenizer).
        m0: M0 (see M0Settings).
        sft_file: the SFT rows M0's short SFT trains on.
        prompts_file: JSONL prompt rows; iteration t uses rows [(t-1) P, t P) (P = prompts_per_iteration). Their
            "task" checkers only score the samples for the report (self-labelling accuracy), never the training.
        prompts_per_iteration: P.
        iterations: T.
        variants: which of "dyn" (CREAM, per-pair eps = 1 - C_i), "avg" (eps = 1 - mean C), "srlm" (eps = 0) to run.
        out: the run directory.
        seed: the run's seed (sampling chunks and fits derive theirs from it and the stage name).
        device: "auto", "cpu" or "cuda".
        dtype: the models' dtype.
        threads: torch CPU threads (None: torch's default).
        progress: progress bars.
        trainer: extra pl.Trainer arguments for the fits.
        sampling: how responses are sampled (N = samples_per_prompt).
        score_batch_size: responses per log-prob forward.
        dpo: each iteration's DPO.
        eval: how each model is evaluated (greedy; the checker is the reward).
    """

    policy: str = "artifacts/sft"
    m0: M0Settings = field(default_factory=M0Settings)
    sft_file: str = "artifacts/suite/data/sft.jsonl"
    prompts_file: str = "artifacts/suite/data/prompts.jsonl"
    prompts_per_iteration: int = 300
    iterations: int = 3
    variants: list[Literal["dyn", "avg", "srlm"]] = field(default_factory=lambda: ["dyn", "avg", "srlm"])
    out: str = "runs/cream"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: str = "float32"
    threads: int | None = None
    progress: bool = True
    trainer: dict[str, Any] = field(default_factory=dict)
    sampling: SamplingSettings = field(default_factory=lambda: SamplingSettings(
        samples_per_prompt=5, temperature=0.8, top_p=0.95))
    score_batch_size: int = 64
    dpo: DPOSettings = field(default_factory=DPOSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)


@dataclass
class Model:
    """A model of the chain M0, M1, ...: its folder, the key of the stage that made it, its evaluation."""

    path: str
    key: str
    metrics: dict[str, Any]
    stage: str


class Cream:
    """One CREAM run: the stages above through a RunDir, and summary.json."""

    def __init__(self, config: CreamConfig, log=print):
        if config.iterations < 1 or config.prompts_per_iteration < 1:
            raise UserError(f"iterations and prompts_per_iteration must be >= 1, got {config.iterations} and "
                            f"{config.prompts_per_iteration}")
        if not config.variants or len(set(config.variants)) != len(config.variants):
            raise UserError(f"variants must name each of {VARIANTS} at most once, got {config.variants}")
        if config.sampling.samples_per_prompt < 2:
            raise UserError("sampling.samples_per_prompt must be >= 2: a pair and a ranking need two responses")
        self.config, self.log = config, log
        self.device = runtime_device(config.device, config.threads)
        self.run_dir = RunDir(config.out, log=log)
        self.cache = LogprobCache(self.run_dir.root / "logprobs", config.score_batch_size, progress=config.progress)
        self.manifests: list[dict[str, Any]] = []
        self._sources = None

    # ---- inputs --------------------------------------------------------------------------------------------------
    @property
    def sources(self) -> list:
        """The task checker as a reward source: evaluation and the report's sample scores only."""
        if self._sources is None:
            from lit_align.rollout.reward_sources import build_reward_sources

            self._sources = build_reward_sources([{"kind": "checker"}], device=self.device)
        return self._sources

    def prompt_slice(self, t: int) -> list[dict]:
        from lit_align.data.jsonl import read_rows

        p = self.config.prompts_per_iteration
        rows = read_rows(self.config.prompts_file, "prompt")
        if len(rows) < self.config.iterations * p:
            raise UserError(f"{self.config.prompts_file}: {len(rows)} prompts, but {self.config.iterations} "
                            f"iterations of {p} disjoint prompts need {self.config.iterations * p}")
        return rows[(t - 1) * p:t * p]

    def load(self, path: str):
        from lit_align.models.loading import load_causal_lm, load_tokenizer

        return load_causal_lm(path, dtype=self.config.dtype).to(self.device), load_tokenizer(path)

    def eval_key(self) -> dict[str, Any]:
        e = self.config.eval
        files = {name: file_digest(path) for name, path in (("val", e.val_file), ("test", e.test_file)) if path}
        return {"eval": asdict(e), "files": files}

    # ---- the loop -----------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        c = self.config
        write_json(self.run_dir.root / "config.json", asdict(c))
        m0 = self.make_m0()
        key = digest("m1", folder_fingerprint(c.policy), c.dtype, self.eval_key())
        m1_stage = self.stage(Stage("m1", "eval", key, partial(self.evaluate, c.policy)))
        m1 = Model(c.policy, key, m1_stage["metrics"], "m1")
        chains = {v: [m0, m1] for v in c.variants}  # M0, M1, ..., M_t per variant
        for t in range(1, c.iterations + 1):
            shared: dict[str, Any] | None = None
            for v in c.variants:
                chain = chains[v]
                if t == 1 and shared is not None:
                    ranked = shared
                else:
                    name = "iter1_rank" if t == 1 else f"{v}_iter{t}_rank"
                    models = [m.key for m in chain[-3:]]
                    key = digest(name, asdict(c.sampling), file_digest(c.prompts_file), c.prompts_per_iteration, t,
                                 c.seed, c.dtype, models)
                    ranked = self.stage(Stage(name, "rank", key, partial(self.rank, chain, t, name)))
                    shared = ranked
                name = f"{v}_iter{t}_dpo"
                key = digest(name, v, asdict(c.dpo), c.trainer, c.dtype, c.seed, self.eval_key(), ranked["key"],
                             chain[-1].key)
                step = self.stage(Stage(name, "dpo", key, partial(self.dpo, chain[-1], ranked, v, name)))
                chain.append(Model(step["policy"], step["key"], step["metrics"], name))
        return self.write_summary(chains, finished=True)

    def stage(self, stage: Stage) -> dict[str, Any]:
        """Run (or skip) a stage and rewrite summary.json."""
        manifest = self.run_dir.run(stage)
        self.manifests.append(manifest)
        self.write_summary(None, finished=False)
        return manifest

    def make_m0(self) -> Model:
        c = self.config
        settings = {k: v for k, v in asdict(c.m0).items() if k != "path"}
        if c.m0.path:
            key = digest("m0", folder_fingerprint(c.m0.path), c.dtype, self.eval_key())
            manifest = self.stage(Stage("m0", "eval", key, partial(self.evaluate, c.m0.path)))
        else:
            key = digest("m0", settings, folder_fingerprint(c.m0.base), file_digest(c.sft_file), c.seed, c.dtype,
                         c.trainer, self.eval_key())
            manifest = self.stage(Stage("m0", "sft", key, self.train_m0))
        return Model(manifest["policy"], key, manifest["metrics"], "m0")

    def write_summary(self, chains: dict[str, list[Model]] | None, finished: bool) -> dict[str, Any]:
        """summary.json: every stage, the per-variant table by iteration, and the scorings computed vs reused."""
        stages = [{"name": m["name"], "kind": m["kind"], **({"policy": m["policy"]} if "policy" in m else {}),
                   "metrics": m["metrics"]} for m in self.manifests]
        scorings = {k: sum(m["metrics"].get(k, 0) for m in self.manifests)
                    for k in ("scorings_computed", "scorings_reused")}
        summary = {"method": "cream", "paper": PAPER, "finished": finished, "seed": self.config.seed,
                   "scorings": scorings, "stages": stages, "table": self.table()}
        if chains is not None:
            summary["final"] = {v: {"stage": chain[-1].stage, "policy": chain[-1].path,
                                    "test_success": chain[-1].metrics.get("test_success")}
                                for v, chain in chains.items()}
        self.run_dir.write_summary(summary)
        return summary

    def table(self) -> list[dict[str, Any]]:
        """One row per (variant, iteration): the evaluation after that iteration's DPO and its self-labelling stats
        (iteration 0: M1 itself)."""
        by_name = {m["name"]: m["metrics"] for m in self.manifests}
        rows = []
        for v in self.config.variants:
            if "m1" in by_name:
                rows.append({"variant": v, "iteration": 0, **_pick(by_name["m1"], EVAL_FIELDS)})
            for t in range(1, self.config.iterations + 1):
                dpo = by_name.get(f"{v}_iter{t}_dpo")
                if dpo is not None:
                    rows.append({"variant": v, "iteration": t, **_pick(dpo, EVAL_FIELDS + RANK_FIELDS + DPO_FIELDS)})
        return rows

    # ---- stages ------------------------------------------------------------------------------------------------
    def evaluate(self, path: str, folder: Path, model=None, tokenizer=None) -> dict[str, Any]:
        if model is None:
            model, tokenizer = self.load(path)
        metrics = evaluate_for_loop(model, tokenizer, self.sources, self.config.eval, folder=folder,
                                    seed=self.config.seed, progress=self.config.progress, label=Path(path).name)
        return {"policy": path, "metrics": metrics}

    def train_m0(self, folder: Path) -> dict[str, Any]:
        """M0: `m0.steps` SFT steps from the untrained `m0.base` on sft_file (resumable), exported and evaluated."""
        import lightning.pytorch as pl

        from lit_align.data import SFTDataModule
        from lit_align.modules import SFTModule

        c, s = self.config, self.config.m0
        seed = int(digest(c.seed, "m0"), 16) % (2 ** 31)
        pl.seed_everything(seed, verbose=False)
        data = SFTDataModule(train_file=c.sft_file, tokenizer=s.base, batch_size=s.batch_size,
                             max_length=s.max_length, seed=seed)
        module = SFTModule(s.base, lr=s.lr, betas=(0.9, 0.95), warmup_ratio=s.warmup_ratio, dtype=c.dtype,
                           vocab_size=data.vocab_size, pad_token_id=data.pad_token_id)
        result = self.fit(module, data, folder, max_steps=s.steps, max_epochs=None, gradient_clip_val=1.0)
        path = str(self.run_dir.folder("m0") / "model")
        module.export(str(folder / "model"), data.tokenizer)
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        evaluated = self.evaluate(path, folder, *self.load(str(folder / "model")))
        return {"policy": path, "metrics": {**evaluated["metrics"], **result}}

    def fit(self, module, data, folder: Path, **settings: Any) -> dict[str, Any]:
        """Fit `module` in `folder` through lit_align.loops.trainer (resuming its last.ckpt); the fit's metrics."""
        from lit_align.loops import trainer as loop_trainer

        c = self.config
        accelerator = {"auto": "auto", "cpu": "cpu", "cuda": "gpu"}[c.device]
        every = settings.pop("checkpoint_every_n_steps", None)
        trainer = loop_trainer.build_trainer(folder, checkpoint_every_n_steps=every, progress=c.progress,
                                             log_every_n_steps=5, accelerator=accelerator, **settings, **c.trainer)
        start = time.monotonic()
        result = loop_trainer.fit(trainer, module, data, log=self.log)
        return {"steps": result["steps"], "train_loss": result["metrics"].get("loss"),
                "resumed_from_step": result["resumed_from"], "fit_seconds": round(time.monotonic() - start, 2)}

    def rank(self, chain: list[Model], t: int, name: str, folder: Path) -> dict[str, Any]:
        """Sample from M_t, score with the checker and M_t, M_{t-1}, M_{t-2}, rank, measure consistency, pair."""
        from lit_align.models.reference import weights_digest
        from lit_align.rollout.generate import Generation

        c = self.config
        current, previous = chain[-1], chain[-2]
        older = chain[-3] if t >= 2 else None  # M_{t-2}; at t = 1 M0 has no reference
        rows = self.prompt_slice(t)
        model, tokenizer = self.load(current.path)
        samples = ChunkedJSONL(folder / "samples.jsonl")
        resumed = samples.chunks or None
        throughput = sample_chunks(model, tokenizer, rows, samples, self.checker_fields, c.sampling, seed=c.seed,
                                   stage=name, progress=c.progress)
        lines = samples.rows()
        gens = [Generation.from_dict(line) for line in lines]
        keys = [sample_key(line["prompt_id"], line["sample"], g) for line, g in zip(lines, gens, strict=True)]
        before = self.cache.counts()
        logp: dict[str, list[tuple[float, int]]] = {}
        for role, m in (("current", current), ("previous", previous), ("older", older)):
            if m is None:
                continue
            if m is not current:  # the chain's models are fine-tunes of one base: M_t's tokenizer serves them all
                del model
                model, _ = self.load(m.path)
            fingerprint = weights_digest(model)
            logp[role] = self.cache.scores(model, tokenizer, fingerprint, keys, gens, f"{name}: {m.stage} log-probs",
                                           name=m.path)
            if role == "previous":  # r_{t-1} needs M_{t-1}'s scores again: read back, not recomputed
                logp["previous_again"] = self.cache.scores(model, tokenizer, fingerprint, keys, gens)
            if role == "current":
                current_fingerprint = fingerprint
        counts = {k: v - before[k] for k, v in self.cache.counts().items()}
        scored = []
        for k, (line, key) in enumerate(zip(lines, keys, strict=True)):
            (lp_t, n), lp_prev = logp["current"][k], logp["previous"][k][0]
            again = logp["previous_again"][k][0]
            prev_reward = again - logp["older"][k][0] if older is not None else again / max(1, n)
            scored.append({"prompt_id": line["prompt_id"], "sample": line["sample"], "key": key, "text": line["text"],
                           "checker": line["checker"], "tokens": n, "logp_current": lp_t, "logp_previous": lp_prev,
                           "logp_older": logp["older"][k][0] if older is not None else None,
                           "reward": lp_t - lp_prev, "previous_reward": prev_reward})
        write_jsonl(folder / "scored.jsonl", scored)
        by_prompt: dict[str, list[dict]] = {}
        for s in scored:
            by_prompt.setdefault(s["prompt_id"], []).append(s)
        rankings, checked = [], []
        for prompt_id, group in by_prompt.items():
            group.sort(key=lambda s: s["sample"])
            r = rank_prompt(prompt_id, [s["reward"] for s in group], [s["previous_reward"] for s in group])
            line = {"prompt_id": prompt_id, "tau": r.tau, "consistency": r.consistency,
                    "undefined_tau": r.undefined_tau, "rewards": r.current, "previous_rewards": r.previous,
                    "rank": _ranks(r.current), "previous_rank": _ranks(r.previous),
                    "checker": [s["checker"] for s in group], "pair": list(r.pair) if r.pair else None}
            rankings.append(line)
            if r.pair:
                checked.append((group[r.pair[0]]["checker"], group[r.pair[1]]["checker"]))
        write_jsonl(folder / "rankings.jsonl", rankings)
        n = max(1, len(rankings))
        metrics = {"samples": len(lines), "prompts": len(rankings),
                   "mean_consistency": sum(r["consistency"] for r in rankings) / n,
                   "mean_tau": sum(r["tau"] for r in rankings) / n,
                   "undefined_tau": sum(r["undefined_tau"] for r in rankings),
                   "pairs": len(checked), "tied_prompts": len(rankings) - len(checked),
                   "sample_success": sum(s["checker"] == 1.0 for s in scored) / max(1, len(scored)),
                   "sample_score": sum(s["checker"] or 0.0 for s in scored) / max(1, len(scored)),
                   **labelling_accuracy(checked), **counts, **throughput,
                   "scoring_tokens_per_s": self.cache.tokens_per_s}
        return {"policy": current.path, "fingerprint": current_fingerprint, "resumed_from_chunk": resumed,
                "metrics": metrics}

    def checker_fields(self, rows: list[dict], generations: list) -> list[dict[str, Any]]:
        """The task checker's score of each sample ("checker"; None when the checker cannot score it)."""
        import math

        from lit_align.rollout.reward_sources import score_rewards

        result = score_rewards(self.sources, rows, generations)
        values = next(iter(result.components.values()))
        return [{"checker": float(v) if math.isfinite(float(v)) else None} for v in values]

    def dpo(self, policy: Model, ranked: dict[str, Any], variant: str, name: str, folder: Path) -> dict[str, Any]:
        """DPO of M_t on the rank stage's pairs with per-pair eps, reference = M_t's cached scores; export, evaluate."""
        import lightning.pytorch as pl

        from lit_align.data import PreferenceDataModule
        from lit_align.modules import DPOModule

        c, s = self.config, self.config.dpo
        source = self.run_dir.folder(ranked["name"])
        rankings = read_jsonl(source / "rankings.jsonl")
        scored = {(r["prompt_id"], r["sample"]): r for r in read_jsonl(source / "scored.jsonl")}
        lines = {(r["prompt_id"], r["sample"]): r for r in ChunkedJSONL.committed(source / "samples.jsonl")}
        eps = smoothing([_ranking(r) for r in rankings], variant)
        before = self.cache.counts()
        pairs, dropped = self.pairs(rankings, scored, lines, eps, ranked["fingerprint"], policy.path, folder)
        counts = {k: v - before[k] for k, v in self.cache.counts().items()}
        rank_metrics = _pick(ranked["metrics"], RANK_FIELDS)
        info = {"pairs_trained": len(pairs), "pairs_untokenizable": dropped, "variant": variant,
                "mean_eps": sum(p["label_smoothing"] for p in pairs) / max(1, len(pairs)), **rank_metrics, **counts}
        if not pairs:
            self.log(f"[cream] {name}: no pair to train on; M_t carries over")
            return {"policy": policy.path, "skipped": "no pairs", "metrics": {**policy.metrics, **info}}
        seed = int(digest(c.seed, name), 16) % (2 ** 31)
        pl.seed_everything(seed, verbose=False)
        data = PreferenceDataModule(train_file=str(folder / "pairs.jsonl"), tokenizer=policy.path,
                                    batch_size=s.batch_size, max_length=s.max_length, seed=seed)
        module = DPOModule(policy.path, loss_type="sigmoid", beta=s.beta, rpo_alpha=s.rpo_alpha,
                           reference="precomputed", reference_cache=str(folder / "reference_logps.pt"), lr=s.lr,
                           betas=tuple(s.betas), warmup_ratio=s.warmup_ratio, scheduler=s.scheduler, dtype=c.dtype,
                           vocab_size=data.vocab_size, pad_token_id=data.pad_token_id)
        trained = self.fit(module, data, folder, max_epochs=s.epochs, max_steps=s.max_steps,
                           checkpoint_every_n_steps=s.checkpoint_every_n_steps,
                           gradient_clip_val=s.gradient_clip_val)
        info["reference_scored_in_fit"] = module.reference.computed  # 0: every pair's reference came from the cache
        module.export(str(folder / "model"), data.tokenizer)
        if not s.keep_checkpoints:
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        path = str(self.run_dir.folder(name) / "model")
        evaluated = self.evaluate(path, folder, *self.load(str(folder / "model")))
        resumed = trained.pop("resumed_from_step")
        return {"policy": path, "resumed_from_step": resumed,
                "metrics": {**evaluated["metrics"], **info, **trained}}

    def pairs(self, rankings: list[dict], scored: dict, lines: dict, eps: dict[str, float], fingerprint: str,
              model_name: str, folder: Path) -> tuple[list[dict], int]:
        """Write pairs.jsonl and reference_logps.pt (M_t's cached chosen/rejected scores, keyed as DPO keys its
        batches); returns (the pairs, how many were dropped because their text does not re-tokenise to the sampled
        tokens, whose scores the reference would then not match)."""
        from lit_align.data.collate import PreferenceCollator
        from lit_align.data.jsonl import read_rows
        from lit_align.data.tokenize import tokenize_rows
        from lit_align.models.loading import load_tokenizer
        from lit_align.models.reference import CachedReference, pair_keys

        candidates = []
        for r in rankings:
            if r["pair"] is None:
                continue
            chosen, rejected = (scored[(r["prompt_id"], k)] for k in r["pair"])
            line = lines[(r["prompt_id"], r["pair"][0])]
            candidates.append({"id": r["prompt_id"], "prompt": line["prompt"], "chosen": chosen["text"],
                               "rejected": rejected["text"], "label_smoothing": eps[r["prompt_id"]],
                               "consistency": r["consistency"], "tau": r["tau"], "chosen_checker": chosen["checker"],
                               "rejected_checker": rejected["checker"], "chosen_key": chosen["key"],
                               "rejected_key": rejected["key"], "samples": list(r["pair"])})
        tokenizer = load_tokenizer(model_name)
        rows = read_rows(candidates, "preference", name=str(folder / "pairs.jsonl"))
        examples, _ = tokenize_rows(rows, "preference", tokenizer, max_length=self.config.dpo.max_length)
        by_id = {ex["id"]: ex for ex in examples}
        kept, reference = [], CachedReference(fingerprint, str(folder / "reference_logps.pt"), model=model_name)
        for row in candidates:
            ex = by_id.get(row["id"])
            if ex is None or not all(_same_tokens(ex, side, lines[(row["id"], k)])
                                     for side, k in zip(("chosen", "rejected"), row["samples"], strict=True)):
                continue
            key = pair_keys(PreferenceCollator(tokenizer.pad_token_id or 0)([ex]))[0]
            reference.cache[key] = tuple(self.cache.lookup(fingerprint, [row["chosen_key"], row["rejected_key"]]))
            kept.append(row)
        write_jsonl(folder / "pairs.jsonl", kept)
        reference.save()
        return kept, len(candidates) - len(kept)


EVAL_FIELDS = ("test_success", "test_score", "val_success", "val_score")
RANK_FIELDS = ("mean_consistency", "mean_tau", "undefined_tau", "pairs", "tied_prompts", "sample_success",
               "label_correct", "label_wrong", "label_tie", "label_accuracy_untied")
DPO_FIELDS = ("pairs_trained", "pairs_untokenizable", "mean_eps", "steps", "train_loss", "scorings_computed",
              "scorings_reused", "reference_scored_in_fit")


def _pick(metrics: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: metrics[k] for k in fields if k in metrics}


def _ranks(values: list[float]) -> list[int]:
    """Each response's rank by `values`, 0 = highest (ties by sample order)."""
    order = sorted(range(len(values)), key=lambda k: (-values[k], k))
    ranks = [0] * len(values)
    for position, k in enumerate(order):
        ranks[k] = position
    return ranks


def _ranking(line: dict[str, Any]):
    from lit_align.loops.consistency import Ranking

    return Ranking(line["prompt_id"], line["rewards"], line["previous_rewards"], line["tau"], line["consistency"],
                   line["undefined_tau"], tuple(line["pair"]) if line["pair"] else None)


def _same_tokens(example: dict[str, Any], side: str, line: dict[str, Any]) -> bool:
    """Whether the DPO example's `side` is exactly the sampled prompt + generated tokens (what the cache scored)."""
    generated = line["completion_ids"] + ([line["stop_token_id"]] if line["finished"] else [])
    labelled = [t for t in example[f"{side}_labels"] if t != -100]
    return example[f"{side}_input_ids"] == line["prompt_ids"] + generated and labelled == generated


def run_cream(config: CreamConfig, log=print) -> dict[str, Any]:
    """Run (or continue) the CREAM loop of `config`; returns the summary (also in <out>/summary.json)."""
    return Cream(config, log=log).run()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """`lit-align cream --config configs/cream.yaml [--key.sub value ...]` (see lit_align.loops.config)."""
    from lit_align.loops.config import parse

    config = parse(CreamConfig, argv, "lit-align cream", __doc__.splitlines()[0])
    summary = run_cream(config)
    for v, final in summary["final"].items():
        print(f"[cream] {v}: {final['stage']} ({final['policy']}): test_success {final['test_success']}")
    print(f"[cream] scorings {summary['scorings']}; summary: {Path(config.out) / 'summary.json'}")
    return summary


if __name__ == "__main__":
    from lit_align.errors import run_reporting_user_errors

    run_reporting_user_errors(main, __import__("sys").argv[1:])
