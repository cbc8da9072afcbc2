"""Sentence-window retrieval: search small pieces, return the text around them.

A 1000-character chunk has one vector for many ideas, so a question about one of them matches it
only loosely. Here every *sentence* (list item, table row, heading) gets its own vector in a second
collection, `<collection>__sentences`; a query finds the best sentences, and each hit is widened to
a window of about `window_chars` characters of its document (whole sentences) before it is
returned, so the reader still gets context. Overlapping windows are returned once.

    sentences = build_sentence_index(collection, model)   # once; idempotent (store.ingest)
    retriever = SentenceWindowRetriever(collection, model)
    retriever("How long do I have to file a claim?", k=5)  # windows as RetrievedChunk

The documents are rebuilt from the main collection's chunks (their metadata has document_id,
start and end), so no access to the original files is needed; pass `documents=` to use them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .chunking import Chunk, sentence_spans
from .documents import Document
from .keyword import check_query, read_collection
from .store import (
    CHUNK_KEYS,
    RetrievedChunk,
    collection_distance,
    get_collection,
    ingest,
    similarity_from_distance,
)

SENTENCES_SUFFIX = "__sentences"
DEFAULT_WINDOW_CHARS = 1000


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
    chunks = []
    for document in documents:
        for number, (start, end) in enumerate(sentence_spans(document.text)):
            chunks.append(
                Chunk(
                    id=f"{document.id}#s{number}",
                    text=document.text[start:end],
                    document_id=document.id,
                    index=number,
                    start=start,
                    end=end,
                    metadata=dict(document.metadata),
                )
            )
    return chunks


def sentence_collection_name(collection: Any) -> str:
    """The name of the sentence collection that belongs to `collection`."""
    return f"{collection.name}{SENTENCES_SUFFIX}"


def client_of(collection: Any) -> Any:
    """A Chroma client for the same index as `collection` (embedded folder or server)."""
    import chromadb

    return chromadb.Client(
        collection._client.get_settings(), tenant=collection.tenant, database=collection.database
    )


def build_sentence_index(
    collection: Any,
    model: Any,
    documents: Sequence[Document] | None = None,
    progress: bool = False,
) -> Any:
    """Create or refresh `<collection>__sentences` from the collection's documents; returns it.

    Idempotent: `store.ingest` embeds only new or changed sentences and removes those of documents
    that are gone, so calling it on an unchanged collection costs one scan.
    """
    docs = list(documents) if documents is not None else documents_from_collection(collection)
    sentences = get_collection(
        client_of(collection),
        sentence_collection_name(collection),
        model,
        distance=collection_distance(collection),
    )
    ingest(sentences, sentence_chunks(docs), model, progress=progress, prune=True, documents=docs)
    return sentences


@dataclass(frozen=True)
class _Doc:
    text: str
    spans: list[tuple[int, int]]
    metadata: dict[str, Any]


def widen(spans: Sequence[tuple[int, int]], index: int, window_chars: int) -> tuple[int, int]:
    """The first and last sentence of the window around sentence `index`: add neighbours, after then
    before, while the window stays within `window_chars` (it always holds the sentence itself)."""
    low = high = index
    start, end = spans[index]
    grew = True
    while grew:
        grew = False
        if high + 1 < len(spans) and spans[high + 1][1] - start <= window_chars:
            high += 1
            end = spans[high][1]
            grew = True
        if low > 0 and end - spans[low - 1][0] <= window_chars:
            low -= 1
            start = spans[low][0]
            grew = True
    return low, high


class SentenceVectors:
    """The stored vectors of the sentences inside each chunk, read from the sentence collection.

    For `rerank.SentenceReranker(sentence_vectors=...)`: re-ranking then embeds only the query.
    A sentence belongs to a chunk when at least half of it lies inside the chunk's span. Each
    document's sentences are read from Chroma once and kept in memory.
    """

    def __init__(self, sentences: Any) -> None:
        self.sentences = sentences
        self._by_document: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _load(self, document_ids: Iterable[str]) -> None:
        missing = sorted({d for d in document_ids if d not in self._by_document})
        if not missing:
            return
        data = self.sentences.get(
            where={"document_id": {"$in": missing}}, include=["metadatas", "embeddings"]
        )
        found: dict[str, list[tuple[int, int, Any]]] = {d: [] for d in missing}
        for meta, vector in zip(data["metadatas"], data["embeddings"]):
            found.setdefault(str(meta["document_id"]), []).append(
                (int(meta["start"]), int(meta["end"]), vector)
            )
        for document_id, rows in found.items():
            rows.sort(key=lambda row: row[0])
            starts = np.array([r[0] for r in rows], dtype=np.int64)
            ends = np.array([r[1] for r in rows], dtype=np.int64)
            vectors = np.asarray([r[2] for r in rows], dtype=np.float32).reshape(len(rows), -1)
            self._by_document[document_id] = (starts, ends, vectors)

    def __call__(self, chunks: Sequence[RetrievedChunk]) -> list[np.ndarray]:
        self._load(c.document_id for c in chunks)
        out = []
        for chunk in chunks:
            starts, ends, vectors = self._by_document.get(
                chunk.document_id, (np.zeros(0), np.zeros(0), np.zeros((0, 1)))
            )
            inside = np.minimum(ends, chunk.end) - np.maximum(starts, chunk.start)
            out.append(vectors[inside * 2 >= (ends - starts)] if len(starts) else vectors)
        return out


class SentenceChunkRetriever:
    """Small-to-big: find the best sentences, return the chunks of the main collection that hold them.

    Each chunk is ranked by its best sentence: `score` is that sentence's cosine similarity, and the
    metadata gains `sentence_id` and `sentence_distance` (`distance` is None: the chunk's own
    distance was not computed). A chunk is returned once however many of its sentences match.
    """

    name = "sentence_chunks"

    def __init__(
        self,
        collection: Any,
        sentences: Any,
        encode: Callable[[str], np.ndarray],
        candidates: int = 100,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> None:
        self.collection = collection
        self.sentences = sentences
        self.encode = encode
        self.candidates = candidates
        self.where = where
        self.where_document = where_document
        self.space = collection_distance(sentences)
        data = read_collection(collection)
        self._chunks: dict[str, tuple[str, dict[str, Any]]] = {}
        self._spans: dict[str, list[tuple[int, int, str]]] = {}
        for chunk_id, text, meta in zip(data["ids"], data["documents"], data["metadatas"]):
            meta = dict(meta or {})
            self._chunks[chunk_id] = (text or "", meta)
            if "document_id" in meta:
                self._spans.setdefault(str(meta["document_id"]), []).append(
                    (int(meta.get("start", 0)), int(meta.get("end", 0)), chunk_id)
                )

    def chunk_of(self, document_id: str, start: int, end: int) -> str | None:
        """The id of the chunk that holds most of the span [start, end) of a document, if any."""
        best, best_overlap = None, 0
        for chunk_start, chunk_end, chunk_id in self._spans.get(document_id, []):
            overlap = min(end, chunk_end) - max(start, chunk_start)
            if overlap > best_overlap:
                best, best_overlap = chunk_id, overlap
        return best

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        result = self.sentences.query(
            query_embeddings=[self.encode(query)],
            n_results=max(self.candidates, k),
            where=dict(self.where) if self.where else None,
            where_document=dict(self.where_document) if self.where_document else None,
            include=["metadatas", "distances"],
        )
        hits: list[RetrievedChunk] = []
        seen: set[str] = set()
        for sentence_id, meta, distance in zip(
            result["ids"][0], result["metadatas"][0], result["distances"][0]
        ):
            meta = meta or {}
            chunk_id = self.chunk_of(
                str(meta.get("document_id")), int(meta.get("start", 0)), int(meta.get("end", 0))
            )
            if chunk_id is None or chunk_id in seen:
                continue
            seen.add(chunk_id)
            text, chunk_meta = self._chunks[chunk_id]
            d = float(distance)
            # The distance is the sentence's, not the chunk's: it goes in the metadata, not in `distance`.
            extra = {"sentence_id": sentence_id, "sentence_distance": d}
            hits.append(
                RetrievedChunk(
                    chunk_id, text, None, similarity_from_distance(d, self.space), {**chunk_meta, **extra}
                )
            )
            if len(hits) == k:
                break
        return hits

    def __repr__(self) -> str:
        return f"SentenceChunkRetriever({self.sentences.name!r}, candidates={self.candidates})"


class SentenceWindowRetriever:
    """Find the best sentences, return each one's window of about `window_chars` characters."""

    name = "sentence_window"

    def __init__(
        self,
        collection: Any,
        model: Any,
        *,
        encode: Callable[[str], np.ndarray] | None = None,
        documents: Sequence[Document] | None = None,
        window_chars: int = DEFAULT_WINDOW_CHARS,
        candidates: int = 40,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> None:
        if window_chars < 1:
            raise ValueError(f"window_chars must be positive, got {window_chars}")
        docs = list(documents) if documents is not None else documents_from_collection(collection)
        self.sentences = build_sentence_index(collection, model, docs, progress=progress)
        self.space = collection_distance(self.sentences)
        self.documents = {d.id: _Doc(d.text, sentence_spans(d.text), dict(d.metadata)) for d in docs}
        if encode is None:
            from .embeddings import embed_one

            def encode(text: str) -> np.ndarray:
                return embed_one(text, model)

        self.encode = encode
        self.window_chars = window_chars
        self.candidates = candidates
        self.where = where
        self.where_document = where_document

    def window(self, document_id: str, sentence: int) -> tuple[int, int]:
        """Character span of the window around sentence number `sentence` of a document."""
        doc = self.documents[document_id]
        low, high = widen(doc.spans, sentence, self.window_chars)
        return doc.spans[low][0], doc.spans[high][1]

    def search_sentences(self, query: str, n: int) -> list[RetrievedChunk]:
        """The `n` sentences closest to the query (the small pieces, before widening)."""
        result = self.sentences.query(
            query_embeddings=[self.encode(query)],
            n_results=n,
            where=dict(self.where) if self.where else None,
            where_document=dict(self.where_document) if self.where_document else None,
            include=["documents", "metadatas", "distances"],
        )
        return [
            RetrievedChunk(
                i, t or "", float(d), similarity_from_distance(float(d), self.space), dict(m or {})
            )
            for i, t, m, d in zip(
                result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0]
            )
        ]

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        windows: list[RetrievedChunk] = []
        taken: dict[str, list[tuple[int, int]]] = {}
        for hit in self.search_sentences(query, max(self.candidates, k)):
            document_id = hit.document_id
            if document_id not in self.documents:
                continue  # the sentence index is older than the documents given
            start, end = self.window(document_id, int(hit.metadata.get("chunk_index", 0)))
            if any(start < e and s < end for s, e in taken.get(document_id, [])):
                continue  # overlaps a window already returned
            taken.setdefault(document_id, []).append((start, end))
            doc = self.documents[document_id]
            metadata = {
                **doc.metadata,
                "document_id": document_id,
                "start": start,
                "end": end,
                "sentence_id": hit.id,
                "sentence_start": hit.start,
                "sentence_end": hit.end,
                "sentence_distance": hit.distance,
            }
            # The window has no distance of its own; its score is its best sentence's similarity.
            windows.append(
                RetrievedChunk(f"{document_id}@{start}-{end}", doc.text[start:end], None, hit.score, metadata)
            )
            if len(windows) == k:
                break
        return windows

    def __repr__(self) -> str:
        return f"SentenceWindowRetriever({self.sentences.name!r}, window_chars={self.window_chars})"


__all__ = [
    "DEFAULT_WINDOW_CHARS",
    "SENTENCES_SUFFIX",
    "SentenceChunkRetriever",
    "SentenceVectors",
    "SentenceWindowRetriever",
    "build_sentence_index",
    "client_of",
    "documents_from_collection",
    "sentence_chunks",
    "sentence_collection_name",
    "widen",
]
