"""Sentence windows: search small pieces, return the text around them (or the chunk that holds them).

A 1000-character chunk has one vector for many ideas, so a question about one of them matches it
only loosely. The sentence index (`sentence_index`, built by ingest: one vector per sentence, list item,
table row or heading, in a file next to the BM25 index) lets a query find the best *sentences*:

* `SentenceWindowRetriever` widens each hit to a window of about `window_chars` characters of its
  document (whole sentences) and returns that, so the reader still gets context; overlapping
  windows are returned once;
* `SentenceChunkRetriever` (small-to-big) returns the chunk of the main collection that holds
  each hit, ranked by its best sentence.

    retriever = SentenceWindowRetriever.from_scope(SearchScope.of(collection))  # opens the index; builds nothing
    retriever("How long do I have to file a claim?", k=5)             # windows as RetrievedChunk

The documents are rebuilt from the main collection's chunks (their metadata has document_id,
start and end), so no access to the original files is needed. The sentences are searched exactly,
with one matrix product over their vectors; the retriever's `where` filter selects the sentences of
the chunks that match it, `where_document` tests each sentence's own text (`sentence_index.allowed_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import RetrievedChunk, check_query
from .sentence_index import SentenceIndex, allowed_rows, documents_from_collection, open_sentence_index
from .store import SearchScope, collection_distance, read_collection

DEFAULT_WINDOW_CHARS = 1000


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


def sentence_spans_by_document(sentences: SentenceIndex) -> dict[str, list[tuple[int, int]]]:
    """Each document's sentence spans as the sentence index stored them, in sentence order."""
    return sentences.spans_by_document()


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
        sentences: SentenceIndex,
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
        self.space = collection_distance(collection)
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
        texts = None
        if where_document:
            texts = {d.id: d.text for d in documents_from_collection(collection, data)}
        self._rows = allowed_rows(sentences, collection, where, where_document, texts)

    @classmethod
    def from_scope(
        cls,
        scope: SearchScope,
        *,
        candidates: int = 100,
    ) -> SentenceChunkRetriever:
        """Chunks ranked by their best-matching sentence (small-to-big), from the sentence index."""
        sentences = open_sentence_index(scope.collection)
        return cls(scope.collection, sentences, scope.encode, candidates, scope.where, scope.where_document)

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
        found = self.sentences.search(self.encode(query), max(self.candidates, k), self._rows)
        hits: list[RetrievedChunk] = []
        seen: set[str] = set()
        for row, score in found:
            sentence = self.sentences.hit(row, score, space=self.space)
            chunk_id = self.chunk_of(sentence.document_id, sentence.start, sentence.end)
            if chunk_id is None or chunk_id in seen:
                continue
            seen.add(chunk_id)
            text, chunk_meta = self._chunks[chunk_id]
            # The distance is the sentence's, not the chunk's: it goes in the metadata, not in `distance`.
            extra = {"sentence_id": sentence.id, "sentence_distance": sentence.distance}
            hits.append(RetrievedChunk(chunk_id, text, None, sentence.score, {**chunk_meta, **extra}))
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
        sentences: SentenceIndex,
        documents: Sequence[Any],
        encode: Callable[[str], np.ndarray],
        *,
        window_chars: int = DEFAULT_WINDOW_CHARS,
        candidates: int = 40,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        collection: Any = None,
    ) -> None:
        if window_chars < 1:
            raise ValueError(f"window_chars must be positive, got {window_chars}")
        if where and collection is None:
            raise ValueError("A `where` filter needs the collection whose chunk metadata it tests: pass collection=.")
        self.sentences = sentences
        spans = sentence_spans_by_document(sentences)
        self.documents = {
            d.id: _Doc(d.text, spans[d.id], dict(d.metadata)) for d in documents if d.id in spans
        }
        self.encode = encode
        self.window_chars = window_chars
        self.candidates = candidates
        self.where = where
        self.where_document = where_document
        self.space = collection_distance(collection) if collection is not None else "l2"
        texts = {document_id: doc.text for document_id, doc in self.documents.items()}
        self._rows = allowed_rows(sentences, collection, where, where_document, texts)

    @classmethod
    def from_scope(
        cls,
        scope: SearchScope,
        *,
        window_chars: int = DEFAULT_WINDOW_CHARS,
        candidates: int = 40,
    ) -> SentenceWindowRetriever:
        """Search single sentences, return the ~1000 characters around each (sentence windows)."""
        return cls(
            open_sentence_index(scope.collection),
            documents_from_collection(scope.collection),
            scope.encode,
            window_chars=window_chars,
            candidates=candidates,
            collection=scope.collection,
            **scope.filters,
        )

    def window(self, document_id: str, sentence: int) -> tuple[int, int]:
        """Character span of the window around sentence number `sentence` of a document."""
        doc = self.documents[document_id]
        low, high = widen(doc.spans, sentence, self.window_chars)
        return doc.spans[low][0], doc.spans[high][1]

    def search_sentences(self, query: str, n: int) -> list[RetrievedChunk]:
        """The `n` sentences closest to the query (the small pieces, before widening)."""
        hits = []
        for row, score in self.sentences.search(self.encode(query), n, self._rows):
            doc = self.documents.get(str(self.sentences.document_ids[row]))
            start, end = int(self.sentences.starts[row]), int(self.sentences.ends[row])
            text, metadata = (doc.text[start:end], doc.metadata) if doc is not None else ("", {})
            hits.append(self.sentences.hit(row, score, text, self.space, metadata))
        return hits

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        windows: list[RetrievedChunk] = []
        taken: dict[str, list[tuple[int, int]]] = {}
        for hit in self.search_sentences(query, max(self.candidates, k)):
            document_id = hit.document_id
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
    "SentenceChunkRetriever",
    "SentenceWindowRetriever",
    "sentence_spans_by_document",
    "widen",
]
