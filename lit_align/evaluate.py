"""`lit-align evaluate`: a saved policy's task success, checker score, diversity, reward and KL on task prompts.

    lit-align evaluate --model artifacts/dpo --prompts artifacts/suite/data/test.jsonl \
        --reward-model artifacts/reward --reference artifacts/sft --json artifacts/dpo/eval.json
    lit-align evaluate --model runs/rest/improve_2_3/model --prompts artifacts/suite/data/test.jsonl \
        --best-of 8 --reward '{kind: model, path: artifacts/reward}' --temperature 0.8
    lit-align evaluate --model artifacts/corgi --prompts artifacts/suite/data/transfer.jsonl --feedback-rounds 5

Loads the models named on the command line, runs lit_align.rollout.evaluate_policy (the metrics are documented
there), prints a rich table of the metrics and a few examples, and writes the full result as JSON (atomically).
`--reward SPEC` (repeatable) takes the reward-source specs of training as YAML (`'{kind: checker}'`,
`'{kind: model, path: artifacts/reward, reduction: min}'`; the word `checker` or a reward-model folder for short):
their mean total on the answers is `source_reward`, and with `--best-of N` they pick the best of N samples per
prompt (lit_align.rollout.best_of_n). `--feedback-rounds K` also runs greedy feedback sessions (CORGI, arXiv
2411.01483; lit_align.rollout.evaluate_sessions): the checker's feedback comes back as a user turn up to K times, and
success@0..K, the per-round fix and worse rates are printed and written under "sessions". Bad input (a missing file,
a row without its checker, a bad spec) exits with status 2 and a one-line error.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lit_align.errors import UserError
from lit_align.rollout.evaluate import evaluate_policy, evaluate_sessions, read_task_rows
from lit_align.rollout.reward_sources import build_reward_sources


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lit-align evaluate", description="Evaluate a policy on task prompts "
                                     "(JSONL rows with 'prompt' and a 'task' checker, e.g. from `lit-align suite`).")
    parser.add_argument("--model", required=True, help="policy folder (or hub id) with its tokenizer")
    parser.add_argument("--prompts", required=True, help="JSONL file of rows with 'prompt' and 'task'")
    parser.add_argument("--reward-model", help="reward model folder (a sequence classifier) to score answers")
    parser.add_argument("--reference", help="reference causal LM folder (e.g. the SFT model) for the KL")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--limit", type=int, help="evaluate the first N rows only")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--kl-samples", type=int, default=1, help="sampled responses per prompt for the KL")
    parser.add_argument("--reward", action="append", default=[], metavar="SPEC",
                        help="a reward source as YAML, e.g. '{kind: checker}' or "
                             "'{kind: model, path: artifacts/reward}' (repeat for a weighted sum); reports "
                             "source_reward and ranks the --best-of samples")
    parser.add_argument("--best-of", type=int, default=1, metavar="N",
                        help="answer with the best of N samples per prompt by --reward (default 1: greedy)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of --best-of")
    parser.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling of --best-of")
    parser.add_argument("--feedback-rounds", type=int, metavar="K",
                        help="also run greedy sessions with up to K rounds of checker feedback; prints success@0..K")
    parser.add_argument("--max-length", type=int, help="the longest session transcript in tokens "
                        "(default: the model's max_position_embeddings)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--json", dest="json_out", help="write the metrics and examples to this JSON file")
    return parser


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load the models named in `args`, evaluate, and return the result (metrics, examples, sources)."""
    import torch

    from lit_align.models.loading import load_causal_lm, load_sequence_classifier, load_tokenizer

    rows = read_task_rows(args.prompts, args.limit)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = load_tokenizer(args.model)
    model = load_causal_lm(args.model, dtype=args.dtype).to(device)
    reward_model = reward_tokenizer = reference = None
    if args.reward_model:
        reward_tokenizer = _tokenizer_or(args.reward_model, tokenizer)
        reward_model = load_sequence_classifier(args.reward_model, dtype=args.dtype,
                                                pad_token_id=reward_tokenizer.pad_token_id).to(device)
    if args.reference:
        reference = load_causal_lm(args.reference, dtype=args.dtype).to(device)
    specs = reward_specs(args.reward)
    rewards = build_reward_sources(specs, device=device) if specs else None
    result = evaluate_policy(model, tokenizer, rows, reward_model=reward_model, reward_tokenizer=reward_tokenizer,
                             reference=reference, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                             kl_samples=args.kl_samples, seed=args.seed, progress=True, rewards=rewards,
                             best_of=args.best_of, temperature=args.temperature, top_p=args.top_p)
    if args.feedback_rounds is not None:
        result["sessions"] = evaluate_sessions(model, tokenizer, rows, args.feedback_rounds,
                                               max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                                               max_length=args.max_length, progress=True)
    sources = {"model": args.model, "prompts": str(args.prompts), "reward_model": args.reward_model,
               "reference": args.reference, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
               "rewards": specs, "best_of": args.best_of, "feedback_rounds": args.feedback_rounds,
               **({"temperature": args.temperature, "top_p": args.top_p} if args.best_of > 1 else {})}
    return {**result, "sources": sources}


