"""The dense retriever is `store.retrieve` with its filters fixed, embedding by Chroma or by an encoder."""

from __future__ import annotations

import pytest

from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.dense import DenseRetriever, dense_retriever
from rag_helpers.documents import Document
from rag_helpers.embeddings import QueryEncoder
from rag_helpers.ingest import ingest
from rag_helpers.store import SearchScope, get_client, get_collection, retrieve

TEXTS = {
    "travel.md": "Hotels are booked through the portal. Economy class for flights under six hours.",
    "kitchen.md": "The coffee machine is descaled on Mondays. Label your food with your name.",
}


@pytest.fixture
def collection(clean_settings, model):
    collection = get_collection(get_client(clean_settings), "dense_test", model)
    docs = [Document(i, t, i) for i, t in TEXTS.items()]
    ingest(collection, chunk_documents(docs, CharacterSplitter(40, 0)), model, progress=False, documents=docs)
    return collection


def test_dense_retriever_is_retrieve(collection, model):
    question = "Where are hotels booked?"
    assert dense_retriever(collection)(question, 3) == retrieve(collection, question, 3)
    encoded = DenseRetriever(collection, QueryEncoder(model))(question, 3)
    assert [h.id for h in encoded] == [h.id for h in retrieve(collection, question, 3)]
    kitchen = dense_retriever(collection, where={"document_id": "kitchen.md"})
    assert {h.document_id for h in kitchen("coffee", 10)} == {"kitchen.md"}
    assert "dense_test" in repr(kitchen) and "kitchen.md" in repr(kitchen)
    contains = DenseRetriever.from_scope(SearchScope.of(collection, where_document={"$contains": "coffee"}))
    assert [h.id for h in contains("hotels", 5)] == ["kitchen.md_0"]
    with pytest.raises(ValueError, match="empty"):
        kitchen("  ", 3)
