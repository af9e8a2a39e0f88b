"""Op microbenchmarks: lit_align's fused log-prob / DPO ops against eager PyTorch, torch.compile, Liger-Kernel.

Liger-Kernel's benchmark shape: for each op, every provider x mode (forward, backward, full = forward +
backward) x metric (speed, peak memory), on `--device cpu|cuda`, with a table printed last that gives each
provider's time and peak memory as a ratio to eager PyTorch measured in the same run.

    python benchmarks/bench_ops.py --device cpu                       # CPU defaults, float32
    python benchmarks/bench_ops.py --device cuda --json benchmarks/results/h100.json
    python benchmarks/bench_ops.py --ops fused_dpo --providers eager,liger,lit_align:chunked --rows 1024

Ops and providers (a provider that cannot run here is reported as "n/a: <reason>", never skipped):
  token_logprobs          logits (N, V) -> log p[label] (N,)
      eager               logits.float().log_softmax(-1).gather(...)
      compile             torch.compile of eager
      liger               Liger's cross entropy with reduction="none", negated (Triton: CUDA only)
      lit_align:<backend> token_logprobs(..., backend=torch|cpp|triton|cuda)
  linear_token_logprobs   hidden (N, H), weight (V, H) -> (N,), through the LM head
      eager, compile      F.linear, then as above
      torch_lce           F.linear_cross_entropy(reduction="none", options=LinearCrossEntropyOptions()):
                          PyTorch's chunked path, negated (when this torch has it)
      liger               Liger's fused linear cross entropy, reduction="none", negated (CUDA only)
      lit_align:<backend> linear_token_logprobs(..., backend=...)
      lit_align:<backend>:invariant   the same with batch_invariant=True (fixed-order products / fixed tiles):
                          the cost of batch invariance (token_logprobs is batch invariant in every mode)
  fused_dpo               hidden (2B, T, H) -> per-pair DPO loss (sigmoid, beta 0.1), reduced with .mean()
      eager, compile      LM head, log_softmax, gather, masked sums, -logsigmoid(beta * margin)
      liger               liger_kernel.chunked_loss.LigerFusedLinearDPOLoss (plain PyTorch, runs on CPU;
                          torch.compile'd chunks on CUDA as Liger ships it, eager chunks on CPU where
                          inductor takes about a minute per shape)
      lit_align:<backend> fused_linear_preference_loss(..., backend=...), strategy "recompute"
      lit_align:<backend>:invariant   the same with batch_invariant=True
      lit_align:chunked   fused_linear_preference_loss(..., strategy="chunked"): Liger-style gradient in forward
  Every provider gets the same inputs: random (seeded) logits/hidden states scaled so the logits have std 2,
  labels with a share of ignore_index (1/8 of the tokens; for DPO a ~1/3 prompt and some end padding per
  sequence), and the same precomputed reference log-probs (DESIGN §3: reference log-probs come
  precomputed). The one exception: Liger's DPO loss takes the reference model's hidden states, not
  precomputed log-probs, so it runs with use_ref_model=False (reference log-probs 0); that saves it two
  (B,) subtractions, not LM-head work, so the comparison stays like for like.

Modes. forward: the forward with autograd recording (as in training; gradient-in-forward providers do their
gradient work here). backward: out.backward(ones) after an untimed forward. full: both. The leaves' .grad
are set to None before every run, so backward and full include allocating the gradients.

Speed: medians (and 20th/80th percentiles in the JSON) over --repeats runs after --warmup full runs,
each run bracketed by torch.cuda.synchronize() on CUDA; wall clock (time.perf_counter).

Peak memory, reported in MiB above what is held before the measured call (inputs; for backward also the
forward's output and saved tensors), measured as every benchmark here does (benchmarks/memory.py):
  * CUDA: torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated(), after reset_peak_memory_stats().
  * CPU: there is no allocator counter, so each (op, provider, mode) runs in a fresh process, forked from a
    forkserver that has only imported torch (never from this process, whose OpenMP pool would hang a
    forked child). The child builds the same seeded inputs, runs one warm-up forward+backward (lazy
    initialisation, compiled code, thread pools), prepares the mode, calls malloc_trim(0) so that freed
    heap pages leave the resident set, reads VmRSS as the baseline, resets the high-water mark
    (`echo 5 > /proc/self/clear_refs` resets VmHWM on Linux), runs the measured call once, and reports
    VmHWM - baseline. This counts every page the call touches (PyTorch's CPU tensors come from malloc, so
    a freed buffer that the call reuses from the heap is counted once it was trimmed); it is a process
    measure, so a few MiB of noise from the interpreter are possible at small sizes.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness  # noqa: E402
from benchmarks.memory import cpu_peak, cuda_peak, run_in_child  # noqa: E402

IGNORE = -100
BETA = 0.1
LOGIT_STD = 2.0
OPS = ("token_logprobs", "linear_token_logprobs", "fused_dpo")
MODES = ("forward", "backward", "full")
LIT_BACKENDS = ("torch", "cpp", "triton", "cuda")
MODULE = "benchmarks.bench_ops"  # the name the CPU memory processes import this file by


# ---- sizes and inputs ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Sizes:
    token_rows: int  # token_logprobs: logits (token_rows, vocab)
    rows: int  # linear_token_logprobs: hidden (rows, hidden)
    hidden: int
    vocab: int
    pairs: int  # fused_dpo: hidden (2 * pairs, seq_len, hidden)
    seq_len: int
    dtype: str
    chunk_size: int  # pairs per chunk for the chunked DPO providers (liger, lit_align:chunked)

    def describe(self, op: str) -> str:
        if op == "token_logprobs":
            return f"N={self.token_rows} V={self.vocab}"
        if op == "linear_token_logprobs":
            return f"N={self.rows} H={self.hidden} V={self.vocab}"
        return f"{self.pairs} pairs x {self.seq_len} tokens, H={self.hidden} V={self.vocab}, chunk={self.chunk_size}"


DEFAULTS = {
    "cpu": dict(token_rows=4096, rows=4096, hidden=512, vocab=32000, pairs=8, seq_len=512, dtype="float32",
                repeats=5, warmup=1),
    "cuda": dict(token_rows=32768, rows=8192, hidden=4096, vocab=128256, pairs=16, seq_len=1024, dtype="bfloat16",
                 repeats=20, warmup=3),
}


def _randn(*shape, std: float, dtype: torch.dtype, device: str, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, device=device, dtype=dtype).mul_(std)


def _labels(shape, vocab: int, ignored_share: float, device: str, gen: torch.Generator) -> torch.Tensor:
    labels = torch.randint(0, vocab, shape, generator=gen, device=device)
    return labels.masked_fill(torch.rand(shape, generator=gen, device=device) < ignored_share, IGNORE)


def _dpo_labels(rows: int, length: int, vocab: int, device: str, gen: torch.Generator) -> torch.Tensor:
    """(rows, length): a prompt of about length/3 (ignored), the completion, then 0..length/8 padding (ignored)."""
    labels = torch.randint(0, vocab, (rows, length), generator=gen, device=device)
    jitter = max(1, length // 8)
    prompt = length // 3 + torch.randint(-jitter, jitter + 1, (rows, 1), generator=gen, device=device)
    padding = torch.randint(0, jitter + 1, (rows, 1), generator=gen, device=device)
    position = torch.arange(length, device=device)
    return labels.masked_fill((position < prompt) | (position >= length - padding), IGNORE)


def _reference_logprobs(labels: torch.Tensor, vocab: int, gen: torch.Generator) -> torch.Tensor:
    """Plausible precomputed sequence log-probs (rows,): E[log p] of a label under std-2 logits per token."""
    tokens = (labels != IGNORE).sum(-1).float()
    per_token = -(math.log(vocab) + LOGIT_STD ** 2 / 2)
    noise = torch.randn(tokens.shape, generator=gen, device=labels.device)
    return tokens * per_token + noise * tokens.sqrt() * LOGIT_STD


def make_inputs(op: str, s: Sizes, device: str) -> dict[str, torch.Tensor]:
    """Seeded inputs of `op`; the tensors that get gradients have requires_grad set."""
    gen = torch.Generator(device=device).manual_seed(0)
    dtype = getattr(torch, s.dtype)
    if op == "token_logprobs":
        logits = _randn(s.token_rows, s.vocab, std=LOGIT_STD, dtype=dtype, device=device, gen=gen)
        return dict(logits=logits.requires_grad_(), labels=_labels((s.token_rows,), s.vocab, 1 / 8, device, gen))
    weight = _randn(s.vocab, s.hidden, std=LOGIT_STD / s.hidden ** 0.5, dtype=dtype, device=device, gen=gen)
    if op == "linear_token_logprobs":
        hidden = _randn(s.rows, s.hidden, std=1.0, dtype=dtype, device=device, gen=gen)
        return dict(hidden=hidden.requires_grad_(), weight=weight.requires_grad_(),
                    labels=_labels((s.rows,), s.vocab, 1 / 8, device, gen))
    hidden = _randn(2 * s.pairs, s.seq_len, s.hidden, std=1.0, dtype=dtype, device=device, gen=gen)
    labels = _dpo_labels(2 * s.pairs, s.seq_len, s.vocab, device, gen)  # (2B, T): chosen rows, then rejected
    ref = _reference_logprobs(labels, s.vocab, gen)  # (2B,)
    return dict(hidden=hidden.requires_grad_(), weight=weight.requires_grad_(), labels=labels,
                ref_chosen=ref[:s.pairs], ref_rejected=ref[s.pairs:])


# ---- the eager baseline (and what torch.compile compiles) ----------------------------------------------------
def eager_token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    valid = labels != IGNORE
    target = torch.where(valid, labels, 0).unsqueeze(-1)
    logp = logits.float().log_softmax(-1).gather(-1, target).squeeze(-1)  # (..., V) float32 -> (...)
    return torch.where(valid, logp, 0.0)


def eager_linear_token_logprobs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return eager_token_logprobs(F.linear(hidden, weight), labels)  # logits (..., V)


def eager_dpo(hidden, weight, labels, ref_chosen, ref_rejected) -> torch.Tensor:
    scores = eager_linear_token_logprobs(hidden, weight, labels).sum(-1)  # (2B, T) -> (2B,)
    chosen, rejected = scores.chunk(2)
    margin = (chosen - ref_chosen) - (rejected - ref_rejected)  # (B,)
    return -F.logsigmoid(BETA * margin).mean()


EAGER = {"token_logprobs": eager_token_logprobs, "linear_token_logprobs": eager_linear_token_logprobs,
         "fused_dpo": eager_dpo}


# ---- providers: builder(inputs, sizes) -> forward() returning the tensor that backward starts from ----------
class Unavailable(Exception):
    """The provider cannot run here; the message says why."""


def _eager(op, x, s):
    return functools.partial(EAGER[op], **x)


def _compile(op, x, s):
    return functools.partial(torch.compile(EAGER[op]), **x)


def _needs_cuda(x, what: str) -> None:
    if next(iter(x.values())).device.type != "cuda":
        raise Unavailable(f"{what} is a Triton kernel: CUDA only")


def _liger(op, x, s):
    if op == "fused_dpo":
        from liger_kernel.chunked_loss import LigerFusedLinearDPOLoss

        on_cuda = x["hidden"].device.type == "cuda"
        loss = LigerFusedLinearDPOLoss(ignore_index=IGNORE, beta=BETA, use_ref_model=False, compiled=on_cuda,
                                       chunk_size=s.chunk_size)
        return lambda: loss(x["weight"], x["hidden"], x["labels"])[0]
    _needs_cuda(x, "Liger's (fused linear) cross entropy")
    from liger_kernel.transformers.functional import liger_cross_entropy, liger_fused_linear_cross_entropy

    if op == "token_logprobs":
        return lambda: -liger_cross_entropy(x["logits"], x["labels"], ignore_index=IGNORE, reduction="none")
    return lambda: -liger_fused_linear_cross_entropy(x["hidden"], x["weight"], x["labels"], ignore_index=IGNORE,
                                                     reduction="none")


def _torch_lce(op, x, s):
    if not hasattr(F, "linear_cross_entropy"):
        raise Unavailable(f"torch {torch.__version__} has no F.linear_cross_entropy")
    options = torch.nn.LinearCrossEntropyOptions() if hasattr(torch.nn, "LinearCrossEntropyOptions") else None
    return lambda: -F.linear_cross_entropy(x["hidden"], x["weight"], x["labels"], reduction="none",
                                           ignore_index=IGNORE, options=options)


def _lit_align(backend: str, op, x, s, batch_invariant: bool = False):
    from lit_align import ops
    from lit_align.ops._dispatch import resolve_backend

    device = next(iter(x.values())).device
    if backend == "triton" and device.type == "cpu":
        raise Unavailable("Triton runs on CPU tensors only in the interpreter (TRITON_INTERPRET=1): not benchmarked")
    try:
        resolve_backend(backend, "token_logprobs" if op == "token_logprobs" else "linear_token_logprobs", device)
    except ValueError as error:
        raise Unavailable(str(error).split(": ", 1)[-1]) from None
    if op == "token_logprobs":
        return lambda: ops.token_logprobs(x["logits"], x["labels"], backend=backend)
    if op == "linear_token_logprobs":
        return lambda: ops.linear_token_logprobs(x["hidden"], x["weight"], x["labels"], backend=backend,
                                                 batch_invariant=batch_invariant)
    return _lit_align_dpo(x, backend=backend, batch_invariant=batch_invariant)


def _lit_align_dpo(x, **strategy) -> Callable[[], torch.Tensor]:
    from lit_align.ops import fused_linear_preference_loss

    return lambda: fused_linear_preference_loss(x["hidden"], x["weight"], x["labels"], ref_chosen=x["ref_chosen"],
                                                ref_rejected=x["ref_rejected"], beta=BETA, **strategy)[0].mean()


def _lit_align_chunked(op, x, s):
    return _lit_align_dpo(x, strategy="chunked", chunk_size=s.chunk_size)


_COMMON = {"eager": _eager, "compile": _compile}
_LIT = {f"lit_align:{b}": functools.partial(_lit_align, b) for b in LIT_BACKENDS}
# batch_invariant=True (the torch backend refuses it): what a batch-invariant row costs
_INVARIANT = {f"lit_align:{b}:invariant": functools.partial(_lit_align, b, batch_invariant=True)
              for b in LIT_BACKENDS if b != "torch"}
PROVIDERS: dict[str, dict[str, Callable]] = {
    "token_logprobs": {**_COMMON, "liger": _liger, **_LIT},
    "linear_token_logprobs": {**_COMMON, "torch_lce": _torch_lce, "liger": _liger, **_LIT, **_INVARIANT},
    "fused_dpo": {**_COMMON, "liger": _liger, **_LIT, **_INVARIANT, "lit_align:chunked": _lit_align_chunked},
}


@dataclasses.dataclass
class Case:
    forward: Callable[[], torch.Tensor]
    leaves: list[torch.Tensor]

    def zero_grad(self) -> None:
        for t in self.leaves:
            t.grad = None


def build_case(op: str, provider: str, s: Sizes, device: str) -> Case:
    inputs = make_inputs(op, s, device)
    forward = PROVIDERS[op][provider](op, inputs, s)
    return Case(forward, [t for t in inputs.values() if t.requires_grad])


# ---- one measured call per mode ----------------------------------------------------------------------------
def _prepare(case: Case, mode: str):
    """The untimed part before the measured call: the forward whose backward is measured."""
    case.zero_grad()
    return case.forward() if mode == "backward" else None


def _measured(case: Case, mode: str, prepared):
    if mode == "forward":
        return case.forward()
    out = prepared if mode == "backward" else case.forward()
    out.backward(torch.ones_like(out))
    return None


def warm_up(case: Case, runs: int, device: str) -> None:
    for _ in range(max(1, runs)):
        _measured(case, "full", _prepare(case, "full"))
    case.zero_grad()
    harness.sync(device)


def measure_time(case: Case, mode: str, repeats: int, device: str) -> dict:
    times = []
    for _ in range(repeats):
        prepared = _prepare(case, mode)
        elapsed, result = harness.timed(functools.partial(_measured, case, mode, prepared), device)
        times.append(elapsed)
        del result, prepared
    case.zero_grad()
    return harness.summary(times)


def measure_cuda_memory(case: Case, mode: str) -> float:
    prepared = _prepare(case, mode)
    peak = cuda_peak(functools.partial(_measured, case, mode, prepared))["peak_mib"]
    del prepared
    case.zero_grad()
    return peak


def cpu_memory_child(op: str, provider: str, mode: str, sizes: dict, warmup: int) -> float:
    """Runs in a fresh process (see the module docstring): peak RSS growth of one call, in MiB."""
    case = build_case(op, provider, Sizes(**sizes), "cpu")
    warm_up(case, warmup, "cpu")
    prepared = _prepare(case, mode)
    return cpu_peak(functools.partial(_measured, case, mode, prepared))["peak_mib"]


def measure_cpu_memory(op: str, provider: str, mode: str, s: Sizes, warmup: int) -> float:
    return run_in_child(MODULE, "cpu_memory_child", op, provider, mode, dataclasses.asdict(s), warmup,
                        preload=["torch", "lit_align.ops", MODULE])


# ---- running a provider -----------------------------------------------------------------------------------
def _row(op, provider, mode, **values) -> dict:
    row = dict(op=op, provider=provider, mode=mode, time_ms=None, time_ms_p20=None, time_ms_p80=None,
               time_na=None, peak_mib=None, memory_na=None)
    row.update(values)
    return row


def bench_provider(op: str, provider: str, s: Sizes, args) -> list[dict]:
    """Rows (one per mode) for one provider: speed here, peak memory per mode (a child process on CPU)."""
    try:
        case = build_case(op, provider, s, args.device)
        warm_up(case, args.warmup, args.device)
    except Exception as error:  # noqa: BLE001 - any failure is reported as the row's reason
        why = harness.reason(error)
        harness.free(args.device)
        return [_row(op, provider, m, time_na=why, memory_na=why) for m in args.modes]
    rows = [_row(op, provider, mode, **_try(functools.partial(measure_time, case, mode, args.repeats, args.device),
                                            "time_na"))
            for mode in args.modes]
    for row in rows:
        if args.skip_memory:
            row["memory_na"] = "skipped (--skip-memory)"
        elif args.device == "cuda":
            row.update(_try(functools.partial(measure_cuda_memory, case, row["mode"]), "memory_na", "peak_mib"))
    del case
    harness.free(args.device)
    if args.device == "cpu" and not args.skip_memory:  # in fresh processes, after this one let go of its tensors
        for row in rows:
            measure = functools.partial(measure_cpu_memory, op, provider, row["mode"], s, args.warmup)
            row.update(_try(measure, "memory_na", "peak_mib"))
    return rows


def _try(measure: Callable, na_key: str, key: str | None = None) -> dict:
    """{key: measure()} (or measure()'s own dict when key is None), or {na_key: reason} when it fails."""
    try:
        value = measure()
        return value if key is None else {key: value}
    except Exception as error:  # noqa: BLE001
        return {na_key: harness.reason(error)}


# ---- reporting --------------------------------------------------------------------------------------------
COLUMNS = [harness.Column("op", 22, lambda r, notes: r["op"], left=True),
           harness.Column("provider", 26, lambda r, notes: r["provider"], left=True),
           harness.Column("mode", 9, lambda r, notes: r["mode"], left=True),
           harness.time_column(), harness.ratio_column("time_ratio", "x eager"),
           harness.memory_column(), harness.ratio_column("memory_ratio", "x eager")]


def print_table(rows: list[dict], meta: dict, file=None) -> None:
    file = file or sys.stdout
    notes = harness.Footnotes()
    print(f"\nlit_align op benchmarks: {meta['device_name']}, {meta['dtype']}, torch {meta['torch']}, "
          f"lit_align._C {'built' if meta['extension_loaded'] else 'not built'}, {meta['threads']} threads", file=file)
    for op, size in meta["sizes"].items():
        print(f"  {op}: {size}", file=file)
    harness.print_rows(rows, COLUMNS, notes, file)
    notes.print(file)


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--ops", default=",".join(OPS), help=f"comma-separated subset of {','.join(OPS)}")
    p.add_argument("--providers", default="all", help="comma-separated provider names (per op), or all")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="input dtype (default per device)")
    p.add_argument("--token-rows", type=int, help="token_logprobs: N rows of logits")
    p.add_argument("--rows", type=int, help="linear_token_logprobs: N rows of hidden states")
    p.add_argument("--hidden", type=int, help="H, for linear_token_logprobs and fused_dpo")
    p.add_argument("--vocab", type=int, help="V, for every op")
    p.add_argument("--pairs", type=int, help="fused_dpo: B pairs (2B sequences)")
    p.add_argument("--seq-len", type=int, help="fused_dpo: T tokens per sequence")
    p.add_argument("--chunk-size", type=int, default=1, help="fused_dpo: pairs per chunk (liger, lit_align:chunked)")
    p.add_argument("--repeats", type=int, help="timed runs per mode (default per device)")
    p.add_argument("--warmup", type=int, help="untimed forward+backward runs first (default per device)")
    p.add_argument("--skip-memory", action="store_true", help="time only")
    p.add_argument("--json", help="write machine-readable rows to this file")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here")
    defaults = DEFAULTS[args.device]
    for key in ("dtype", "token_rows", "rows", "hidden", "vocab", "pairs", "seq_len", "repeats", "warmup"):
        if getattr(args, key) is None:
            setattr(args, key, defaults[key])
    args.ops = harness.choices(args.ops, OPS, "--ops")
    args.modes = harness.choices(args.modes, MODES, "--modes")
    known = sorted({name for op in OPS for name in PROVIDERS[op]})
    args.providers = None if args.providers == "all" else harness.choices(args.providers, known, "--providers")
    return args


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    sizes = Sizes(args.token_rows, args.rows, args.hidden, args.vocab, args.pairs, args.seq_len, args.dtype,
                  args.chunk_size)
    rows: list[dict] = []
    for op in args.ops:
        for provider in PROVIDERS[op]:
            if args.providers is not None and provider not in args.providers:
                continue
            print(f"[bench_ops] {op} / {provider} ...", file=sys.stderr, flush=True)
            rows += bench_provider(op, provider, sizes, args)
    harness.add_ratios(rows, "eager", group=lambda row: (row["op"], row["mode"]))  # each op and mode over eager's
    from lit_align.ops import extension_loaded

    meta = dict(argv=list(sys.argv[1:] if argv is None else argv), device=args.device,
                device_name=torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                dtype=args.dtype, torch=torch.__version__, extension_loaded=extension_loaded(),
                threads=torch.get_num_threads(), repeats=args.repeats, warmup=args.warmup,
                sizes={op: sizes.describe(op) for op in args.ops}, size_args=dataclasses.asdict(sizes))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(dict(meta=meta, rows=rows), out, indent=1)
    print_table(rows, meta)
    return rows


if __name__ == "__main__":
    main()