def reward_specs(texts: list[str]) -> list[dict[str, Any]]:
    """Reward-source specs from --reward values: YAML dicts (or lists of them), `checker`, or a reward-model folder."""
    import yaml

    specs: list[dict[str, Any]] = []
    for text in texts:
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UserError(f"--reward {text!r}: not YAML ({' '.join(str(error).split())})") from None
        if value == "checker":
            value = {"kind": "checker"}
        elif isinstance(value, str):
            value = {"kind": "model", "path": value}
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, dict) for v in values):
            raise UserError(f"--reward {text!r}: expected a dict such as '{{kind: checker}}', got {value!r}")
        specs += values
    return specs


def _tokenizer_or(path: str, fallback: Any) -> Any:
    """The tokenizer saved with the reward model, else the policy's (same tokenizer family)."""
    from lit_align.models.loading import load_tokenizer

    try:
        return load_tokenizer(path)
    except (OSError, ValueError):
        return fallback


def print_result(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    metrics = Table(title="policy evaluation")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for name, value in result.items():
        if isinstance(value, float):
            metrics.add_row(name, f"{value:.4g}")
    examples = Table(title="examples", show_lines=True)
    for column in ("prompt", "response", "score", "feedback"):
        examples.add_column(column, overflow="fold")
    for ex in result["examples"]:
        examples.add_row(str(ex["prompt"]), ex["response"] or "(empty)", f"{ex['score']:.2f}", ex["feedback"] or "")
    console = Console()
    console.print(metrics)
    console.print(examples)
    if "sessions" in result:
        console.print(session_table(result["sessions"]))


def session_table(sessions: dict[str, Any]):
    """success@k, fix and worse rates per feedback round k (rollout.evaluate_sessions)."""
    from rich.table import Table

    table = Table(title=f"feedback sessions (n = {sessions['n']:.0f})")
    for column in ("round k", "success@k", "fix rate", "worse rate", "answered"):
        table.add_column(column, justify="right")
    for k in range(int(sessions["rounds"]) + 1):
        rates = [sessions.get(f"{name}@{k}") for name in ("fix_rate", "worse_rate", "answered")]
        table.add_row(str(k), f"{sessions[f'success@{k}']:.1%}",
                      *("" if v is None or v != v else f"{v:.1%}" for v in rates[:2]),
                      "" if rates[2] is None else f"{rates[2]:.0f}")
    return table


def main(argv: list[str] | None = None) -> int:
    """`lit-align evaluate ...`: 0 on success; bad input exits with status 2 and a one-line error."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        result = run(args)
    except (FileNotFoundError, UserError) as error:  # bugs keep their traceback
        parser.exit(2, f"lit-align evaluate: error: {error}\n")
    print_result(result)
    if args.json_out:
        from lit_align.files import write_json

        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json_out, result)  # a temporary file renamed into place
    return 0


if __name__ == "__main__":
    sys.exit(main())
