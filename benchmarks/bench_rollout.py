"""Rollout throughput: sampling, then scoring the samples (policy + reference log-probs), lit_align's fused path
against the eager log_softmax path, in the same run.

    OMP_NUM_THREADS=1 python benchmarks/bench_rollout.py --device cpu      # the tiny model: 256 prompts x 4 x 24
    python benchmarks/bench_rollout.py --device cpu --prompts 16 --samples 2 --max-new-tokens 8 --out-json /tmp/r.json
    python benchmarks/bench_rollout.py --device cuda --hidden-size 1024 --layers 8 --heads 16 \\
        --out-json benchmarks/results/h100_rollout.json --out-md /tmp/h100_rollout.md
    OMP_NUM_THREADS=1 python benchmarks/bench_rollout.py --device cpu --model artifacts/smollm2 --prompts 16  # real

The models: the bundled tiny Llama (lit_align.tasks: hidden 128, 2 layers, 4 heads, MLP 512, tied embeddings,
vocabulary 1024 from the suite tokenizer), built with its suite into a temporary folder (or taken from / built
into --suite DIR, the layout of `python -m lit_align.tasks build --out DIR`). --hidden-size / --layers / --heads /
--intermediate build a Llama of another size for the same tokenizer (e.g. a bigger one on GPU); the vocabulary is
the tokenizer's. --model PATH takes a real HF folder instead (e.g. SmolLM2-135M-Instruct, V = 49,152), the suite's
prompts in its tokenizer and chat template. The policy and the reference are two copies loaded from the same
folder (float32 on CPU, bfloat16 on CUDA), in eval mode; the training row puts the policy in train mode (the Llama
has no dropout).

Sampling: the first --prompts rows of the suite's prompts.jsonl, encoded as in training
(lit_align.rollout.generate.encode_prompts), each repeated --samples times, sampled with
lit_align.rollout.generate.generate(do_sample=True, temperature, max_new_tokens, seed) once per --batch-sizes
entry. Tokens/s = generated tokens (sum of Generation.num_tokens, the stop token counted when a sample stopped) /
the median wall time of a full pass over all prompts, after --warmup untimed calls on one batch. A random
model rarely samples the end-of-sequence token, so nearly every sample runs to --max-new-tokens.

Samplers (--samplers; generate is the baseline and its samples are the ones scored):
  generate   one plain generate call over all the sequences
  grow       ReST's Grow as lit_align.loops.sampling.sample_chunks runs it: the prompts in chunks of --chunk-prompts,
             a seed per chunk, each chunk's samples appended to a fresh JSONL file (lit_align.loops.rundir.ChunkedJSONL:
             fsynced, then its commit record written) with no scorer; its tokens/s ratio is over generate's at the
             same batch size (the per-chunk seeds sample other tokens than generate's, so tokens differ a little).
  sessions   CORGI's feedback sessions (lit_align.rollout.sessions.sample_sessions, opt-in: --samplers
             generate,grow,sessions): each sequence a session of at most --session-rounds feedback rounds with the
             suite checker's feedback, all unfinished sessions generating together per turn; sequences = sessions,
             tokens = the answers' generated tokens (feedback turns are spliced in, not generated), plus
             sessions_per_s and turns (answers). A random model's answers rarely pass, so nearly every session
             runs all rounds; with the sessions' prompts growing per turn its tokens/s is below generate's.
The samplers are timed interleaved (generate, grow, generate, ...) at each batch size.

Scoring: the samples of the first batch size, in length-sorted batches of --score-batch-size
(lit_align.rollout.score.completion_batch: prompt + generated tokens, right-padded, labels -100 off the generated
tokens), built and moved to the device before timing. Providers:
  lit_align  lit_align.models.causal_lm.token_logprobs(model, batch): the decoder's hidden states and
             lit_align.ops.linear_token_logprobs (backend "auto": cpp on CPU, the CUDA/Triton kernels on GPU),
             which projects only the generated tokens through the LM head and never holds the (B, T, V) logits
  eager      model(input_ids, attention_mask).logits (B, T, V) -> [:, :-1] -> .float().log_softmax(-1) -> gather of
             the shifted labels, 0 off the generated tokens (what a logits-based scorer does)
Phases:
  score      policy and reference per-token log-probs under torch.no_grad() (a rollout's old/ref log-probs)
  train      the policy's per-token log-probs with autograd, backward of their sum, gradients accumulated over
             the batches (set to None before each pass): a policy-gradient update's forward + backward
Scored tokens/s = generated tokens / the median wall time of one full pass over all batches. In the score phase
that pass runs BOTH models over those tokens (policy + reference count as one pass, not twice the tokens); in the
train phase it is the policy's forward + backward. input_tokens in the JSON counts every non-padding token fed to
the models (prompts included). The providers are timed interleaved (lit_align, eager, lit_align, ...), so a change
in the load of a shared machine hits both; medians (20th/80th percentiles in the JSON) of --repeats passes after
--warmup untimed ones, wall clock, bracketed by torch.cuda.synchronize() on CUDA.

Same work: the two providers' per-token log-probs of the generated tokens are compared (policy and reference in the
score phase, the policy in the train phase), and so are the policy's gradients after one train pass. The largest
absolute log-prob difference must stay below --tolerance (default 1e-4 in float32, 5e-2 in bfloat16, where the eager
path rounds its logits to bfloat16 first); the run is flagged as a MISMATCH and exits with status 1 otherwise.

Peak memory of one pass, above what is held before it (both models, the batches):
  * CUDA: torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated() after reset_peak_memory_stats().
  * CPU: a fresh process per (phase, provider) from a forkserver, which loads the models, rebuilds the same
    batches, runs one warm-up pass, calls malloc_trim(0), and reports the peak RSS growth over one pass (VmHWM after
    /proc/self/clear_refs, measured by benchmarks/memory.py as in benchmarks/bench_ops.py). held_mib is the process's
    resident set before the pass (interpreter and libraries included) on CPU, allocated tensors on CUDA.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.memory import cpu_peak, cuda_peak, run_in_child  # noqa: E402

MODULE = "benchmarks.bench_rollout"  # the name the CPU memory processes import this file by
PROVIDERS = ("lit_align", "eager")
SAMPLERS = ("generate", "grow", "sessions")
DEFAULT_SAMPLERS = ("generate", "grow")
SAMPLING_BASELINE = "generate"
BASELINE = "eager"
PHASES = ("score", "train")
IGNORE = -100
DEFAULTS = {
    "cpu": dict(dtype="float32", batch_sizes="16,64,256", repeats=3, warmup=1),
    "cuda": dict(dtype="bfloat16", batch_sizes="64,256,1024", repeats=10, warmup=2),
}
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-2}
TINY = dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512)  # lit_align.tasks.tiny_model defaults
# Imported by the forkserver once, so that each CPU memory process starts with them loaded.
PRELOAD = ["torch", "transformers", "transformers.models.llama.modeling_llama", "lit_align.ops",
           "lit_align.models.causal_lm", "lit_align.rollout.score", "benchmarks.harness", MODULE]


# ---- suite, models, samples -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Setup:
    model_dir: str
    prompts_file: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    prompts: int
    samples: int
    max_new_tokens: int
    temperature: float
    score_batch_size: int
    dtype: str
    seed: int

    def describe(self, vocab: int, params: int) -> str:
        return (f"Llama H={self.hidden_size} L={self.num_layers} heads={self.num_heads} I={self.intermediate_size} "
                f"V={vocab} ({params / 1e6:.2f}M parameters), {self.dtype}; {self.prompts} prompts x {self.samples} "
                f"samples, max_new_tokens={self.max_new_tokens}, temperature {self.temperature}; scoring batches of "
                f"{self.score_batch_size}")


def prepare_suite(args, stack: contextlib.ExitStack) -> tuple[str, str]:
    """(model folder, prompts.jsonl). With --suite DIR: DIR as `python -m lit_align.tasks build --out DIR` makes it
    (the parts that are missing are built there, with that command's defaults; what is there is kept). Without: a
    temporary folder with the prompts file (max(--prompts, 1000) rows), the tokenizer and the tiny model. A model
    of another size than the tiny one is built into a temporary folder beside the suite's tokenizer."""
    from lit_align.tasks.__main__ import build
    from lit_align.tasks.build import SIZES, build_suite
    from lit_align.tasks.tiny_model import build_tiny_model
    from lit_align.tasks.tokenizer import build_tokenizer

    size = dict(hidden_size=args.hidden_size, num_layers=args.layers, num_heads=args.heads,
                intermediate_size=args.intermediate)
    if args.suite:
        root = Path(args.suite)
        if not (root / "data" / "manifest.json").exists() or not (root / "tokenizer" / "tokenizer.json").exists() \
                or (size == TINY and not (root / "model" / "model.safetensors").exists()):
            with contextlib.redirect_stdout(sys.stderr):  # its "data: ..." lines
                build(root, args.seed, False, 0.5, dict(SIZES), 1024)
    else:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_rollout_")))
        build_suite(root / "data", args.seed, sft_size=8, preference_size=8, prompts_size=max(args.prompts, 1000),
                    expert_size=8, heldout_size=8)
        build_tokenizer(root / "tokenizer", args.seed)
        if size == TINY:
            build_tiny_model(root / "model", root / "tokenizer", seed=args.seed)
    prompts_file, tok_dir = root / "data" / "prompts.jsonl", root / "tokenizer"
    if args.model:  # a given HF folder (e.g. artifacts/smollm2): the suite's prompts in its own tokenizer
        return args.model, str(prompts_file)
    if size == TINY:
        model_dir = root / "model"
    else:
        model_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_rollout_model_")))
        build_tiny_model(model_dir, tok_dir, seed=args.seed, max_position_embeddings=max(256, 64 + args.max_new_tokens),
                         **size)
    return str(model_dir), str(prompts_file)


@contextlib.contextmanager
def no_progress_bars():
    """No "Writing model shards" / "Loading weights" bars from transformers."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def load_models(setup: Setup, device: str):
    """(policy, reference, tokenizer): two copies of the model folder's weights, in eval mode on `device`."""
    from lit_align.models.loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(setup.model_dir)
    with no_progress_bars():  # no "Loading weights" bar per model
        policy, reference = (load_causal_lm(setup.model_dir, dtype=setup.dtype).to(device).eval() for _ in range(2))
    reference.requires_grad_(False)
    return policy, reference, tokenizer


def prompt_rows(setup: Setup) -> list[dict]:
    """The first `prompts` rows of the prompts file."""
    from lit_align.files import read_jsonl

    rows = read_jsonl(setup.prompts_file)[:setup.prompts]
    if len(rows) < setup.prompts:
        raise SystemExit(f"{setup.prompts_file} has {len(rows)} prompts, fewer than --prompts {setup.prompts}")
    return rows


def prompt_ids(tokenizer, rows: list[dict], setup: Setup) -> list[list[int]]:
    """The prompts, encoded as in training, each repeated `samples` times (adjacent)."""
    from lit_align.rollout.generate import encode_prompts

    return [ids for ids in encode_prompts(tokenizer, rows) for _ in range(setup.samples)]


def sample(policy, tokenizer, prompts: list[list[int]], setup: Setup, batch_size: int):
    from lit_align.rollout.generate import generate

    return generate(policy, tokenizer, prompts, max_new_tokens=setup.max_new_tokens, do_sample=True,
                    temperature=setup.temperature, batch_size=batch_size, seed=setup.seed)


def grow(policy, tokenizer, rows: list[dict], setup: Setup, batch_size: int, chunk_prompts: int, folder: str):
    """ReST's Grow sampling of `rows` (lit_align.loops.sampling.sample_chunks, no scorer) into a fresh ChunkedJSONL
    in `folder`; returns it (its committed lines are read back after the timing)."""
    from lit_align.loops.rundir import ChunkedJSONL
    from lit_align.loops.sampling import SamplingSettings, sample_chunks

    settings = SamplingSettings(samples_per_prompt=setup.samples, temperature=setup.temperature,
                                max_new_tokens=setup.max_new_tokens, batch_size=batch_size, chunk_prompts=chunk_prompts)
    out = ChunkedJSONL(Path(tempfile.mkdtemp(dir=folder)) / "samples.jsonl")
    sample_chunks(policy, tokenizer, rows, out, lambda chunk_rows, generations: [{} for _ in generations], settings,
                  seed=setup.seed, stage="bench", progress=False)
    return out


def sessions(policy, tokenizer, rows: list[dict], setup: Setup, batch_size: int, rounds: int):
    """CORGI's session sampler on `rows`, each repeated `samples` times, with the suite checker's feedback."""
    from lit_align.rollout.feedback import env_factory
    from lit_align.rollout.sessions import sample_sessions

    repeated = [row for row in rows for _ in range(setup.samples)]
    return sample_sessions(policy, tokenizer, repeated, env_factory(), rounds=rounds, do_sample=True,
                           max_new_tokens=setup.max_new_tokens, temperature=setup.temperature,
                           batch_size=batch_size, seed=setup.seed)


def session_extras(result: list) -> dict:
    """What a sessions pass adds to its row: answers given and how the sessions ended."""
    from lit_align.rollout.sessions import STOPS

    return {"turns": sum(len(s.answers) for s in result),
            "stops": {reason: sum(s.stop == reason for s in result) for reason in STOPS}}


def tally(result) -> tuple[int, int, int]:
    """(sequences, generated tokens, finished samples) of one sampling pass: generate's Generations, Grow's
    committed lines, or sessions (their answers' tokens; finished = answers that ended with a stop token)."""
    from lit_align.rollout.sessions import Session

    if result and isinstance(result, list) and isinstance(result[0], Session):
        answers = [a for s in result for a in s.answers]
        return len(result), sum(a.num_tokens for a in answers), sum(a.finished for a in answers)
    samples = result if isinstance(result, list) else result.rows()
    field = (lambda s, k: s[k]) if samples and isinstance(samples[0], dict) else getattr
    return len(samples), sum(field(s, "num_tokens") for s in samples), sum(bool(field(s, "finished")) for s in samples)


def score_batches(tokenizer, generations, setup: Setup, device: str) -> list[dict[str, torch.Tensor]]:
    """completion_batch's right-padded batches (input_ids, attention_mask, labels (B, T)), length-sorted, on device."""
    from lit_align.rollout.runtime import batches_by_length
    from lit_align.rollout.score import completion_batch

    lengths = [len(g.prompt_ids) + g.num_tokens for g in generations]
    return [{k: v.to(device) for k, v in completion_batch(tokenizer, [generations[i] for i in idx]).items()}
            for idx in batches_by_length(lengths, setup.score_batch_size)]


# ---- providers: per-token log-probs (B, T-1) float32 of the shifted labels, 0 off the generated tokens --------
def lit_align_logprobs(model, batch: dict) -> torch.Tensor:
    from lit_align.models.causal_lm import token_logprobs

    return token_logprobs(model, batch)  # fused LM head + log-prob, backend "auto"


def eager_logprobs(model, batch: dict) -> torch.Tensor:
    from lit_align.data.collate import model_inputs

    logits = model(**model_inputs(batch)).logits[:, :-1]  # (B, T-1, V)
    labels = batch["labels"][:, 1:]  # (B, T-1)
    valid = labels != IGNORE
    logp = logits.float().log_softmax(-1).gather(-1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, logp, 0.0)  # (B, T-1)


LOGPROBS: dict[str, Callable[[torch.nn.Module, dict], torch.Tensor]] = {"lit_align": lit_align_logprobs,
                                                                        "eager": eager_logprobs}


@dataclasses.dataclass
class Models:
    policy: torch.nn.Module
    reference: torch.nn.Module
    batches: list[dict[str, torch.Tensor]]


def run_pass(phase: str, provider: str, m: Models) -> list[torch.Tensor]:
    """One pass over all batches; returns the detached log-probs (score: policy then reference per batch)."""
    logprobs = LOGPROBS[provider]
    out: list[torch.Tensor] = []
    if phase == "score":
        with torch.no_grad():
            for batch in m.batches:
                out += [logprobs(m.policy, batch), logprobs(m.reference, batch)]
        return out
    m.policy.train()
    m.policy.zero_grad(set_to_none=True)
    try:
        for batch in m.batches:
            logp = logprobs(m.policy, batch)  # (B, T-1), 0 off the generated tokens
            logp.sum().backward()
            out.append(logp.detach())
    finally:
        m.policy.eval()
    return out


# ---- peak memory --------------------------------------------------------------------------------------------
def measure_cuda_memory(phase: str, provider: str, m: Models) -> dict:
    m.policy.zero_grad(set_to_none=True)
    peak = cuda_peak(functools.partial(run_pass, phase, provider, m))
    m.policy.zero_grad(set_to_none=True)
    harness.free("cuda")
    return peak


def cpu_memory_child(phase: str, provider: str, setup: dict, generations: list[dict]) -> dict:
    """Runs in a fresh process: peak RSS growth of one pass after a warm-up pass, in MiB."""
    from lit_align.rollout.generate import Generation

    setup = Setup(**setup)
    policy, reference, tokenizer = load_models(setup, "cpu")
    m = Models(policy, reference, score_batches(tokenizer, [Generation.from_dict(g) for g in generations], setup,
                                                "cpu"))
    out = run_pass(phase, provider, m)  # warm-up; in the train phase it also allocates the gradients
    del out
    # train: run_pass sets the gradients to None first, so they are counted again
    return cpu_peak(functools.partial(run_pass, phase, provider, m))


def measure_cpu_memory(phase: str, provider: str, setup: Setup, generations) -> dict:
    rows = [dataclasses.asdict(g) for g in generations]
    return run_in_child(MODULE, "cpu_memory_child", phase, provider, dataclasses.asdict(setup), rows,
                        preload=PRELOAD)


# ---- the two measurements ------------------------------------------------------------------------------------
def bench_sampling(policy, tokenizer, task_rows: list[dict], prompts, setup: Setup, args) -> tuple[list[dict], list]:
    """One row per (batch size, sampler); also the generations of the first batch size's first timed generate pass
    (to be scored)."""
    rows, kept = [], None
    folder = tempfile.mkdtemp(prefix="bench_rollout_grow_")
    try:
        for batch_size in args.batch_sizes:
            print(f"[bench_rollout] sampling, batch size {batch_size} ({', '.join(args.samplers)}) ...",
                  file=sys.stderr, flush=True)
            warm_rows = task_rows[:max(1, batch_size // setup.samples)]
            runs = {"generate": (functools.partial(sample, policy, tokenizer, prompts[:batch_size], setup, batch_size),
                                 functools.partial(sample, policy, tokenizer, prompts, setup, batch_size)),
                    "grow": (functools.partial(grow, policy, tokenizer, warm_rows, setup, batch_size,
                                               args.chunk_prompts, folder),
                             functools.partial(grow, policy, tokenizer, task_rows, setup, batch_size,
                                               args.chunk_prompts, folder)),
                    "sessions": (functools.partial(sessions, policy, tokenizer, warm_rows, setup, batch_size,
                                                   args.session_rounds),
                                 functools.partial(sessions, policy, tokenizer, task_rows, setup, batch_size,
                                                   args.session_rounds))}
            group = {name: dict(batch_size=batch_size, provider=name,
                                chunk_prompts=args.chunk_prompts if name == "grow" else None, sequences=len(prompts),
                                time_ms=None, time_ms_p20=None, time_ms_p80=None, times_ms=None, tokens=None,
                                tokens_per_s=None, finished=None, time_na=None) for name in args.samplers}
            times: dict[str, list[float]] = {name: [] for name in group}
            counts: dict[str, list[tuple[int, int, int]]] = {name: [] for name in group}
            for name, row in group.items():
                try:
                    for _ in range(args.warmup):
                        runs[name][0]()
                except Exception as error:  # noqa: BLE001 - reported as the row's reason
                    row["time_na"] = harness.reason(error)
            for _ in range(args.repeats):
                for name, row in group.items():  # interleaved, so that a change in the machine's load hits both
                    if row["time_na"] is not None:
                        continue
                    try:
                        elapsed, result = harness.timed(runs[name][1], args.device)
                        times[name].append(elapsed)
                        counts[name].append(tally(result))
                        if name == "sessions":
                            row.update(session_extras(result))
                        if name == "generate" and kept is None:
                            kept = result
                    except Exception as error:  # noqa: BLE001 - reported as the row's reason
                        row["time_na"] = harness.reason(error)
            for name, row in group.items():
                if row["time_na"] is None:
                    tokens = [c[1] for c in counts[name]]
                    row.update(harness.summary(times[name]), times_ms=times[name], sequences=counts[name][0][0],
                               tokens=tokens[0], tokens_per_run=tokens, finished=counts[name][-1][2])
                    row["tokens_per_s"] = statistics.median(
                        n / (ms / 1e3) for n, ms in zip(tokens, times[name], strict=True))
                    if name == "sessions":
                        row["sessions_per_s"] = row["sequences"] / (row["time_ms"] / 1e3)
                rows.append(row)
            harness.free(args.device)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    harness.add_ratios(rows, SAMPLING_BASELINE, group=lambda row: row["batch_size"],
                       ratios=(("tokens_per_s", "tokens_per_s_ratio"),))
    return rows, kept


def _row(phase: str, provider: str) -> dict:
    return dict(phase=phase, provider=provider, time_ms=None, time_ms_p20=None, time_ms_p80=None, times_ms=None,
                time_na=None, tokens_per_s=None, input_tokens_per_s=None, peak_mib=None, held_mib=None,
                memory_na=None)


def _max_abs_diff(a: list[torch.Tensor], b: list[torch.Tensor], masks: list[torch.Tensor]) -> float:
    return max(float(((x.float() - y.float()).abs() * mask).max()) for x, y, mask in zip(a, b, masks, strict=True))


def bench_scoring(m: Models, setup: Setup, generations, args, tokens: int, input_tokens: int) -> tuple[list, dict]:
    """Rows per (phase, provider) and the agreement of the providers' log-probs and gradients."""
    rows = {(ph, p): _row(ph, p) for ph in args.phases for p in args.providers}
    first: dict[tuple[str, str], list[torch.Tensor]] = {}
    grads: dict[str, list[torch.Tensor]] = {}
    for phase in args.phases:
        for provider in args.providers:
            print(f"[bench_rollout] {phase} / {provider}: warming up ...", file=sys.stderr, flush=True)
            try:
                for i in range(max(1, args.warmup)):
                    out = run_pass(phase, provider, m)
                    if i == 0:
                        first[(phase, provider)] = [t.cpu() for t in out]
                        if phase == "train":
                            grads[provider] = [p.grad.float().cpu() for p in m.policy.parameters()
                                               if p.grad is not None]
                    del out
            except Exception as error:  # noqa: BLE001
                rows[(phase, provider)].update(time_na=harness.reason(error), memory_na=harness.reason(error))
            m.policy.zero_grad(set_to_none=True)
            harness.free(args.device)
    live = [key for key, row in rows.items() if row["time_na"] is None]
    times: dict[tuple[str, str], list[float]] = {key: [] for key in live}
    print(f"[bench_rollout] timing {args.repeats} passes each, interleaved ...", file=sys.stderr, flush=True)
    for _ in range(args.repeats):
        for key in live:
            if rows[key]["time_na"] is not None:
                continue
            try:
                elapsed, out = harness.timed(functools.partial(run_pass, *key, m), args.device)
                times[key].append(elapsed)
                del out
            except Exception as error:  # noqa: BLE001
                rows[key]["time_na"] = harness.reason(error)
        m.policy.zero_grad(set_to_none=True)
    for key in live:
        row = rows[key]
        if row["time_na"] is None:
            row.update(harness.summary(times[key]), times_ms=times[key])
            row["tokens_per_s"] = tokens / (row["time_ms"] / 1e3)
            row["input_tokens_per_s"] = input_tokens / (row["time_ms"] / 1e3)
    harness.add_memory(rows, lambda key: measure_cuda_memory(*key, m) if args.device == "cuda"
               else measure_cpu_memory(*key, setup, generations),
               lambda key: f"[bench_rollout] {key[0]} / {key[1]}", args)
    return list(rows.values()), agreement(first, grads, m, args)


def agreement(first: dict, grads: dict, m: Models, args) -> dict:
    """Largest |lit_align - eager| of the generated tokens' log-probs (per phase) and of the policy's gradients."""
    masks = [(b["labels"][:, 1:] != IGNORE).cpu() for b in m.batches]
    result = dict(tolerance=args.tolerance, score_max_abs_diff=None, train_max_abs_diff=None, grad_max_abs_diff=None,
                  grad_max_abs=None, agree=None)
    for phase in args.phases:
        a, b = first.get((phase, "lit_align")), first.get((phase, "eager"))
        if a is not None and b is not None:
            per_batch = [mask for mask in masks for _ in range(2 if phase == "score" else 1)]
            result[f"{phase}_max_abs_diff"] = _max_abs_diff(a, b, per_batch)
    if "lit_align" in grads and "eager" in grads:
        pairs = list(zip(grads["lit_align"], grads["eager"], strict=True))
        result["grad_max_abs_diff"] = max(float((x - y).abs().max()) for x, y in pairs)
        result["grad_max_abs"] = max(float(y.abs().max()) for _, y in pairs)
    diffs = [result[f"{ph}_max_abs_diff"] for ph in PHASES if result[f"{ph}_max_abs_diff"] is not None]
    result["agree"] = all(d <= args.tolerance for d in diffs) if diffs else None
    return result


# ---- reporting -------------------------------------------------------------------------------------------------
def _unit(notes: harness.Footnotes, value, na, fmt: str, unit: str) -> str:
    return notes.cell(value, na, fmt) + ("" if value is None else unit)


def _verdict(agree: dict) -> str:
    if agree["agree"] is None:
        return "not compared (a provider or phase did not run)"
    parts = [f"{ph} {agree[f'{ph}_max_abs_diff']:.1e}" for ph in PHASES if agree[f"{ph}_max_abs_diff"] is not None]
    text = f"largest |lit_align - eager| per-token log-prob: {', '.join(parts)} (tolerance {agree['tolerance']:.0e})"
    if agree["grad_max_abs_diff"] is not None:
        text += (f"; policy gradients: {agree['grad_max_abs_diff']:.1e} (largest gradient entry "
                 f"{agree['grad_max_abs']:.1e})")
    return text + (": same work" if agree["agree"] else ": MISMATCH, the providers disagree")


def _tokens_per_s(row: dict, notes: harness.Footnotes) -> str:
    return harness.num(row["tokens_per_s"], ".0f")


SAMPLING_COLUMNS = [harness.Column("batch", 6, lambda r, notes: str(r["batch_size"])),
                    harness.Column("sampler", 9, lambda r, notes: r["provider"], left=True),
                    harness.time_column("pass ms", ".1f"),
                    harness.Column("gen tokens", 11, lambda r, notes: harness.num(r["tokens"], "d")),
                    harness.Column("finished", 9, lambda r, notes: harness.num(r["finished"], "d")),
                    harness.Column("tokens/s", 10, _tokens_per_s),
                    harness.ratio_column("tokens_per_s_ratio", "x generate", 10),
                    harness.Column("sessions/s", 10, lambda r, notes: harness.num(r.get("sessions_per_s"), ".1f")
                                   if r.get("sessions_per_s") is not None else "")]
SCORING_COLUMNS = [harness.Column("phase", 6, lambda r, notes: r["phase"], left=True),
                   harness.Column("provider", 10, lambda r, notes: r["provider"], left=True),
                   harness.time_column("pass ms", ".1f"),
                   harness.ratio_column("time_ratio", "x eager"), harness.Column("tokens/s", 10, _tokens_per_s),
                   harness.ratio_column("tokens_per_s_ratio", "x eager"), harness.memory_column(),
                   harness.ratio_column("memory_ratio", "x eager")]


def print_table(result: dict, file=None) -> None:
    file = file or sys.stdout
    meta, notes = result["meta"], harness.Footnotes()
    print(f"\nRollout: sampling and scoring, {meta['device_name']}, torch {meta['torch']}, transformers "
          f"{meta['transformers']}, lit_align._C {'built' if meta['extension_loaded'] else 'not built'}, "
          f"{meta['threads']} threads, load average {meta['load_average']}", file=file)
    print(f"  {meta['setup']}", file=file)
    print(f"  sampling: {meta['sequences']} sequences; median of {meta['repeats']} passes after {meta['warmup']} "
          f"warm-up calls (one batch) per sampler", file=file)
    harness.print_rows(result["sampling"], SAMPLING_COLUMNS, notes, file)
    print(f"  scoring: {meta['scored_tokens']} generated tokens scored ({meta['input_tokens']} non-padding input "
          f"tokens) in {meta['score_batches']} batches; score = policy + reference, no grad, counted as one pass over "
          f"the generated tokens; train = policy forward + backward", file=file)
    harness.print_rows(result["rows"], SCORING_COLUMNS, notes, file)
    notes.print(file)
    print(f"  {_verdict(result['agreement'])}", file=file)


def markdown(result: dict) -> str:
    """A markdown section: the command, the setup, a sampling table and a scoring table."""
    meta, notes = result["meta"], harness.Footnotes()
    lines = [f"## Rollout: sampling and scoring ({meta['device_name']})", "", "```", meta["command"], "```",
             f"{meta['setup']}. torch {meta['torch']}, transformers {meta['transformers']}, {meta['threads']} "
             f"thread(s), lit_align._C {'built' if meta['extension_loaded'] else 'not built'}; load average "
             f"{meta['load_average']} at the start, {meta['load_average_end']} at the end.", "",
             f"Sampling ({meta['sequences']} sequences, median of {meta['repeats']} passes):", "",
             "| batch size | sampler | pass time | generated tokens | finished (stop token) | tokens/s | "
             "tokens/s ratio |", "|---|---|---|---|---|---|---|"]
    for r in result["sampling"]:
        sampler = r["provider"] + (f" (chunks of {r['chunk_prompts']} prompts)" if r["chunk_prompts"] else "")
        if r.get("sessions_per_s") is not None:
            sampler += (f" (up to {meta['session_rounds']} rounds; {r['turns']} answers, "
                        f"{r['sessions_per_s']:.1f} sessions/s)")
        lines.append(f"| {r['batch_size']} | {sampler} | {_unit(notes, r['time_ms'], r['time_na'], '.1f', ' ms')} "
                     f"| {harness.num(r['tokens'], 'd')} | {harness.num(r['finished'], 'd')} "
                     f"| {harness.num(r['tokens_per_s'], '.0f')} | {notes.ratio(r['tokens_per_s_ratio'])} |")
    lines += ["", f"Scoring the {meta['scored_tokens']} generated tokens ({meta['input_tokens']} non-padding input "
              f"tokens, {meta['score_batches']} batches of up to {meta['setup_args']['score_batch_size']}); "
              "*score* = policy + reference log-probs under no_grad, tokens/s counting the two models as one pass "
              "over the generated tokens; *train* = the policy's log-probs with grad + backward of their sum. "
              f"Median of {meta['repeats']} passes, providers interleaved; ratios are lit_align / eager in this run.",
              "", "| phase | provider | pass time | tokens/s | peak memory above models + batches | time ratio | "
              "tokens/s ratio | memory ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        time_cell = _unit(notes, r["time_ms"], r["time_na"], ".1f", " ms")
        peak_cell = _unit(notes, r["peak_mib"], r["memory_na"], ".1f", " MiB")
        lines.append(f"| {r['phase']} | {r['provider']} | {time_cell} | {harness.num(r['tokens_per_s'], '.0f')} | "
                     f"{peak_cell} | "
                     f"{notes.ratio(r['time_ratio'])} | {notes.ratio(r['tokens_per_s_ratio'])} | "
                     f"{notes.ratio(r['memory_ratio'])} |")
    lines += [f"[{i}] n/a: {reason}" for i, reason in enumerate(notes.reasons, 1)]
    lines += ["", f"Same work: {_verdict(result['agreement'])}.", ""]
    return "\n".join(lines)


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--suite", help="a suite folder (data/, tokenizer/, model/), built there where parts are missing "
                                   "(default: a temporary folder, removed afterwards)")
    p.add_argument("--model", help="a real HF model folder (e.g. artifacts/smollm2 from `lit-align models smollm2`) "
                                   "instead of a tiny one; its sizes come from its config")
    p.add_argument("--hidden-size", type=int, default=TINY["hidden_size"], help="H (default: the tiny model's)")
    p.add_argument("--layers", type=int, default=TINY["num_layers"])
    p.add_argument("--heads", type=int, default=TINY["num_heads"])
    p.add_argument("--intermediate", type=int, help="MLP width (default 4H)")
    p.add_argument("--prompts", type=int, default=256, help="N prompts from the suite's prompts.jsonl")
    p.add_argument("--samples", type=int, default=4, help="k samples per prompt")
    p.add_argument("--max-new-tokens", type=int, default=24, help="M, tokens sampled at most per sample")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--batch-sizes", help="comma-separated sampling batch sizes (default per device)")
    p.add_argument("--score-batch-size", type=int, default=64, help="sequences per scoring batch")
    p.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS),
                   help=f"comma-separated subset of {','.join(SAMPLERS)} ({SAMPLING_BASELINE} is required; "
                        f"default {','.join(DEFAULT_SAMPLERS)})")
    p.add_argument("--session-rounds", type=int, default=3, help="sessions: feedback rounds per session at most")
    p.add_argument("--chunk-prompts", type=int, default=64, help="grow: prompts per committed chunk")
    p.add_argument("--providers", default=",".join(PROVIDERS), help=f"comma-separated subset of {','.join(PROVIDERS)}")
    p.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), help="model dtype (default float32 CPU, bfloat16 CUDA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, help="timed passes (default per device)")
    p.add_argument("--warmup", type=int, help="untimed passes first (default per device)")
    p.add_argument("--tolerance", type=float, help="largest |lit_align - eager| log-prob allowed "
                                                   "(default 1e-4 float32, 5e-2 bfloat16)")
    p.add_argument("--skip-memory", action="store_true", help="time only")
    p.add_argument("--out-json", "--json", dest="out_json", help="write the machine-readable results to this file")
    p.add_argument("--out-md", help="write the results as a markdown section to this file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    defaults = DEFAULTS[args.device]
    for key in ("dtype", "batch_sizes", "repeats", "warmup"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if args.model:  # the sizes of the given model (they are only reported)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(args.model)
        args.hidden_size, args.layers, args.heads, args.intermediate = (
            config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size)
    if args.intermediate is None:
        args.intermediate = 4 * args.hidden_size
    if args.tolerance is None:
        args.tolerance = TOLERANCE[args.dtype]
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch-sizes: integers, comma-separated, got {args.batch_sizes!r}")
    if args.session_rounds < 0:
        p.error("--session-rounds must be >= 0")
    for name in ("prompts", "samples", "max_new_tokens", "score_batch_size", "chunk_prompts", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        p.error("--batch-sizes: at least one size, each >= 1")
    args.providers = harness.choices(args.providers, PROVIDERS, "--providers")
    args.phases = harness.choices(args.phases, PHASES, "--phases")
    args.samplers = harness.choices(args.samplers, SAMPLERS, "--samplers")
    if SAMPLING_BASELINE not in args.samplers:
        p.error(f"--samplers: {SAMPLING_BASELINE} is the baseline and its samples are scored; keep it")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    with contextlib.ExitStack() as stack:
        with no_progress_bars():
            model_dir, prompts_file = prepare_suite(args, stack)
        setup = Setup(model_dir, prompts_file, args.hidden_size, args.layers, args.heads, args.intermediate,
                      args.prompts, args.samples, args.max_new_tokens, args.temperature, args.score_batch_size,
                      args.dtype, args.seed)
        policy, reference, tokenizer = load_models(setup, args.device)
        rows = prompt_rows(setup)
        prompts = prompt_ids(tokenizer, rows, setup)
        sampling, generations = bench_sampling(policy, tokenizer, rows, prompts, setup, args)
        if generations is None:  # no batch size could sample: score nothing, say why
            raise SystemExit(f"sampling failed at every batch size: {sampling[0]['time_na']}")
        m = Models(policy, reference, score_batches(tokenizer, generations, setup, args.device))
        tokens = sum(g.num_tokens for g in generations)
        input_tokens = int(sum(int(b["attention_mask"].sum()) for b in m.batches))
        rows, agree = bench_scoring(m, setup, generations, args, tokens, input_tokens)
        config = policy.config
        params = sum(p.numel() for p in policy.parameters())
        score_shapes = [list(b["input_ids"].shape) for b in m.batches]
        del m, policy, reference
        harness.free(args.device)
    # each row over eager's of the same phase
    harness.add_ratios(rows, BASELINE, group=lambda row: row["phase"],
                       ratios=(*harness.RATIOS, ("tokens_per_s", "tokens_per_s_ratio")))
    import transformers

    from lit_align.ops import extension_loaded, resolve_backend

    omp = os.environ.get("OMP_NUM_THREADS")
    command = shlex.join(["python", "benchmarks/bench_rollout.py", *argv])
    meta = dict(command=f"OMP_NUM_THREADS={omp} {command}" if omp else command, argv=argv, device=args.device,
                device_name=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                torch=torch.__version__, transformers=transformers.__version__, extension_loaded=extension_loaded(),
                lit_align_backend=resolve_backend("auto", "linear_token_logprobs", torch.device(args.device)),
                threads=torch.get_num_threads(), omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
                repeats=args.repeats, warmup=args.warmup,
                setup=setup.describe(config.vocab_size, params),
                setup_args={k: v for k, v in dataclasses.asdict(setup).items()
                            if k not in ("model_dir", "prompts_file")},
                model=dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                           num_layers=config.num_hidden_layers, num_heads=config.num_attention_heads,
                           intermediate_size=config.intermediate_size,
                           tie_word_embeddings=bool(config.tie_word_embeddings), parameters=params),
                sequences=len(prompts), batch_sizes=args.batch_sizes, samplers=args.samplers,
                chunk_prompts=args.chunk_prompts, session_rounds=args.session_rounds, scored_tokens=tokens,
                input_tokens=input_tokens,
                score_batches=len(score_shapes), score_batch_shapes=score_shapes,
                load_average=_load(load_start), load_average_end=_load(os.getloadavg() if load_start else None))
    result = dict(meta=meta, sampling=sampling, rows=rows, agreement=agree)
    if args.out_json:
        with open(args.out_json, "w") as out:
            json.dump(result, out, indent=1)
    if args.out_md:
        Path(args.out_md).write_text(markdown(result))
    print_table(result)
    return result


def _load(load) -> list[float] | None:
    return None if load is None else [round(x, 2) for x in load]


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome["agreement"]["agree"] is not False else 1)
