"""The session sampler: transcripts keep the sampled ids and splice feedback turns as template ids (never a
decode + re-encode), unfinished sessions generate together per turn and finished ones drop out, length limits and
truncated answers stop a session, and the rewards, masks and summaries computed from sessions."""
import pytest
import torch

from lit_align.data.chat import render
from lit_align.data.tokenize import RowEncoder
from lit_align.rollout import sessions as sessions_module
from lit_align.rollout.generate import Generation
from lit_align.rollout.score import completion_batch
from lit_align.rollout.sessions import FeedbackTurns, Session, answer_mask, sample_sessions, session_reward, summarize


class PassAfter:
    """Passes on answer number `row["passes_at"]` (0-based), else scores 0.25 * turn with feedback."""

    def reset(self, row):
        self.row, self.turn = row, 0
        return [{"role": "user", "content": row["prompt"]}]

    def step(self, response):
        turn, self.turn = self.turn, self.turn + 1
        done = turn == self.row["passes_at"]
        return (1.0 if done else 0.25 * turn), None if done else f"Feedback: not yet ({turn}). Please try again.", done


def scripted_generate(calls, tokenizer, finished=True, text=" apple lemon"):
    """A stand-in for rollout.generate: the same answer for every prompt; records each call's batch size."""
    completion = tokenizer(text, add_special_tokens=False)["input_ids"]

    def fake(model, tok, prompts, **kwargs):
        calls.append(len(prompts))
        return [Generation(list(p), completion, text.strip(), finished, tokenizer.eos_token_id if finished else None)
                for p in prompts]
    return fake


def rows(n, passes_at):
    return [{"_where": f"row {i}", "prompt": f"List {i + 2} words.", "passes_at": passes_at(i)} for i in range(n)]


def test_transcript_is_sampled_ids_plus_template_feedback_ids(tokenizer, monkeypatch):
    calls = []
    monkeypatch.setattr(sessions_module, "generate", scripted_generate(calls, tokenizer))
    out = sample_sessions(None, tokenizer, rows(2, lambda i: 9), PassAfter, rounds=2, max_length=1000)
    turns = FeedbackTurns(tokenizer)
    for s in out:
        prompt = RowEncoder(tokenizer).encode_prompt(s.row["prompt"])
        assert s.ids[:s.prompt_length] == prompt and s.stop == "rounds" and s.scores == [0.0, 0.25, 0.5]
        assert [s.ids[a:b] for a, b in s.spans] == [g.generated_ids for g in s.answers]
        gaps = [s.ids[s.spans[k][1]:s.spans[k + 1][0]] for k in range(2)]
        assert gaps == [turns.ids(fb, tokenizer.eos_token_id) for fb in s.feedback[:2]]
        assert s.ids[s.spans[-1][1]:] == []  # the last answer ends the transcript
        # The spliced ids are the template's rendering of the feedback turn and the next generation prompt.
        assert tokenizer.convert_ids_to_tokens(gaps[0][0]) == "<|user|>"
        assert tokenizer.convert_ids_to_tokens(gaps[0][-2:]) == ["<|eos|>", "<|assistant|>"]
        assert "not yet (0)" in tokenizer.decode(gaps[0])
    assert calls == [2, 2, 2]


def test_chatml_feedback_keeps_the_template_text_after_the_stop_token(chatml_tokenizer):
    tok = chatml_tokenizer
    turns = FeedbackTurns(tok)
    prompt = render(tok, [{"role": "user", "content": "hello"}], add_generation_prompt=True)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    full = render(tok, [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "there"},
                        {"role": "user", "content": "Feedback: no."}], add_generation_prompt=True)

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    answered = ids(prompt + "there<|im_end|>")  # ends with the sampled stop token
    assert answered + turns.ids("Feedback: no.", im_end) == ids(full)  # the "\n" after <|im_end|> is not lost
    # A model that stopped on EOS instead gets the template's end-of-turn marker spliced in (as a prompt token).
    assert turns.ids("x", tok.eos_token_id)[:2] == ids("<|im_end|>\n")


def test_finished_sessions_drop_out_of_the_batch(tokenizer, monkeypatch):
    calls = []
    monkeypatch.setattr(sessions_module, "generate", scripted_generate(calls, tokenizer))
    out = sample_sessions(None, tokenizer, rows(6, lambda i: i % 3), PassAfter, rounds=3, max_length=1000)
    assert calls == [6, 4, 2]
    assert [s.rounds for s in out] == [0, 1, 2] * 2 and all(s.stop == "solved" for s in out)
    assert [s.solved_at() for s in out] == [0, 1, 2] * 2


