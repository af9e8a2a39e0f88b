"""One DPO training step, lit_align's DPOModule against TRL's DPOTrainer: same model, same batch, same optimizer.

    python benchmarks/bench_dpo_step.py --device cpu                        # V=32000, 8 pairs x 512 tokens
    python benchmarks/bench_dpo_step.py --device cpu --pairs 4 --seq-len 256 --json /tmp/dpo_step.json
    python benchmarks/bench_dpo_step.py --device cuda --json benchmarks/results/dpo_step_h100.json
    python benchmarks/bench_dpo_step.py --device cpu --model artifacts/smollm2 --pairs 4 --seq-len 128  # a real model

The model: a random Llama built from a config (hidden 256, 2 layers, 4 heads, intermediate 1024, vocabulary
--vocab, untied embeddings so the LM head is a real (V, H) matrix), saved with a word-level tokenizer to a
temporary folder and loaded by path on both sides (float32 on CPU, bfloat16 on CUDA; sdpa attention, no gradient
checkpointing, no autocast: TRL's DPOConfig defaults gradient_checkpointing=True and bf16=True, both turned off).
With --model PATH a real HF folder is used as it is instead (e.g. SmolLM2-135M-Instruct from `lit-align models
smollm2`: V = 49,152, tied embeddings), every parameter trained on both sides, padding with its tokenizer's pad id.

The batch: random token ids (seeded), per pair a prompt of about T/3 tokens and a chosen and a rejected completion
of varying length, the longest sequence exactly T, right padding. It is collated in TRL's format (input_ids,
attention_mask, completion_mask (2B, T), chosen rows then rejected rows; checked equal to what
`trainer.data_collator`, TRL's DataCollatorForPreference, makes of the same rows), and lit_align's batch is derived
from it (same input_ids and attention_mask, labels = input_ids with -100 where completion_mask is 0, ids).

The step, identical on both sides apart from the loss call (AdamW, lr --lr, weight decay 0, set_to_none grads):
  lit_align  DPOModule(path, beta=0.1, reference="copy", backend="auto"), configure_model();
             loss = module.step(batch, ""); loss.backward(); opt.step(); opt.zero_grad()
             (step() updates the preference metrics and calls self.log, which returns early without a Trainer;
             its "no trainer" warning is silenced)
  trl        DPOTrainer(model=policy, ref_model=frozen copy, DPOConfig(beta=0.1, loss_type=["sigmoid"], ...));
             loss = trainer._compute_loss(trainer.model, batch, return_outputs=False); then the same three calls.
             TRL 1.16 already scores through a fused, vocabulary-tiled LM head (trl/trainer/utils.py
             add_fused_lm_head, trl/kernels/chunked_logprob.py): that is the competitor, not a logits-materialising
             baseline. As shipped, on devices without Triton (CPU) it projects every position, prompt and padding
             included, and its policy forward also computes the entropy / mean-logit / top-1 statistics that
             DPOTrainer logs; on CUDA it projects only the completion tokens (Triton kernels).

Same work: the first two step losses of both sides are compared (step 1: the policy equals its reference, so the
loss is log 2 on both; step 2 follows one AdamW update from each side's gradients, so it checks the gradients
too), and so are step 1's mean chosen / rejected sequence log-probs (TRL's and lit_align's logps/chosen and
logps/rejected metrics). They are printed and stored; a relative difference above --tolerance (default 1e-4 in
float32, 1e-2 in bfloat16) is flagged as a mismatch.

Speed: the providers' steps are interleaved (lit_align, trl, lit_align, trl, ...) so that a change in the load of
a shared machine hits both; median (and 20th/80th percentiles in the JSON) of --repeats steps after --warmup
untimed steps (at least 2, the checked ones), wall clock, bracketed by torch.cuda.synchronize() on CUDA.
Tokens/s = the batch's non-padding tokens (all 2B sequences) / median step time. Threads: torch's default
(OMP_NUM_THREADS); on a 2-core machine shared with other work, OMP_NUM_THREADS=1 gives steadier numbers (a
2-thread parallel region can wait a whole scheduler slice for its second core).

Peak memory of one step, above what is held before it (weights, reference, AdamW state, batch), each provider
measured alone after its warm-up steps:
  * CUDA: torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated() (after reset_peak_memory_stats()),
    the provider built afresh in this process once the timing models are freed.
  * CPU: a fresh process per provider from a forkserver, peak RSS growth over the step (VmHWM after
    /proc/self/clear_refs, measured by benchmarks/memory.py as in benchmarks/bench_ops.py). held_mib in the JSON is
    the process's resident set before the step (interpreter and libraries included) on CPU, allocated tensors on
    CUDA.
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
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.memory import cpu_peak, cuda_peak, run_in_child  # noqa: E402

MODULE = "benchmarks.bench_dpo_step"  # the name the CPU memory processes import this file by
PROVIDERS = ("lit_align", "trl")
BASELINE = "trl"
BETA = 0.1
IGNORE = -100
PAD, EOS, UNK = 0, 1, 2  # special token ids of the word-level tokenizer; ordinary tokens are 3 .. V-1
DEFAULTS = {
    "cpu": dict(dtype="float32", repeats=5, warmup=2),
    "cuda": dict(dtype="bfloat16", repeats=20, warmup=3),
}
# Imported by the forkserver once, so that each CPU memory process starts with them loaded (about 10 s otherwise).
PRELOAD = ["torch", "transformers", "transformers.models.llama.modeling_llama", "trl", "trl.trainer.dpo_trainer",
           "datasets", "lit_align.ops", "lit_align.modules.dpo", "benchmarks.harness", MODULE]
# bfloat16: TRL rounds each logit tile to bf16 before its fp32 log-softmax, and one AdamW step on bf16 weights
# rounds updates to the weights' resolution, so the second loss can differ at the per-mille level.
TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-2}
NO_TRAINER_WARNING = r".*self\.log\(\)` but the `self\.trainer` reference is not registered.*"


# ---- model, tokenizer, batch ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Setup:
    model_dir: str
    vocab: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    pairs: int
    seq_len: int
    dtype: str
    lr: float
    seed: int
    pad: int = PAD  # the padding id (a real model's tokenizer's)
    pretrained: bool = False  # model_dir is a given model (--model), not the random one built here

    def describe(self) -> str:
        model = (f"{Path(self.model_dir).name} (pretrained)" if self.pretrained else "Llama") + \
            f" H={self.hidden} L={self.layers} heads={self.heads} I={self.intermediate} V={self.vocab}"
        head = "" if self.pretrained else " (untied head)"
        return f"{model}{head}; {self.pairs} pairs x {self.seq_len} tokens; {self.dtype}; AdamW lr={self.lr}"


def pretrained_setup(path: str, args) -> Setup:
    """The Setup of a given HF folder: its sizes from config.json, its tokenizer's pad id (else EOS)."""
    from transformers import AutoConfig, AutoTokenizer

    config, tokenizer = AutoConfig.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Setup(path, config.vocab_size, config.hidden_size, config.num_hidden_layers, config.num_attention_heads,
                 config.intermediate_size, args.pairs, args.seq_len, args.dtype, args.lr, args.seed, pad, True)


