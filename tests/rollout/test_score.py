"""completion_batch's format and completion_logprobs against a plain log_softmax-gather over the logits."""
from __future__ import annotations

import torch

from lit_align.rollout.generate import Generation, generate
from lit_align.rollout.score import completion_batch, completion_logprobs, completion_token_logprobs


def some_generations(model, tokenizer) -> list[Generation]:
    """Mixed lengths, finished and unfinished (one of them stops on its 3rd token)."""
    prompts = [[100, 200, 300], [7, 8, 9, 10, 11, 12, 13], [400, 41, 500, 50, 600]]
    gens = generate(model, tokenizer, prompts, max_new_tokens=5, stop_token_ids=[1])
    stop = gens[0].completion_ids[2]
    finished = generate(model, tokenizer, prompts[:1], max_new_tokens=5, stop_token_ids=[stop])
    return gens + finished


def manual_logp(model, gen: Generation) -> float:
    ids = torch.tensor([gen.prompt_ids + gen.generated_ids])  # (1, T)
    with torch.no_grad():
        logp = model(input_ids=ids).logits[0, :-1].float().log_softmax(-1)  # (T-1, V)
    targets = ids[0, 1:]  # (T-1,)
    picked = logp.gather(-1, targets[:, None])[:, 0]  # (T-1,)
    return picked[len(gen.prompt_ids) - 1:].sum().item()  # the generated tokens only


def test_completion_batch_format(model, tokenizer):
    gens = some_generations(model, tokenizer)
    batch = completion_batch(tokenizer, gens, pad_id=tokenizer.pad_token_id)
    for row, gen in enumerate(gens):
        n, p = len(gen.prompt_ids) + gen.num_tokens, len(gen.prompt_ids)
        assert batch["input_ids"][row, :n].tolist() == gen.prompt_ids + gen.generated_ids
        assert (batch["input_ids"][row, n:] == tokenizer.pad_token_id).all()  # right padding
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
        assert (batch["labels"][row, :p] == -100).all() and (batch["labels"][row, n:] == -100).all()
        assert batch["labels"][row, p:n].tolist() == gen.generated_ids
    assert gens[-1].finished and batch["labels"][3, len(gens[-1].prompt_ids) + gens[-1].num_tokens - 1] == \
        gens[-1].stop_token_id  # the stop token is scored


def test_completion_logps_match_manual(model, tokenizer):
    gens = some_generations(model, tokenizer)
    got = completion_logprobs(model, tokenizer, gens, batch_size=2)
    want = torch.tensor([manual_logp(model, g) for g in gens])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    per_token = completion_token_logprobs(model, tokenizer, gens, batch_size=3)
    assert [t.numel() for t in per_token] == [g.num_tokens for g in gens]
    torch.testing.assert_close(torch.stack([t.sum() for t in per_token]), got, atol=1e-5, rtol=1e-5)
