"""Batched multi-turn sessions with corrective feedback (CORGI, arXiv 2411.01483, Sec. 3), kept as token ids.

A session answers a row's prompt, gets a score and feedback from its environment (feedback.py), and tries
again, for at most `rounds` feedback rounds:

    y_0 ~ pi(prompt); (s_0, m_0) = env.step(y_0)
    for k = 1..K: stop if done; else append m_{k-1} as a user turn and sample y_k ~ pi(transcript)

Sessions are batched per turn: every unfinished session generates in one `generate` call (rollout/generate.py,
left-padded, batched by length), finished ones drop out. A transcript is never decoded and re-tokenised:
it keeps the exact token ids that were sampled (stop token included), and each feedback turn is rendered with
the chat template and spliced in as ids (`FeedbackTurns`: the text the template adds after an assistant turn,
up to and including the next generation prompt, tokenised alone). Decoding and re-encoding a transcript
changes token boundaries, and with them the log-probs the policy is trained on: peers' multi-turn RL hit
KL spikes from exactly that (rllm#272, verl#6719).

Why a session stops (`Session.stop`): "solved" (score 1), "done" (the environment ended it, or had no
feedback to give), "rounds" (K feedback rounds used), "length" (the next feedback turn plus an answer would
pass `max_length`; counted, never cut mid-turn). An answer that ran out of max_new_tokens has no stop token:
the template's end-of-turn marker is spliced in after it (a prompt token, never trained) and the session goes
on; `summarize` counts such answers (truncated).

Session rewards (`session_reward`): R = max_k s_k (the paper's default), or the last score, the mean, or
max_k gamma^k s_k ("discounted", which pays for solving early). `summarize` gives success@k (the share of
sessions solved within k feedback rounds), and per round the fix rate (a failed answer fixed by the next
one) and the worse rate (the next answer scores lower than the one before).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from lit_align.data.chat import has_chat_template, render
from lit_align.errors import UserError
from lit_align.rollout.feedback import as_step
from lit_align.rollout.generate import Generation, generate

STOPS = ("solved", "done", "rounds", "length")
RewardKind = Literal["max", "last", "mean", "discounted"]


@dataclass
class Session:
    """One session: the transcript's token ids, where each answer lies in them, and each answer's verdict."""

    row: dict[str, Any]
    ids: list[int]  # prompt, then per turn: the sampled tokens (stop token included), the feedback turn's ids
    prompt_length: int
    spans: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of each answer's tokens in ids
    answers: list[Generation] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    feedback: list[str | None] = field(default_factory=list)
    stop: str | None = None  # one of STOPS once finished

    @property
    def rounds(self) -> int:
        """Feedback rounds used (answers - 1)."""
        return len(self.answers) - 1

    def solved_at(self) -> int | None:
        """The first turn (0 = the first answer) whose score is 1, or None."""
        return next((k for k, s in enumerate(self.scores) if s >= 1.0), None)

    def as_generation(self) -> Generation:
        """The whole transcript as one Generation: the first prompt, then every later token as the "completion"
        (answers and feedback turns), the last answer's text; rollout/score.completion_batch turns it into the
        (input_ids, labels) of the transcript, and `answer_mask` says which of those tokens the model sampled."""
        rest = self.ids[self.prompt_length:]
        last = self.answers[-1]
        if last.finished:
            return Generation(self.ids[:self.prompt_length], rest[:-1], last.text, True, rest[-1])
        return Generation(self.ids[:self.prompt_length], rest, last.text, False)


def session_reward(scores: list[float], kind: RewardKind = "max", discount: float = 1.0) -> float:
    """R of a session from its per-turn scores s_0..s_K (see the module docstring)."""
    if not scores:
        raise ValueError("a session without answers has no reward")
    if kind == "max":
        return max(scores)
    if kind == "last":
        return scores[-1]
    if kind == "mean":
        return sum(scores) / len(scores)
    if kind == "discounted":
        return max(discount ** k * s for k, s in enumerate(scores))
    raise ValueError(f"unknown session reward {kind!r}; choose from max, last, mean, discounted")


class FeedbackTurns:
    """Token ids that follow an answer's sampled stop token: the rest of the template's closing of the assistant turn
    (ChatML's "\n" after <|im_end|>; the end-of-turn marker itself when the model stopped on another token, e.g.
    EOS), then the feedback user turn and the next generation prompt ("<|user|>Feedback: ...<|eos|><|assistant|>"
    for the suite's template), rendered by the chat template on a probe conversation and tokenised alone."""

    ANSWER = "lit_align probe answer"
    PROBE = [{"role": "user", "content": "a"}, {"role": "assistant", "content": ANSWER}]

    def __init__(self, tokenizer: Any):
        if not has_chat_template(tokenizer):
            raise UserError("feedback sessions need a tokenizer with a chat template (the feedback is a user turn)")
        self.tokenizer = tokenizer
        self.before = render(tokenizer, self.PROBE)
        end = self.before.rfind(self.ANSWER)
        if end < 0:
            raise UserError("the chat template does not render the assistant's content as given, so the end of an "
                            "answer cannot be located for a feedback turn")
        self.closing = self.before[end + len(self.ANSWER):]  # what the template writes after an answer's content

    def ids(self, text: str, stop_token_id: int | None = None) -> list[int]:
        """The ids to append after an answer that ended with `stop_token_id`, for the feedback `text`."""
        after = render(self.tokenizer, [*self.PROBE, {"role": "user", "content": text}], add_generation_prompt=True)
        if not after.startswith(self.before):
            raise UserError("the chat template does not render a conversation as a prefix of its continuation, so a "
                            "feedback turn cannot be appended as tokens; use a prefix-stable template")
        closing = self.closing
        stop = None if stop_token_id is None else self.tokenizer.convert_ids_to_tokens(stop_token_id)
        if stop and closing.startswith(stop):
            closing = closing[len(stop):]  # the sampled stop token is the template's end-of-turn marker
        return self.tokenizer(closing + after[len(self.before):], add_special_tokens=False)["input_ids"]


def sample_sessions(model, tokenizer: Any, rows: list[dict], make_env, *, rounds: int, encoder: Any = None,
                    max_new_tokens: int = 32, do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0,
                    batch_size: int = 64, seed: int | None = None, max_length: int | None = None,
                    stop_strings: list[str] | None = None, progress: bool | str = False) -> list[Session]:
    """One session per row, at most `rounds` feedback rounds each, all unfinished sessions generating together.

    make_env: a function making a fresh environment (feedback.env_factory). encoder: the RowEncoder that encodes
    the environment's opening messages (default: one for `tokenizer`, chat template on). max_length: the longest
    transcript in tokens (default: the model's max_position_embeddings when it has one). Greedy unless do_sample;
    a sampled turn k uses the seed `seed + 7919 * k`.
    """
    from lit_align.data.tokenize import RowEncoder

    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    encoder = encoder if encoder is not None else RowEncoder(tokenizer)
    turns = FeedbackTurns(tokenizer)
    if max_length is None:
        max_length = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 10 ** 9
    envs, sessions = [], []
    for i, row in enumerate(rows):
        env = make_env()
        messages = env.reset(row)
        ids = encoder.encode_prompt(messages, row.get("_where", f"row {i}"))
        envs.append(env)
        sessions.append(Session(row, list(ids), len(ids)))
    for turn in range(rounds + 1):
        if turn == 0:  # a prompt too long to answer within max_length
            for s in sessions:
                s.stop = "length" if s.prompt_length + max_new_tokens > max_length else None
        ready = [i for i, s in enumerate(sessions) if s.stop is None]
        if not ready:
            break
        title = f"{progress}: turn {turn}" if isinstance(progress, str) else progress
        answers = generate(model, tokenizer, [sessions[i].ids for i in ready], max_new_tokens=max_new_tokens,
                           do_sample=do_sample, temperature=temperature, top_p=top_p, batch_size=batch_size,
                           seed=None if seed is None else seed + 7919 * turn, stop_strings=stop_strings,
                           progress=title)
        for i, answer in zip(ready, answers, strict=True):
            s = sessions[i]
            start = len(s.ids)
            s.ids += answer.generated_ids
            s.spans.append((start, len(s.ids)))
            s.answers.append(answer)
            step = as_step(envs[i].step(answer.text), s.row.get("_where", f"row {i}"))
            s.scores.append(step.score)
            s.feedback.append(step.feedback)
            if step.done or step.feedback is None:
                s.stop = "solved" if step.score >= 1.0 else "done"
            elif turn == rounds:
                s.stop = "rounds"
            else:
                feedback = turns.ids(step.feedback, answer.stop_token_id)
                if len(s.ids) + len(feedback) + max_new_tokens > max_length:
                    s.stop = "length"
                else:
                    s.ids += feedback
    return sessions


def answer_mask(sessions: list[Session], width: int) -> torch.Tensor:
    """(n, width) float, in the shifted layout of token log-probs (position t scores token t+1): 1 on every
    token a model sampled (each answer and its stop token), 0 on the prompt, feedback turns and padding."""
    mask = torch.zeros(len(sessions), width)
    for i, s in enumerate(sessions):
        for start, end in s.spans:
            mask[i, start - 1:end - 1] = 1.0
    return mask


def summarize(sessions: list[Session], rounds: int) -> dict[str, float]:
    """success@0..rounds, per round r >= 1 fix_rate@r (of the sessions whose answer r-1 failed and that answered
    again, the share whose answer r passes) and worse_rate@r (the share whose answer r scores below answer r-1),
    answered@r (sessions that gave an answer r), mean_rounds, truncated (the share of answers that ran out of
    tokens) and the share of each stop reason."""
    n = len(sessions)
    if not n:
        raise ValueError("no sessions to summarize")
    out: dict[str, float] = {}
    solved = [s.solved_at() for s in sessions]
    for k in range(rounds + 1):
        out[f"success@{k}"] = sum(t is not None and t <= k for t in solved) / n
    for r in range(1, rounds + 1):
        again = [s for s in sessions if len(s.scores) > r]
        out[f"answered@{r}"] = float(len(again))
        out[f"fix_rate@{r}"] = sum(s.scores[r] >= 1.0 for s in again) / len(again) if again else float("nan")
        out[f"worse_rate@{r}"] = sum(s.scores[r] < s.scores[r - 1] for s in again) / len(again) if again \
            else float("nan")
    out["mean_rounds"] = sum(s.rounds for s in sessions) / n
    answers = [a for s in sessions for a in s.answers]
    out["truncated"] = sum(not a.finished for a in answers) / max(1, len(answers))
    for reason in STOPS:
        out[f"stop_{reason}"] = sum(s.stop == reason for s in sessions) / n
    return out
