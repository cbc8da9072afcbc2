"""The bundled question set: valid against the sample corpus, big enough and spread widely."""

from __future__ import annotations

import pytest

from rag_helpers.chunking import page_at
from rag_helpers.config import SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH
from rag_helpers.documents import load_documents
from rag_helpers.questions import KINDS, UNANSWERABLE, load_questions, question_set_stats, validate_questions

MIN_QUESTIONS = 100
MIN_UNANSWERABLE = 10
MIN_DEEP_FRACTION = 1 / 3  # evidence starting at character 1000 or later
DEEP_OFFSET = 1000
MIN_COVERED_FRACTION = 0.75  # "most documents" have at least one question


@pytest.fixture(scope="module")
def documents():
    return load_documents(SAMPLE_CORPUS_DIR)


@pytest.fixture(scope="module")
def questions():
    return load_questions(SAMPLE_QUESTIONS_PATH)


@pytest.fixture(scope="module")
def stats(questions, documents):
    return question_set_stats(questions, documents, deep_offset=DEEP_OFFSET)


def test_every_question_is_valid(questions, documents):
    """Docs exist, evidence is 20-120 characters and occurs once, kinds are valid, no duplicates."""
    problems = validate_questions(questions, documents)
    assert problems == [], f"{len(problems)} problem(s):\n" + "\n".join(problems)


def test_enough_questions_of_every_kind(questions, stats):
    assert stats["questions"] >= MIN_QUESTIONS
    assert stats["kinds"].get(UNANSWERABLE, 0) >= MIN_UNANSWERABLE
    missing = [kind for kind in KINDS if kind not in stats["kinds"]]
    assert not missing, f"no question of kind {missing}"


def test_answerable_questions_have_a_reference_answer(questions):
    without = [q.q for q in questions if q.answerable and not q.answer.strip()]
    assert not without, f"answerable questions without an answer: {without}"


def test_a_third_of_the_evidence_lies_deep_in_its_document(stats):
    assert stats["deep_evidence_fraction"] >= MIN_DEEP_FRACTION, (
        f"only {stats['deep_evidence']} of {stats['answerable']} evidence quotes start at or after "
        f"character {DEEP_OFFSET}"
    )


def test_most_documents_are_covered(stats):
    covered = stats["documents_covered"] / stats["documents"]
    assert covered >= MIN_COVERED_FRACTION, f"documents without a question: {stats['uncovered_documents']}"


def test_pdfs_and_html_pages_are_in_the_corpus_and_asked_about(questions, documents):
    """The sample corpus has PDFs (one with three pages or more) and HTML pages, each with a question,
    and some evidence lies beyond a PDF's first page, so a citation's page number matters."""
    by_id = {d.id: d for d in documents}
    pdfs = [d for d in documents if d.metadata["extension"] == "pdf"]
    pages = [d for d in documents if d.metadata["extension"] in ("html", "htm")]
    assert len(pdfs) >= 3 and len(pages) >= 3
    assert max(d.metadata["pages"] for d in pdfs) >= 3
    asked = {q.doc for q in questions if q.answerable}
    assert [d.id for d in pdfs + pages if d.id not in asked] == []
    evidence_pages = [
        page_at(by_id[q.doc].metadata["page_starts"], by_id[q.doc].text.index(q.evidence))
        for q in questions
        if q.answerable and q.doc.endswith(".pdf")
    ]
    assert max(evidence_pages) >= 3 and sum(page > 1 for page in evidence_pages) >= 3
