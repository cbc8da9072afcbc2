"""The sentence index of a collection: one vector per sentence of every document, for sentence
windows, small-to-big and re-ranking.

It lives in a second Chroma collection, `<collection>__sentences` (searched by the sentence
retrievers of `windows`), and its vectors are also snapshotted to a NumPy file next to the BM25
index (`sentence_vectors_path`), which re-ranking reads instead of querying Chroma per document.
`ingest` writes both; this module names them, checks that they match the chunks, and opens them:
`open_sentence_index` raises `store.IndexNotBuiltError` saying how to build a missing or stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.errors import NotFoundError

from .base import CHUNK_KEYS, Chunk, Document
from .chunking import chunk_documents, sentence_spans
from .store import (
    BUILD_HELP,
    IndexNotBuiltError,
    chunk_metadata,
    client_of,
    collection_fingerprint,
    index_files_root,
    read_collection,
)

SENTENCES_SUFFIX = "__sentences"
# Metadata key of the sentence collection: the fingerprint of the chunks it was built from.
BUILT_FROM_KEY = "built_from_fingerprint"
# ... and a hash of the sentences it holds (ids, offsets, texts, model, distance): when both match, an
# unchanged re-run skips reading its thousands of records back.
SENTENCES_KEY = "sentences_fingerprint"


def sentence_collection_name(collection: Any) -> str:
    """The name of the sentence collection that belongs to `collection`."""
    return f"{collection.name}{SENTENCES_SUFFIX}"


def documents_from_collection(collection: Any) -> list[Document]:
    """The documents of a collection, pieced together from their chunks' text and offsets.

    Characters no chunk covers (whitespace a splitter dropped between chunks) become line breaks.
    """
    data = read_collection(collection)
    pieces: dict[str, list[tuple[int, str]]] = {}
    metadata: dict[str, dict[str, Any]] = {}
    for text, meta in zip(data["documents"], data["metadatas"]):
        meta = dict(meta or {})
        if "document_id" not in meta or "start" not in meta:
            raise ValueError(
                f"Collection {collection.name!r} has chunks without document_id/start metadata, so its "
                "documents cannot be rebuilt; it was not written by store.ingest. Pass documents=... instead."
            )
        document_id = str(meta["document_id"])
        pieces.setdefault(document_id, []).append((int(meta["start"]), text or ""))
        metadata.setdefault(document_id, {k: v for k, v in meta.items() if k not in CHUNK_KEYS})
    documents = []
    for document_id in sorted(pieces):
        length = max(start + len(text) for start, text in pieces[document_id])
        characters = ["\n"] * length
        for start, text in sorted(pieces[document_id]):
            characters[start : start + len(text)] = text
        documents.append(Document(document_id, "".join(characters), document_id, metadata[document_id]))
    return documents


def sentence_chunks(documents: Iterable[Document]) -> list[Chunk]:
    """Every sentence of every document as a `Chunk` (id `<document>#s<n>`), with offsets in its document."""
    return chunk_documents(documents, sentence_spans, id_format="{document}#s{index}")


def sentences_digest(chunks: Sequence[Chunk], model: str, distance: str) -> str:
    """A hash of what the sentence collection must hold: every sentence's id and stored metadata, and
    the model (name and precision) and distance of its vectors."""
    rows = [[c.id, chunk_metadata(c)] for c in chunks]  # the metadata has the offsets and text hash
    payload = json.dumps([model, distance, rows], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def up_to_date_sentences(client: Any, name: str, built_from: str, digest: str) -> Any:
    """The sentence collection if built from these chunks and holding exactly these sentences, else None."""
    try:
        sentences = client.get_collection(name, embedding_function=None)
    except (NotFoundError, ValueError):
        return None
    metadata = sentences.metadata or {}
    if metadata.get(BUILT_FROM_KEY) == built_from and metadata.get(SENTENCES_KEY) == digest:
        return sentences
    return None


# Reading a document's sentence vectors back from Chroma costs 20-50 ms (all 5316 of the sample
# corpus: 1 s); the same vectors from a NumPy file next to the BM25 index load in milliseconds. The
# file is named after the sentence collection's own fingerprint, so a stale one is never read.


def sentence_vectors_path(collection: Any, digest: str) -> Path:
    """The snapshot file of the sentence vectors of `collection` whose sentences hash to `digest`."""
    return index_files_root(collection) / f"{sentence_collection_name(collection)}@{digest[:16]}.npz"


def save_sentence_vectors(collection: Any, sentences: Any, digest: str) -> Path:
    """Write every sentence's document, offsets and vector to `sentence_vectors_path` (atomically),
    removing the collection's older snapshots."""
    data = read_collection(sentences, ("metadatas", "embeddings"))
    metadatas = data["metadatas"]
    path = sentence_vectors_path(collection, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    try:
        np.savez(
            staging,
            document_id=np.array([str(m["document_id"]) for m in metadatas], dtype=str),
            start=np.array([int(m["start"]) for m in metadatas], dtype=np.int64),
            end=np.array([int(m["end"]) for m in metadatas], dtype=np.int64),
            vectors=np.asarray(data["embeddings"], dtype=np.float32).reshape(len(metadatas), -1)
            if metadatas
            else np.zeros((0, 1), dtype=np.float32),
        )
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    for old in path.parent.glob(f"{sentence_collection_name(collection)}@*.npz"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load_sentence_vectors(collection: Any, sentences: Any) -> dict[str, tuple[np.ndarray, ...]] | None:
    """{document id: (starts, ends, vectors)} of every sentence, sorted by start, from the snapshot
    of the sentence collection's current contents; None when there is none (read Chroma instead)."""
    digest = (sentences.metadata or {}).get(SENTENCES_KEY)
    path = sentence_vectors_path(collection, digest) if digest else None
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as data:
            documents, starts, ends, vectors = (data[k] for k in ("document_id", "start", "end", "vectors"))
    except (OSError, ValueError, KeyError):
        return None  # unreadable: Chroma still has every vector
    order = np.lexsort((starts, documents))
    documents, starts, ends, vectors = documents[order], starts[order], ends[order], vectors[order]
    bounds = np.flatnonzero(documents[1:] != documents[:-1]) + 1
    return {
        str(documents[rows[0]]): (starts[rows], ends[rows], vectors[rows])
        for rows in np.split(np.arange(len(documents)), bounds)
        if len(rows)
    }


def open_sentence_index(collection: Any) -> Any:
    """The sentence collection of `collection`; `IndexNotBuiltError` if missing or older than the chunks."""
    name = sentence_collection_name(collection)
    try:
        sentences = client_of(collection).get_collection(name, embedding_function=None)
    except (NotFoundError, ValueError):
        raise IndexNotBuiltError(
            f"The sentence index of collection {collection.name!r} ({name}) is missing: {BUILD_HELP}."
        ) from None
    if (sentences.metadata or {}).get(BUILT_FROM_KEY) != collection_fingerprint(collection):
        raise IndexNotBuiltError(
            f"The sentence index of collection {collection.name!r} ({name}) is older than its chunks: {BUILD_HELP}."
        )
    return sentences


__all__ = [
    "BUILT_FROM_KEY",
    "SENTENCES_KEY",
    "documents_from_collection",
    "load_sentence_vectors",
    "open_sentence_index",
    "save_sentence_vectors",
    "sentence_chunks",
    "sentence_collection_name",
    "sentence_vectors_path",
    "sentences_digest",
    "up_to_date_sentences",
]
