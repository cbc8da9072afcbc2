"""The indexes ingest keeps in step: tokenising, BM25 on disk, the sentence collection, and opening them."""

from __future__ import annotations

import numpy as np
import pytest

from rag_helpers import store
from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.documents import Document
from rag_helpers.indexes import (
    CACHE_FOLDER,
    BM25Index,
    IndexNotBuiltError,
    bm25_cache_root,
    build_bm25_index,
    build_sentence_index,
    collection_fingerprint,
    documents_from_collection,
    light_stem,
    open_bm25_index,
    open_sentence_index,
    sentence_chunks,
    sentence_collection_name,
    title_words,
    tokenize,
    update_indexes,
)
from rag_helpers.store import get_client, get_collection, ingest

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


# --- tokenising and BM25 ----------------------------------------------------------------------


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


def test_index_is_cached_next_to_the_chroma_data_and_reused(collection, clean_settings, monkeypatch):
    root = bm25_cache_root(collection)
    assert root == clean_settings.chroma_path / CACHE_FOLDER
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
    root = bm25_cache_root(collection)
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
    names = sorted(p.name.split("@")[0] for p in bm25_cache_root(collection).iterdir())
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
    assert bm25_cache_root(Collection(server)) == PROJECT_ROOT / ".cache" / "bm25" / "127.0.0.1_8123"
    memory = ChromaSettings(is_persistent=False)
    assert bm25_cache_root(Collection(memory)) == PROJECT_ROOT / ".cache" / "bm25" / "in-memory"


# --- the sentence index -----------------------------------------------------------------------


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


def test_the_sentence_index_is_a_second_collection_updated_incrementally(collection, model, embedded_texts):
    assert sentence_collection_name(collection) == "kw_test__sentences"
    sentences, report = build_sentence_index(collection, model)
    assert sentences.name == "kw_test__sentences" and report.embedded == sentences.count() >= collection.count()
    assert open_sentence_index(collection).count() == sentences.count()
    first_count = sentences.count()

    embedded = embedded_texts
    embedded.clear()
    _, again = build_sentence_index(collection, model)
    assert embedded == [] and again.embedded == 0  # unchanged: nothing embedded

    changed = dict(TEXTS, **{"pets.md": "A zebra is welcome in the Porto office. Cats are not."})
    docs = make_documents(changed)
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    with pytest.raises(IndexNotBuiltError, match="older than its chunks"):
        open_sentence_index(collection)
    embedded.clear()
    _, report = build_sentence_index(collection, model)
    # Only the changed document's sentences are embedded again; the others are kept.
    assert embedded == ["A zebra is welcome in the Porto office.", "Cats are not."]
    assert (report.added, report.updated, report.removed) == (1, 1, 0)
    assert open_sentence_index(collection).count() == first_count + 1


def test_an_unchanged_sentence_index_is_not_read_but_a_relabel_reaches_it(collection, model, monkeypatch):
    build_sentence_index(collection, model)
    reads: list[str] = []
    real_read = store.read_collection

    def counting(target, *args, **kwargs):
        reads.append(target.name)
        return real_read(target, *args, **kwargs)

    monkeypatch.setattr(store, "read_collection", counting)
    _, again = build_sentence_index(collection)
    assert "kw_test__sentences" not in reads  # decided from its two fingerprints alone
    assert again.skipped == again.chunks == again.count > 0 and again.embedded == 0

    # Same texts, new metadata: the chunks' fingerprint stays, the sentences must still be relabelled.
    docs = [Document(d.id, d.text, d.source, {"category": "archive"}) for d in make_documents(TEXTS)]
    ingest(collection, chunk_documents(docs), None, progress=False, documents=docs)
    _, relabelled = build_sentence_index(collection, documents=docs)
    assert relabelled.updated == relabelled.chunks and relabelled.embedded == 0
    stored = open_sentence_index(collection).get(include=["metadatas"])["metadatas"]
    assert {m["category"] for m in stored} == {"archive"}


