#!/bin/bash
# Ablation run after docs/corgi/run.sh: CORGI with the reward of the last answer (session_reward: last) instead of
# max_k s_k, same steps and settings; evaluated like the others (eval_seed<S>_corgi_last.json).
set -euo pipefail
STEPS=${STEPS:-40}
OUT=${OUT:-runs/corgi_exp}
SEEDS=${SEEDS:-0}
export OMP_NUM_THREADS=1
for seed in $SEEDS; do
  sft=artifacts/demo/seed$seed/sft
  dir=$OUT/seed$seed/corgi_last
  python -m lit_align.cli fit --config configs/corgi.yaml --seed_everything $seed --model.init_args.seed $seed \
    --trainer.max_steps $STEPS --trainer.default_root_dir $dir --trainer.enable_progress_bar false \
    --trainer.callbacks.prompts_file=artifacts/demo/suite/data/val.jsonl --trainer.callbacks.limit 50 \
    --model.init_args.model $sft --data.init_args.tokenizer $sft \
    --data.init_args.train_file artifacts/demo/suite/data/prompts.jsonl \
    --model.init_args.feedback_rounds 3 --model.init_args.session_reward last
  python -m lit_align.cli export --checkpoint $dir --out $dir/model
  python docs/corgi/evaluate_all.py $dir/model docs/corgi/eval_seed${seed}_corgi_last.json
  cp $(ls -d $dir/csv/version_* | tail -1)/metrics.csv docs/corgi/train_seed${seed}_corgi_last.csv
done