def build_tokenizer(vocab: int):
    """A word-level tokenizer over `vocab` entries: <pad>, <eos>, <unk>, then w3 .. w{V-1} (built offline)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {w: i for i, w in enumerate(["<pad>", "<eos>", "<unk>", *(f"w{i}" for i in range(3, vocab))])}
    tokenizer = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="<eos>",
                                   unk_token="<unk>")


def build_model(setup: Setup) -> None:
    """Random Llama (seeded) + tokenizer, saved to setup.model_dir."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=setup.vocab, hidden_size=setup.hidden, intermediate_size=setup.intermediate,
                         num_hidden_layers=setup.layers, num_attention_heads=setup.heads,
                         num_key_value_heads=setup.heads, max_position_embeddings=max(2048, setup.seq_len),
                         tie_word_embeddings=False, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=None)
    torch.manual_seed(setup.seed)
    LlamaForCausalLM(config).save_pretrained(setup.model_dir)
    build_tokenizer(setup.vocab).save_pretrained(setup.model_dir)


def make_examples(setup: Setup) -> list[dict]:
    """TRL's tokenized preference rows (prompt_ids, chosen_ids, rejected_ids): random ids, prompt ~T/3,
    completions of varying length, the first chosen sequence exactly seq_len long (so the batch is (2B, T))."""
    gen = torch.Generator().manual_seed(setup.seed)
    t = setup.seq_len
    jitter = max(1, t // 12)

    def ids(n: int) -> list[int]:
        return torch.randint(3, setup.vocab, (n,), generator=gen).tolist()

    def between(low: int, high: int) -> int:
        return int(torch.randint(low, high + 1, (1,), generator=gen))

    rows = []
    for i in range(setup.pairs):
        prompt = min(t - 2, max(1, t // 3 + between(-jitter, jitter)))
        room = t - prompt
        chosen = room if i == 0 else between(max(1, room // 3), room)
        rejected = between(max(1, room // 3), room)
        rows.append(dict(prompt_ids=ids(prompt), chosen_ids=ids(chosen), rejected_ids=ids(rejected)))
    return rows


def trl_batch(examples: list[dict], pad_id: int = PAD) -> dict[str, torch.Tensor]:
    """TRL's collated batch: input_ids, attention_mask, completion_mask (2B, T), chosen rows then rejected, right
    padding. Written out here so that lit_align's memory process need not import TRL; build_trl checks it equal to
    `trainer.data_collator(examples)` (trl's DataCollatorForPreference)."""
    from lit_align.data.collate import pad

    sides = [(ex["prompt_ids"], ex[f"{side}_ids"]) for side in ("chosen", "rejected") for ex in examples]
    return dict(input_ids=pad([p + c for p, c in sides], pad_id),  # (2B, T)
                attention_mask=pad([[1] * (len(p) + len(c)) for p, c in sides], 0),  # (2B, T)
                completion_mask=pad([[0] * len(p) + [1] * len(c) for p, c in sides], 0))  # (2B, T)


def lit_batch(batch: dict[str, torch.Tensor]) -> dict:
    """lit_align's preference batch from TRL's: labels (2B, T) = input_ids, -100 off the completion."""
    ids = batch["input_ids"]
    return dict(input_ids=ids, attention_mask=batch["attention_mask"],
                labels=ids.masked_fill(batch["completion_mask"] == 0, IGNORE),
                ids=[f"pair{i}" for i in range(ids.shape[0] // 2)], index=torch.arange(ids.shape[0] // 2))


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


# ---- providers: build(setup, device) -> Runner ----------------------------------------------------------------
class Unavailable(Exception):
    """The provider cannot run here; the message says why."""


@dataclasses.dataclass
class Runner:
    step: Callable[[], torch.Tensor]  # one training step; returns the (detached) loss
    logprobs: Callable[[], tuple[float, float]]  # mean chosen / rejected sequence log-probs of the first step
    keep: tuple = ()  # objects that must outlive the runner's closures (models, trainer, optimizer)


def _optimizer(params, setup: Setup) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in params if p.requires_grad], lr=setup.lr, weight_decay=0.0)


def build_lit_align(setup: Setup, device: str) -> Runner:
    from lit_align.modules.dpo import DPOModule

    module = DPOModule(setup.model_dir, beta=BETA, reference="copy", dtype=setup.dtype, lr=setup.lr,
                       backend="auto")
    module.configure_model()
    module.to(device).train()
    optimizer = _optimizer(module.parameters(), setup)
    batch = _to(lit_batch(trl_batch(make_examples(setup), setup.pad)), device)
    first: list[tuple[float, float]] = []

    def step() -> torch.Tensor:
        loss = module.step(batch, "")  # self.log returns early: no Trainer (warning silenced)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if not first:
            means = module.train_metrics.means
            first.append((float(means["logps__chosen"].compute()), float(means["logps__rejected"].compute())))
        return loss.detach()

    return Runner(step, lambda: first[0], (module, optimizer))


def build_trl(setup: Setup, device: str) -> Runner:
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    dtype = getattr(torch, setup.dtype)
    policy = AutoModelForCausalLM.from_pretrained(setup.model_dir, dtype=dtype).train()
    reference = AutoModelForCausalLM.from_pretrained(setup.model_dir, dtype=dtype).eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(setup.model_dir)
    out = tempfile.TemporaryDirectory(prefix="bench_dpo_trl_")  # TrainingArguments wants one; nothing is saved
    args = DPOConfig(output_dir=out.name, beta=BETA, loss_type=["sigmoid"], report_to="none", use_cpu=device == "cpu",
                     bf16=False, fp16=False, gradient_checkpointing=False, per_device_train_batch_size=setup.pairs,
                     learning_rate=setup.lr, weight_decay=0.0, max_length=None, save_strategy="no",
                     logging_strategy="no", disable_tqdm=True)
    rows = datasets.Dataset.from_list([dict(prompt="w3 w4", chosen=" w5", rejected=" w6 w7")])
    with _no_dataset_bars():  # the trainer tokenises a one-row dataset it needs to exist; the batch is ours
        trainer = DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=rows,
                             processing_class=tokenizer)
    examples = make_examples(setup)
    batch = trl_batch(examples, setup.pad)
    collated = trainer.data_collator(examples)
    if sorted(collated) != sorted(batch) or any(not torch.equal(collated[k], batch[k]) for k in batch):
        raise RuntimeError("trl_batch() differs from trainer.data_collator(): the benchmark's batch is out of date")
    batch = _to(batch, device)
    model = trainer.model.to(device).train()
    trainer.ref_model.to(device)
    optimizer = _optimizer(model.parameters(), setup)
    first: list[tuple[float, float]] = []

    def step() -> torch.Tensor:
        loss = trainer._compute_loss(model, batch, return_outputs=False)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if not first:
            metrics = trainer._metrics["train"]
            first.append((metrics["logps/chosen"][-1], metrics["logps/rejected"][-1]))
        return loss.detach()

    return Runner(step, lambda: first[0], (trainer, model, optimizer, out))


@contextlib.contextmanager
def quiet():
    """No progress bars from transformers, no deprecation chatter from TRL's use of transformers
    (`gradient_checkpointing` -> `activation_checkpointing`), no Lightning "self.log without a Trainer" warning."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NO_TRAINER_WARNING)
            warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def _no_dataset_bars():
    import datasets

    bars = datasets.utils.logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars:
            datasets.enable_progress_bars()


BUILDERS: dict[str, Callable[[Setup, str], Runner]] = {"lit_align": build_lit_align, "trl": build_trl}


def build_runner(provider: str, setup: Setup, device: str) -> Runner:
    return BUILDERS[provider](setup, device)


# ---- measuring -------------------------------------------------------------------------------------------------
def measure_cuda_memory(provider: str, setup: Setup, warmup: int) -> dict:
    peak = harness.warm_peak(build_runner(provider, setup, "cuda"), warmup, cuda_peak)
    harness.free("cuda")
    return peak


def cpu_memory_child(provider: str, setup: dict, warmup: int) -> dict:
    """Runs in a fresh process: peak RSS growth of one training step after `warmup` steps, in MiB."""
    with quiet():
        return harness.warm_peak(build_runner(provider, Setup(**setup), "cpu"), warmup, cpu_peak)


def measure_cpu_memory(provider: str, setup: Setup, warmup: int) -> dict:
    return run_in_child(MODULE, "cpu_memory_child", provider, dataclasses.asdict(setup), warmup, preload=PRELOAD)


def run_providers(providers: list[str], setup: Setup, args, tokens: int) -> list[dict]:
    """Build every provider, warm each up (recording its first losses and log-probs), then time their steps
    interleaved and measure their memory (harness.run_step_providers)."""
    measure = measure_cuda_memory if args.device == "cuda" else measure_cpu_memory
    return harness.run_step_providers(providers, lambda provider: build_runner(provider, setup, args.device), args,
                                      tokens, lambda provider: measure(provider, setup, args.warmup), "bench_dpo_step",
                                      fields={"logprobs": None},
                                      checked=lambda runner: {"logprobs": list(runner.logprobs())})


def add_agreement(rows: list[dict]) -> None:
    """max_rel_diff: the largest relative difference of the checked values (the first two step losses, step 1's
    log-probs) from TRL's (None where either side did not run)."""
    base = next((r for r in rows if r["provider"] == BASELINE), {})
    for row in rows:
        mine, theirs = row.get("losses"), base.get("losses")
        if mine is None or theirs is None:
            row["max_rel_diff"] = None
            continue
        pairs = list(zip(mine[:2], theirs[:2], strict=True)) + list(zip(row["logprobs"], base["logprobs"],
                                                                         strict=True))
        row["max_rel_diff"] = max(abs(a - b) / max(abs(b), 1e-12) for a, b in pairs)


# ---- reporting -------------------------------------------------------------------------------------------------
def _checked(row: dict) -> str:
    """The checked values: the first two losses and step 1's mean chosen / rejected log-probs."""
    losses, logprobs = (row["losses"] or []) + [None, None], row["logprobs"] or [None, None]
    return " ".join([*(f"{harness.num(v, '.6f'):>9}" for v in losses[:2]),
                     *(f"{harness.num(v, '.3f'):>12}" for v in logprobs)])


COLUMNS = [harness.Column("provider", 10, lambda r, notes: r["provider"], left=True),
           harness.time_column("step ms", ".1f"),
           harness.ratio_column("time_ratio", "x trl", 6),
           harness.Column("tokens/s", 10, lambda r, notes: harness.num(r["tokens_per_s"], ".0f")),
           harness.memory_column(), harness.ratio_column("memory_ratio", "x trl", 6),
           harness.Column(f"{'loss 1':>9} {'loss 2':>9} {'logp chosen':>12} {'logp rej':>12}", 45,
                  lambda r, notes: _checked(r))]


def print_table(rows: list[dict], meta: dict, tolerance: float, file=None) -> None:
    file = file or sys.stdout
    notes = harness.Footnotes()

    print(f"\nDPO training step (forward + backward + AdamW): {meta['device_name']}, torch {meta['torch']}, "
          f"trl {meta['trl']}, transformers {meta['transformers']}, lit_align._C "
          f"{'built' if meta['extension_loaded'] else 'not built'}, {meta['threads']} threads", file=file)
    print(f"  {meta['setup']}; {meta['tokens']} non-padding tokens per step; median of {meta['repeats']} steps after "
          f"{meta['warmup']} warm-up", file=file)
    harness.print_rows(rows, COLUMNS, notes, file)
    notes.print(file)
    for r in rows:
        if r["provider"] != BASELINE and r.get("max_rel_diff") is not None:
            verdict = "same work" if r["max_rel_diff"] <= tolerance else "MISMATCH: the providers disagree"
            print(f"  {r['provider']} vs {BASELINE}: largest relative difference of the checked losses/log-probs "
                  f"{r['max_rel_diff']:.1e} (tolerance {tolerance:.0e}): {verdict}", file=file)


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--providers", default=",".join(PROVIDERS), help=f"comma-separated subset of {','.join(PROVIDERS)}")
    p.add_argument("--vocab", type=int, default=32000, help="V, the vocabulary (LM head rows)")
    p.add_argument("--hidden", type=int, default=256, help="H, the model width")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, help="attention heads (default: 4, or fewer when H is not divisible)")
    p.add_argument("--intermediate", type=int, help="MLP width (default 4H)")
    p.add_argument("--pairs", type=int, default=8, help="B preference pairs (2B sequences)")
    p.add_argument("--seq-len", type=int, default=512, help="T, the longest sequence (prompt ~T/3)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"),
                   help="model dtype (default float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (both sides)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, help="timed steps per provider (default per device)")
    p.add_argument("--warmup", type=int, help="untimed steps first, at least 2 (default per device)")
    p.add_argument("--tolerance", type=float,
                   help="relative agreement required of the checked values (default 1e-4 float32, 1e-2 bfloat16)")
    p.add_argument("--skip-memory", action="store_true", help="time only")
    p.add_argument("--json", help="write machine-readable rows to this file")
    p.add_argument("--model-dir", help="build the model here (default: a temporary folder, removed afterwards)")
    p.add_argument("--model", help="a real HF model folder (e.g. artifacts/smollm2) instead of the random Llama; "
                                   "--vocab/--hidden/--layers/--heads/--intermediate then come from its config")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    defaults = DEFAULTS[args.device]
    for key in ("dtype", "repeats", "warmup"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    if args.tolerance is None:
        args.tolerance = TOLERANCE[args.dtype]
    args.warmup = max(2, args.warmup)  # the first two steps are the checked ones
    if args.heads is None:
        args.heads = next(h for h in (4, 2, 1) if args.hidden % h == 0)
    if args.intermediate is None:
        args.intermediate = 4 * args.hidden
    args.providers = harness.choices(args.providers, PROVIDERS, "--providers")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with contextlib.ExitStack() as stack:
        stack.enter_context(quiet())
        if args.model:
            setup = pretrained_setup(args.model, args)
        else:
            model_dir = args.model_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_dpo_model_"))
            setup = Setup(model_dir, args.vocab, args.hidden, args.layers, args.heads, args.intermediate, args.pairs,
                          args.seq_len, args.dtype, args.lr, args.seed)
            build_model(setup)
        tokens = int(trl_batch(make_examples(setup), setup.pad)["attention_mask"].sum())
        rows = run_providers(args.providers, setup, args, tokens)
    harness.add_ratios(rows, BASELINE)  # each provider over TRL's
    add_agreement(rows)
    import transformers

    from lit_align.ops import extension_loaded

    try:
        trl_version = importlib.metadata.version("trl")
    except importlib.metadata.PackageNotFoundError:  # the trl row then says why it could not run
        trl_version = "not installed"

    meta = dict(argv=list(sys.argv[1:] if argv is None else argv), device=args.device,
                device_name=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                torch=torch.__version__, trl=trl_version, transformers=transformers.__version__,
                extension_loaded=extension_loaded(), threads=torch.get_num_threads(), repeats=args.repeats,
                warmup=args.warmup, tolerance=args.tolerance, tokens=tokens, setup=setup.describe(),
                setup_args={k: v for k, v in dataclasses.asdict(setup).items() if k != "model_dir"},
                load_average=os.getloadavg() if hasattr(os, "getloadavg") else None)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dict(meta=meta, rows=rows), out, indent=1)
    print_table(rows, meta, args.tolerance)
    return rows


if __name__ == "__main__":
    main()
