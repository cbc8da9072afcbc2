"""Maximal marginal relevance (MMR): results that are relevant *and* different from each other.

Carbonell and Goldstein (1998): each step takes the candidate with the best
`lambda * sim(query, c) - (1 - lambda) * max sim(c, already picked)`. `mmr_select` is the rule
on vectors; `MMRRetriever` applies it to dense search's candidates.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .base import RetrievedChunk, check_query
from .dense import DenseRetriever
from .store import SearchScope, stored_vectors

MMR_LAMBDA = 0.8  # measured on the sample questions (bench/retrievers.py)
MMR_CANDIDATES = 20


def mmr_select(
    query_vector: np.ndarray, vectors: np.ndarray, k: int, lambda_: float = 0.5
) -> list[tuple[int, float]]:
    """Pick `k` rows of `vectors` by maximal marginal relevance; returns (row, MMR value) in pick order.

    Vectors are unit length (cosine = dot product). `lambda_=1` is plain relevance order,
    `lambda_=0` only diversity. Equal values go to the earlier row.
    """
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must be between 0 and 1, got {lambda_}")
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        return []
    relevance = vectors @ np.asarray(query_vector, dtype=np.float32)
    similarity = vectors @ vectors.T
    picked: list[tuple[int, float]] = []
    redundancy = np.zeros(len(vectors), dtype=np.float32)  # max similarity to anything picked so far
    available = np.ones(len(vectors), dtype=bool)
    for _ in range(min(k, len(vectors))):
        values = lambda_ * relevance - (1.0 - lambda_) * redundancy
        values = np.where(available, values, -np.inf)
        best = int(np.argmax(values))  # the first of equal maxima
        picked.append((best, float(values[best])))
        available[best] = False
        redundancy = similarity[best] if len(picked) == 1 else np.maximum(redundancy, similarity[best])
    return picked


class MMRRetriever:
    """Dense candidates re-picked by maximal marginal relevance: relevant, but not repeating each other.

    `score` is the MMR value at the moment each chunk was picked; `distance` is its dense distance.
    """

    name = "mmr"

    def __init__(
        self, dense: DenseRetriever, lambda_: float = MMR_LAMBDA, candidates: int = MMR_CANDIDATES
    ) -> None:
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"lambda_ must be between 0 and 1, got {lambda_}")
        if dense.encode is None:
            raise ValueError("MMRRetriever needs a DenseRetriever with an encoder (encode=QueryEncoder(model)).")
        self.dense = dense
        self.lambda_ = lambda_
        self.candidates = candidates

    @classmethod
    def from_scope(
        cls,
        scope: SearchScope,
        *,
        lambda_: float = MMR_LAMBDA,
        candidates: int = MMR_CANDIDATES,
    ) -> MMRRetriever:
        """Dense candidates re-picked for diversity (maximal marginal relevance)."""
        dense = DenseRetriever.from_scope(scope)
        return cls(dense, lambda_=lambda_, candidates=candidates)

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        vector = self.dense.encode(query)  # type: ignore[misc]
        hits = self.dense.search_vector(vector, max(k, self.candidates))
        if not hits:
            return []
        vectors = stored_vectors(self.dense.collection, [h.id for h in hits])
        picked = mmr_select(vector, vectors, k, self.lambda_)
        return [replace(hits[i], score=value) for i, value in picked]

    def __repr__(self) -> str:
        return f"MMRRetriever(lambda_={self.lambda_}, candidates={self.candidates})"


__all__ = ["MMR_LAMBDA", "MMRRetriever", "mmr_select"]
