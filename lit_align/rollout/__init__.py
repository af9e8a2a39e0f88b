"""lit_align.rollout: generation from prompts, scoring of generated completions, policy evaluation.

generate.py         batched HF generation (left padding, KV cache, EOS/end-of-turn stops, seeds) -> Generation
stopping.py         the tokens that end an answer (EOS, a chat template's end-of-turn)
score.py            log-probs of generated completions through the fused ops
kl.py               KL(policy || reference) estimates (k1, k3 of lit_align.losses.token_kl) from sampled completions
reward.py           reward-model scores of (prompt, response), tokenised as in training
reward_sources.py   the reward of online RL: checkers, reward models (ensembles), a discriminator, weighted sums
evaluate.py         evaluate_policy (checker success, diversity, reward, KL, length) and read_task_rows
best_of_n.py        best-of-N: N samples per prompt, the one the reward sources rank highest
runtime.py          eval-mode / device / batching helpers shared by the above
progress.py         progress bars for long generation and scoring

Elsewhere: the `lit-align evaluate` command is lit_align/evaluate.py; the TaskEvalCallback that runs
evaluate_policy during training is lit_align/callbacks/task_eval.py; RLGAF's discriminator game is
lit_align/modules/rlgaf_game.py.
"""
from lit_align.rollout.evaluate import evaluate_policy, read_task_rows
from lit_align.rollout.generate import Generation, encode_prompts, generate, generate_from_rows
from lit_align.rollout.kl import kl_estimates, kl_to_reference
from lit_align.rollout.reward import reward_scores
from lit_align.rollout.score import completion_batch, completion_logprobs, completion_token_logprobs
from lit_align.rollout.stopping import end_of_turn_token_id, stop_token_ids

__all__ = [
    "Generation", "completion_batch", "completion_logprobs", "completion_token_logprobs", "encode_prompts",
    "end_of_turn_token_id", "evaluate_policy", "generate", "generate_from_rows", "kl_estimates", "kl_to_reference",
    "read_task_rows", "reward_scores", "stop_token_ids",
]

