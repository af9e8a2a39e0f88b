"""Build the "feedback SFT" mix for the follow-up in docs/corgi/results.md, and check its tokenisation.

    python docs/corgi/build_feedback_sft.py OUT_DIR [--model artifacts/demo/seed0/sft] [--single N]

Feedback rows (TRL conversational prompt-completion), one per training preference pair whose rejected answer fails
the checker and whose chosen answer passes it:
    prompt     = [user: request, assistant: rejected answer, user: <CheckerEnv feedback turn>]
    completion = [assistant: chosen answer]
The feedback turn is made by lit_align.rollout.feedback.CheckerEnv (the environment of CORGI's sessions, default
template "Feedback: ... Please try again."). Single-turn rows: the first N rows of the suite's sft.jsonl (the
demo SFT set, same format), N = number of feedback rows by default (1:1 mix). Only training files are read
(preference.jsonl, sft.jsonl); test/val/transfer prompts are never touched (checked: no prompt overlap).

Check: every feedback row is tokenised by lit_align's SFT pipeline (RowEncoder.sft, data/tokenize.py) and compared
with the ids the session sampler (rollout/sessions.py) would hold for the same conversation: encode_prompt(request)
+ ids(rejected) + end-of-turn stop token + FeedbackTurns.ids(feedback) + ids(chosen) + eos. Labels must cover
exactly the chosen answer and its eos. Writes OUT_DIR/train.jsonl and OUT_DIR/build.json (counts, check result).
"""
import argparse
import json
import random
import sys
from pathlib import Path

from lit_align.data.tokenize import IGNORE_INDEX, RowEncoder
from lit_align.models.loading import load_tokenizer
from lit_align.rollout.feedback import CheckerEnv
from lit_align.rollout.sessions import FeedbackTurns

DATA = Path("artifacts/demo/suite/data")


def read(name):
    return [json.loads(line) for line in open(DATA / name)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--model", default="artifacts/demo/seed0/sft")
    parser.add_argument("--single", type=int, default=None, help="single-turn rows (default: as many as feedback)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    held = {r["prompt"] for f in ("test.jsonl", "val.jsonl", "transfer.jsonl") for r in read(f)}
    feedback_rows, skipped = [], {"rejected_passes": 0, "chosen_fails": 0, "heldout_prompt": 0}
    for r in read("preference.jsonl"):
        if r["prompt"] in held:
            skipped["heldout_prompt"] += 1
            continue
        env = CheckerEnv()
        env.reset(r)
        score, feedback, done = env.step(r["rejected"])
        if done or feedback is None:
            skipped["rejected_passes"] += 1
            continue
        env2 = CheckerEnv()
        env2.reset(r)
        if not env2.step(r["chosen"]).done:
            skipped["chosen_fails"] += 1
            continue
        feedback_rows.append({
            "id": f"fb-{r['id']}", "family": r["family"], "task": r["task"], "mistake": r["mistake"],
            "prompt": [{"role": "user", "content": r["prompt"]},
                       {"role": "assistant", "content": r["rejected"]},
                       {"role": "user", "content": feedback}],
            "completion": [{"role": "assistant", "content": r["chosen"]}],
        })
    n_single = len(feedback_rows) if args.single is None else args.single
    single_rows = []
    for r in read("sft.jsonl"):
        if len(single_rows) == n_single:
            break
        if r["prompt"] in held:
            continue
        single_rows.append({"id": r["id"], "family": r["family"], "task": r["task"], "mistake": r["mistake"],
                            "prompt": [{"role": "user", "content": r["prompt"]}],
                            "completion": [{"role": "assistant", "content": r["completion"]}]})

    # ---- the tokenisation check --------------------------------------------------------------------------
    tokenizer = load_tokenizer(args.model)
    encoder = RowEncoder(tokenizer)
    turns = FeedbackTurns(tokenizer)
    eos = tokenizer.eos_token_id
    rows = [{**r, "_where": r["id"], "_index": i} for i, r in enumerate(feedback_rows)]
    encoded, report = encoder.sft(rows)
    mismatches, label_errors = [], 0
    by_id = {e["id"]: e for e in encoded}
    for r in feedback_rows:
        e = by_id.get(r["id"])
        if e is None:
            mismatches.append((r["id"], "dropped by the SFT pipeline"))
            continue
        request, rejected, fb = (m["content"] for m in r["prompt"])
        chosen = r["completion"][0]["content"]
        ids_ = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        session = encoder.encode_prompt([r["prompt"][0]]) + ids_(rejected) + [eos]  # the sampler stops on eos
        session += turns.ids(fb, eos)
        trained = ids_(chosen) + [eos]
        if e["input_ids"] != session + trained:
            mismatches.append((r["id"], {"sft": e["input_ids"], "session": session + trained}))
        expected = [IGNORE_INDEX] * len(session) + trained
        if e["labels"] != expected:
            label_errors += 1
    result = {"feedback_rows": len(feedback_rows), "single_rows": len(single_rows), "skipped": skipped,
              "check": {"encoded": len(encoded), "id_mismatches": len(mismatches), "label_errors": label_errors,
                        "first_mismatch": mismatches[:1], "report": str(report)},
              "mistakes": {}}
    for r in feedback_rows:
        result["mistakes"][r["mistake"]] = result["mistakes"].get(r["mistake"], 0) + 1
    example = feedback_rows[0]
    e = by_id[example["id"]]
    result["example"] = {"row": example, "text": tokenizer.decode(e["input_ids"]),
                         "trained_text": tokenizer.decode([t for t in e["labels"] if t != IGNORE_INDEX])}
    mix = feedback_rows + single_rows
    random.Random(args.seed).shuffle(mix)
    with open(out / "train.jsonl", "w") as f:
        for r in mix:
            f.write(json.dumps(r) + "\n")
    with open(out / "build.json", "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "example"}, indent=1))
    print(result["example"]["text"], "|| trained:", result["example"]["trained_text"])
    if mismatches or label_errors:
        print("TOKENISATION MISMATCH: the SFT pipeline does not give the session sampler's ids", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
