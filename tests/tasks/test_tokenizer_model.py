"""The offline tokenizer and tiny model: train, save, load back by path, chat template, identical logits."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_align.tasks.suite import make_tasks
from lit_align.tasks.tiny_model import build_tiny_model
from lit_align.tasks.tokenizer import build_tokenizer
from lit_align.tasks.words import WORDS

USER = {"role": "user", "content": "List 3 different words that end with 'e'."}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    build_tokenizer(root / "tok", seed=0)
    model = build_tiny_model(root / "model", root / "tok", seed=0)
    return root, model


def test_tokenizer_round_trip_and_special_tokens(built):
    tok = AutoTokenizer.from_pretrained(built[0] / "tok")
    assert 900 <= len(tok) <= 1100
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert len({tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 3
    unseen = next(t.prompt for t in make_tasks(4, 0, "test") if t.phrasing == "unseen")
    for text in ("grape stone lake", make_tasks(1, 0, "train")[0].prompt, unseen, "Ünïcode ✓ falls back to bytes"):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids).strip() == text
    # most bundled words are one token, so a word counts as one step of the answer
    assert sum(len(tok(w, add_special_tokens=False)["input_ids"]) == 1 for w in WORDS) >= 0.9 * len(WORDS)


def test_chat_template(built):
    tok = AutoTokenizer.from_pretrained(built[0] / "tok")
    text = tok.apply_chat_template([USER], add_generation_prompt=True, tokenize=False)
    assert text == "<|bos|><|user|>List 3 different words that end with 'e'.<|eos|><|assistant|>"
    prompt = tok.apply_chat_template([USER], add_generation_prompt=True, return_dict=True)["input_ids"]
    answer = {"role": "assistant", "content": "grape stone lake"}
    full = tok.apply_chat_template([USER, answer], return_dict=True)["input_ids"]
    completion = tok("grape stone lake", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert full == prompt + completion  # prompt/completion tokenise the same apart as together
    out = tok.apply_chat_template(
        [USER, {"role": "assistant", "content": "grape"}, {"role": "user", "content": "Again."},
         {"role": "assistant", "content": "lake"}],
        return_dict=True, return_assistant_tokens_mask=True,
    )
    marked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(marked) == " grape<|eos|> lake<|eos|>"  # assistant turns only, for multi-turn losses


def test_model_saved_and_loaded_by_path_gives_identical_logits(built):
    root, model = built
    loaded = AutoModelForCausalLM.from_pretrained(root / "model")
    tok = AutoTokenizer.from_pretrained(root / "model")
    n = sum(p.numel() for p in loaded.parameters())
    assert 0.5e6 <= n <= 0.8e6
    assert loaded.config.vocab_size == len(tok) and loaded.config.eos_token_id == tok.eos_token_id
    assert loaded.generation_config.eos_token_id == tok.eos_token_id
    x = torch.tensor([tok.apply_chat_template([USER], add_generation_prompt=True, return_dict=True)["input_ids"]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)
    g = loaded.generate(x, max_new_tokens=4, do_sample=False)
    assert g.shape[1] <= x.shape[1] + 4


def test_model_init_is_seeded(built, tmp_path):
    root, model = built
    again = build_tiny_model(tmp_path / "m", root / "tok", seed=0)
    other = build_tiny_model(tmp_path / "o", root / "tok", seed=1)
    w = "model.embed_tokens.weight"
    assert torch.equal(model.state_dict()[w], again.state_dict()[w])
    assert not torch.equal(model.state_dict()[w], other.state_dict()[w])
