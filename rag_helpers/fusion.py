"""Combine several rankings of the same items into one: reciprocal rank fusion and weighted scores.

Pure functions on ids (any hashable) so they can be checked by hand:

    >>> reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"]], k=60)
    [('b', 0.0325...), ('a', 0.0322...), ('c', 0.0320...)]

*Reciprocal rank fusion* (Cormack, Clarke and Büttcher, 2009) gives an item `weight / (k + rank)`
from each ranking it appears in (rank 1 is the best) and adds them up. It looks only at ranks, so
rankings whose scores live on different scales (a cosine similarity, a BM25 score) mix without any
tuning; `k` (60 in the paper) damps the difference between the very top ranks.

`HybridRetriever` asks several retrievers (dense and BM25, say) for their candidates and fuses
their rankings with RRF; `fuse_hits` does the same for hit lists (multi-query and expansion use it).
k=60 is the one default, the paper's and Chroma's own (`chromadb.Rrf`).

*Weighted score fusion* instead rescales each ranking's scores to [0, 1] (min-max) and adds them
with weights: it keeps how far ahead an item is, but one outlier score can squash the rest.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from .base import RetrievedChunk, Retriever, check_query
from .dense import DenseRetriever
from .keyword import BM25Retriever
from .store import SearchScope
from .windows import SentenceChunkRetriever

Item = TypeVar("Item", bound=Hashable)

DEFAULT_RRF_K = 60
FUSION_CANDIDATES = 20  # chunks each fused retriever contributes


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"got {len(weights)} weights for {count} rankings; pass one weight per ranking")
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must not be negative, got {weights}")
    return weights


def _first_seen_order(rankings: Sequence[Sequence[Hashable]]) -> dict[Hashable, int]:
    """Position of each item when the rankings are read rank by rank (all rank 1s, then all rank 2s, ...)."""
    order: dict[Hashable, int] = {}
    depth = max((len(r) for r in rankings), default=0)
    for position in range(depth):
        for ranking in rankings:
            if position < len(ranking) and ranking[position] not in order:
                order[ranking[position]] = len(order)
    return order


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Item]], k: float = DEFAULT_RRF_K, weights: Sequence[float] | None = None
) -> list[tuple[Item, float]]:
    """Fuse rankings (lists of ids, best first) into one list of (id, score), best first.

    score(id) = sum over rankings of weight / (k + rank), rank counted from 1; an id missing from a
    ranking gets nothing from it, and a repeated id counts at its first rank only. Equal scores keep
    the order in which the ids first appear when the rankings are read rank by rank.
    """
    if k < 0:
        raise ValueError(f"k must be zero or more (60 is the usual choice), got {k}")
    weights = _check_weights(weights, len(rankings))
    scores: dict[Hashable, float] = {}
    for ranking, weight in zip(rankings, weights):
        seen: set[Hashable] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = _first_seen_order(rankings)
    return sorted(scores.items(), key=lambda pair: (-pair[1], order[pair[0]]))  # type: ignore[return-value]


def min_max_normalise(scores: Mapping[Item, float]) -> dict[Item, float]:
    """Rescale scores linearly to [0, 1] (best 1.0, worst 0.0); all-equal scores become 1.0."""
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    if high == low:
        return {item: 1.0 for item in scores}
    return {item: (score - low) / (high - low) for item, score in scores.items()}


def weighted_score_fusion(
    results: Sequence[Mapping[Item, float] | Sequence[tuple[Item, float]]],
    weights: Sequence[float] | None = None,
    normalise: bool = True,
) -> list[tuple[Item, float]]:
    """Fuse scored results ({id: score} or [(id, score), ...], higher is better) into (id, score), best first.

    Each result's scores are min-max normalised to [0, 1] (unless `normalise=False`), multiplied by
    its weight and added; an id missing from a result gets 0 from it. Equal totals keep the order in
    which ids first appear when the results are read rank by rank (each sorted by its own score).
    """
    weights = _check_weights(weights, len(results))
    tables = [dict(result) for result in results]
    totals: dict[Hashable, float] = {}
    for table, weight in zip(tables, weights):
        scaled = min_max_normalise(table) if normalise else table
        for item, score in scaled.items():
            totals[item] = totals.get(item, 0.0) + weight * score
    rankings = [sorted(table, key=lambda item, t=table: -t[item]) for table in tables]
    order = _first_seen_order(rankings)
    return sorted(totals.items(), key=lambda pair: (-pair[1], order[pair[0]]))  # type: ignore[return-value]


# --- Fusing hits, and the hybrid retriever ----------------------------------------------------


def fuse_hits(
    rankings: Sequence[Sequence[RetrievedChunk]],
    k: int,
    rrf_k: float = DEFAULT_RRF_K,
    weights: Sequence[float] | None = None,
) -> list[RetrievedChunk]:
    """The `k` best hits of several rankings by reciprocal rank fusion, each with its RRF score.

    A chunk found by several rankings keeps the first copy that has a dense distance (else the first).
    """
    by_id: dict[str, RetrievedChunk] = {}
    for ranking in rankings:
        for hit in ranking:
            kept = by_id.get(hit.id)
            if kept is None or (kept.distance is None and hit.distance is not None):
                by_id[hit.id] = hit
    fused = reciprocal_rank_fusion([[h.id for h in r] for r in rankings], k=rrf_k, weights=weights)
    return [replace(by_id[chunk_id], score=float(score)) for chunk_id, score in fused[:k]]


class HybridRetriever:
    """Ask several retrievers for `candidates` chunks each and fuse their rankings with RRF.

    The fused chunk keeps the first retriever's copy (its distance, if it has one) and gets the
    RRF score; `weights` give each retriever's vote its weight.
    """

    name = "hybrid"

    def __init__(
        self,
        retrievers: Sequence[Retriever],
        weights: Sequence[float] | None = None,
        rrf_k: float = DEFAULT_RRF_K,
        candidates: int = FUSION_CANDIDATES,
    ) -> None:
        if not retrievers:
            raise ValueError("HybridRetriever needs at least one retriever to fuse")
        if weights is not None and len(weights) != len(retrievers):
            raise ValueError(f"got {len(weights)} weights for {len(retrievers)} retrievers")
        self.retrievers = list(retrievers)
        self.weights = list(weights) if weights is not None else None
        self.rrf_k = rrf_k
        self.candidates = candidates

    @classmethod
    def from_scope(
        cls,
        scope: SearchScope,
        *,
        rrf_k: float = DEFAULT_RRF_K,
        weights: Sequence[float] | None = None,
        candidates: int = FUSION_CANDIDATES,
    ) -> HybridRetriever:
        """Dense + BM25, fused by reciprocal rank fusion (RRF); `weights` = (dense, bm25)."""
        parts = [DenseRetriever.from_scope(scope), BM25Retriever.from_scope(scope)]
        return cls(parts, weights=weights, rrf_k=rrf_k, candidates=candidates)

    def rankings(self, query: str, k: int) -> list[list[RetrievedChunk]]:
        """Each retriever's own ranking (the input of the fusion)."""
        depth = max(k, self.candidates)
        return [list(retriever(query, depth)) for retriever in self.retrievers]

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        return fuse_hits(self.rankings(query, k), k, self.rrf_k, self.weights)

    def __repr__(self) -> str:
        parts = ", ".join(getattr(r, "name", type(r).__name__) for r in self.retrievers)
        options = f"weights={self.weights}, rrf_k={self.rrf_k}, candidates={self.candidates}"
        return f"HybridRetriever([{parts}], {options})"


def hybrid_sentence(scope: SearchScope, **options: Any) -> HybridRetriever:
    """Dense chunks + BM25 + best sentence (sentence_chunks), fused by RRF; `weights` in that order."""
    parts = [
        DenseRetriever.from_scope(scope),
        BM25Retriever.from_scope(scope),
        SentenceChunkRetriever.from_scope(scope),
    ]
    return HybridRetriever(parts, **options)


__all__ = [
    "DEFAULT_RRF_K",
    "FUSION_CANDIDATES",
    "HybridRetriever",
    "fuse_hits",
    "hybrid_sentence",
    "min_max_normalise",
    "reciprocal_rank_fusion",
    "weighted_score_fusion",
]
