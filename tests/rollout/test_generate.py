"""generate(): greedy equals a step-by-step argmax loop (left padding correct), stop tokens, limits,
stop strings, seeds, train/eval mode, and prompts identical to training's."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lit_align.rollout.generate import Generation, encode_prompts, generate, generate_from_rows
from lit_align.rollout.stopping import cut_at_stop_strings, end_of_turn_token_id, stop_token_ids

PROMPTS = [[100, 200, 300], [7, 8, 9, 10, 11, 12, 13, 14, 15], [400, 41, 500, 50, 600]]  # lengths 3, 9, 5


def manual_greedy(model, prompt: list[int], steps: int) -> list[int]:
    """Argmax of the model's logits, one token at a time, on the unpadded prompt (no cache)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]  # (V,)
            ids.append(int(logits.argmax()))
    return ids[len(prompt):]


NEVER = [1]  # <|bos|>: a stop token the tiny model never emits after the prompt


def test_greedy_equals_manual_loop_with_left_padding(model, tokenizer):
    gens = generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=3, stop_token_ids=NEVER)
    for prompt, gen in zip(PROMPTS, gens, strict=True):
        assert gen.prompt_ids == prompt
        assert gen.completion_ids == manual_greedy(model, prompt, 6)
    assert len({tuple(g.completion_ids) for g in gens}) == 3  # the prompts got different answers


def test_greedy_is_deterministic_and_batch_invariant(model, tokenizer):
    first = generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=3)
    again = generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=3)
    one_by_one = generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=1)
    assert first == again == one_by_one


def test_max_new_tokens_unfinished(model, tokenizer):
    gens = generate(model, tokenizer, PROMPTS, max_new_tokens=4, stop_token_ids=NEVER)
    for gen in gens:
        assert len(gen.completion_ids) == gen.num_tokens == 4
        assert not gen.finished and gen.stop_token_id is None
        assert gen.generated_ids == gen.completion_ids


def test_stop_token_is_stripped_and_recorded(model, tokenizer):
    greedy = generate(model, tokenizer, PROMPTS[:1], max_new_tokens=6, stop_token_ids=NEVER)[0].completion_ids
    stop = greedy[2]
    cut = greedy.index(stop)
    gen = generate(model, tokenizer, PROMPTS[:1], max_new_tokens=6, stop_token_ids=[stop])[0]
    assert gen.completion_ids == greedy[:cut]
    assert gen.finished and gen.stop_token_id == stop and gen.num_tokens == cut + 1
    assert gen.generated_ids == greedy[: cut + 1]
    assert gen.text == tokenizer.decode(greedy[:cut], skip_special_tokens=True).strip()
    assert Generation.from_dict(dataclasses.asdict(gen)) == gen


def test_empty_generation(model, tokenizer):
    first = generate(model, tokenizer, PROMPTS[:1], max_new_tokens=3, stop_token_ids=NEVER)[0].completion_ids[0]
    gen = generate(model, tokenizer, PROMPTS[:1], max_new_tokens=3, stop_token_ids=[first])[0]
    assert gen.completion_ids == [] and gen.text == "" and gen.finished and gen.num_tokens == 1


def test_default_stops_are_eos(model, tokenizer):
    assert stop_token_ids(tokenizer) == [tokenizer.eos_token_id]  # the suite template ends turns with EOS
    for gen in generate(model, tokenizer, PROMPTS, max_new_tokens=8):
        assert tokenizer.eos_token_id not in gen.completion_ids
        assert gen.finished == (gen.stop_token_id == tokenizer.eos_token_id)


def test_end_of_turn_token_distinct_from_eos(chatml_tokenizer, tokenizer):
    im_end = chatml_tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn_token_id(chatml_tokenizer) == im_end
    assert stop_token_ids(chatml_tokenizer) == [chatml_tokenizer.eos_token_id, im_end]
    assert end_of_turn_token_id(tokenizer) == tokenizer.eos_token_id


def test_end_of_turn_without_template(tokenizer):
    class NoTemplate:
        chat_template = None
        eos_token_id = 2

    assert end_of_turn_token_id(NoTemplate()) is None
    assert stop_token_ids(NoTemplate()) == [2]


def test_stop_strings_cut_text(model, tokenizer):
    full = generate(model, tokenizer, PROMPTS[:1], max_new_tokens=10, stop_token_ids=NEVER)[0]
    marker = full.text[4:6]
    cut = generate(model, tokenizer, PROMPTS[:1], max_new_tokens=10, stop_token_ids=NEVER,
                   stop_strings=["zzzz-not-there", marker])[0]
    assert cut.text == full.text[: full.text.find(marker)].strip()
    assert cut.completion_ids == full.completion_ids  # token ids stay as generated


def test_cut_at_stop_strings_earliest():
    assert cut_at_stop_strings("a b. c\n d", ["\n", "."]) == "a b"
    assert cut_at_stop_strings("abc", "b") == "a"
    assert cut_at_stop_strings("abc", None) == "abc"
    assert cut_at_stop_strings("abc", ["x", ""]) == "abc"


def test_sampling_seeded_and_rng_untouched(model, tokenizer):
    state = torch.get_rng_state()
    kwargs = dict(max_new_tokens=8, do_sample=True, stop_token_ids=NEVER, batch_size=2)
    a = generate(model, tokenizer, PROMPTS, seed=3, **kwargs)
    b = generate(model, tokenizer, PROMPTS, seed=3, **kwargs)
    c = generate(model, tokenizer, PROMPTS, seed=4, **kwargs)
    assert a == b and a != c
    assert torch.equal(torch.get_rng_state(), state)


def test_train_mode_restored(model, tokenizer):
    model.train()
    try:
        generate(model, tokenizer, PROMPTS[:1], max_new_tokens=2)
        assert model.training
    finally:
        model.eval()
    generate(model, tokenizer, PROMPTS[:1], max_new_tokens=2)
    assert not model.training


def test_generation_prompts_equal_training_prompts(model, tokenizer, task_rows):
    from lit_align.data.tokenize import RowEncoder

    rows = [{**row, "completion": " apple", "_where": f"row {i}", "_index": i} for i, row in enumerate(task_rows)]
    trained, _ = RowEncoder(tokenizer).sft(rows)
    prompts = encode_prompts(tokenizer, rows)
    for prompt, example in zip(prompts, trained, strict=True):
        first_label = next(i for i, label in enumerate(example["labels"]) if label != -100)
        assert prompt == example["input_ids"][:first_label]
    gens = generate_from_rows(model, tokenizer, rows, max_new_tokens=3)
    assert [g.prompt_ids for g in gens] == prompts


def test_bad_arguments(model, tokenizer):
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, tokenizer, PROMPTS, max_new_tokens=0)
    with pytest.raises(ValueError, match="prompt 1 has no tokens"):
        generate(model, tokenizer, [[5], []])
    with pytest.raises(ValueError, match="row 0: missing field 'prompt'"):
        encode_prompts(tokenizer, [{"text": "hi"}])
    with pytest.raises(ValueError, match="stop_token_id"):
        Generation([1], [2], "x", finished=True)


def test_progress_bar(model, tokenizer, capsys):
    generate(model, tokenizer, PROMPTS, max_new_tokens=2, batch_size=1, progress="sampling test")
    out = capsys.readouterr()
    assert "sampling test" in out.out + out.err
