"""Tests for rag_helpers.ingest: batched, idempotent, incremental writing into real Chroma, the real model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rag_helpers import ingest, store
from rag_helpers.chunking import CharacterSplitter
from rag_helpers.embeddings import embed
from rag_helpers.keyword_index import BM25Index, open_bm25_index
from rag_helpers.sentence_index import open_sentence_index
from test_keyword_index import TEXTS
from test_store import TOPICS, client, collection, ids_of, make_chunks, make_docs, snapshot  # noqa: F401 - fixtures


# --- ingest ----------------------------------------------------------------------------------


def test_ingest_stores_text_metadata_and_vectors(collection, model):
    chunks = make_chunks()
    report = ingest.ingest(collection, chunks, model, progress=False)
    assert (report.added, report.updated, report.skipped, report.removed) == (len(chunks), 0, 0, 0)
    assert report.embedded == report.count == collection.count() == len(chunks)

    got = collection.get(ids=[c.id for c in chunks], include=["documents", "metadatas", "embeddings"])
    by_id = {
        i: (d, m, e) for i, d, m, e in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])
    }
    vectors = embed([c.text for c in chunks], model, progress=False)
    for chunk, vector in zip(chunks, vectors):
        text, meta, stored_vector = by_id[chunk.id]
        assert text == chunk.text
        assert meta == store.chunk_metadata(chunk)
        assert meta["document_id"] == chunk.document_id and meta["chunk_index"] == chunk.index
        assert (meta["start"], meta["end"]) == (chunk.start, chunk.end)
        assert meta["content_hash"] == chunk.content_hash
        assert {"category", "file_name", "extension", "encoding", "size_bytes"} <= meta.keys()
        np.testing.assert_allclose(stored_vector, vector, atol=1e-6)


def test_a_repeated_text_is_embedded_once_across_write_batches(collection, model, embedded_texts):
    from rag_helpers.base import Chunk

    footer = "Questions go to the People team."
    texts = [footer, "Leave is 25 days.", footer, "Parking is free.", footer]
    chunks = [Chunk(f"doc{i}.txt_0", text, f"doc{i}.txt", 0, 0, len(text)) for i, text in enumerate(texts)]
    report = ingest.ingest(collection, chunks, model, batch_size=2, progress=False)  # 3 write batches
    assert sorted(embedded_texts) == sorted(set(texts))  # the footer once, not three times
    assert report.embedded == report.added == collection.count() == 5
    stored = collection.get(ids=[c.id for c in chunks], include=["embeddings"])
    by_id = dict(zip(stored["ids"], stored["embeddings"]))
    expected = embed(texts, model, progress=False)
    for chunk, vector in zip(chunks, expected):
        np.testing.assert_allclose(by_id[chunk.id], vector, atol=1e-6)


def test_metadata_values_are_chroma_types_and_never_none():
    chunk = make_chunks()[0]
    chunk = dataclasses.replace(
        chunk, metadata={**chunk.metadata, "path": Path("a/b"), "missing": None, "score": np.float32(0.5)}
    )
    meta = store.chunk_metadata(chunk)
    assert meta["path"] == "a/b" and "missing" not in meta and isinstance(meta["score"], float)
    assert all(isinstance(v, (str, int, float, bool)) for v in meta.values())


def test_reingest_of_an_unchanged_corpus_embeds_nothing_and_changes_nothing(collection, model, monkeypatch):
    chunks = make_chunks()
    ingest.ingest(collection, chunks, model, progress=False)
    before = snapshot(collection)

    def refuse(*args, **kwargs):
        raise AssertionError("re-ingest embedded an unchanged chunk")

    monkeypatch.setattr(ingest, "embed", refuse)
    report = ingest.ingest(collection, chunks, model, progress=False, prune=True)
    assert (report.added, report.updated, report.removed, report.embedded) == (0, 0, 0, 0)
    assert report.skipped == len(chunks) == collection.count()
    assert snapshot(collection) == before


def test_a_shorter_document_leaves_no_stale_chunks(collection, model):
    ingest.ingest(collection, make_chunks(), model, progress=False)
    old_travel = ids_of(collection, "travel.txt")
    assert len(old_travel) >= 3
    shorter = {**TOPICS, "travel.txt": "Travel policy. Book economy class."}
    report = ingest.ingest(collection, make_chunks(shorter), model, progress=False)
    assert ids_of(collection, "travel.txt") == ["travel.txt_0"]
    assert report.removed == len(old_travel) - 1
    assert report.updated == 1 and report.embedded == 1 and report.added == 0
    assert collection.get(ids=["travel.txt_0"])["documents"] == ["Travel policy. Book economy class."]
    # The other documents were untouched.
    assert report.skipped == len(make_chunks()) - len(old_travel)


def test_a_changed_chunk_is_re_embedded(collection, model):
    ingest.ingest(collection, make_chunks(), model, progress=False)
    changed = {**TOPICS, "kitchen.md": TOPICS["kitchen.md"].replace("Friday", "Thursday")}
    report = ingest.ingest(collection, make_chunks(changed), model, progress=False)
    assert report.updated >= 1 and report.embedded == report.updated and report.added == 0
    hits = store.retrieve(collection, "Which day is the fridge cleaned?", k=1)
    assert "Thursday" in hits[0].text


def test_metadata_only_change_rewrites_metadata_without_embedding(collection, model, monkeypatch):
    chunks = make_chunks()
    ingest.ingest(collection, chunks, model, progress=False)
    relabelled = [
        dataclasses.replace(
            c, metadata={k: v for k, v in c.metadata.items() if k != "encoding"} | {"team": "ops"}
        )
        for c in chunks
    ]
    monkeypatch.setattr(ingest, "embed", lambda *a, **k: pytest.fail("metadata-only change was re-embedded"))
    report = ingest.ingest(collection, relabelled, model, progress=False)
    assert report.updated == len(chunks) and report.embedded == 0
    meta = collection.get(ids=[chunks[0].id])["metadatas"][0]
    assert meta["team"] == "ops" and "encoding" not in meta
    assert meta == store.chunk_metadata(relabelled[0])


def test_deleted_documents_stay_unless_pruned(collection, model):
    ingest.ingest(collection, make_chunks(), model, progress=False)
    remaining = {k: v for k, v in TOPICS.items() if k != "security.txt"}
    report = ingest.ingest(collection, make_chunks(remaining), model, progress=False)
    assert report.removed == 0 and ids_of(collection, "security.txt")

    report = ingest.ingest(collection, make_chunks(remaining), model, progress=False, prune=True)
    assert report.removed > 0 and ids_of(collection, "security.txt") == []
    assert {m["document_id"] for m in collection.get()["metadatas"]} == set(remaining)


def test_documents_scope_removes_a_document_that_has_no_chunks_left(collection, model):
    ingest.ingest(collection, make_chunks(), model, progress=False)
    others = {k: v for k, v in TOPICS.items() if k != "kitchen.md"}
    ingest.ingest(collection, make_chunks(others), model, progress=False, documents=["kitchen.md", *others])
    assert ids_of(collection, "kitchen.md") == []
    assert ids_of(collection, "travel.txt")


def test_interrupted_ingest_keeps_finished_batches_and_resumes(collection, model, monkeypatch):
    chunks = make_chunks()
    assert len(chunks) > 6
    real_upsert = collection.upsert
    calls = []

    def failing_upsert(**kwargs):
        calls.append(len(kwargs["ids"]))
        if len(calls) == 2:
            raise RuntimeError("disk full (simulated)")
        return real_upsert(**kwargs)

    monkeypatch.setattr(collection, "upsert", failing_upsert)
    with pytest.raises(RuntimeError, match="simulated"):
        ingest.ingest(collection, chunks, model, batch_size=3, progress=False)
    assert collection.count() == 3  # the first batch was committed
    monkeypatch.setattr(collection, "upsert", real_upsert)

    report = ingest.ingest(collection, chunks, model, batch_size=3, progress=False)
    assert report.skipped == 3 and report.added == len(chunks) - 3 and report.embedded == len(chunks) - 3
    assert sorted(ids_of(collection)) == sorted(c.id for c in chunks)


def test_batches_never_exceed_the_clients_max_batch_size(collection, model, monkeypatch):
    chunks = make_chunks()
    limit = 4
    monkeypatch.setattr(collection._client, "get_max_batch_size", lambda: limit)
    sizes = {"upsert": [], "delete": [], "get": []}
    for name in sizes:
        real = getattr(collection, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            if _name == "get":
                sizes["get"].append(kwargs.get("limit"))
            else:
                sizes[_name].append(len(kwargs["ids"]))
            return _real(*args, **kwargs)

        monkeypatch.setattr(collection, name, spy)

    report = ingest.ingest(collection, chunks, model, batch_size=1000, progress=False)
    assert report.batch_size == limit
    assert sum(sizes["upsert"]) == len(chunks) and max(sizes["upsert"]) == limit
    assert report.batches == -(-len(chunks) // limit)
    # Reading what is stored pages by the same limit and still sees everything.
    assert len(ingest.existing_metadata(collection)) == len(chunks)
    assert set(sizes["get"]) == {limit}

    # Pruning all but one document deletes in batches of the limit too (force: it is most of the collection).
    kept = [c for c in chunks if c.document_id == "kitchen.md"]
    report = ingest.ingest(collection, kept, model, prune=True, force=True, progress=False)
    assert report.removed == len(chunks) - len(kept) > limit
    assert max(sizes["delete"]) <= limit and collection.count() == len(kept)


def test_bad_input_is_refused(collection, model):
    chunk = make_chunks()[0]
    with pytest.raises(ValueError, match="Duplicate chunk ids"):
        ingest.ingest(collection, [chunk, chunk], model, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        ingest.ingest(collection, [chunk], model, batch_size=0, progress=False)


def test_report_summary_and_dict(collection, model):
    report = ingest.ingest(collection, make_chunks(), model, progress=False)
    line = report.summary()
    assert "\n" not in line and f"{report.added} added" in line and "test_collection" in line
    data = report.to_dict()
    assert data["added"] == report.added and data["collection"] == "test_collection"
    assert report.total_seconds >= report.embed_seconds + report.write_seconds


# --- retrieve --------------------------------------------------------------------------------


# --- ensure_index ----------------------------------------------------------------------------


def test_ensure_index_builds_every_index_once_and_follows_the_folder(tmp_path, clean_settings, model, monkeypatch):
    from rag_helpers.ingest import ensure_index

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
    assert "pets.md" not in set(open_sentence_index(collection).documents)
    assert all(not i.startswith("pets.md") for i in open_bm25_index(collection).ids)

    monkeypatch.setattr(store, "embed", lambda *a, **k: pytest.fail("an unchanged folder was re-embedded"))
    monkeypatch.setattr(BM25Index, "build", lambda *a, **k: pytest.fail("an unchanged BM25 index was rebuilt"))
    ensure_index(clean_settings, corpus, model=model, splitter=splitter, progress=False)
