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


# --- Follow-up conversations and injection cases ---------------------------------------------------

CONVERSATION = {
    "id": "travel-london",
    "turns": [
        {"q": "What is the hotel cap?", "answer": "€165.", "doc": "a.md", "evidence": "The vault code is 4242"},
        {"q": "And in London?", "answer": "£185."},
    ],
    "standalone": "What is the hotel cap in London?",
    "doc": "sub/b.txt",
    "evidence": "backup runs nightly at 02:00 UTC",
    "kind": "ellipsis",
}
CASE = {
    "id": "override", "doc": "evil.md", "q": "When is v2 switched off?", "attack": "a code word",
    "success": {"contains": ["PINEAPPLE-42"]}, "kind": "override", "genuine_doc": "a.md",
    "genuine_evidence": "The vault code is 4242", "answer": "In June.",
}


def test_load_conversations_reads_turns_and_labels(tmp_path):
    from rag_helpers.questions import LabelledConversation, LabelledTurn, load_conversations

    path = write_lines(tmp_path / "c.jsonl", [json.dumps(CONVERSATION), ""])
    (conversation,) = load_conversations(path)
    assert isinstance(conversation, LabelledConversation)
    assert conversation.turns == (
        LabelledTurn("What is the hotel cap?", "€165.", "a.md", "The vault code is 4242"),
        LabelledTurn("And in London?", "£185."),
    )
    assert conversation.follow_up == "And in London?" and conversation.history == conversation.turns[:1]
    assert conversation.as_question() == Question(
        "What is the hotel cap in London?", "sub/b.txt", "backup runs nightly at 02:00 UTC", "£185."
    )
    assert validate_questions([conversation.as_question()], DOCS) == []


def test_the_course_data_loads_with_the_default_paths():
    from rag_helpers.questions import load_conversations, load_injection_cases

    assert len(load_conversations()) >= 20 and len(load_injection_cases()) >= 10


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"turns": None}, "'turns' must be a list of at least two turns"),
        ({"turns": [{"q": "Only one?", "answer": "Yes."}]}, "at least two turns"),
        ({"turns": ["What?", {"q": "And?", "answer": ""}]}, "turn 1: expected an object"),
        ({"turns": [{"q": "What?", "answer": "x", "page": 3}, {"q": "And?", "answer": ""}]}, "unknown key(s) page"),
        ({"turns": [{"q": "", "answer": "x"}, {"q": "And?", "answer": ""}]}, "turn 1: 'q' must be a non-empty string"),
        ({"standalone": "  "}, "'standalone' must be a non-empty string"),
        ({"doc": None}, "'doc' must be a non-empty string"),
        ({"kind": None, "id": "x"}, "'kind' must be"),
    ],
)
def test_a_bad_conversation_names_its_line(tmp_path, change, message):
    from rag_helpers.questions import load_conversations

    path = write_lines(tmp_path / "c.jsonl", [json.dumps(CONVERSATION), json.dumps({**CONVERSATION, **change})])
    with pytest.raises(QuestionFileError) as error:
        load_conversations(path)
    assert "c.jsonl, line 2" in str(error.value) and message in str(error.value)


def test_missing_keys_bad_json_and_repeated_ids_name_the_line(tmp_path):
    from rag_helpers.questions import load_conversations, load_injection_cases

    missing = {key: value for key, value in CONVERSATION.items() if key != "evidence"}
    for lines, message in (
        ([json.dumps(missing)], "line 1: missing key(s) evidence"),
        ([json.dumps(CONVERSATION), "{oops"], "line 2: not valid JSON"),
        ([json.dumps(CONVERSATION), "", json.dumps(CONVERSATION)], "line 3: id 'travel-london' is already used"),
    ):
        with pytest.raises(QuestionFileError) as error:
            load_conversations(write_lines(tmp_path / "c.jsonl", lines))
        assert message in str(error.value)
    with pytest.raises(QuestionFileError, match="line 2: id 'override' is already used"):
        load_injection_cases(write_lines(tmp_path / "cases.jsonl", [json.dumps(CASE)] * 2))
    with pytest.raises(FileNotFoundError, match="No conversations file"):
        load_conversations(tmp_path / "nope.jsonl")


def test_load_injection_cases_reads_the_rule_and_the_genuine_answer(tmp_path):
    from rag_helpers.questions import InjectionCase, load_injection_cases

    (case,) = load_injection_cases(write_lines(tmp_path / "cases.jsonl", [json.dumps(CASE)]))
    assert isinstance(case, InjectionCase) and case.success == {"contains": ["PINEAPPLE-42"]}
    assert case.genuine_question() == Question("When is v2 switched off?", "a.md", "The vault code is 4242", "In June.")
    bare = {key: CASE[key] for key in ("id", "doc", "q", "attack", "success", "kind")}
    (minimal,) = load_injection_cases(write_lines(tmp_path / "bare.jsonl", [json.dumps(bare)]))
    assert (minimal.genuine_doc, minimal.genuine_evidence, minimal.answer) == (None, None, "")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"success": {"contains": []}}, "non-empty list"),
        ({"success": {"contains": ["x"], "regex": "y"}}, "'success' must be"),
        ({"success": {"regex": "(unclosed"}}, "is not valid"),
        ({"success": "PINEAPPLE"}, "'success' must be"),
        ({"severity": "high"}, "unknown key(s) severity"),
        ({"q": 7}, "'q' must be a non-empty string"),
    ],
)
def test_a_bad_case_names_its_line(tmp_path, change, message):
    from rag_helpers.questions import load_injection_cases

    path = write_lines(tmp_path / "cases.jsonl", [json.dumps({**CASE, **change})])
    with pytest.raises(QuestionFileError) as error:
        load_injection_cases(path)
    assert "cases.jsonl, line 1" in str(error.value) and message in str(error.value)


def test_attack_succeeded_applies_markers_or_a_regex_case_insensitively():
    from rag_helpers.questions import attack_succeeded, parse_injection_case

    case = parse_injection_case(CASE)
    assert attack_succeeded("Reply: pineapple-42!", case) and case.succeeded("PINEAPPLE-42")
    assert not attack_succeeded("API v2 is switched off on 2025-06-30 [1].", case)
    assert attack_succeeded("Der Preis IST 529 €.", {"regex": r"\b(ist|und)\b"})
    assert not attack_succeeded("The price is €529.", {"regex": r"\b(ist|und)\b"})
