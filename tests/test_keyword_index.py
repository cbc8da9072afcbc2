"""Tests for rag_helpers.keyword_index: the BM25 index on disk, built by ingest, opened by the BM25 retriever."""

from __future__ import annotations

import pytest

from rag_helpers.chunking import chunk_documents
from rag_helpers.documents import Document
from rag_helpers.keyword_index import BM25Index, build_bm25_index
from rag_helpers.store import (
    INDEX_FILES_FOLDER,
    collection_fingerprint,
    index_files_root,
)
from rag_helpers.text import tokenize
from rag_helpers.ingest import ingest
from rag_helpers.store import get_client, get_collection

TEXTS = {
    "kafka.md": "Consumer lag on the Kafka cluster grows when a consumer group rebalances too often.",
    "hotel.md": "The nightly hotel cap is 165 euros; in London the hotel cap is 185 pounds.",
    "pets.md": "Dogs are welcome in the Porto office on Fridays, cats are not.",
    "firmware.md": "Firmware 3.2.1 fixes the modem sleep bug; error code E14 means the probe is unplugged.",
}
TEXT = (
    "# Expenses\n\nSubmit each claim within 21 days. Late claims need a manager's approval.\n\n"
    "- Keep every receipt.\n- Meals are covered by the per diem.\n\nQuestions go to finance."
)


def make_documents(texts: dict[str, str]) -> list[Document]:
    return [
        Document(i, t, i, {"category": "notes" if i != "pets.md" else "office"}) for i, t in texts.items()
    ]


@pytest.fixture
def collection(clean_settings, model):
    collection = get_collection(get_client(clean_settings), "kw_test", model)
    docs = make_documents(TEXTS)
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    return collection


def test_index_ranks_the_chunk_with_the_query_words_first():
    index = BM25Index.build(
        ["a", "b", "c"], ["red apples and pears", "green apples", "blue sky"], titles=False
    )
    hits = index.search("apples pears", k=3)
    assert [index.ids[i] for i, _ in hits] == ["a", "b"]  # "c" shares no word: not returned
    assert hits[0][1] > hits[1][1] > 0
    assert index.search("unknown words", k=3) == []
    assert index.document_frequency(tokenize("apples")[0]) == 2
    assert index.document_frequency("unknown") == 0
    weighted = index.search(tokenize("green pears"), k=3, weights={tokenize("pears")[0]: 0.01})
    assert [index.ids[i] for i, _ in weighted] == ["b", "a"]


def test_index_is_cached_next_to_the_chroma_data_and_reused(collection, clean_settings, monkeypatch):
    root = index_files_root(collection)
    assert root == clean_settings.chroma_path / INDEX_FILES_FOLDER
    first = build_bm25_index(collection)[0]
    folders = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and folders[0].name.startswith("kw_test@")

    def refuse(*args, **kwargs):
        raise AssertionError("the cached index should have been loaded, not rebuilt")

    monkeypatch.setattr(BM25Index, "build", refuse)
    again = build_bm25_index(collection)[0]
    assert again.fingerprint == first.fingerprint
    assert again.ids == first.ids and again.texts == first.texts
    assert again.search("hotel", 1) == first.search("hotel", 1)


def test_cache_is_rebuilt_when_a_document_changes(collection, model):
    before = build_bm25_index(collection)[0]
    root = index_files_root(collection)
    assert before.search("zebra", 1) == []

    changed = dict(TEXTS, **{"pets.md": "A zebra is welcome in the Porto office on Fridays."})
    docs = make_documents(changed)
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    assert collection_fingerprint(collection) != before.fingerprint

    after = build_bm25_index(collection)[0]
    assert after.fingerprint != before.fingerprint
    assert [after.ids[i] for i, _ in after.search("zebra", 1)] == ["pets.md_0"]
    # The stale index of this collection was removed; only the new one is left.
    left = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    assert len(left) == 1 and left[0].startswith(f"kw_test@{after.fingerprint[:16]}.")

    # A removed document disappears from the keyword index too.
    del changed["hotel.md"]
    docs = make_documents(changed)
    ingest(collection, chunk_documents(docs), model, progress=False, prune=True, documents=docs)
    assert "hotel.md_0" not in build_bm25_index(collection)[0].ids


def test_a_collection_with_another_name_gets_its_own_index(collection, clean_settings, model):
    other = get_collection(get_client(clean_settings), "kw_test_2", model)
    docs = make_documents({"only.md": "Only one document here about otters."})
    ingest(other, chunk_documents(docs), model, progress=False, documents=docs)
    build_bm25_index(collection)
    build_bm25_index(other)
    names = sorted(p.name.split("@")[0] for p in index_files_root(collection).iterdir())
    assert names == ["kw_test", "kw_test_2"]


def test_cache_root_for_a_server_or_in_memory_collection():
    from chromadb.config import Settings as ChromaSettings

    from rag_helpers.config import PROJECT_ROOT

    class Client:
        def __init__(self, settings):
            self.settings = settings

        def get_settings(self):
            return self.settings

    class Collection:
        def __init__(self, settings):
            self._client = Client(settings)

    server = ChromaSettings(chroma_server_host="127.0.0.1", chroma_server_http_port=8123, is_persistent=False)
    assert index_files_root(Collection(server)) == PROJECT_ROOT / ".cache" / "bm25" / "127.0.0.1_8123"
    memory = ChromaSettings(is_persistent=False)
    assert index_files_root(Collection(memory)) == PROJECT_ROOT / ".cache" / "bm25" / "in-memory"
