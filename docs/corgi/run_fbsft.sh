#!/bin/bash
# Follow-up (docs/corgi/results.md, "Follow-up: a feedback-SFT start"): SEED=0 (default) or SEED=1.
# SEED=0 writes runs/corgi_fbsft, SEED=N>0 runs/corgi_fbsft_seedN (override with OUT). With STEPS != 40 the rl stage
# writes $OUT/{single,corgi}_${STEPS}steps and docs/corgi/eval_seed${SEED}_fbsft_{single,corgi}_${STEPS}steps.json
# (so a longer run never overwrites the 40-step outputs; override the suffix with RL_SUFFIX).
# The data mix is the same file for every seed (build_feedback_sft.py shuffles with its default --seed 0; the
# tokenisation check uses the seed's SFT tokenizer); the seed enters through --seed_everything / --model.init_args.seed.
#  1. the feedback-SFT mix (3,000 feedback rows from preference.jsonl + 3,000 single-turn rows of sft.jsonl) and
#     its tokenisation check (build_feedback_sft.py exits 1 on any id mismatch with the session sampler);
#  2. 300 SFT steps from artifacts/demo/seed$SEED/sft on that mix, export -> feedback-SFT, evaluate;
#  3. from feedback-SFT: single-attempt baseline and CORGI (K = 3), exactly as run.sh (40 steps), export, evaluate.
#  control: the same 300 SFT steps on 6,000 single-turn rows only (first 6,000 of sft.jsonl), evaluated;
#  control2: the same 300 SFT steps on the mix with every feedback row cut to its first turn (request -> chosen).
# STAGES="data sft rl control control2" by default; run from the repository root with the venv on PATH, one torch thread.
set -euo pipefail
STEPS=${STEPS:-40}
SFT_STEPS=${SFT_STEPS:-300}
seed=${SEED:-0}
OUT=${OUT:-runs/corgi_fbsft$([ $seed = 0 ] || echo _seed$seed)}
RL_SUFFIX=${RL_SUFFIX-$([ $STEPS = 40 ] || echo _${STEPS}steps)}
STAGES=${STAGES:-"data sft rl control control2"}
export OMP_NUM_THREADS=1
base=artifacts/demo/seed$seed/sft
fbsft=$OUT/sft/model
stamp() { echo "[$(date -u +%H:%M:%S)] $*"; }
if [[ $STAGES == *data* ]]; then
  stamp data; python docs/corgi/build_feedback_sft.py $OUT/data --model $base
fi
if [[ $STAGES == *sft* ]]; then
  stamp sft
  python -m lit_align.cli fit --config configs/sft.yaml --seed_everything $seed \
    --model.init_args.model $base --data.init_args.tokenizer $base \
    --data.init_args.train_file $OUT/data/train.jsonl --model.init_args.lr 1.0e-3 \
    --trainer.max_epochs 1 --trainer.max_steps $SFT_STEPS --trainer.default_root_dir $OUT/sft \
    --trainer.enable_progress_bar false
  python -m lit_align.cli export --checkpoint $OUT/sft --out $fbsft
  python docs/corgi/evaluate_all.py $fbsft docs/corgi/eval_seed${seed}_fbsft.json
  cp $(ls -d $OUT/sft/csv/version_* | tail -1)/metrics.csv docs/corgi/train_seed${seed}_fbsft.csv
fi
if [[ $STAGES == *rl* ]]; then
  for rounds in 0 3; do
    name=$([ $rounds = 0 ] && echo single || echo corgi)
    dir=$OUT/$name$RL_SUFFIX
    stamp "rl $name$RL_SUFFIX steps=$STEPS seed=$seed"
    python -m lit_align.cli fit --config configs/corgi.yaml --seed_everything $seed --model.init_args.seed $seed \
      --trainer.max_steps $STEPS --trainer.default_root_dir $dir --trainer.enable_progress_bar false \
      --trainer.callbacks.prompts_file=artifacts/demo/suite/data/val.jsonl --trainer.callbacks.limit 50 \
      --model.init_args.model $fbsft --data.init_args.tokenizer $fbsft \
      --data.init_args.train_file artifacts/demo/suite/data/prompts.jsonl \
      --model.init_args.feedback_rounds $rounds
    python -m lit_align.cli export --checkpoint $dir --out $dir/model
    stamp "eval $name"
    python docs/corgi/evaluate_all.py $dir/model docs/corgi/eval_seed${seed}_fbsft_${name}${RL_SUFFIX}.json
    cp $(ls -d $dir/csv/version_* | tail -1)/metrics.csv docs/corgi/train_seed${seed}_fbsft_${name}${RL_SUFFIX}.csv
  done
fi
if [[ " $STAGES " == *" control "* ]]; then
  stamp control
  mkdir -p $OUT/ctl_data
  python -c "
import json
with open('$OUT/ctl_data/train.jsonl', 'w') as out:
    for i, line in enumerate(open('artifacts/demo/suite/data/sft.jsonl')):
        if i == 6000: break
        r = json.loads(line)
        out.write(json.dumps({'id': r['id'], 'prompt': [{'role': 'user', 'content': r['prompt']}],
                              'completion': [{'role': 'assistant', 'content': r['completion']}]}) + '\\n')
"
  python -m lit_align.cli fit --config configs/sft.yaml --seed_everything $seed \
    --model.init_args.model $base --data.init_args.tokenizer $base \
    --data.init_args.train_file $OUT/ctl_data/train.jsonl --model.init_args.lr 1.0e-3 \
    --trainer.max_epochs 1 --trainer.max_steps $SFT_STEPS --trainer.default_root_dir $OUT/ctl_sft \
    --trainer.enable_progress_bar false
  python -m lit_align.cli export --checkpoint $OUT/ctl_sft --out $OUT/ctl_sft/model
  python docs/corgi/evaluate_all.py $OUT/ctl_sft/model docs/corgi/eval_seed${seed}_ctlsft.json
fi
if [[ $STAGES == *control2* ]]; then
  stamp control2
  mkdir -p $OUT/ctl2_data
  python -c "
import json
with open('$OUT/ctl2_data/train.jsonl', 'w') as out:
    for line in open('$OUT/data/train.jsonl'):
        r = json.loads(line)
        if len(r['prompt']) == 3:
            r = {**r, 'id': r['id'].replace('fb-', 'ch-'), 'prompt': r['prompt'][:1]}
        out.write(json.dumps(r) + '\\n')
"
  python -m lit_align.cli fit --config configs/sft.yaml --seed_everything $seed \
    --model.init_args.model $base --data.init_args.tokenizer $base \
    --data.init_args.train_file $OUT/ctl2_data/train.jsonl --model.init_args.lr 1.0e-3 \
    --trainer.max_epochs 1 --trainer.max_steps $SFT_STEPS --trainer.default_root_dir $OUT/ctl2_sft \
    --trainer.enable_progress_bar false
  python -m lit_align.cli export --checkpoint $OUT/ctl2_sft --out $OUT/ctl2_sft/model
  python docs/corgi/evaluate_all.py $OUT/ctl2_sft/model docs/corgi/eval_seed${seed}_ctl2sft.json
fi
stamp done
