"""Bad input, class by class: bytes that are not UTF-8, a byte-order mark, empty files and strings, TRL's
implicit-prompt pairs, unknown roles, tokenizers without EOS/pad, a model smaller than its tokenizer, a
non-finite reward weight. Each gets a UserError naming file, line and field, or a counted handling."""
from __future__ import annotations

import json
import math

import pytest

from lit_align.data.jsonl import read_rows
from lit_align.data.tokenize import IGNORE_INDEX, RowEncoder, tokenize_rows
from lit_align.errors import MissingFileError, UserError

PAIR = {"prompt": "p", "chosen": "a", "rejected": "b"}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# ---- bytes and files ----------------------------------------------------------------------------------

def test_invalid_utf8_names_file_line_and_byte(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(json.dumps(PAIR).encode() + b"\n" + b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}\n')
    with pytest.raises(UserError) as err:
        read_rows(path, "preference")
    assert str(err.value) == (f"{path}: line 2: invalid UTF-8 (byte 0xe9 at column 16); expected UTF-8 text "
                              "(re-save the file as UTF-8)")
    assert isinstance(err.value, ValueError)  # callers catching ValueError keep working


def test_byte_order_mark_is_skipped(tmp_path):
    path = tmp_path / "bom.jsonl"
    bom = b"\xef\xbb\xbf"
    first = json.dumps({"prompt": "caf\u00e9", "id": "x"}, ensure_ascii=False).encode()  # raw UTF-8 bytes
    path.write_bytes(bom + first + b"\r\n" + bom + b'{"prompt": "b"}\r\n')  # a second BOM: `cat a.jsonl b.jsonl`
    rows = read_rows(path, "prompt")
    assert [(r["id"], r["prompt"]) for r in rows] == [("x", "caf\u00e9"), ("bom:2", "b")]


def test_unpaired_surrogate_escape_names_the_field(write_jsonl):
    path = write_jsonl("chat.jsonl", ['{"messages": [{"role": "user", "content": "ok"}, '
                                      '{"role": "assistant", "content": "a\\ud83db"}]}'])
    with pytest.raises(UserError, match=r"chat\.jsonl: line 1: field 'messages\[1\]\.content' holds an unpaired "
                                        r"surrogate '\\ud83d' at character 2"):
        read_rows(path, "sft")
    with pytest.raises(UserError, match="field 'prompt' holds an unpaired surrogate"):
        read_rows([{"prompt": "\ud800"}], "prompt")


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(UserError, match=rf"{path}: no rows \(the file is empty or holds only blank lines\)"):
        read_rows(path, "sft")


def test_missing_file_folder_and_empty_path(tmp_path):
    with pytest.raises(MissingFileError, match="data file not found") as err:
        read_rows(tmp_path / "nope.jsonl", "sft")
    assert isinstance(err.value, FileNotFoundError)
    with pytest.raises(UserError, match="is a folder; expected a JSONL file"):
        read_rows(tmp_path, "sft")
    with pytest.raises(UserError, match="data file path is empty"):
        read_rows("", "sft")


def test_json_array_file_gets_a_hint(write_jsonl):
    with pytest.raises(UserError, match="JSON Lines: one object per line, not a JSON array"):
        read_rows(write_jsonl("a.jsonl", ['[{"prompt": "a"}]']), "prompt")


@pytest.mark.parametrize("bad_id", ["", "  ", True, [1], None])
def test_bad_ids(bad_id):
    row = {"prompt": "a", "id": bad_id}
    if bad_id is None:  # no id: the default "<name>:<row>"
        assert read_rows([row], "prompt")[0]["id"] == "rows:0"
        return
    with pytest.raises(UserError, match="row 0: field 'id' must be a non-empty string or an integer"):
        read_rows([row], "prompt")


# ---- roles ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role,hint", [("human", "did you mean 'user'?"), ("asistant", "did you mean 'assistant'?"),
                                       ("narrator", "expected one of 'system', 'user', 'assistant', 'tool'")])
def test_unknown_role_names_line_and_field(write_jsonl, role, hint):
    messages = [user("q"), {"role": role, "content": "a"}]
    path = write_jsonl("chat.jsonl", [{"messages": [user("q"), assistant("a")]}, {"messages": messages}])
    with pytest.raises(UserError, match=rf"chat\.jsonl: line 2: field 'messages\[1\]\.role' is '{role}'") as err:
        read_rows(path, "sft")
    assert hint in str(err.value)


