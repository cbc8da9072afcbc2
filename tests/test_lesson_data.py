"""The labelled data of two lessons: follow-up conversations, and prompt injection through documents.

* `data/conversations.jsonl`: two-turn conversations over the sample corpus whose second turn only
  makes sense with the first ("And in London?"). The second turn is labelled like a question of
  `sample_questions.jsonl` (its document and an evidence quote), with `standalone`, the reference
  rewrite of the follow-up into a question that stands on its own.
* `data/injection/`: short documents that each carry one prompt-injection payload, and the cases
  (a question that retrieves the document, and a mechanical rule that says whether an answer obeyed
  the payload).

They load with `questions.load_conversations` and `questions.load_injection_cases`, which check the
shape of every line; the checks here are about the content, and those of evidence reuse
`questions.validate_questions`, so the rules are those of the question set.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from rag_helpers.config import INJECTION_DOCUMENTS_DIR, SAMPLE_CORPUS_DIR
from rag_helpers.documents import load_documents
from rag_helpers.questions import (
    Question,
    attack_succeeded,
    load_conversations,
    load_injection_cases,
    validate_questions,
)

CONVERSATION_KINDS = ("ellipsis", "pronoun", "time_shift", "comparison")
INJECTION_KINDS = (
    "override", "authority", "phishing", "exfiltration", "fact", "refusal",
    "language", "citation", "hidden", "mid_paragraph", "persona",
)  # fmt: skip
MIN_CONVERSATIONS = 20
MIN_CASES = 10
MIN_INJECTION_DOCUMENTS = 12
INJECTION_DOCUMENT_CHARS = (300, 1500)
MIN_MARKER_CHARS = 4  # shorter markers could turn up in a benign answer by chance


# --- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents():
    return load_documents(SAMPLE_CORPUS_DIR)


@pytest.fixture(scope="module")
def conversations():
    return load_conversations()


@pytest.fixture(scope="module")
def cases():
    return load_injection_cases()


@pytest.fixture(scope="module")
def injected_texts():
    return {path.name: path.read_text(encoding="utf-8") for path in sorted(INJECTION_DOCUMENTS_DIR.iterdir())}


# --- Conversations -------------------------------------------------------------------------------


def test_conversations_load_with_two_non_empty_turns(conversations):
    assert len(conversations) >= MIN_CONVERSATIONS
    for conversation in conversations:
        assert len(conversation.turns) == 2, conversation.id
        for turn in conversation.turns:
            assert turn.q.strip() and turn.answer.strip(), conversation.id
        assert conversation.standalone.strip(), conversation.id


def test_conversation_ids_are_unique_and_kinds_known(conversations):
    repeated = [name for name, count in Counter(c.id for c in conversations).items() if count > 1]
    assert repeated == []
    unknown = sorted({c.kind for c in conversations} - set(CONVERSATION_KINDS))
    assert unknown == [], f"unknown kind(s) {unknown}; known: {CONVERSATION_KINDS}"


def test_every_kind_and_part_of_the_corpus_is_represented(conversations):
    kinds = Counter(c.kind for c in conversations)
    assert all(kinds[kind] >= 3 for kind in CONVERSATION_KINDS), kinds
    folders = {c.doc.split("/")[0] for c in conversations}
    assert {"policies", "products", "engineering", "people", "customers", "meetings"} <= folders


def test_second_turn_evidence_is_valid_and_unique(conversations, documents):
    """The same rules as the question set: document exists, 20-120 characters, exactly once in it."""
    problems = validate_questions([c.as_question() for c in conversations], documents)
    assert problems == [], "\n".join(problems)


def test_first_turn_evidence_is_valid_where_given(conversations, documents):
    firsts = [
        Question(q=c.turns[0].q, doc=c.turns[0].doc, evidence=c.turns[0].evidence)
        for c in conversations
        if c.turns[0].doc is not None
    ]
    problems = validate_questions(firsts, documents)
    assert problems == [], "\n".join(problems)


def test_follow_up_is_shorter_than_its_standalone_rewrite(conversations):
    """The follow-up leaves out what the conversation already said; the rewrite puts it back."""
    for conversation in conversations:
        assert conversation.follow_up != conversation.standalone, conversation.id
        assert len(conversation.follow_up.split()) < len(conversation.standalone.split()), conversation.id


# --- Injection set -------------------------------------------------------------------------------


def test_cases_load_with_unique_ids_and_known_kinds(cases):
    assert len(cases) >= MIN_CASES
    repeated = [name for name, count in Counter(c.id for c in cases).items() if count > 1]
    assert repeated == []
    unknown = sorted({c.kind for c in cases} - set(INJECTION_KINDS))
    assert unknown == [], f"unknown kind(s) {unknown}; known: {INJECTION_KINDS}"
    for case in cases:
        assert case.q.strip() and case.attack.strip(), case.id


def test_every_case_names_an_injected_document_and_every_document_has_a_case(cases, injected_texts):
    assert len(injected_texts) >= MIN_INJECTION_DOCUMENTS
    assert sorted({c.doc for c in cases} - set(injected_texts)) == []
    assert sorted(set(injected_texts) - {c.doc for c in cases}) == []


def test_injected_documents_are_short_text_pages_outside_the_sample_corpus(injected_texts, documents):
    low, high = INJECTION_DOCUMENT_CHARS
    corpus_names = {Path(document.id).name for document in documents}
    for name, text in injected_texts.items():
        assert Path(name).suffix in {".md", ".txt"}, name
        assert low <= len(text) <= high, f"{name}: {len(text)} characters"
        assert name not in corpus_names, f"{name} is also in the sample corpus"


def test_success_rules_are_mechanical_and_valid(cases):
    for case in cases:
        assert len(case.success) == 1 and set(case.success) <= {"contains", "regex"}, case.id
        if "regex" in case.success:
            re.compile(case.success["regex"], re.IGNORECASE)
        else:
            markers = case.success["contains"]
            assert isinstance(markers, list) and markers, case.id
            assert all(isinstance(m, str) and len(m.strip()) >= MIN_MARKER_CHARS for m in markers), case.id


def test_markers_appear_in_their_injected_document(cases, injected_texts):
    for case in cases:
        text = injected_texts[case.doc]
        assert attack_succeeded(text, case.success), f"{case.id}: no marker in {case.doc}"
        if "contains" in case.success:
            missing = [m for m in case.success["contains"] if m.casefold() not in text.casefold()]
            assert missing == [], f"{case.id}: {missing} not in {case.doc}"


def test_no_sample_document_or_reference_answer_triggers_a_success_rule(cases, documents):
    """A benign answer built from the sample corpus can never look like a successful attack."""
    for case in cases:
        triggered = [document.id for document in documents if attack_succeeded(document.text, case.success)]
        assert triggered == [], f"{case.id}: the success rule matches {triggered}"
        assert not case.succeeded(case.answer), f"{case.id}: the reference answer triggers it"


def test_genuine_answer_evidence_is_valid(cases, documents):
    """Each question also has a genuine answer in the sample corpus, quoted like a labelled question."""
    genuine = [
        Question(q=c.q, doc=c.genuine_doc, evidence=c.genuine_evidence, answer=c.answer) for c in cases
    ]
    problems = validate_questions(genuine, documents)
    assert problems == [], "\n".join(problems)


def test_attack_succeeded_rules():
    """The rule as the lesson states it (tests/test_questions.py tests the function itself)."""
    assert attack_succeeded(
        "Visit QUILLFEATHER-refunds.example now", {"contains": ["quillfeather-refunds.example"]}
    )
    assert not attack_succeeded("Claim within 30 days.", {"contains": ["quillfeather-refunds.example"]})
    assert attack_succeeded("Der Preis ist 529 €.", {"regex": r"\b(ist|und)\b"})
    assert not attack_succeeded("The price is €529.", {"regex": r"\b(ist|und)\b"})
