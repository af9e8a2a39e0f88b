"""lit_align.rollout: generation from prompts, scoring of generated completions, policy evaluation.

generate.py   batched HF generation (left padding, KV cache, EOS/end-of-turn stops, seeds) -> Generation
score.py      log-probs of generated completions through the fused ops
kl.py         KL(policy || reference) estimates (k1, k3) from sampled completions
reward.py     reward-model scores of (prompt, response)
evaluate.py   evaluate_policy (checker success, diversity, reward, KL, length) and `lit-align evaluate`
callback.py   TaskEvalCallback: evaluate_policy during training, logged as eval/*

The callback is imported on first use (it pulls in Lightning), so the sampler stays cheap to import.
"""
from lit_align.rollout.evaluate import evaluate_policy, read_task_rows
from lit_align.rollout.generate import Generation, encode_prompts, generate, generate_from_rows
from lit_align.rollout.kl import kl_estimates, kl_to_reference
from lit_align.rollout.reward import reward_scores
from lit_align.rollout.score import completion_batch, completion_logps, completion_token_logps
from lit_align.rollout.stopping import end_of_turn_token_id, stop_token_ids

__all__ = [
    "Generation", "TaskEvalCallback", "completion_batch", "completion_logps", "completion_token_logps",
    "encode_prompts", "end_of_turn_token_id", "evaluate_policy", "generate", "generate_from_rows", "kl_estimates",
    "kl_to_reference", "read_task_rows", "reward_scores", "stop_token_ids",
]


def __getattr__(name: str):
    if name == "TaskEvalCallback":
        from lit_align.rollout.callback import TaskEvalCallback

        return TaskEvalCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
