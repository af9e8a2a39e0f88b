"""One GRPO variant through the demo's own stages: the packaged grpo.yaml with some model arguments changed, trained
from artifacts/demo/seed<s>/sft and evaluated exactly as the demo evaluates (lit_align.demo.train / evaluate).

    OMP_NUM_THREADS=1 .venv/bin/python docs/grpo/variant.py --seed 0 --set beta=0.3 --name grpo_beta0.3

Writes artifacts/demo_variants/seed<s>/<name>/ (the model) and prints/saves the evaluation (eval_<name>.json).
"""
import argparse
import json
import shutil
from pathlib import Path

import torch
import yaml

from lit_align import demo
from lit_align.files import write_json

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--set", nargs="+", default=[], help="model init_args as name=yaml-value")
parser.add_argument("--name", required=True)
parser.add_argument("--limit", type=int, default=400)
args = parser.parse_args()
torch.set_num_threads(1)
suite, base = Path("artifacts/demo/suite"), Path(f"artifacts/demo/seed{args.seed}")
root = Path(f"artifacts/demo_variants/seed{args.seed}")
root.mkdir(parents=True, exist_ok=True)
for stage in ("sft", "reward"):  # the demo's SFT and reward models, shared
    if not (root / stage).exists():
        (root / stage).symlink_to((base / stage).resolve(), target_is_directory=True)
s = demo.spec("grpo", suite, root, args.seed)
for item in args.set:
    key, value = item.split("=", 1)
    s.model_args[key] = yaml.safe_load(value)
out = root / args.name
shutil.rmtree(out, ignore_errors=True)
out.mkdir()
trained = demo.train(s, out)
result = demo.evaluate(suite, root, args.name, args.limit)
summary = {"set": args.set, "seed": args.seed, "train": trained["metrics"], "seen": demo.seen(result),
           "unseen": demo.unseen(result), "transfer": demo.transfer(result), "score": result["test"]["score"],
           "kl": result["test"]["kl"], "reward": result["test"]["reward"],
           "distinct_words": result["test"]["distinct_words"]}
write_json(root / f"eval_{args.name}.json", summary)
print(json.dumps({k: v for k, v in summary.items() if k != "train"}, indent=1))
