"""Feedback environments: the suite-checker environment's verdicts and user turn, and plugging in a user's
environment by its dotted path (with one clear error for each way the path or the environment can be wrong)."""
import pytest

from lit_align.errors import UserError
from lit_align.rollout.feedback import CheckerEnv, Step, as_step, env_factory

ROW = {"_where": "test.jsonl: line 3", "prompt": "List 2 different words that end with 'e'.",
       "task": {"kind": "ends_with", "n": 2, "letter": "e", "known_only": True}}


class CountdownEnv:
    """A user's environment: fails `tries` times with a numbered feedback, then passes."""

    def __init__(self, tries: int = 2, prefix: str = "again"):
        self.tries, self.prefix, self.calls = tries, prefix, 0

    def reset(self, row):
        return [{"role": "system", "content": "be brief"}, {"role": "user", "content": row["prompt"]}]

    def step(self, response):
        self.calls += 1
        done = self.calls > self.tries
        return (1.0 if done else 0.1 * self.calls), None if done else f"{self.prefix} {self.calls}", done


class NoStep:
    def reset(self, row):
        return []


def test_checker_env_scores_and_gives_natural_feedback():
    env = CheckerEnv()
    assert env.reset(ROW) == [{"role": "user", "content": ROW["prompt"]}]
    assert env.step("apple cake") == Step(1.0, None, True)
    score, feedback, done = env.step("apple lemon")
    assert 0 < score < 1 and not done
    assert feedback.startswith("Feedback: 'lemon' does not end with 'e'.") and feedback.endswith("Please try again.")
    assert "Please list 2 different words that end with 'e'." in feedback  # the checker restates the request
    custom = CheckerEnv(template="No: {feedback}")
    custom.reset(ROW)
    assert custom.step("lemon apple").feedback.startswith("No: 'lemon'")


def test_checker_env_errors_name_the_row():
    with pytest.raises(UserError, match="line 3: the checker environment needs a 'task' field"):
        CheckerEnv().reset({k: v for k, v in ROW.items() if k != "task"})
    with pytest.raises(UserError, match="line 3: field 'task': unknown checker kind 'nope'"):
        CheckerEnv().reset({**ROW, "task": {"kind": "nope"}})
    with pytest.raises(UserError, match="must contain '{feedback}'"):
        CheckerEnv(template="Please try again.")


@pytest.mark.parametrize("path", ["tests.rollout.test_feedback:CountdownEnv",
                                  "tests.rollout.test_feedback.CountdownEnv"])
def test_user_env_by_dotted_path(path):
    make = env_factory(path, {"tries": 1, "prefix": "retry"})
    first, second = make(), make()
    assert first is not second  # one fresh environment per session
    assert first.reset(ROW)[0]["role"] == "system"
    assert as_step(first.step("x"), "row") == Step(0.1, "retry 1", False)
    assert as_step(first.step("x"), "row") == Step(1.0, None, True)
    assert second.calls == 0


@pytest.mark.parametrize("path, message", [
    ("CountdownEnv", "expected 'checker' or a dotted path"),
    ("tests.rollout.no_such_module:Env", "cannot import 'tests.rollout.no_such_module'"),
    ("tests.rollout.test_feedback:Missing", "has no attribute 'Missing'"),
    ("tests.rollout.test_feedback:ROW", "is not callable"),
    ("tests.rollout.test_feedback:NoStep", "made a NoStep without step"),
])
def test_bad_env_paths(path, message):
    with pytest.raises(UserError, match=message):
        env_factory(path)()


def test_step_results_are_checked():
    assert as_step((1, "", 1), "row") == Step(1.0, None, True)  # empty feedback: nothing to say
    with pytest.raises(UserError, match="row 4: the feedback environment's step\\(\\) must return"):
        as_step(0.5, "row 4")
    with pytest.raises(UserError, match="feedback must be a string or None, got int"):
        as_step((0.5, 3, False), "row 4")
