"""BM25 keyword search: tokenising, ranking on a hand-made collection, the disk cache and its invalidation."""

from __future__ import annotations

import pytest

from rag_helpers.chunking import chunk_documents
from rag_helpers.documents import Document
from rag_helpers.keyword import (
    CACHE_FOLDER,
    BM25Index,
    BM25Retriever,
    bm25_cache_root,
    collection_fingerprint,
    light_stem,
    load_bm25_index,
    title_words,
    tokenize,
)
from rag_helpers.store import get_client, get_collection, ingest

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
    return collection


def test_light_stem_brings_word_forms_together():
    assert light_stem("policies") == light_stem("policy") == "policy"
    assert light_stem("claims") == light_stem("claimed") == light_stem("claim") == "claim"
    assert light_stem("expires") == light_stem("expired") == light_stem("expire") == "expir"
    assert light_stem("planned") == "plan"
    assert light_stem("submitting") == "submit"
    assert light_stem("fixes") == "fix"
    assert light_stem("business") == "business"  # -ss, -us, -is are not plurals
    assert light_stem("status") == "status"
    assert light_stem("cats") == "cat"
    assert light_stem("bus") == "bus"  # shorter than four letters: untouched
    assert light_stem("e14") == "e14"  # digits: untouched


def test_tokenize_lowercases_drops_stopwords_and_keeps_numbers_and_codes():
    assert tokenize("What is the Hotel cap for London in 2024?") == ["hotel", "cap", "london", "2024"]
    assert tokenize("Firmware 3.2.1 fixes E14 on the S3") == ["firmwar", "3.2.1", "fix", "e14", "s3"]
    assert tokenize("the and of") == []
    assert tokenize("Claims", stem=False) == ["claims"]


def test_title_words():
    assert title_words("policies/travel_expense_policy_2024.md") == "policies travel expense policy 2024"
    assert title_words("welcome.txt") == "welcome"


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


def test_retriever_over_a_collection(collection):
    retriever = BM25Retriever.from_collection(collection)
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
    only_office = BM25Retriever.from_collection(collection, where={"category": "office"})
    assert [h.document_id for h in only_office("hotel cap office Porto", k=5)] == ["pets.md"]
    containing = BM25Retriever.from_collection(collection, where_document={"$contains": "London"})
    assert [h.document_id for h in containing("hotel cap office Porto", k=5)] == ["hotel.md"]


def test_index_is_cached_next_to_the_chroma_data_and_reused(collection, clean_settings, monkeypatch):
    root = bm25_cache_root(collection)
    assert root == clean_settings.chroma_path / CACHE_FOLDER
    first = load_bm25_index(collection)
    folders = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1 and folders[0].name.startswith("kw_test@")

    def refuse(*args, **kwargs):
        raise AssertionError("the cached index should have been loaded, not rebuilt")

    monkeypatch.setattr(BM25Index, "build", refuse)
    again = load_bm25_index(collection)
    assert again.fingerprint == first.fingerprint
    assert again.ids == first.ids and again.texts == first.texts
    assert again.search("hotel", 1) == first.search("hotel", 1)


def test_cache_is_rebuilt_when_a_document_changes(collection, model):
    before = load_bm25_index(collection)
    root = bm25_cache_root(collection)
    assert before.search("zebra", 1) == []

    changed = dict(TEXTS, **{"pets.md": "A zebra is welcome in the Porto office on Fridays."})
    docs = make_documents(changed)
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    assert collection_fingerprint(collection) != before.fingerprint

    after = load_bm25_index(collection)
    assert after.fingerprint != before.fingerprint
    assert [after.ids[i] for i, _ in after.search("zebra", 1)] == ["pets.md_0"]
    # The stale index of this collection was removed; only the new one is left.
    left = [p.name for p in root.iterdir() if not p.name.startswith(".")]
    assert len(left) == 1 and left[0].startswith(f"kw_test@{after.fingerprint[:16]}.")

    # A removed document disappears from the keyword index too.
    del changed["hotel.md"]
    docs = make_documents(changed)
    ingest(collection, chunk_documents(docs), model, progress=False, prune=True, documents=docs)
    assert "hotel.md_0" not in load_bm25_index(collection).ids


def test_retriever_refresh_picks_up_changes(collection, model):
    retriever = BM25Retriever.from_collection(collection)
    docs = make_documents({"new.md": "Quokkas live on Rottnest Island."})
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    assert retriever("quokkas", 1) == []
    assert retriever.refresh()("quokkas", 1)[0].id == "new.md_0"


def test_a_collection_with_another_name_gets_its_own_index(collection, clean_settings, model):
    other = get_collection(get_client(clean_settings), "kw_test_2", model)
    docs = make_documents({"only.md": "Only one document here about otters."})
    ingest(other, chunk_documents(docs), model, progress=False, documents=docs)
    load_bm25_index(collection)
    load_bm25_index(other)
    names = sorted(p.name.split("@")[0] for p in bm25_cache_root(collection).iterdir())
    assert names == ["kw_test", "kw_test_2"]


def test_an_empty_collection_gives_no_hits(clean_settings, model):
    empty = get_collection(get_client(clean_settings), "kw_empty", model)
    retriever = BM25Retriever.from_collection(empty)
    assert retriever("anything at all", 3) == []


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
    assert bm25_cache_root(Collection(server)) == PROJECT_ROOT / ".cache" / "bm25" / "127.0.0.1_8123"
    memory = ChromaSettings(is_persistent=False)
    assert bm25_cache_root(Collection(memory)) == PROJECT_ROOT / ".cache" / "bm25" / "in-memory"
