"""Question files: loading (with line numbers on errors) and validation against a corpus."""

from __future__ import annotations

import json

import pytest

from rag_helpers.documents import Document
from rag_helpers.questions import (
    Question,
    QuestionFileError,
    find_evidence,
    load_questions,
    normalise_question,
    question_set_stats,
    validate_questions,
)

PADDING = "Filler sentence that carries no answer at all. " * 30  # about 1400 characters

DOCS = [
    Document("a.md", "The vault code is 4242 and changes every March.\n" + PADDING, "a.md"),
    Document("sub/b.txt", PADDING + "Deep down: the backup runs nightly at 02:00 UTC.\n", "sub/b.txt"),
    Document("c.md", "repeat me please. repeat me please. repeat me please. Something else.", "c.md"),
]


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def good_questions():
    return [
        Question("What is the vault code?", "a.md", "The vault code is 4242", "4242", "fact"),
        Question("When is the backup?", "sub/b.txt", "backup runs nightly at 02:00 UTC", "02:00", "how"),
        Question("Who won the 1998 World Cup?", None, None, "", "unanswerable"),
    ]


def test_load_reads_every_line_and_fills_defaults(tmp_path):
    path = write_lines(
        tmp_path / "q.jsonl",
        [
            json.dumps({"q": "Vault code?", "doc": "a.md", "evidence": "The vault code is 4242"}),
            "",
            json.dumps({"q": "Who won?", "doc": None, "evidence": None, "kind": "unanswerable"}),
            json.dumps({"q": "x?", "doc": "a.md", "evidence": "e" * 20, "answer": "y", "kind": "how", "n": 1})
            + "  ",
        ],
    )
    questions = load_questions(path)
    assert questions == [
        Question("Vault code?", "a.md", "The vault code is 4242", "", "fact"),
        Question("Who won?", None, None, "", "unanswerable"),
        Question("x?", "a.md", "e" * 20, "y", "how"),
    ]
    assert [q.answerable for q in questions] == [True, False, True]
    assert questions[2].to_dict() == {
        "q": "x?", "doc": "a.md", "evidence": "e" * 20, "answer": "y", "kind": "how"
    }


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"q": "Where?", "doc": "a.md"}', "missing key(s) evidence"),
        ('{"q": "", "doc": "a.md", "evidence": "x"}', "'q' must be a non-empty string"),
        ('{"q": "Where?", "doc": ["a.md", "b.md"], "evidence": "x"}', "'doc' must be a string or null"),
        ('{"q": "Where?", "doc": "a.md", "evidence": "x", "kind": 3}', "'kind' must be a string"),
    ],
)
def test_load_names_the_bad_line(tmp_path, bad_line, message):
    good = json.dumps({"q": "ok?", "doc": "a.md", "evidence": "The vault code is 4242"})
    path = write_lines(tmp_path / "q.jsonl", [good, "", bad_line])
    with pytest.raises(QuestionFileError) as error:
        load_questions(path)
    assert "q.jsonl, line 3" in str(error.value)
    assert message in str(error.value)


def test_load_missing_file_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="No question file"):
        load_questions(tmp_path / "nope.jsonl")


def test_valid_questions_have_no_problems(tmp_path):
    assert validate_questions(good_questions(), DOCS) == []
    # A folder path works as well as loaded documents.
    for document in DOCS:
        target = tmp_path / document.id
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(document.text, encoding="utf-8")
    assert validate_questions(good_questions(), tmp_path) == []


@pytest.mark.parametrize(
    ("question", "problem"),
    [
        (Question("q?", "missing.md", "The vault code is 4242"), "'missing.md' is not in the corpus"),
        (Question("q?", "a.md", "The vault code is 9999 and more"), "not found in a.md"),
        (Question("q?", "c.md", "repeat me please. repeat"), "found 2 times in c.md"),
        (Question("q?", "a.md", "vault code"), "evidence is 10 characters; it must be 20-120"),
        (Question("q?", "a.md", DOCS[0].text[:121]), "evidence is 121 characters"),
        (Question("q?", "a.md", None), "needs evidence"),
        (Question("q?", "a.md", "The vault code is 4242", kind="trivia"), "kind 'trivia' is not one of"),
        (Question("q?", None, None, kind="fact"), "doc is null, so kind must be 'unanswerable'"),
        (Question("q?", "a.md", "The vault code is 4242", kind="unanswerable"), "null doc and evidence"),
        (Question("q?", None, "The vault code is 4242", kind="unanswerable"), "null doc and evidence"),
    ],
)
def test_each_problem_is_reported(question, problem):
    problems = validate_questions([question], DOCS)
    assert len(problems) == 1
    assert problem in problems[0]
    assert problems[0].startswith("question 1 (q?)")


def test_duplicate_questions_are_reported_whatever_their_spacing_and_case():
    first = good_questions()[0]
    again = Question("  what is  the VAULT code ", "a.md", "The vault code is 4242", "4242", "fact")
    problems = validate_questions([first, good_questions()[1], again], DOCS)
    assert problems == ["question 3 (  what is  the VAULT code ): duplicate of question 1"]
    assert normalise_question(first.q) == normalise_question(again.q)


def test_find_evidence_counts_overlapping_occurrences():
    assert find_evidence("aaaa", "aa") == [0, 1, 2]
    assert find_evidence("abc", "x") == []


def test_question_set_stats_counts_depth_and_coverage():
    stats = question_set_stats(good_questions(), DOCS)
    assert stats["questions"] == 3
    assert stats["answerable"] == 2
    assert stats["kinds"] == {"fact": 1, "how": 1, "unanswerable": 1}
    assert stats["documents_covered"] == 2
    assert stats["uncovered_documents"] == ["c.md"]
    assert stats["deep_evidence"] == 1  # the backup sentence starts after character 1000
    assert stats["deep_evidence_fraction"] == 0.5
