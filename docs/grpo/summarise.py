"""Collect the demo's GRPO / PPO / RLOO / SFT evaluations (artifacts/demo/seed{0,1}) into docs/grpo/summary.json,
the training-curve statistics of the GRPO fits, and a PNG of GRPO's curves for both seeds."""
import csv
import json
from pathlib import Path

from lit_align import demo
from lit_align.files import write_json

root = Path("artifacts/demo")
out = {"evaluation": {}, "training": {}}
for seed in (0, 1):
    res = {m: json.loads((root / f"seed{seed}" / f"eval_{m}" / "done.json").read_text()) for m in
           ("sft", "ppo", "rloo", "grpo")}
    out["evaluation"][seed] = {m: {"seen": demo.seen(r), "unseen": demo.unseen(r), "transfer": demo.transfer(r),
                                   "score": r["test"]["score"], "reward": r["test"]["reward"], "kl": r["test"]["kl"],
                                   "distinct_words": r["test"]["distinct_words"],
                                   "distinct_responses": r["test"]["distinct_responses"]} for m, r in res.items()}
    rows = [r for r in csv.DictReader(open(next((root / f"seed{seed}" / "grpo" / "logs").glob("version_*"))
                                          .joinpath("metrics.csv"))) if r.get("frac_reward_zero_std")]
    tenth = max(1, len(rows) // 10)
    keys = ("objective/scores", "frac_reward_zero_std", "reward_std", "kl", "objective/kl", "clip_ratio/region_mean",
            "clip_ratio/low_mean", "clip_ratio/high_mean", "completions/mean_length", "policy/approxkl_avg")
    out["training"][seed] = {part: {k: sum(float(r[k]) for r in rs) / len(rs) for k in keys}
                             for part, rs in (("first_10pct", rows[:tenth]), ("last_10pct", rows[-tenth:]))}
    out["training"][seed]["logged_rollouts"] = len(rows)
    out["training"][seed]["done"] = {k: v for k, v in json.loads(
        (root / f"seed{seed}" / "grpo" / "done.json").read_text()).items() if k in ("steps", "fit", "finished_at")}
write_json(Path("docs/grpo/summary.json"), out)
panels = [("grpo", "objective/scores", "GRPO: checker reward of samples"), ("grpo", "objective/kl", "GRPO: KL to SFT"),
          ("grpo", "frac_reward_zero_std", "GRPO: groups with equal rewards"),
          ("rloo", "objective/scores", "RLOO: checker reward of samples"), ("rloo", "objective/kl", "RLOO: KL to SFT")]
png = demo.plot(root, [0, 1], panels, "curves_grpo.png")
Path("docs/grpo/curves_grpo.png").write_bytes(png.read_bytes())
for seed, models in out["evaluation"].items():
    for m, r in models.items():
        print(seed, m, {k: round(v, 3) for k, v in r.items()})
for seed, t in out["training"].items():
    print(seed, json.dumps(t, default=str)[:900])
