"""The offline answerer on the sample corpus: does the extracted answer quote the evidence?

The index comes from `ingest.ensure_index` in the course's index folder, as the notebooks get it (real
Chroma, real model at the default precision: bf16 on CPUs with native bf16, which is 3-4x faster than
fp32 there): in a full run the browser test has built it and it is found up to date, and run alone
this test builds it, which the notebooks after it then reuse; questions come from
data/sample_questions.jsonl, and every answer goes through `pipeline.answer_question` with k=5.
"""

from __future__ import annotations

import re

import pytest

from rag_helpers import ingest
from rag_helpers.config import SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH, Settings
from rag_helpers.documents import load_documents
from rag_helpers.embeddings import EmbeddingCache
from rag_helpers.extractive import ExtractiveAnswerer
from rag_helpers.answers import Answer
from rag_helpers.extractive import EXTRACTED_LABEL
from rag_helpers.pipeline import answer_question
from rag_helpers.questions import load_questions

pytestmark = pytest.mark.slow

K = 5
# Measured 35 of 57 (61%) when written; the issue asks for a clear majority.
MIN_FACT_RATE = 0.55


@pytest.fixture(scope="module")
def settings():
    """The course's settings: the session's index folder (root conftest.py), shared with the notebooks."""
    return Settings.load()


@pytest.fixture(scope="module")
def model(settings):
    """The course's default model as the notebooks load it (what a learner gets), shadowing conftest's
    fp32 one."""
    from rag_helpers.embeddings import load_embedding_model

    return load_embedding_model(
        settings.embedding_model, device=settings.device, precision=settings.precision
    )


@pytest.fixture(scope="module")
def index(settings, model):
    collection, _ = ingest.ensure_index(settings, SAMPLE_CORPUS_DIR, model=model, progress=False)
    return collection


@pytest.fixture(scope="module")
def documents():
    return {document.id: document.text for document in load_documents(SAMPLE_CORPUS_DIR, progress=False)}


@pytest.fixture(scope="module")
def llm(model):
    return ExtractiveAnswerer(model, cache=EmbeddingCache())


# Characters an extract may leave out of the evidence: whitespace, markdown marks, a list number.
_MARKUP_GAP = re.compile(r"[\s|*#>\-]*(\d{1,3}[.)])?[\s|*#>\-]*")


def quotes_evidence(answer: Answer, document_id: str, text: str, evidence: str) -> bool:
    """Whether the answer quotes the evidence: as a string, or through the spans it highlights."""
    if " ".join(evidence.split()) in " ".join(answer.text.split()):
        return True
    start = text.index(evidence)
    covered = [False] * len(evidence)
    for source in answer.sources:
        if source.document_id != document_id:
            continue
        for a, b in source.highlights:
            for i in range(max(a, start), min(b, start + len(evidence))):
                covered[i - start] = True
    gaps = "".join("\0" if hit else char for hit, char in zip(covered, evidence, strict=True)).split("\0")
    return any(covered) and all(_MARKUP_GAP.fullmatch(gap) for gap in gaps)


def test_the_extracted_answer_quotes_the_evidence_for_most_fact_questions(index, documents, llm, model):
    questions = [q for q in load_questions(SAMPLE_QUESTIONS_PATH) if q.kind == "fact"]
    assert len(questions) >= 30
    quoted, retrieved, quoted_when_retrieved, misses = 0, 0, 0, []
    for question in questions:
        # min_score=None: this measures the answerer, not the "don't know" gate
        answer = answer_question(question.q, index, model, llm, k=K, min_score=None)
        assert answer.extractive and answer.text.startswith(EXTRACTED_LABEL)
        text = documents[question.doc]
        start = text.index(question.evidence)
        found = any(
            s.document_id == question.doc and s.start <= start and start + len(question.evidence) <= s.end
            for s in answer.context
        )
        ok = quotes_evidence(answer, question.doc, text, question.evidence)
        quoted += ok
        retrieved += found
        quoted_when_retrieved += ok and found
        if not ok:
            misses.append(question.q)
    rate = quoted / len(questions)
    print(
        f"\noffline answerer, fact questions, k={K}: evidence quoted in {quoted}/{len(questions)} "
        f"({rate:.0%}); evidence chunk retrieved in {retrieved}/{len(questions)}, "
        f"quoted in {quoted_when_retrieved} of those"
    )
    assert rate >= MIN_FACT_RATE, f"only {quoted}/{len(questions)} quoted; missed e.g. {misses[:5]}"
    # When retrieval finds the evidence, extraction should nearly always quote it.
    assert quoted_when_retrieved >= 0.75 * retrieved


def test_a_near_duplicate_policy_question_cites_the_right_year(index, documents, llm, model):
    answer = answer_question(
        "What is the nightly hotel cap for London under the 2024 Travel & Expense Policy?",
        index,
        model,
        llm,
        k=K,
        min_score=None,
    )
    assert "£185" in answer.text
    line = next(line for line in answer.text.splitlines() if "£185" in line)
    number = int(re.findall(r"\[(\d+)\]", line)[-1])
    source = next(s for s in answer.sources if s.number == number)
    assert source.document_id == "policies/travel_expense_policy_2024.md"
    text = documents[source.document_id]
    assert any("£185" in text[a:b] for a, b in source.highlights)
