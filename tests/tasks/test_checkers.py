"""Checkers on hand-written responses: exact scores and feedback texts, distinctness, wording, JSON round trips."""

import json

import pytest

from lit_align.tasks.checkers import (
    REGISTRY,
    AllOf,
    Alphabetical,
    Avoid,
    AvoidLetter,
    ContainsLetter,
    DoubleLetter,
    EndsWith,
    Include,
    MaxChars,
    StartsWith,
    WordCount,
    WordLength,
    category,
    checker_from_dict,
    words_in,
)
from lit_align.tasks.phrasing import Phrasing

E3 = EndsWith(3, "e")
ASK = " Please list 3 different words that end with 'e'."


def test_words_in_lowercases_and_drops_punctuation():
    assert words_in("1. Apple, GRAPE!\n2) stone") == ["apple", "grape", "stone"]


def test_correct_answer_scores_one_without_feedback():
    c = E3.check("grape stone lake")
    assert c.score == 1.0 and c.passed and c.feedback is None


@pytest.mark.parametrize(
    "response, score, feedback",
    [
        # known, rule (2 of 3 words), distinct, count -> (1 + 2/3 + 1 + 1) / 4
        ("grape lemon lake", (3 + 2 / 3) / 4, "'lemon' does not end with 'e'."),
        ("grape lemon", (1 + 0.5 + 1 + 0) / 4, "'lemon' does not end with 'e'; you gave 2 words, not 3."),
        ("lemon melon moon", 0.75, "'lemon', 'melon' and 'moon' do not end with 'e'."),
        ("grape grape grape", 0.75, "'grape' is repeated."),
        ("grape lake grape stone", 0.5, "'grape' is repeated; you gave 4 words, not 3."),
        ("grape", 0.75, "You gave 1 word, not 3."),
        ("grapee stone lake", (2 / 3 + 3) / 4, "'grapee' is not a word I know."),
        ("grapee stonee lake", (1 / 3 + 3) / 4, "'grapee' and 'stonee' are not words I know."),
        ("", 0.0, "You gave no words; I asked for 3."),
        ("Grape, STONE, cake... lake?", 0.75, "You gave 4 words, not 3."),
        ("grape and lake", (2 / 3 + 2 / 3 + 1 + 1) / 4, "'and' is not a word I know; 'and' does not end with 'e'."),
    ],
)
def test_ends_with_partial_credit_and_feedback(response, score, feedback):
    c = E3.check(response)
    assert c.score == pytest.approx(score)
    assert c.feedback == feedback + ASK  # the violations, then the request restated


def test_repeating_one_valid_word_never_passes():
    # The pitfall seen in the experiment: "lemon lemon lemon" ends with 'n' three times.
    c = EndsWith(3, "n").check("lemon lemon lemon")
    assert not c.passed and "'lemon' is repeated" in c.feedback
    assert StartsWith(2, "b").check("bear bear").score < 1


def test_unknown_words_allowed_when_known_only_is_off():
    assert EndsWith(2, "e", known_only=False).check("eee zzze").passed
    assert not EndsWith(2, "e").check("eee zzze").passed


@pytest.mark.parametrize(
    "checker, response, violation",
    [
        (StartsWith(2, "b"), "bear cat", "'cat' does not start with 'b'"),
        (ContainsLetter(2, "a"), "bear moon", "'moon' does not contain 'a'"),
        (ContainsLetter(3, "a"), "bear moon sun", "'moon' and 'sun' do not contain 'a'"),
        (AvoidLetter(2, "a"), "bear moon", "'bear' contains 'a'"),
        (AvoidLetter(3, "a"), "bear cat moon", "'bear' and 'cat' contain 'a'"),
        (WordLength(2, 4), "bear tiger", "'tiger' does not have 4 letters"),
        (DoubleLetter(2), "apple sun", "'sun' has no double letter"),
        (DoubleLetter(3), "apple cat sun", "'cat' and 'sun' have no double letter"),
        (Avoid(2, ("apple",)), "apple bear", "'apple' is not allowed"),
        (Include(3, ("apple", "moon")), "apple bear cat", "'moon' is missing"),
        (Alphabetical(4), "apple pear bear moon",
         "the words are not in alphabetical order: 'pear' comes before 'bear'"),
    ],
)
def test_rule_feedback(checker, response, violation):
    request = checker.prompt()  # the canonical phrasing, restated after the violations
    expected = f"{violation[0].upper()}{violation[1:]}. Please {request[0].lower()}{request[1:]}"
    assert checker.check(response).feedback == expected


def test_rule_scores():
    assert Include(3, ("apple", "moon")).check("apple bear cat").score == pytest.approx((1 + 0.5 + 1 + 1) / 4)
    assert Alphabetical(4).check("apple pear bear moon").score == pytest.approx((1 + 2 / 3 + 1 + 1) / 4)
    assert Alphabetical(3).check("apple bear moon").passed
    assert ContainsLetter(2, "o").check("moon rose").passed and DoubleLetter(2).check("apple moon").passed
    assert AvoidLetter(3, "a").check("moon sun tree").passed
    assert DoubleLetter(1).check("apple").passed and not DoubleLetter(1).check("cat").passed


