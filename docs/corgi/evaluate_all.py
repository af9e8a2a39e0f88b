"""success@0..K of greedy feedback sessions for one model on the suite's test and transfer splits (CORGI results).

    python docs/corgi/evaluate_all.py MODEL_DIR OUT.json [--rounds 5] [--max-length 512]

Splits: test with seen phrasings, test with unseen phrasings (both: held-out prompts of the trained families),
transfer (the held-out families). Each gets lit_align.rollout.sessions.summarize: success@k, per-round fix rate
and worse rate, stop reasons. One torch thread (the machine is shared).
"""
import argparse
import json
import time

import torch

from lit_align.models.loading import load_causal_lm, load_tokenizer
from lit_align.rollout.evaluate import read_task_rows
from lit_align.rollout.feedback import env_factory
from lit_align.rollout.sessions import sample_sessions, summarize

SUITE = "artifacts/demo/suite/data"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, tokenizer = load_causal_lm(args.model).eval(), load_tokenizer(args.model)
    result = {"model": args.model, "rounds": args.rounds, "max_length": args.max_length}
    start = time.time()
    for split in ("test", "transfer"):
        rows = read_task_rows(f"{SUITE}/{split}.jsonl")
        sessions = sample_sessions(model, tokenizer, rows, env_factory(), rounds=args.rounds,
                                   max_new_tokens=args.max_new_tokens, max_length=args.max_length)
        groups = {"transfer": sessions} if split == "transfer" else {
            f"test_{p}": [s for s in sessions if s.row["phrasing"] == p] for p in ("seen", "unseen")}
        for name, group in groups.items():
            result[name] = {"n": len(group), **summarize(group, args.rounds)}
    result["seconds"] = time.time() - start
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v.get("success@0") if isinstance(v, dict) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
