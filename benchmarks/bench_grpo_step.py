"""One GRPO optimisation step, lit_align's GRPOModule against TRL's GRPOTrainer: same model, completions, rewards.

    python benchmarks/bench_grpo_step.py --device cpu                     # V=32000, 8 prompts x 4 completions
    python benchmarks/bench_grpo_step.py --device cpu --loss-type grpo --importance-sampling-level sequence
    python benchmarks/bench_grpo_step.py --device cuda --json benchmarks/results/grpo_step_h100.json

Sampling is not part of the step (it is bench_rollout.py's subject): both sides are given one prepared rollout, the
inputs dict TRL's _generate_and_score_completions hands its loss, and lit_align's minibatch of the same tokens.

The model: bench_dpo_step.build_model's random Llama (hidden 256, 2 layers, untied LM head, vocabulary --vocab),
loaded by path on both sides (float32 on CPU, bfloat16 on CUDA; no gradient checkpointing, no autocast).

The rollout (seeded): --prompts prompts of --prompt-len random tokens each (equal lengths, so TRL's left-padded
prompts and lit_align's right-padded rows hold the same tokens at the same positions), --generations completions
per prompt of random length in [C/3, C] (the first exactly C = --completion-len), right padding. The reward function
is the share of a completion's tokens with an even id; advantages are lit_align.losses.group_advantages of the
rewards (scale_rewards="group"), checked against TRL's formula on TRL's own nanstd (trl.trainer.utils). Old and
reference log-probs are the initial model's log-probs (a plain float32 log-softmax) plus seeded noise of std 0.3, so
that ratios leave the clip range and both branches of the clipped loss are exercised.

The step, identical on both sides apart from the loss call (AdamW, lr --lr, weight decay 0):
  lit_align  GRPOModule(path, loss_type, beta, epsilon, epsilon_high, importance_sampling_level,
             use_bias_correction_kl, max_new_tokens=C); module.num_items = the rollout's completion tokens
             (dapo's normaliser);
             loss, _ = module.minibatch_loss(batch); loss.backward(); opt.step(); opt.zero_grad()
  trl        GRPOTrainer(model=path, reward_funcs=the reward, GRPOConfig(same options, num_generations=G,
             per_device_train_batch_size=P*G, max_completion_length=C)); loss = trainer.compute_loss(model, inputs)
             with inputs = prompt_ids/mask, completion_ids/mask, advantages, old_per_token_logps,
             ref_per_token_logps (beta > 0), num_items_in_batch; then the same three calls. TRL scores through its
             fused, vocabulary-tiled LM head (trl/kernels/chunked_logprob.py) and computes per-token entropies.

Same work: the first two step losses (step 2 follows one AdamW update from each side's gradients, so it checks
the gradients too) are compared; a relative difference above --tolerance (1e-4 float32, 1e-2 bfloat16) is flagged.
Time: the providers' steps interleaved, median of --repeats after --warmup (>= 2, the checked ones). Peak memory of
one step above what is held before it: CUDA max_memory_allocated; CPU peak RSS growth in a fresh forkserver process
per provider (benchmarks/memory.py), as bench_dpo_step.py does.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.bench_dpo_step import PAD, _no_dataset_bars, _optimizer, _to, build_model, quiet  # noqa: E402
from benchmarks.memory import cpu_peak, cuda_peak, run_in_child  # noqa: E402

MODULE = "benchmarks.bench_grpo_step"
PROVIDERS = ("lit_align", "trl")
BASELINE = "trl"
IGNORE = -100
NOISE = 0.3
DEFAULTS = {"cpu": dict(dtype="float32", repeats=5, warmup=2), "cuda": dict(dtype="bfloat16", repeats=20, warmup=3)}
TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-2}
PRELOAD = ["torch", "transformers", "transformers.models.llama.modeling_llama", "trl", "trl.trainer.grpo_trainer",
           "datasets", "lit_align.ops", "lit_align.modules.grpo", "benchmarks.harness", MODULE]


@dataclasses.dataclass(frozen=True)
class Setup:
    model_dir: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    prompts: int
    generations: int
    prompt_len: int
    completion_len: int
    dtype: str
    lr: float
    seed: int
    loss_type: str
    importance_sampling_level: str
    beta: float
    epsilon: float
    epsilon_high: float
    use_bias_correction_kl: bool

    @property
    def seq_len(self) -> int:  # bench_dpo_step.build_model sizes the position table with it
        return self.prompt_len + self.completion_len

    def describe(self) -> str:
        return (f"Llama H={self.hidden} L={self.layers} heads={self.heads} I={self.intermediate} V={self.vocab} "
                f"(untied head); {self.prompts} prompts x {self.generations} completions, prompt {self.prompt_len} "
                f"+ completion <= {self.completion_len} tokens; {self.dtype}; AdamW lr={self.lr}; "
                f"loss_type={self.loss_type}, importance_sampling_level={self.importance_sampling_level}, "
                f"beta={self.beta}, use_bias_correction_kl={self.use_bias_correction_kl}, "
                f"epsilon={self.epsilon}/{self.epsilon_high}")


def reward(completion_ids: list[list[int]], **kwargs) -> list[float]:
    """The reward function of both sides: the share of a completion's tokens with an even id."""
    return [sum(1 for t in ids if t % 2 == 0) / max(1, len(ids)) for ids in completion_ids]


