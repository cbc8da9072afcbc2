"""Tests for rag_helpers.sentence_index: the sentence collection and its snapshot, kept in step by ingest."""

from __future__ import annotations

import numpy as np
import pytest

from rag_helpers import store
from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.documents import Document
from rag_helpers.ingest import update_indexes, update_sentence_index
from rag_helpers.keyword_index import BM25Index, open_bm25_index
from rag_helpers.sentence_index import (
    documents_from_collection,
    open_sentence_index,
    sentence_chunks,
    sentence_collection_name,
)
from rag_helpers.store import (
    IndexNotBuiltError,
    collection_fingerprint,
)
from rag_helpers.ingest import ingest
from rag_helpers.store import get_client, get_collection

from test_keyword_index import TEXT, TEXTS, collection, make_documents  # noqa: F401 - shared fixtures


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
    sentences, report = update_sentence_index(collection, model)
    assert sentences.name == "kw_test__sentences" and report.embedded == sentences.count() >= collection.count()
    assert open_sentence_index(collection).count() == sentences.count()
    first_count = sentences.count()

    embedded = embedded_texts
    embedded.clear()
    _, again = update_sentence_index(collection, model)
    assert embedded == [] and again.embedded == 0  # unchanged: nothing embedded

    changed = dict(TEXTS, **{"pets.md": "A zebra is welcome in the Porto office. Cats are not."})
    docs = make_documents(changed)
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    with pytest.raises(IndexNotBuiltError, match="older than its chunks"):
        open_sentence_index(collection)
    embedded.clear()
    _, report = update_sentence_index(collection, model)
    # Only the changed document's sentences are embedded again; the others are kept.
    assert embedded == ["A zebra is welcome in the Porto office.", "Cats are not."]
    assert (report.added, report.updated, report.removed) == (1, 1, 0)
    assert open_sentence_index(collection).count() == first_count + 1


def test_an_unchanged_sentence_index_is_not_read_but_a_relabel_reaches_it(collection, model, monkeypatch):
    update_sentence_index(collection, model)
    reads: list[str] = []
    real_read = store.read_collection

    def counting(target, *args, **kwargs):
        reads.append(target.name)
        return real_read(target, *args, **kwargs)

    monkeypatch.setattr(store, "read_collection", counting)
    _, again = update_sentence_index(collection)
    assert "kw_test__sentences" not in reads  # decided from its two fingerprints alone
    assert again.skipped == again.chunks == again.count > 0 and again.embedded == 0

    # Same texts, new metadata: the chunks' fingerprint stays, the sentences must still be relabelled.
    docs = [Document(d.id, d.text, d.source, {"category": "archive"}) for d in make_documents(TEXTS)]
    ingest(collection, chunk_documents(docs), None, progress=False, documents=docs)
    _, relabelled = update_sentence_index(collection, documents=docs)
    assert relabelled.updated == relabelled.chunks and relabelled.embedded == 0
    stored = open_sentence_index(collection).get(include=["metadatas"])["metadatas"]
    assert {m["category"] for m in stored} == {"archive"}


def test_sentence_vectors_are_snapshotted_for_fast_reranking(collection, model, monkeypatch):
    from rag_helpers.sentence_index import load_sentence_vectors, sentence_vectors_path
    from rag_helpers.rerank import SentenceVectors

    sentences, _ = update_sentence_index(collection, model)
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
    sentences, _ = update_sentence_index(collection, model)
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
