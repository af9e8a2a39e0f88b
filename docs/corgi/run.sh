#!/bin/bash
# The CORGI experiment on the bundled demo suite (docs/corgi/results.md): for seeds 0 and 1, the single-attempt
# baseline (feedback_rounds 0) and CORGI (K = 3), same RLOO settings and steps, then greedy feedback sessions
# (5 rounds) on test and transfer for SFT, baseline and CORGI. One torch thread; run from the repository root.
set -euo pipefail
STEPS=${STEPS:-40}
OUT=${OUT:-runs/corgi_exp}
export OMP_NUM_THREADS=1
for seed in 0 1; do
  sft=artifacts/demo/seed$seed/sft
  python docs/corgi/evaluate_all.py $sft docs/corgi/eval_seed${seed}_sft.json
  for rounds in 0 3; do
    name=$([ $rounds = 0 ] && echo single || echo corgi)
    dir=$OUT/seed$seed/$name
    python -m lit_align.cli fit --config configs/corgi.yaml --seed_everything $seed --model.init_args.seed $seed \
      --trainer.max_steps $STEPS --trainer.default_root_dir $dir --trainer.enable_progress_bar false \
      --trainer.callbacks.prompts_file=artifacts/demo/suite/data/val.jsonl --trainer.callbacks.limit 50 \
      --model.init_args.model $sft --data.init_args.tokenizer $sft \
      --data.init_args.train_file artifacts/demo/suite/data/prompts.jsonl \
      --model.init_args.feedback_rounds $rounds
    python -m lit_align.cli export --checkpoint $dir --out $dir/model
    python docs/corgi/evaluate_all.py $dir/model docs/corgi/eval_seed${seed}_${name}.json
    cp $(ls -d $dir/csv/version_* | tail -1)/metrics.csv docs/corgi/train_seed${seed}_${name}.csv
  done
done
