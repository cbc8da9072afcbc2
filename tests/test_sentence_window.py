"""Sentence windows: rebuilding documents from chunks, sentence chunks, widening to a window."""

from __future__ import annotations

import pytest

from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.documents import Document
from rag_helpers.sentence_window import documents_from_collection, sentence_chunks, widen
from rag_helpers.store import get_client, get_collection, ingest

TEXT = (
    "# Expenses\n\nSubmit each claim within 21 days. Late claims need a manager's approval.\n\n"
    "- Keep every receipt.\n- Meals are covered by the per diem.\n\nQuestions go to finance."
)


def test_documents_are_rebuilt_exactly_from_overlapping_chunks(clean_settings, model):
    collection = get_collection(get_client(clean_settings), "rebuild", model)
    docs = [
        Document("a.md", TEXT, "a.md", {"category": "root", "size_bytes": len(TEXT)}),
        Document("b/c.txt", "Short one.", "b/c.txt", {"category": "b"}),
    ]
    ingest(collection, chunk_documents(docs, CharacterSplitter(40, 5)), model, progress=False, documents=docs)
    rebuilt = {d.id: d for d in documents_from_collection(collection)}
    assert sorted(rebuilt) == ["a.md", "b/c.txt"]
    assert rebuilt["a.md"].text == TEXT and rebuilt["b/c.txt"].text == "Short one."
    assert rebuilt["a.md"].metadata == {"category": "root", "size_bytes": len(TEXT)}


def test_sentence_chunks_are_slices_of_their_document():
    doc = Document("a.md", TEXT, "a.md", {"category": "root"})
    chunks = sentence_chunks([doc])
    assert [c.text for c in chunks] == [
        "# Expenses\n\nSubmit each claim within 21 days.",
        "Late claims need a manager's approval.",
        "- Keep every receipt.",
        "- Meals are covered by the per diem.",
        "Questions go to finance.",
    ]
    for number, c in enumerate(chunks):
        assert c.id == f"a.md#s{number}" and c.index == number
        assert TEXT[c.start : c.end] == c.text and c.metadata == {"category": "root"}


@pytest.mark.parametrize(
    ("index", "limit", "expected"),
    [
        (2, 5, (2, 2)),  # the sentence alone is already wider than the limit
        (2, 25, (2, 3)),  # room for the next sentence only
        (2, 36, (1, 3)),  # then the one before
        (0, 100, (0, 4)),  # everything fits
        (4, 12, (4, 4)),  # the one before would make it 19 characters
        (4, 20, (3, 4)),  # at the end, it grows backwards
    ],
)
def test_widen_adds_neighbours_after_then_before(index, limit, expected):
    spans = [(0, 10), (11, 20), (21, 30), (31, 40), (41, 50)]
    assert widen(spans, index, limit) == expected
