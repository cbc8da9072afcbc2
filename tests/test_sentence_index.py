"""Tests for rag_helpers.sentence_index: the sentence index file, kept in step by ingest, and its search."""

from __future__ import annotations

import numpy as np
import pytest

from rag_helpers import ingest as ingest_module
from rag_helpers import sentence_index, store
from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.documents import Document
from rag_helpers.embeddings import embed
from rag_helpers.ingest import ingest, update_indexes, update_sentence_index
from rag_helpers.keyword_index import BM25Index, open_bm25_index
from rag_helpers.sentence_index import (
    BUILT_FROM_KEY,
    allowed_rows,
    documents_from_collection,
    matches_document_filter,
    open_sentence_index,
    plan_sentence_index,
    sentence_chunks,
    sentence_collection_name,
)
from rag_helpers.store import IndexNotBuiltError, collection_fingerprint, get_client, get_collection

from test_keyword_index import TEXT, TEXTS, collection, make_documents  # noqa: F401 - shared fixtures


# --- documents and sentences ------------------------------------------------------------------


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


# --- building and updating --------------------------------------------------------------------


def test_the_sentence_index_is_a_file_updated_incrementally(collection, model, embedded_texts):
    name = sentence_collection_name(collection)
    assert name == "kw_test__sentences"
    index, report = update_sentence_index(collection, model)
    assert index.name == name and report.embedded == report.added == index.count() >= collection.count()
    assert open_sentence_index(collection).count() == index.count()
    assert index.path.parent == store.index_files_root(collection) and index.path.name.startswith(f"{name}@")
    assert name not in [c.name for c in store.client_of(collection).list_collections()]  # no Chroma copy
    first_count = index.count()

    embedded = embedded_texts
    embedded.clear()
    _, again = update_sentence_index(collection, model)
    assert embedded == [] and again.embedded == 0 and again.skipped == first_count  # unchanged: nothing embedded

    changed = dict(TEXTS, **{"pets.md": "A zebra is welcome in the Porto office. Cats are not."})
    docs = make_documents(changed)
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    with pytest.raises(IndexNotBuiltError, match="older than its chunks"):
        open_sentence_index(collection)
    embedded.clear()
    _, report = update_sentence_index(collection, model)
    # Only the changed document's new sentences are embedded; the others keep their vectors.
    assert embedded == ["A zebra is welcome in the Porto office.", "Cats are not."]
    assert (report.added, report.updated, report.removed, report.embedded) == (1, 1, 0, 2)
    assert open_sentence_index(collection).count() == first_count + 1

    # A sentence whose text the index already holds is not embedded again, wherever it moves.
    docs = make_documents(dict(changed, **{"pets.md": "Cats are not. A zebra is welcome in the Porto office."}))
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    embedded.clear()
    _, report = update_sentence_index(collection, model)
    assert embedded == [] and report.updated == 2 and report.embedded == 0

    # A document that is gone loses its sentences.
    docs = make_documents({k: v for k, v in changed.items() if k != "pets.md"})
    ingest(collection, chunk_documents(docs), model, progress=False, documents=[*docs, "pets.md"])
    index, report = update_sentence_index(collection, model)
    assert report.removed == 2 and "pets.md" not in set(index.documents) and embedded == []


def test_sentence_vectors_are_those_of_each_sentence_alone(collection, model):
    """The packed pass gives every sentence the vector `embed` gives it on its own."""
    index, _ = update_sentence_index(collection, model)
    documents = {d.id: d.text for d in documents_from_collection(collection)}
    texts = [documents[str(d)][s:e] for d, s, e in zip(index.document_ids, index.starts, index.ends)]
    np.testing.assert_allclose(index.vectors, embed(texts, model, progress=False), atol=1e-5)
    first, last = index.rows("pets.md")
    assert index.numbers[first:last].tolist() == list(range(last - first))
    assert [documents["pets.md"][s:e] for s, e in index.spans("pets.md")] == [
        c.text for c in sentence_chunks([Document("pets.md", documents["pets.md"], "pets.md")])
    ]


def test_an_unchanged_index_is_decided_from_its_header_and_metadata_changes_need_no_rebuild(
    collection, model, monkeypatch
):
    update_sentence_index(collection, model)
    monkeypatch.setattr(ingest_module, "plan_sentence_index", lambda *a, **k: pytest.fail("re-planned"))
    monkeypatch.setattr(ingest_module, "collection_model", lambda *a, **k: pytest.fail("loaded the model"))
    index, again = update_sentence_index(collection)
    assert again.skipped == again.chunks == again.count == index.count() > 0 and again.embedded == 0
    assert "not loaded" in repr(index) and index.vectors.shape[0] == index.count()  # loads when asked

    # Same texts, new metadata: the chunks' fingerprint stays, so the sentence index stays as it is;
    # filters read the chunks' metadata, so they see the new labels at once.
    docs = [Document(d.id, d.text, d.source, {"category": "archive"}) for d in make_documents(TEXTS)]
    ingest(collection, chunk_documents(docs), None, progress=False, documents=docs)
    _, relabelled = update_sentence_index(collection, documents=docs)
    assert relabelled.embedded == relabelled.updated == 0 and relabelled.skipped == relabelled.count
    opened = open_sentence_index(collection)
    assert allowed_rows(opened, collection, where={"category": "archive"}).tolist() == list(range(opened.count()))
    assert allowed_rows(opened, collection, where={"category": "notes"}).tolist() == []


