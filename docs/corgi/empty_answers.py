"""How often an answer after feedback is empty (the end-of-turn token at once), per model, on test + transfer.

    python docs/corgi/empty_answers.py MODEL_DIR [MODEL_DIR ...]

Greedy sessions of 3 feedback rounds on the first 100 rows of test.jsonl and of transfer.jsonl; prints, per model,
the share of empty answers at turn 0 and at turns 1..3 (answers given after a feedback turn).
"""
import sys

import torch

from lit_align.models.loading import load_causal_lm, load_tokenizer
from lit_align.rollout.evaluate import read_task_rows
from lit_align.rollout.feedback import env_factory
from lit_align.rollout.sessions import sample_sessions

torch.set_num_threads(1)
rows = [*read_task_rows("artifacts/demo/suite/data/test.jsonl", 100),
        *read_task_rows("artifacts/demo/suite/data/transfer.jsonl", 100)]
for path in sys.argv[1:]:
    model, tokenizer = load_causal_lm(path).eval(), load_tokenizer(path)
    sessions = sample_sessions(model, tokenizer, rows, env_factory(), rounds=3, max_new_tokens=24, max_length=512)
    first = [s.answers[0] for s in sessions]
    later = [a for s in sessions for a in s.answers[1:]]
    print(f"{path}: empty at turn 0 {sum(not a.text for a in first) / len(first):.1%} of {len(first)}; "
          f"after feedback {sum(not a.text for a in later) / max(1, len(later)):.1%} of {len(later)}")