def make_rollout(setup: Setup) -> dict[str, torch.Tensor]:
    """TRL's inputs of one step (float32 on CPU): prompt_ids/mask (B, P), completion_ids/mask (B, C), advantages (B,),
    old_per_token_logps and ref_per_token_logps (B, C), num_items_in_batch."""
    from transformers import AutoModelForCausalLM

    from lit_align.losses import group_advantages

    gen = torch.Generator().manual_seed(setup.seed)
    b, c = setup.prompts * setup.generations, setup.completion_len
    prompts = torch.randint(3, setup.vocab, (setup.prompts, setup.prompt_len), generator=gen)
    prompt_ids = prompts.repeat_interleave(setup.generations, 0)  # (B, P) prompt-major, as TRL groups them
    lengths = torch.randint(max(1, c // 3), c + 1, (b,), generator=gen)
    lengths[0] = c
    completion_mask = (torch.arange(c)[None] < lengths[:, None]).long()  # (B, C)
    completion_ids = torch.randint(3, setup.vocab, (b, c), generator=gen).masked_fill(completion_mask == 0, PAD)
    rewards = torch.tensor(reward([ids[:n].tolist() for ids, n in zip(completion_ids, lengths, strict=True)]))
    advantages, _ = group_advantages(rewards.view(-1, setup.generations))  # (P, G)
    model = AutoModelForCausalLM.from_pretrained(setup.model_dir, dtype=torch.float32)
    with torch.no_grad():
        ids = torch.cat([prompt_ids, completion_ids], 1)
        attention = torch.cat([torch.ones_like(prompt_ids), completion_mask], 1)
        logits = model(input_ids=ids, attention_mask=attention).logits
        logp = torch.log_softmax(logits[:, setup.prompt_len - 1:-1].float(), -1)  # (B, C, V)
        logp = logp.gather(-1, completion_ids[..., None]).squeeze(-1)  # (B, C)
    old = logp + NOISE * torch.randn(logp.shape, generator=gen)
    ref = logp + NOISE * torch.randn(logp.shape, generator=gen)
    return dict(prompt_ids=prompt_ids, prompt_mask=torch.ones_like(prompt_ids), completion_ids=completion_ids,
                completion_mask=completion_mask, advantages=advantages.reshape(-1), rewards=rewards,
                old_per_token_logps=old * completion_mask, ref_per_token_logps=ref * completion_mask,
                num_items_in_batch=completion_mask.sum())


def trl_advantages(rewards: torch.Tensor, generations: int) -> torch.Tensor:
    """TRL 1.16's group advantages (grpo_trainer.py, scale_rewards="group"), on TRL's own nanstd."""
    from trl.trainer.utils import nanstd

    grouped = rewards.view(-1, generations)
    mean = grouped.mean(1).repeat_interleave(generations)
    std = nanstd(grouped, dim=1).repeat_interleave(generations)
    return (rewards - mean) / (std + 1e-4)


def lit_batch(rollout: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lit_align's minibatch of the same rollout: rows prompt + completion, labels -100 off the completion, shifted
    (B, T-1) tensors (position t scores token t+1)."""
    p = rollout["prompt_ids"].shape[1]
    ids = torch.cat([rollout["prompt_ids"], rollout["completion_ids"]], 1)  # (B, T)
    attention = torch.cat([rollout["prompt_mask"], rollout["completion_mask"]], 1)
    labels = ids.masked_fill(attention == 0, IGNORE)
    labels[:, :p] = IGNORE

    def shifted(x: torch.Tensor) -> torch.Tensor:  # (B, C) completion positions -> (B, T-1)
        out = torch.zeros(ids.shape[0], ids.shape[1] - 1, dtype=torch.float32)
        out[:, p - 1:] = x
        return out

    mask = shifted(rollout["completion_mask"].float())
    return dict(input_ids=ids, attention_mask=attention, labels=labels, mask=mask,
                old_logp=shifted(rollout["old_per_token_logps"]), ref_logp=shifted(rollout["ref_per_token_logps"]),
                advantages=rollout["advantages"][:, None] * mask, values=None, returns=None)


@dataclasses.dataclass
class Runner:
    step: Callable[[], torch.Tensor]  # one optimisation step; returns the (detached) loss
    keep: tuple = ()


def build_lit_align(setup: Setup, device: str) -> Runner:
    from lit_align.modules.grpo import GRPOModule

    module = GRPOModule(setup.model_dir, num_generations=setup.generations, loss_type=setup.loss_type,
                        beta=setup.beta, epsilon=setup.epsilon, epsilon_high=setup.epsilon_high,
                        importance_sampling_level=setup.importance_sampling_level,
                        use_bias_correction_kl=setup.use_bias_correction_kl, max_new_tokens=setup.completion_len,
                        dtype=setup.dtype, lr=setup.lr, backend="auto")
    module.configure_model()
    module.to(device).train()
    rollout = make_rollout(setup)
    module.num_items = float(rollout["num_items_in_batch"])  # what compute_advantages sets for one rank and step
    batch = _to(lit_batch(rollout), device)
    optimizer = _optimizer(module.model.parameters(), setup)

    def step() -> torch.Tensor:
        loss, _ = module.minibatch_loss(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.detach()

    return Runner(step, (module, optimizer))


def build_trl(setup: Setup, device: str) -> Runner:
    import datasets
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    out = tempfile.TemporaryDirectory(prefix="bench_grpo_trl_")
    b = setup.prompts * setup.generations
    args = GRPOConfig(output_dir=out.name, loss_type=setup.loss_type, beta=setup.beta, epsilon=setup.epsilon,
                      epsilon_high=setup.epsilon_high, importance_sampling_level=setup.importance_sampling_level,
                      use_bias_correction_kl=setup.use_bias_correction_kl,
                      num_generations=setup.generations, per_device_train_batch_size=b,
                      max_completion_length=setup.completion_len, report_to="none", use_cpu=device == "cpu",
                      bf16=False, fp16=False, gradient_checkpointing=False, learning_rate=setup.lr, weight_decay=0.0,
                      save_strategy="no", logging_strategy="no", disable_tqdm=True,
                      model_init_kwargs={"dtype": setup.dtype})
    with _no_dataset_bars():
        trainer = GRPOTrainer(model=setup.model_dir, reward_funcs=reward, args=args,
                              train_dataset=datasets.Dataset.from_list([{"prompt": "w3 w4"}]),
                              processing_class=AutoTokenizer.from_pretrained(setup.model_dir))
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.training_step; the step here is by hand
    model = trainer.model.to(device).train()
    if getattr(trainer, "ref_model", None) is not None:
        trainer.ref_model.to(device)
    rollout = make_rollout(setup)
    inputs = {k: v for k, v in rollout.items() if k != "rewards"}
    if setup.beta == 0:
        inputs.pop("ref_per_token_logps")
    dtype = getattr(torch, setup.dtype)
    inputs = _to({k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}, device)
    optimizer = _optimizer(model.parameters(), setup)

    def step() -> torch.Tensor:
        loss = trainer.compute_loss(model, inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.detach()

    return Runner(step, (trainer, model, optimizer, out))


BUILDERS: dict[str, Callable[[Setup, str], Runner]] = {"lit_align": build_lit_align, "trl": build_trl}


def cpu_memory_child(provider: str, setup: dict, warmup: int) -> dict:
    """Runs in a fresh process: peak RSS growth of one step after `warmup` steps, in MiB."""
    with quiet():
        return harness.warm_peak(BUILDERS[provider](Setup(**setup), "cpu"), warmup, cpu_peak)


def measure_memory(provider: str, setup: Setup, device: str, warmup: int) -> dict:
    if device == "cpu":
        return run_in_child(MODULE, "cpu_memory_child", provider, dataclasses.asdict(setup), warmup, preload=PRELOAD)
    peak = harness.warm_peak(BUILDERS[provider](setup, "cuda"), warmup, cuda_peak)
    harness.free("cuda")
    return peak


def run_providers(providers: list[str], setup: Setup, args, tokens: int) -> list[dict]:
    return harness.run_step_providers(providers, lambda provider: BUILDERS[provider](setup, args.device), args, tokens,
                                      lambda provider: measure_memory(provider, setup, args.device, args.warmup),
                                      "bench_grpo_step")


def add_agreement(rows: list[dict]) -> None:
    """max_rel_diff: the largest relative difference of the first two step losses from TRL's."""
    base = next((r for r in rows if r["provider"] == BASELINE), {})
    for row in rows:
        mine, theirs = row.get("losses"), base.get("losses")
        row["max_rel_diff"] = None if mine is None or theirs is None else max(
            abs(a - b) / max(abs(b), 1e-12) for a, b in zip(mine[:2], theirs[:2], strict=True))


COLUMNS = [harness.Column("provider", 10, lambda r, notes: r["provider"], left=True),
           harness.time_column("step ms", ".1f"),
           harness.ratio_column("time_ratio", "x trl", 6),
           harness.Column("tokens/s", 10, lambda r, notes: harness.num(r["tokens_per_s"], ".0f")),
           harness.memory_column(), harness.ratio_column("memory_ratio", "x trl", 6),
           harness.Column(f"{'loss 1':>10} {'loss 2':>10}", 21, lambda r, notes: " ".join(
               f"{harness.num(v, '.7f'):>10}" for v in ((r["losses"] or []) + [None, None])[:2]))]


def print_table(rows: list[dict], meta: dict, file=None) -> None:
    file = file or sys.stdout
    notes = harness.Footnotes()
    print(f"\nGRPO optimisation step (forward + backward + AdamW on one rollout): {meta['device_name']}, torch "
          f"{meta['torch']}, trl {meta['trl']}, transformers {meta['transformers']}, {meta['threads']} threads",
          file=file)
    print(f"  {meta['setup']}; {meta['tokens']} non-padding tokens per step; median of {meta['repeats']} steps after "
          f"{meta['warmup']} warm-up; advantages vs TRL's formula: max abs diff {meta['advantage_diff']:.1e}",
          file=file)
    harness.print_rows(rows, COLUMNS, notes, file)
    notes.print(file)
    for r in rows:
        if r["provider"] != BASELINE and r.get("max_rel_diff") is not None:
            verdict = "same work" if r["max_rel_diff"] <= meta["tolerance"] else "MISMATCH: the providers disagree"
            print(f"  {r['provider']} vs {BASELINE}: largest relative difference of the first two losses "
                  f"{r['max_rel_diff']:.1e} (tolerance {meta['tolerance']:.0e}): {verdict}", file=file)


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--providers", default=",".join(PROVIDERS), help=f"comma-separated subset of {','.join(PROVIDERS)}")
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, help="attention heads (default: 4, or fewer when H is not divisible)")
    p.add_argument("--intermediate", type=int, help="MLP width (default 4H)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--generations", type=int, default=4, help="G, completions per prompt")
    p.add_argument("--prompt-len", type=int, default=64)
    p.add_argument("--completion-len", type=int, default=192, help="C, the longest completion (max_completion_length)")
    p.add_argument("--loss-type", choices=("grpo", "bnpo", "dr_grpo", "dapo"), default="dapo")
    p.add_argument("--importance-sampling-level", choices=("token", "sequence"), default="token")
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--epsilon", type=float, default=0.2)
    p.add_argument("--epsilon-high", type=float, default=0.28)
    p.add_argument("--use-bias-correction-kl", type=int, choices=(0, 1), default=1,
                   help="1 (TRL's default): the KL term times the ratio; 0: GRPO's Eq. 4 as written")
    p.add_argument("--dtype", choices=("float32", "bfloat16"))
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--tolerance", type=float)
    p.add_argument("--skip-memory", action="store_true", help="time only")
    p.add_argument("--json", help="write machine-readable rows to this file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    for key in ("dtype", "repeats", "warmup"):
        if getattr(args, key) is None:
            setattr(args, key, DEFAULTS[args.device][key])
    args.tolerance = TOLERANCE[args.dtype] if args.tolerance is None else args.tolerance
    args.warmup = max(2, args.warmup)
    args.heads = args.heads or next(h for h in (4, 2, 1) if args.hidden % h == 0)
    args.intermediate = args.intermediate or 4 * args.hidden
    args.providers = harness.choices(args.providers, PROVIDERS, "--providers")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet())
        model_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_grpo_model_"))
        setup = Setup(model_dir, args.vocab, args.hidden, args.layers, args.heads, args.intermediate, args.prompts,
                      args.generations, args.prompt_len, args.completion_len, args.dtype, args.lr, args.seed,
                      args.loss_type, args.importance_sampling_level, args.beta, args.epsilon, args.epsilon_high,
                      bool(args.use_bias_correction_kl))
        build_model(setup)
        rollout = make_rollout(setup)
        tokens = int(rollout["prompt_mask"].sum() + rollout["completion_mask"].sum())
        try:
            advantage_diff = float((trl_advantages(rollout["rewards"], args.generations)
                                    - rollout["advantages"]).abs().max())
        except ModuleNotFoundError:
            advantage_diff = float("nan")
        rows = run_providers(args.providers, setup, args, tokens)
    harness.add_ratios(rows, BASELINE)
    add_agreement(rows)
    import transformers

    try:
        trl_version = importlib.metadata.version("trl")
    except importlib.metadata.PackageNotFoundError:
        trl_version = "not installed"
    meta = dict(argv=list(sys.argv[1:] if argv is None else argv), device=args.device,
                device_name=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                torch=torch.__version__, trl=trl_version, transformers=transformers.__version__,
                threads=torch.get_num_threads(), repeats=args.repeats, warmup=args.warmup, tolerance=args.tolerance,
                tokens=tokens, setup=setup.describe(), advantage_diff=advantage_diff,
                setup_args={k: v for k, v in dataclasses.asdict(setup).items() if k != "model_dir"},
                load_average=os.getloadavg() if hasattr(os, "getloadavg") else None)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dict(meta=meta, rows=rows), out, indent=1)
    print_table(rows, meta)
    return rows


if __name__ == "__main__":
    main()
