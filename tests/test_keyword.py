"""The BM25 retriever on a hand-made collection: ranking, filters, refresh, and a clear error without an index."""

from __future__ import annotations

import pytest

from rag_helpers.chunking import chunk_documents
from rag_helpers.documents import Document
from rag_helpers.keyword_index import build_bm25_index
from rag_helpers.store import IndexNotBuiltError
from rag_helpers.keyword import BM25Retriever
from rag_helpers.ingest import ingest
from rag_helpers.store import SearchScope, get_client, get_collection

TEXTS = {
    "kafka.md": "Consumer lag on the Kafka cluster grows when a consumer group rebalances too often.",
    "hotel.md": "The nightly hotel cap is 165 euros; in London the hotel cap is 185 pounds.",
    "pets.md": "Dogs are welcome in the Porto office on Fridays, cats are not.",
    "firmware.md": "Firmware 3.2.1 fixes the modem sleep bug; error code E14 means the probe is unplugged.",
}


def make_documents(texts: dict[str, str]) -> list[Document]:
    return [
        Document(i, t, i, {"category": "notes" if i != "pets.md" else "office"}) for i, t in texts.items()
    ]


@pytest.fixture
def collection(clean_settings, model):
    collection = get_collection(get_client(clean_settings), "kw_test", model)
    docs = make_documents(TEXTS)
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    build_bm25_index(collection)
    return collection


def test_retriever_over_a_collection(collection):
    retriever = BM25Retriever.from_scope(SearchScope.of(collection))
    hits = retriever("What does error code E14 mean?", k=3)
    assert hits[0].document_id == "firmware.md"
    assert hits[0].distance is None and hits[0].score > 0
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert retriever("hotel cap London", k=1)[0].id == "hotel.md_0"
    # Document titles are indexed too: "kafka" is in the text, "md"-less title words match as well.
    assert retriever("kafka", k=4)[0].document_id == "kafka.md"
    assert retriever("what is it", k=3) == []  # only stop words
    with pytest.raises(ValueError, match="empty"):
        retriever("   ", k=3)
    with pytest.raises(ValueError, match="positive whole number"):
        retriever("kafka", k=0)


def test_filters_restrict_the_keyword_search(collection):
    only_office = BM25Retriever.from_scope(SearchScope.of(collection, where={"category": "office"}))
    assert [h.document_id for h in only_office("hotel cap office Porto", k=5)] == ["pets.md"]
    containing = BM25Retriever.from_scope(SearchScope.of(collection, where_document={"$contains": "London"}))
    assert [h.document_id for h in containing("hotel cap office Porto", k=5)] == ["hotel.md"]


def test_retriever_refresh_picks_up_changes(collection, model):
    retriever = BM25Retriever.from_scope(SearchScope.of(collection))
    docs = make_documents({"new.md": "Quokkas live on Rottnest Island."})
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    assert retriever("quokkas", 1) == []
    with pytest.raises(IndexNotBuiltError, match="run|ingest"):
        retriever.refresh()  # the chunks changed, the index not yet
    build_bm25_index(collection)
    assert retriever.refresh()("quokkas", 1)[0].id == "new.md_0"


def test_an_empty_collection_gives_no_hits(clean_settings, model):
    empty = get_collection(get_client(clean_settings), "kw_empty", model)
    with pytest.raises(IndexNotBuiltError, match="python -m rag_helpers ingest"):
        BM25Retriever.from_scope(SearchScope.of(empty))
    build_bm25_index(empty)
    retriever = BM25Retriever.from_scope(SearchScope.of(empty))
    assert retriever("anything at all", 3) == []