def test_tool_and_system_roles_accepted():
    messages = [{"role": "system", "content": "s"}, user("q"), assistant("call"), {"role": "tool", "content": "6"},
                assistant("six")]
    assert read_rows([{"messages": messages}], "sft")[0]["messages"] == messages


def test_sharegpt_messages_get_a_hint():
    with pytest.raises(UserError, match=r"messages\[0\]\.role' must be a string, got nothing \(ShareGPT"):
        read_rows([{"messages": [{"from": "human", "value": "q"}]}], "sft")


# ---- TRL's implicit prompt ------------------------------------------------------------------------------

def test_implicit_conversational_prompt_as_trl_extracts_it():
    # trl.extract_prompt's docstring example: the shared leading turns are the prompt
    chosen = [user("What color is the sky?"), assistant("It is blue.")]
    rejected = [user("What color is the sky?"), assistant("It is green.")]
    (row,) = read_rows([{"chosen": chosen, "rejected": rejected, "group": "g"}], "preference")
    assert row["prompt"] == [user("What color is the sky?")]
    assert row["chosen"] == [assistant("It is blue.")] and row["rejected"] == [assistant("It is green.")]
    assert row["group"] == "g"


def test_implicit_multi_turn_prompt_keeps_every_shared_turn():
    shared = [{"role": "system", "content": "be brief"}, user("q1"), assistant("a1"), user("q2")]
    (row,) = read_rows([{"chosen": [*shared, assistant("yes")], "rejected": [*shared, assistant("no"), user("?")]}],
                       "preference")
    assert row["prompt"] == shared
    assert row["chosen"] == [assistant("yes")] and row["rejected"] == [assistant("no"), user("?")]


@pytest.mark.parametrize("chosen,rejected,prompt", [
    ("The sky is blue.", "The sky is green.", "The sky is"),  # TRL's split too: the space starts the responses
    ("Q: sky? A: blue", "Q: sky? A: black", "Q: sky? A:"),  # TRL would cut "bl|ue": the word stays whole
    ("Q:\n\nyes", "Q:\n\nno", "Q:"),
])
def test_implicit_string_prompt_ends_before_the_differing_word(chosen, rejected, prompt):
    (row,) = read_rows([{"chosen": chosen, "rejected": rejected}], "preference")
    assert row["prompt"] == prompt
    assert row["prompt"] + row["chosen"] == chosen and row["prompt"] + row["rejected"] == rejected


@pytest.mark.parametrize("chosen,rejected,message", [
    ([user("a"), assistant("x")], [user("b"), assistant("x")], "share no leading message"),
    ("blue sky", "black sky", "share no leading text"),
    ([user("a"), assistant("x")], [user("a"), assistant("x")], "chosen and rejected are identical"),
    ([user("a")], [user("a"), assistant("x")], "chosen is the start of the other"),
    ("The sky is blue and wide", "The sky is blue", "rejected is the start of the other"),
])
def test_implicit_prompt_errors_name_the_line(write_jsonl, chosen, rejected, message):
    path = write_jsonl("pairs.jsonl", [PAIR, {"chosen": chosen, "rejected": rejected}])
    with pytest.raises(UserError, match=rf"pairs\.jsonl: line 2: no 'prompt' column, and .*{message}"):
        read_rows(path, "preference")


def test_missing_rejected_is_named_not_prompt():
    with pytest.raises(UserError, match="missing field 'rejected' .*prompt/chosen/rejected or chosen/rejected"):
        read_rows([{"chosen": "a"}], "preference")


def test_string_prompt_with_whole_conversations_hints_at_the_implicit_format():
    chosen, rejected = [user("q"), assistant("a")], [user("q"), assistant("b")]
    with pytest.raises(UserError, match="drop 'prompt' \\(TRL's implicit-prompt format"):
        read_rows([{"prompt": "q", "chosen": chosen, "rejected": rejected}], "preference")


