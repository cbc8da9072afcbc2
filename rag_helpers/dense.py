"""Dense search as a retriever: the chunks whose vectors lie closest to the question's.

The search itself is `store.retrieve` (one entry point for a question or a query vector); this
module wraps it in the `Retriever` shape, with Chroma filters fixed once:

    retriever = DenseRetriever(collection)                  # embeds with the collection's model
    retriever = DenseRetriever(collection, QueryEncoder(model), where={"year": 2024})
    retriever("What is the hotel cap in London?", k=5)      # -> list[RetrievedChunk], best first
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .base import RetrievedChunk, check_query
from .store import SearchScope, retrieve


class DenseRetriever:
    """Dense retrieval: `retriever(query, k)` -> `store.retrieve(collection, query, k, where, where_document)`.

    With `encode` (e.g. an `embeddings.QueryEncoder`) the question is embedded by it, so several
    retrievers share one embedding per question; without it Chroma embeds it with the collection's
    own model.
    """

    name = "dense"

    def __init__(
        self,
        collection: Any,
        encode: Callable[[str], np.ndarray] | None = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> None:
        self.collection = collection
        self.encode = encode
        self.where = where
        self.where_document = where_document

    @classmethod
    def from_scope(cls, scope: SearchScope) -> DenseRetriever:
        """Nearest chunks by embedding (the original tutorial's search)."""
        return cls(scope.collection, scope.encode, scope.where, scope.where_document)

    def search_vector(self, vector: np.ndarray, k: int) -> list[RetrievedChunk]:
        """The `k` chunks nearest to an already embedded query vector."""
        return retrieve(self.collection, vector, k, self.where, self.where_document)

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        if self.encode is None:
            return retrieve(self.collection, query, k, self.where, self.where_document)
        return self.search_vector(self.encode(query), k)

    def __repr__(self) -> str:
        where = f", where={self.where!r}" if self.where else ""
        where += f", where_document={self.where_document!r}" if self.where_document else ""
        return f"DenseRetriever(collection={self.collection.name!r}{where})"


def dense_retriever(
    collection: Any,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
) -> DenseRetriever:
    """A retriever (`query, k -> list[RetrievedChunk]`) backed by `store.retrieve`."""
    return DenseRetriever(collection, None, where, where_document)


__all__ = ["DenseRetriever", "dense_retriever"]