def test_sentence_vectors_are_snapshotted_for_fast_reranking(collection, model, monkeypatch):
    from rag_helpers.indexes import load_sentence_vectors, sentence_vectors_path
    from rag_helpers.rerank import SentenceVectors

    sentences, _ = build_sentence_index(collection, model)
    snapshot = load_sentence_vectors(collection, sentences)
    stored = sentences.get(include=["metadatas", "embeddings"])
    assert snapshot is not None and sum(len(v[0]) for v in snapshot.values()) == len(stored["ids"])
    for meta, vector in zip(stored["metadatas"], stored["embeddings"]):
        starts, ends, vectors = snapshot[meta["document_id"]]
        row = int(np.flatnonzero(starts == meta["start"])[0])
        assert ends[row] == meta["end"] and np.allclose(vectors[row], vector)

    # Re-ranking reads the snapshot, not Chroma, and scores exactly as Chroma's vectors would.
    from rag_helpers.registry import make_retriever

    chunks = make_retriever("dense", collection, model)("Is a dog welcome in the office?", 4)
    from_chroma = SentenceVectors(sentences)(chunks)
    monkeypatch.setattr(type(sentences), "get", lambda *a, **k: pytest.fail("read Chroma"))
    from_snapshot = SentenceVectors(sentences, snapshot)(chunks)
    assert all(np.allclose(a, b) for a, b in zip(from_chroma, from_snapshot, strict=True))
    monkeypatch.undo()

    # A change writes a new snapshot under the new fingerprint and removes the old one.
    old_path = next(sentence_vectors_path(collection, "").parent.glob("kw_test__sentences@*.npz"))
    docs = make_documents(dict(TEXTS, **{"pets.md": "A zebra is welcome in the Porto office."}))
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    sentences, _ = build_sentence_index(collection, model)
    new_paths = list(old_path.parent.glob("kw_test__sentences@*.npz"))
    assert len(new_paths) == 1 and new_paths[0] != old_path
    starts, ends, _ = load_sentence_vectors(collection, sentences)["pets.md"]
    assert len(starts) == 1 and (starts[0], ends[0]) == (0, len("A zebra is welcome in the Porto office."))


def test_update_indexes_builds_both_and_opening_needs_it(collection, model):
    with pytest.raises(IndexNotBuiltError, match="python -m rag_helpers ingest"):
        open_bm25_index(collection)
    with pytest.raises(IndexNotBuiltError, match="sentence index .* is missing"):
        open_sentence_index(collection)
    report = update_indexes(collection, model)
    assert report.bm25_rebuilt and report.bm25_chunks == collection.count()
    assert report.sentences is not None and report.sentences.added > 0
    assert "BM25 rebuilt" in report.summary() and report.to_dict()["sentences"]["added"] > 0
    assert open_bm25_index(collection).fingerprint == collection_fingerprint(collection)
    again = update_indexes(collection)  # nothing changed: no model needed, nothing rebuilt
    assert not again.bm25_rebuilt and again.sentences.embedded == 0


def test_the_first_search_after_ingest_builds_nothing(collection, model, monkeypatch):
    """Retrievers only open indexes: no embedding of documents, no new collection, no BM25 build."""
    from rag_helpers.registry import RETRIEVERS, make_retriever

    update_indexes(collection, model)
    client = get_client_of(collection)
    before = sorted(c.name for c in client.list_collections())

    def refuse(*args, **kwargs):
        raise AssertionError("a retriever built an index")

    monkeypatch.setattr(store, "embed", refuse)  # ingest's embedding of chunks and sentences
    monkeypatch.setattr(BM25Index, "build", refuse)
    monkeypatch.setattr(store, "get_collection", refuse)  # creating a collection
    for name in RETRIEVERS:
        hits = make_retriever(name, collection, model)("What does error code E14 mean?", 2)
        assert hits, name
    assert sorted(c.name for c in client.list_collections()) == before


def get_client_of(collection):
    return store.client_of(collection)


# --- ensure_index ----------------------------------------------------------------------------


def test_ensure_index_builds_every_index_once_and_follows_the_folder(tmp_path, clean_settings, model, monkeypatch):
    from rag_helpers.indexes import ensure_index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in TEXTS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    splitter = CharacterSplitter(60, 5)
    collection, returned_model = ensure_index(clean_settings, corpus, model=model, splitter=splitter, progress=False)
    assert returned_model is model
    assert open_bm25_index(collection).ids and open_sentence_index(collection).count() >= len(TEXTS)

    (corpus / "pets.md").unlink()
    collection, _ = ensure_index(clean_settings, corpus, model=model, splitter=splitter, progress=False)
    assert not collection.get(where={"document_id": "pets.md"})["ids"]
    assert not open_sentence_index(collection).get(where={"document_id": "pets.md"})["ids"]
    assert all(not i.startswith("pets.md") for i in open_bm25_index(collection).ids)

    monkeypatch.setattr(store, "embed", lambda *a, **k: pytest.fail("an unchanged folder was re-embedded"))
    monkeypatch.setattr(BM25Index, "build", lambda *a, **k: pytest.fail("an unchanged BM25 index was rebuilt"))
    ensure_index(clean_settings, corpus, model=model, splitter=splitter, progress=False)