def test_length_limits():
    assert WordCount(2, 4).check("a b c").passed
    assert WordCount(2, 4).check("a b c d e").feedback == "You gave 5 words, not 2 to 4. Please answer in 2 to 4 words."
    assert WordCount(3, 3).prompt() == "Answer in exactly 3 words."
    assert MaxChars(10).check(" bear moon ").passed
    c = MaxChars(5).check("bear moon")
    assert c.feedback == "Your answer has 9 characters, more than 5. Please answer in at most 5 characters."
    assert MaxChars(5).failed("bear moon") == ["max_chars"]


def test_all_of_merges_shared_requirements():
    task = AllOf((StartsWith(2, "s"), EndsWith(2, "e")))
    assert task.prompt() == "List 2 different words that start with 's' and end with 'e'."
    assert task.check("snake stone").passed
    c = task.check("snake snake sun")  # known, starts (3/3), ends (2/3), distinct, count: 5 requirements once each
    assert c.score == pytest.approx((1 + 1 + 2 / 3 + 0 + 0) / 5)
    assert c.feedback == ("'sun' does not end with 'e'; 'snake' is repeated; you gave 3 words, not 2. "
                          "Please list 2 different words that start with 's' and end with 'e'.")
    with pytest.raises(ValueError, match="different word counts"):
        AllOf((StartsWith(2, "s"), EndsWith(3, "e")))


def test_failed_names_requirements_and_their_categories():
    task = AllOf((StartsWith(3, "b"), EndsWith(3, "e"), Alphabetical(3)))
    assert task.failed("bee bike blue") == []
    assert task.failed("bike bee blue") == ["alphabetical"]
    assert task.failed("bee bike bike") == ["distinct"]
    assert task.failed("bee bike") == ["count:3"]
    assert task.failed("bee bikke blue") == ["known"]
    assert task.failed("bee bike bread") == ["ends_with:e"]
    assert task.failed("bee blue cake") == ["starts_with:b"]
    assert [category(k) for k in ("known", "distinct", "count:3", "alphabetical", "ends_with:e", "word_length:4")] \
        == ["known", "distinct", "count", "order", "rule", "rule"]


@pytest.mark.parametrize(
    "style, expected",
    [
        ("rel", "that start with 'b', contain the letter 'a' and have exactly 4 letters, in alphabetical order"),
        ("ing", "starting with 'b', containing the letter 'a' and having exactly 4 letters, sorted alphabetically"),
        ("with", "with the first letter 'b', the letter 'a' in them and exactly 4 letters, in order from A to Z"),
    ],
)
def test_conjunction_wording_per_style(style, expected):
    task = AllOf((StartsWith(4, "b"), ContainsLetter(4, "a"), Alphabetical(4), WordLength(4, 4)))
    assert task.clause(style) == expected


def test_prompts_in_phrasings():
    assert E3.prompt() == "List 3 different words that end with 'e'."
    p = Phrasing("Could you {}?", "come up with", "exactly {n} distinct words", "ing", ", nothing else")
    assert StartsWith(4, "b").prompt(p) == \
        "Could you come up with exactly 4 distinct words starting with 'b', nothing else?"
    assert Include(2, ("apple",)).prompt() == "List 2 different words including 'apple'."
    assert Avoid(2, ("apple", "moon")).prompt(Phrasing(style="with")) == \
        "List 2 different words without using 'apple' or 'moon'."
    assert Alphabetical(3).prompt(Phrasing(opener="Please {}.", style="ing")) == \
        "Please list 3 different words sorted alphabetically."


@pytest.mark.parametrize(
    "checker",
    [E3, StartsWith(2, "b"), WordLength(3, 4), AvoidLetter(2, "a"), ContainsLetter(2, "o"), DoubleLetter(3),
     Include(3, ("apple", "moon")), Avoid(2, ("apple",)), Alphabetical(3), WordCount(1, 4), MaxChars(20),
     EndsWith(2, "e", known_only=False), AllOf((StartsWith(2, "s"), EndsWith(2, "e"), Alphabetical(2)))],
)
def test_dict_round_trip(checker):
    d = json.loads(json.dumps(checker.to_dict()))
    assert d["kind"] in REGISTRY
    assert checker_from_dict(d) == checker


def test_dict_layout_and_errors():
    assert E3.to_dict() == {"kind": "ends_with", "n": 3, "letter": "e", "known_only": True}
    assert DoubleLetter(2).to_dict() == {"kind": "double_letter", "n": 2, "known_only": True}
    with pytest.raises(ValueError, match="unknown checker kind"):
        checker_from_dict({"kind": "nope"})
    with pytest.raises(ValueError, match="unknown fields"):
        checker_from_dict({"kind": "ends_with", "n": 3, "letter": "e", "colour": "red"})
    with pytest.raises(ValueError, match="'kind'"):
        checker_from_dict(["ends_with"])
