"""Re-order retrieved candidates: maximal marginal relevance, an offline re-ranker, a cross-encoder.

The usual shape of a two-stage search: a fast retriever fetches 20-50 *candidates*, then a slower,
better scorer re-orders them and the top k are kept.

* `mmr_select` picks results that are relevant *and* different from each other (Carbonell and
  Goldstein, 1998): each step takes the candidate with the best
  `lambda * sim(query, c) - (1 - lambda) * max sim(c, already picked)`.
* `SentenceReranker` needs nothing beyond the embedding model: a chunk often holds its answer in
  one sentence surrounded by unrelated text, which blurs the chunk's single vector; so each
  candidate is scored by its best-matching sentence's cosine to the query, blended with its
  original (fused) rank.
* `CrossEncoderReranker` reads query and chunk together with a cross-encoder model
  (e.g. `cross-encoder/ms-marco-MiniLM-L6-v2`); it needs the model files, so offline it raises
  `RerankerUnavailableError` with what to do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .chunking import sentence_spans
from .embeddings import embed
from .store import RetrievedChunk

DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L6-v2"


class RerankerUnavailableError(RuntimeError):
    """The re-ranking model cannot be loaded (not downloaded, no network, or a library is missing)."""


# --- Maximal marginal relevance ---------------------------------------------------------------


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


# --- Re-rankers ---------------------------------------------------------------------------------


def _rank_scores(count: int) -> np.ndarray:
    """1.0 for the first candidate down to 0.0 for the last (the retriever's own opinion)."""
    if count <= 1:
        return np.ones(count, dtype=np.float32)
    return np.linspace(1.0, 0.0, count, dtype=np.float32)


def _order(scores: np.ndarray) -> list[int]:
    """Indices by descending score; equal scores keep the original order."""
    return [int(i) for i in np.lexsort((np.arange(len(scores)), -np.round(scores, 6)))]


class SentenceReranker:
    """Offline re-ranker: score = `weight` * best sentence cosine + (1 - `weight`) * original rank score.

    The rank score falls linearly from 1 (first candidate) to 0 (last), so the re-ranker refines
    the retriever's order rather than replacing it. Sentence vectors come from `sentence_vectors`
    when given (e.g. a precomputed sentence index), else the embedding model encodes them.
    """

    name = "sentence"

    def __init__(
        self,
        model: Any,
        weight: float = 0.5,
        sentence_vectors: Callable[[Sequence[RetrievedChunk]], list[np.ndarray]] | None = None,
        query_vector: Callable[[str], np.ndarray] | None = None,
    ) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be between 0 and 1, got {weight}")
        self.model = model
        self.weight = weight
        self.sentence_vectors = sentence_vectors
        self.query_vector = query_vector

    def _sentence_vectors(self, chunks: Sequence[RetrievedChunk]) -> list[np.ndarray]:
        if self.sentence_vectors is not None:
            return self.sentence_vectors(chunks)
        pieces = [[c.text[s:e] for s, e in sentence_spans(c.text)] or [c.text] for c in chunks]
        flat = [p for group in pieces for p in group]
        vectors = embed(flat, self.model, progress=False) if flat else np.zeros((0, 1), np.float32)
        out, first = [], 0
        for group in pieces:
            out.append(vectors[first : first + len(group)])
            first += len(group)
        return out

    def scores(self, query: str, chunks: Sequence[RetrievedChunk]) -> np.ndarray:
        """The blended score of every candidate, in the candidates' order."""
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        if self.query_vector is not None:
            q = self.query_vector(query)
        else:
            q = embed([query], self.model, progress=False)[0]
        best = np.array(
            [float(np.max(v @ q)) if len(v) else 0.0 for v in self._sentence_vectors(chunks)],
            dtype=np.float32,
        )
        return self.weight * best + (1.0 - self.weight) * _rank_scores(len(chunks))

    def rerank(
        self, query: str, chunks: Sequence[RetrievedChunk], k: int | None = None
    ) -> list[RetrievedChunk]:
        """The candidates re-ordered by `scores`, best first, with `score` set to the new score."""
        scores = self.scores(query, chunks)
        ordered = [replace(chunks[i], score=float(scores[i])) for i in _order(scores)]
        return ordered if k is None else ordered[:k]

    def __repr__(self) -> str:
        return f"SentenceReranker(weight={self.weight})"


class CrossEncoderReranker:
    """Re-rank with a sentence-transformers `CrossEncoder`; `score` becomes the model's relevance logit."""

    name = "cross_encoder"

    def __init__(
        self,
        name: str = DEFAULT_CROSS_ENCODER,
        device: str | None = None,
        local_files_only: bool | None = None,
        batch_size: int = 32,
    ) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as error:  # pragma: no cover - sentence-transformers is a requirement
            raise RerankerUnavailableError(
                f"sentence-transformers is needed for a cross-encoder: {error}"
            ) from None
        import os

        if local_files_only is None:
            local_files_only = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        try:
            self.model = CrossEncoder(name, device=device, local_files_only=local_files_only)
        except Exception as error:  # noqa: BLE001 - the Hub raises many kinds: offline, 404, timeouts, auth
            raise RerankerUnavailableError(
                f"Cannot load the cross-encoder {name!r} ({type(error).__name__}: {str(error)[:200]}). "
                "It is downloaded from the Hugging Face Hub on first use: run once on a connected machine "
                "(unset HF_HUB_OFFLINE), or use the offline SentenceReranker instead."
            ) from None
        self.model_name = name
        self.batch_size = batch_size

    def scores(self, query: str, chunks: Sequence[RetrievedChunk]) -> np.ndarray:
        """The cross-encoder's relevance score of every candidate, in the candidates' order."""
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        pairs = [(query, c.text) for c in chunks]
        return np.asarray(
            self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), np.float32
        )

    def rerank(
        self, query: str, chunks: Sequence[RetrievedChunk], k: int | None = None
    ) -> list[RetrievedChunk]:
        """The candidates re-ordered by the cross-encoder, best first, with `score` set to its score."""
        scores = self.scores(query, chunks)
        ordered = [replace(chunks[i], score=float(scores[i])) for i in _order(scores)]
        return ordered if k is None else ordered[:k]

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({self.model_name!r})"


__all__ = [
    "DEFAULT_CROSS_ENCODER",
    "CrossEncoderReranker",
    "RerankerUnavailableError",
    "SentenceReranker",
    "mmr_select",
]
