"""Checkers on hand-written responses: exact scores and feedback texts, distinctness, JSON round trips."""

import pytest

from lit_align.tasks.checkers import (
    REGISTRY,
    AllOf,
    Alphabetical,
    Avoid,
    AvoidLetter,
    EndsWith,
    Include,
    MaxChars,
    StartsWith,
    WordCount,
    WordLength,
    checker_from_dict,
    words_in,
)

E3 = EndsWith(3, "e")


def test_words_in_lowercases_and_drops_punctuation():
    assert words_in("1. Apple, GRAPE!\n2) stone") == ["apple", "grape", "stone"]


def test_correct_answer_scores_one_without_feedback():
    c = E3.check("grape stone lake")
    assert c.score == 1.0 and c.passed and c.feedback is None


@pytest.mark.parametrize(
    "response, score, feedback",
    [
        # known, rule (2 of 3 words), distinct, count -> (1 + 2/3 + 1 + 1) / 4
        ("grape lemon lake", (3 + 2 / 3) / 4, "'lemon' does not end with 'e'. Please try again."),
        ("grape lemon", (1 + 0.5 + 1 + 0) / 4, "'lemon' does not end with 'e'; you gave 2 words, not 3. Please try again."),
        ("lemon melon moon", 0.75, "'lemon', 'melon' and 'moon' do not end with 'e'. Please try again."),
        ("grape grape grape", 0.75, "'grape' is repeated. Please try again."),
        ("grape lake grape stone", 0.5, "'grape' is repeated; you gave 4 words, not 3. Please try again."),
        ("grape", 0.75, "You gave 1 word, not 3. Please try again."),
        ("grapee stone lake", (2 / 3 + 3) / 4, "'grapee' is not a word I know. Please try again."),
        ("", 0.0, "You gave no words; I asked for 3. Please try again."),
        ("Grape, STONE, cake... lake?", 0.75, "You gave 4 words, not 3. Please try again."),
        ("grape and lake", (2 / 3 + 2 / 3 + 1 + 1) / 4,
         "'and' is not a word I know; 'and' does not end with 'e'. Please try again."),
    ],
)
def test_ends_with_partial_credit_and_feedback(response, score, feedback):
    c = E3.check(response)
    assert c.score == pytest.approx(score)
    assert c.feedback == feedback


def test_repeating_one_valid_word_never_passes():
    # The pitfall seen in the experiment: "lemon lemon lemon" ends with 'n' three times.
    c = EndsWith(3, "n").check("lemon lemon lemon")
    assert not c.passed and "'lemon' is repeated" in c.feedback
    assert StartsWith(2, "b").check("bear bear").score < 1


def test_unknown_words_allowed_when_known_only_is_off():
    assert EndsWith(2, "e", known_only=False).check("eee zzze").passed
    assert not EndsWith(2, "e").check("eee zzze").passed


def test_other_word_list_rules():
    assert StartsWith(2, "b").check("bear cat").feedback == "'cat' does not start with 'b'. Please try again."
    assert WordLength(2, 4).check("bear tiger").feedback == "'tiger' does not have 4 letters. Please try again."
    assert AvoidLetter(2, "a").check("bear moon").feedback == "'bear' contains 'a'. Please try again."
    assert Include(3, ("apple", "moon")).check("apple bear cat").feedback == "'moon' is missing. Please try again."
    assert Include(3, ("apple", "moon")).check("apple bear cat").score == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert Avoid(2, ("apple",)).check("apple bear").feedback == "'apple' is not allowed. Please try again."
    c = Alphabetical(4).check("apple pear bear moon")  # pairs: a<p ok, p>b bad, b<m ok
    assert c.score == pytest.approx((1 + 2 / 3 + 1 + 1) / 4)
    assert c.feedback == "The words are not in alphabetical order: 'pear' comes before 'bear'. Please try again."
    assert Alphabetical(3).check("apple bear moon").passed


def test_length_limits():
    assert WordCount(2, 4).check("a b c").passed
    assert WordCount(2, 4).check("a b c d e").feedback == "You gave 5 words, not 2 to 4. Please try again."
    assert WordCount(3, 3).prompt() == "Answer in exactly 3 words."
    assert MaxChars(10).check(" bear moon ").passed
    assert MaxChars(5).check("bear moon").feedback == "Your answer has 9 characters, more than 5. Please try again."


def test_all_of_merges_shared_requirements():
    task = AllOf((StartsWith(2, "s"), EndsWith(2, "e")))
    assert task.prompt() == "List 2 different words that start with 's' and end with 'e'."
    assert task.check("snake stone").passed
    c = task.check("snake snake sun")  # known, starts (3/3), ends (2/3), distinct, count: 5 requirements once each
    assert c.score == pytest.approx((1 + 1 + 2 / 3 + 0 + 0) / 5)
    assert c.feedback == "'sun' does not end with 'e'; 'snake' is repeated; you gave 3 words, not 2. Please try again."
    with pytest.raises(ValueError, match="different word counts"):
        AllOf((StartsWith(2, "s"), EndsWith(3, "e")))


def test_prompts_state_the_constraint():
    assert E3.prompt() == "List 3 different words that end with 'e'."
    assert StartsWith(4, "b").prompt(1) == "Name 4 distinct words that start with 'b'."
    assert Include(2, ("apple",)).prompt() == "List 2 different words including 'apple'."
    assert Avoid(2, ("apple", "moon")).prompt() == "List 2 different words without using 'apple' or 'moon'."


@pytest.mark.parametrize(
    "checker",
    [E3, StartsWith(2, "b"), WordLength(3, 4), AvoidLetter(2, "a"), Include(3, ("apple", "moon")),
     Avoid(2, ("apple",)), Alphabetical(3), WordCount(1, 4), MaxChars(20), EndsWith(2, "e", known_only=False),
     AllOf((StartsWith(2, "s"), EndsWith(2, "e"), Alphabetical(2)))],
)
def test_dict_round_trip(checker):
    import json

    d = json.loads(json.dumps(checker.to_dict()))
    assert d["kind"] in REGISTRY
    assert checker_from_dict(d) == checker


def test_dict_layout_and_errors():
    assert E3.to_dict() == {"kind": "ends_with", "n": 3, "letter": "e", "known_only": True}
    with pytest.raises(ValueError, match="unknown checker kind"):
        checker_from_dict({"kind": "nope"})
    with pytest.raises(ValueError, match="unknown fields"):
        checker_from_dict({"kind": "ends_with", "n": 3, "letter": "e", "colour": "red"})
    with pytest.raises(ValueError, match="'kind'"):
        checker_from_dict(["ends_with"])