def test_implicit_pairs_train_only_the_responses(chat_tokenizer):
    shared = [user("Hello there")]
    rows = read_rows([{"chosen": [*shared, assistant("I am fine")], "rejected": [*shared, assistant("go away")]}],
                     "preference")
    (ex,), _ = tokenize_rows(rows, "preference", chat_tokenizer)
    for side, text in (("chosen", "I am fine"), ("rejected", "go away")):
        ids, labels = ex[f"{side}_input_ids"], ex[f"{side}_labels"]
        trained = [t for t, lab in zip(ids, labels, strict=True) if lab != IGNORE_INDEX]
        assert chat_tokenizer.decode(trained) == f"{text}<|im_end|>\n"
    prompt = RowEncoder(chat_tokenizer).encode_prompt(shared)
    assert ex["chosen_input_ids"][: len(prompt)] == ex["rejected_input_ids"][: len(prompt)] == prompt


# ---- empty strings and tokenizers ------------------------------------------------------------------------

def test_empty_prompt_rows_are_dropped_and_counted(chat_tokenizer):
    rows = read_rows([{"prompt": "hi"}, {"prompt": "  "}, {"prompt": [user("")]}], "prompt", name="prompts")
    examples, report = tokenize_rows(rows, "prompt", chat_tokenizer)
    assert [ex["id"] for ex in examples] == ["prompts:0"]
    assert report.dropped == {"empty_prompt": 2}
    assert "dropped 2 prompts with an empty prompt (e.g. prompts:1, prompts:2)" in str(report)
    with pytest.raises(UserError, match="prompts: row 1: field 'prompt': example with an empty prompt"):
        tokenize_rows(rows, "prompt", chat_tokenizer, strict=True)


def test_tokenizer_without_pad_pads_with_eos(plain_tokenizer_dir):
    from lit_align.models.loading import load_tokenizer

    tok = load_tokenizer(str(plain_tokenizer_dir))
    assert tok.eos_token == "<|endoftext|>" and tok.pad_token_id == tok.eos_token_id


def test_tokenizer_without_eos_is_refused(plain_tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    from lit_align.models.loading import load_tokenizer

    tok = AutoTokenizer.from_pretrained(plain_tokenizer_dir)
    tok.eos_token = None
    tok.save_pretrained(tmp_path / "no_eos")
    with pytest.raises(UserError, match=r"the tokenizer '.*no_eos' has no eos_token \(nor a sep_token\)"):
        load_tokenizer(str(tmp_path / "no_eos"))
    with pytest.raises(UserError, match="has no eos_token, and every completion needs one"):
        RowEncoder(tok)


def test_unloadable_model_paths_are_user_errors(tmp_path):
    from lit_align.models.loading import load_causal_lm, load_tokenizer

    with pytest.raises(MissingFileError, match="tokenizer path '/nonexistent/model' does not exist"):
        load_tokenizer("/nonexistent/model")
    with pytest.raises(UserError, match="model path is ''"):
        load_causal_lm("")
    (tmp_path / "empty_model").mkdir()
    with pytest.raises(UserError, match=r"cannot load the model '.*empty_model': ") as err:
        load_causal_lm(str(tmp_path / "empty_model"))
    assert "\n" not in str(err.value)


def test_model_smaller_than_the_tokenizer_is_refused(chat_tokenizer, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from lit_align.models.loading import load_causal_lm, load_sequence_classifier

    n = len(chat_tokenizer)
    for name, vocab in (("fits", n), ("small", n - 4)):
        config = LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=2, pad_token_id=0)
        LlamaForCausalLM(config).save_pretrained(tmp_path / name)
    assert load_causal_lm(str(tmp_path / "fits"), vocab_size=n).get_input_embeddings().weight.shape[0] == n
    with pytest.raises(UserError, match=rf"the tokenizer has {n} tokens but the model '.*small' embeds only {n - 4}"):
        load_causal_lm(str(tmp_path / "small"), vocab_size=n)
    with pytest.raises(UserError, match="token ids would fall outside its vocabulary"):
        load_sequence_classifier(str(tmp_path / "small"), vocab_size=n)


# ---- rewards ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("weight", [math.nan, math.inf, "1"])
def test_non_finite_reward_weight_is_refused(weight):
    from lit_align.rollout.reward_sources import build_reward_sources

    with pytest.raises(UserError, match=r"rewards\[1\] \(checker\): weight must be a finite number"):
        build_reward_sources([{"kind": "checker"}, {"kind": "checker", "weight": weight}])