def test_a_change_writes_a_new_file_and_removes_the_old_one(collection, model):
    index, _ = update_sentence_index(collection, model)
    old_path = index.path
    docs = make_documents(dict(TEXTS, **{"pets.md": "A zebra is welcome in the Porto office."}))
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    index, _ = update_sentence_index(collection, model)
    paths = list(old_path.parent.glob("kw_test__sentences@*.npz"))
    assert paths == [index.path] and index.path != old_path
    assert index.spans("pets.md") == [(0, len("A zebra is welcome in the Porto office."))]


def test_plan_reuses_unchanged_documents_without_splitting_them(monkeypatch):
    docs = make_documents(TEXTS)
    first = plan_sentence_index("x__sentences", docs, None, "f1", "m fp32", dim=3)
    assert len(first.texts) == first.index.count() == first.added and first.skipped == 0
    first.index.vectors[first.missing] = np.eye(3, dtype=np.float32)[np.arange(len(first.missing)) % 3]
    splits = []
    real = sentence_index.sentence_spans
    monkeypatch.setattr(sentence_index, "sentence_spans", lambda text: splits.append(text) or real(text))
    again = plan_sentence_index("x__sentences", docs, first.index, "f2", "m fp32")
    assert splits == [] and again.texts == [] and again.skipped == first.index.count()
    np.testing.assert_array_equal(again.index.vectors, first.index.vectors)
    other_model = plan_sentence_index("x__sentences", docs, first.index, "f2", "m bf16", dim=3)
    assert len(other_model.texts) == first.index.count()  # vectors of another model are not reused


# --- opening, the legacy collection, and search -------------------------------------------------


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
    assert not again.bm25_rebuilt and again.sentences.embedded == 0 and not again.legacy_sentences_removed


def test_the_chroma_sentence_collection_of_an_older_version_is_deleted_and_said(collection, model):
    client = store.client_of(collection)
    legacy = client.create_collection("kw_test__sentences", metadata={BUILT_FROM_KEY: "old"})
    legacy.add(ids=["a"], embeddings=[[0.0] * 384])
    report = update_indexes(collection, model)
    assert report.legacy_sentences_removed and "Deleted the old Chroma collection" in report.summary()
    assert "kw_test__sentences" not in [c.name for c in client.list_collections()]


def test_search_is_exact_and_filters_apply(collection, model):
    index, _ = update_sentence_index(collection, model)
    query = embed(["Is a dog welcome in the office?"], model, progress=False)[0]
    found = index.search(query, 3)
    expected = np.argsort(-(index.vectors @ query), kind="stable")[:3]
    assert [row for row, _ in found] == expected.tolist()
    assert index.hit(*found[0]).id.startswith("pets.md#s")
    hit = index.hit(found[0][0], found[0][1], space="cosine")
    assert hit.distance == pytest.approx(1 - found[0][1], abs=1e-6)

    notes = allowed_rows(index, collection, where={"category": "notes"})
    assert {str(index.document_ids[row]) for row in notes} == {"kafka.md", "hotel.md", "firmware.md"}
    assert all(str(index.document_ids[row]) != "pets.md" for row, _ in index.search(query, 3, notes))
    texts = {d.id: d.text for d in documents_from_collection(collection)}
    cap = allowed_rows(index, collection, where_document={"$contains": "cap"}, texts=texts)
    assert [str(index.document_ids[row]) for row in cap] == ["hotel.md"]
    assert index.search(query, 3, np.zeros(0, dtype=np.int64)) == []


@pytest.mark.parametrize(
    ("where_document", "expected"),
    [
        ({"$contains": "cap"}, True),
        ({"$not_contains": "cap"}, False),
        ({"$regex": r"\d+ euros"}, True),
        ({"$not_regex": "London"}, False),
        ({"$and": [{"$contains": "hotel"}, {"$contains": "pounds"}]}, True),
        ({"$or": [{"$contains": "zebra"}, {"$contains": "Kafka"}]}, False),
    ],
)
def test_document_filters_on_a_sentence(where_document, expected):
    assert matches_document_filter(TEXTS["hotel.md"], where_document) is expected


def test_an_unknown_document_filter_is_a_clear_error():
    with pytest.raises(ValueError, match=r"\$contains"):
        matches_document_filter("text", {"$like": "x"})


def test_the_first_search_after_ingest_builds_nothing(collection, model, monkeypatch):
    """Retrievers only open indexes: no embedding of documents, no new collection, no BM25 build."""
    from rag_helpers.registry import RETRIEVERS, make_retriever

    update_indexes(collection, model)
    client = store.client_of(collection)
    before = sorted(c.name for c in client.list_collections())

    def refuse(*args, **kwargs):
        raise AssertionError("a retriever built an index")

    monkeypatch.setattr(ingest_module, "embed", refuse)  # ingest's embedding of chunks and sentences
    monkeypatch.setattr(BM25Index, "build", refuse)
    monkeypatch.setattr(store, "get_collection", refuse)  # creating a collection
    monkeypatch.setattr(sentence_index, "save_sentence_index", refuse)
    for name in RETRIEVERS:
        hits = make_retriever(name, collection, model)("What does error code E14 mean?", 2)
        assert hits, name
    assert sorted(c.name for c in client.list_collections()) == before
