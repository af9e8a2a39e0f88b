"""Feedback environments: what answers a model in a multi-turn corrective-feedback session (CORGI).

CORGI (Bezalel, Orgad & Globerson, "Teaching Models to Improve on Tape", arXiv 2411.01483) simulates sessions
in which a checker scores each answer and says what is wrong as the next user turn. An environment is one
session's checker, with two methods:

    reset(row) -> messages                        the opening conversation (a list of {"role", "content"})
    step(response) -> (score, feedback | None, done)
                                                  score in [0, 1] for the answer just given; feedback: the
                                                  text of the next user turn (None when there is nothing to
                                                  say); done: the session ends here (e.g. the answer passed)

`CheckerEnv` is the first environment: the task suite's checker of the row's "task" column (tasks/checkers.py),
whose feedback names the violations and restates the request; it is sent as the natural user turn
"Feedback: <checker feedback> Please try again." (`template`). Users plug in their own environment by naming
a callable (a class, or a function returning an object with `reset` and `step`) by its dotted path,
"package.module:Name" or "package.module.Name", in the config (`feedback_env`, with `feedback_env_args` as its
keyword arguments); `env_factory` resolves it and checks the result. The number of feedback rounds and the
length limits are the session sampler's business (sessions.py), not the environment's.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

from lit_align.data.chat import Message, as_messages
from lit_align.errors import UserError

DEFAULT_TEMPLATE = "Feedback: {feedback} Please try again."


class Step(NamedTuple):
    """An environment's verdict on one answer (unpacks as `score, feedback, done`)."""

    score: float
    feedback: str | None
    done: bool


@runtime_checkable
class FeedbackEnv(Protocol):
    """One session's environment (see the module docstring)."""

    def reset(self, row: dict[str, Any]) -> list[Message]: ...

    def step(self, response: str) -> Step | tuple[float, str | None, bool]: ...


class CheckerEnv:
    """The suite's checker of `row["task"]`: partial-credit score, done when every requirement is met.

    Args:
        template: the user turn made of the checker's feedback text ("{feedback}" is replaced by it).
    """

    def __init__(self, template: str = DEFAULT_TEMPLATE):
        if "{feedback}" not in template:
            raise UserError(f"feedback template {template!r} must contain '{{feedback}}'")
        self.template = template
        self.checker = None

    def reset(self, row: dict[str, Any]) -> list[Message]:
        from lit_align.tasks.checkers import checker_from_dict

        where = row.get("_where", "prompt row")
        for field in ("prompt", "task"):
            if field not in row:
                raise UserError(f"{where}: the checker environment needs a {field!r} field")
        try:
            self.checker = checker_from_dict(row["task"])
        except (TypeError, ValueError) as error:
            raise UserError(f"{where}: field 'task': {error}") from None
        return as_messages(row["prompt"], "user")

    def step(self, response: str) -> Step:
        if self.checker is None:
            raise RuntimeError("CheckerEnv.step before reset")
        check = self.checker.check(response)
        feedback = None if check.passed else self.template.format(feedback=check.feedback)
        return Step(check.score, feedback, check.passed)


def resolve(path: str) -> Callable[..., Any]:
    """The object named by "package.module:Name" or "package.module.Name"; a UserError naming what is missing."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise UserError(f"feedback_env {path!r}: expected 'checker' or a dotted path 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise UserError(f"feedback_env {path!r}: cannot import {module_name!r} ({error})") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"feedback_env {path!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"feedback_env {path!r}: {attr!r} is not callable (a class or a function making an env)")
    return obj


def env_factory(spec: str | Callable[..., Any] = "checker", args: dict[str, Any] | None = None
                ) -> Callable[[], FeedbackEnv]:
    """A function making one fresh environment per session from `spec` ("checker", a dotted path or a callable)
    and its keyword arguments `args`; the first environment made is checked for `reset` and `step`."""
    make = CheckerEnv if spec == "checker" else resolve(spec) if isinstance(spec, str) else spec
    kwargs = dict(args or {})
    checked = False

    def new_env() -> FeedbackEnv:
        nonlocal checked
        env = make(**kwargs)
        if not checked:
            missing = [m for m in ("reset", "step") if not callable(getattr(env, m, None))]
            if missing:
                raise UserError(f"feedback_env {spec!r} made a {type(env).__name__} without {' and '.join(missing)}; "
                                "an environment needs reset(row) -> messages and step(response) -> "
                                "(score, feedback | None, done)")
            checked = True
        return env

    return new_env


def as_step(result: Any, where: str) -> Step:
    """An environment's `step` result as a Step, with a clear error when it is not (score, feedback, done)."""
    try:
        score, feedback, done = result
        score = float(score)
    except (TypeError, ValueError):
        raise UserError(f"{where}: the feedback environment's step() must return (score, feedback | None, done), "
                        f"got {result!r}") from None
    if feedback is not None and not isinstance(feedback, str):
        raise UserError(f"{where}: feedback must be a string or None, got {type(feedback).__name__}")
    return Step(score, feedback or None, bool(done))
