"""Keyword search: BM25 over a collection's chunks, and its retriever.

Dense vectors find text that *means* the same; BM25 finds text that *says* the same words, which
wins on names, numbers and codes ("ADR-0019", "€165", "Lantern S3"). The index itself (tokenising,
`BM25Index`, where it is saved) lives in `keyword_index`, because ingest builds it; this module searches it:

    retriever = BM25Retriever.from_scope(SearchScope.of(collection))
    retriever("hotel cap London", k=5)       # -> list[RetrievedChunk], best first

Tokenising is deliberately simple and needs no downloads: lower case, words and numbers, English
stop words removed, and a light suffix-stripping stemmer (`light_stem`) so "claims" matches "claim".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .base import RetrievedChunk, check_query
from .keyword_index import BM25Index, BM25Params, open_bm25_index
from .store import SearchScope
from .text import light_stem, tokenize  # noqa: F401 - the technique's vocabulary


# --- The retriever ----------------------------------------------------------------------------


def filter_mask(
    collection: Any,
    index: BM25Index,
    where: Mapping[str, Any] | None,
    where_document: Mapping[str, Any] | None,
) -> np.ndarray | None:
    """A boolean mask of the index rows that match Chroma's `where` / `where_document` filters (None: all)."""
    if not where and not where_document:
        return None
    allowed = set(
        collection.get(
            where=dict(where) if where else None,
            where_document=dict(where_document) if where_document else None,
            include=[],
        )["ids"]
    )
    return np.fromiter((chunk_id in allowed for chunk_id in index.ids), dtype=bool, count=len(index.ids))


class BM25Retriever:
    """Keyword retriever: `retriever(query, k)` -> the k chunks with the highest BM25 score."""

    name = "bm25"

    def __init__(
        self,
        index: BM25Index,
        collection: Any = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> None:
        if (where or where_document) and collection is None:
            raise ValueError("filters (where / where_document) need the collection: pass collection=...")
        self.index = index
        self.collection = collection
        self.where = where
        self.where_document = where_document
        self._mask = filter_mask(collection, index, where, where_document) if collection is not None else None

    @classmethod
    def from_scope(cls, scope: SearchScope, params: BM25Params = BM25Params()) -> BM25Retriever:
        """Keyword search (BM25) over the collection's index, built by ingest; needs no model."""
        index = open_bm25_index(scope.collection, params)
        return cls(index, scope.collection, scope.where, scope.where_document)

    def refresh(self) -> BM25Retriever:
        """Pick up an index rebuilt since (after a new ingest of the collection)."""
        self.index = open_bm25_index(self.collection, self.index.params)
        self._mask = filter_mask(self.collection, self.index, self.where, self.where_document)
        return self

    def search(
        self, query: str | Sequence[str], k: int = 5, weights: Mapping[str, float] | None = None
    ) -> list[RetrievedChunk]:
        """Like calling the retriever, but also takes tokens and per-term weights (for query expansion)."""
        check_query(query if isinstance(query, str) else " ".join(query), k)
        return [self.index.chunk(i, s) for i, s in self.index.search(query, k, self._mask, weights)]

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        return self.search(query, k)

    def __repr__(self) -> str:
        where = f", where={self.where!r}" if self.where else ""
        where += f", where_document={self.where_document!r}" if self.where_document else ""
        return f"BM25Retriever({len(self.index)} chunks{where})"


__all__ = ["BM25Retriever", "filter_mask"]