def test_length_limit_and_truncated_answers_stop_sessions(tokenizer, monkeypatch):
    calls = []
    monkeypatch.setattr(sessions_module, "generate", scripted_generate(calls, tokenizer))
    probe = sample_sessions(None, tokenizer, rows(1, lambda i: 9), PassAfter, rounds=1, max_length=1000)[0]
    limit = probe.spans[1][0] + 8 - 1  # the second answer (8 new tokens) would not fit
    out = sample_sessions(None, tokenizer, rows(1, lambda i: 9), PassAfter, rounds=3, max_length=limit,
                          max_new_tokens=8)[0]
    assert out.stop == "length" and len(out.answers) == 1 and len(out.ids) <= limit
    too_long = sample_sessions(None, tokenizer, rows(1, lambda i: 9), PassAfter, rounds=3, max_length=10,
                               max_new_tokens=8)[0]
    assert too_long.stop == "length" and too_long.answers == []
    # An answer without a stop token: the template's end-of-turn marker is spliced in after it, and the session goes on.
    monkeypatch.setattr(sessions_module, "generate", scripted_generate(calls, tokenizer, finished=False))
    cut = sample_sessions(None, tokenizer, rows(1, lambda i: 9), PassAfter, rounds=3, max_length=1000)[0]
    assert cut.stop == "rounds" and len(cut.answers) == 4
    end = cut.spans[0][1]
    assert cut.ids[end] == tokenizer.eos_token_id and cut.ids[end:cut.spans[1][0]] == FeedbackTurns(tokenizer).ids(
        cut.feedback[0])
    assert answer_mask([cut], len(cut.ids) - 1)[0, end - 1] == 0  # the spliced marker is not trained
    assert summarize([cut], 3)["truncated"] == 1.0


def test_sessions_with_the_model_are_reproducible_and_batch_as_transcripts(model, tokenizer, task_rows):
    from lit_align.rollout.feedback import env_factory

    kwargs = dict(rounds=2, max_new_tokens=5, do_sample=True, seed=3)
    first = sample_sessions(model, tokenizer, task_rows, env_factory(), **kwargs)
    again = sample_sessions(model, tokenizer, task_rows, env_factory(), **kwargs)
    assert [s.ids for s in first] == [s.ids for s in again]
    batch = completion_batch(tokenizer, [s.as_generation() for s in first])
    mask = answer_mask(first, batch["input_ids"].shape[1] - 1)  # (n, T-1)
    for i, s in enumerate(first):
        assert batch["input_ids"][i, :len(s.ids)].tolist() == s.ids
        sampled = [t for a, b in s.spans for t in s.ids[a:b]]
        assert batch["input_ids"][i, 1:][mask[i].bool()].tolist() == sampled
        assert int(mask[i].sum()) == sum(a.num_tokens for a in s.answers)


def test_session_rewards():
    scores = [0.2, 0.9, 0.5]
    assert session_reward(scores) == 0.9 and session_reward(scores, "last") == 0.5
    assert session_reward(scores, "mean") == pytest.approx(1.6 / 3)
    assert session_reward(scores, "discounted", 0.5) == pytest.approx(0.45)  # max(0.2, 0.5 * 0.9, 0.25 * 0.5)
    with pytest.raises(ValueError, match="unknown session reward 'best'"):
        session_reward(scores, "best")


def test_summary_counts_fixes_and_regressions():
    def session(scores, stop):
        g = Generation([1], [5], "x", True, 2)
        return Session({}, [1], 1, answers=[g] * len(scores), scores=scores, stop=stop)

    out = summarize([session([1.0], "solved"), session([0.5, 1.0], "solved"), session([0.5, 0.2, 0.6], "rounds"),
                     session([0.3, 0.4, 1.0], "solved")], rounds=2)
    assert [out[f"success@{k}"] for k in range(3)] == [0.25, 0.5, 0.75]
    assert out["answered@1"] == 3 and out["fix_rate@1"] == pytest.approx(1 / 3)
    assert out["worse_rate@1"] == pytest.approx(1 / 3)  # 0.5 -> 0.2
    assert out["answered@2"] == 2 and out["fix_rate@2"] == 0.5 and out["worse_rate@2"] == 0.0
    assert out["stop_solved"] == 0.75 and out["stop_rounds"] == 0.25 and out["mean_rounds"] == 1.25


def test_answer_mask_uses_the_shifted_layout():
    s = Session({}, list(range(12)), 3, spans=[(3, 6), (9, 11)])
    assert answer_mask([s], 11)[0].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0]
    assert torch.equal(answer_mask([], 4), torch.zeros(0, 4))
