"""Re-order retrieved candidates: an offline re-ranker, a cross-encoder, and the re-ranking retriever.

The usual shape of a two-stage search: a fast retriever fetches 20-50 *candidates*, then a slower,
better scorer re-orders them and the top k are kept.

* `SentenceReranker` needs nothing beyond the embedding model: a chunk often holds its answer in
  one sentence surrounded by unrelated text, which blurs the chunk's single vector; so each
  candidate is scored by its best-matching sentence's cosine to the query, blended with its
  original (fused) rank.
* `CrossEncoderReranker` reads query and chunk together with a cross-encoder model
  (e.g. `cross-encoder/ms-marco-MiniLM-L6-v2`); it needs the model files, so offline it raises
  `RerankerUnavailableError` with what to do.

`RerankRetriever` fetches hybrid candidates and re-orders them; by default with the
`SentenceReranker` reading the stored sentence vectors of the sentence index (built by ingest),
so re-ranking embeds only the query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .base import RetrievedChunk, Retriever, check_query
from .chunking import sentence_spans
from .embeddings import embed
from .fusion import HybridRetriever
from .sentence_index import SentenceIndex, open_sentence_index
from .store import SearchScope

DEFAULT_CROSS_ENCODER = "cross-encoder/ms-marco-MiniLM-L6-v2"


class RerankerUnavailableError(RuntimeError):
    """The re-ranking model cannot be loaded (not downloaded, no network, or a library is missing)."""


# --- Re-rankers ---------------------------------------------------------------------------------


def _rank_scores(count: int) -> np.ndarray:
    """1.0 for the first candidate down to 0.0 for the last (the retriever's own opinion)."""
    if count <= 1:
        return np.ones(count, dtype=np.float32)
    return np.linspace(1.0, 0.0, count, dtype=np.float32)


def _order(scores: np.ndarray) -> list[int]:
    """Indices by descending score; equal scores keep the original order."""
    return [int(i) for i in np.lexsort((np.arange(len(scores)), -np.round(scores, 6)))]


class ScoringReranker:
    """A re-ranker that scores every candidate (`scores`) and re-orders them by that score."""

    def scores(self, query: str, chunks: Sequence[RetrievedChunk]) -> np.ndarray:
        """One score per candidate, in the candidates' order (higher is better)."""
        raise NotImplementedError

    def rerank(
        self, query: str, chunks: Sequence[RetrievedChunk], k: int | None = None
    ) -> list[RetrievedChunk]:
        """The candidates re-ordered by `scores`, best first, with `score` set to the new score."""
        scores = self.scores(query, chunks)
        ordered = [replace(chunks[i], score=float(scores[i])) for i in _order(scores)]
        return ordered if k is None else ordered[:k]


class SentenceReranker(ScoringReranker):
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
        if model is None and (sentence_vectors is None or query_vector is None):
            raise ValueError("SentenceReranker needs the embedding model, or both sentence_vectors and query_vector.")
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

    def __repr__(self) -> str:
        return f"SentenceReranker(weight={self.weight})"


class CrossEncoderReranker(ScoringReranker):
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

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({self.model_name!r})"


# --- Stored sentence vectors -------------------------------------------------------------------


class SentenceVectors:
    """The stored vectors of the sentences inside each chunk, read from the sentence index.

    For `SentenceReranker(sentence_vectors=...)`: re-ranking then embeds only the query.
    A sentence belongs to a chunk when at least half of it lies inside the chunk's span. Each
    document's sentences come from `preloaded` ({document: (starts, ends, vectors)}, e.g.
    `sentence_index.load_sentence_vectors`), else from the sentence index `sentences`, which is
    read whole when the retriever is built, so the first question costs what every later one does.
    """

    def __init__(
        self, sentences: SentenceIndex | None, preloaded: dict[str, tuple[np.ndarray, ...]] | None = None
    ) -> None:
        if sentences is None and preloaded is None:
            raise ValueError("SentenceVectors needs the sentence index or preloaded vectors.")
        self.sentences = sentences
        self._by_document = dict(preloaded) if preloaded is not None else sentences.by_document()  # type: ignore[union-attr]

    def __call__(self, chunks: Sequence[RetrievedChunk]) -> list[np.ndarray]:
        out = []
        for chunk in chunks:
            starts, ends, vectors = self._by_document.get(
                chunk.document_id, (np.zeros(0), np.zeros(0), np.zeros((0, 1)))
            )
            inside = np.minimum(ends, chunk.end) - np.maximum(starts, chunk.start)
            out.append(vectors[inside * 2 >= (ends - starts)] if len(starts) else vectors)
        return out


# --- The re-ranking retriever -------------------------------------------------------------------


def _sentence_vectors(scope: SearchScope) -> SentenceVectors:
    return SentenceVectors(open_sentence_index(scope.collection))


class RerankRetriever:
    """Fetch `candidates` chunks with a first retriever, re-order them with a re-ranker, keep the top k."""

    name = "rerank"

    def __init__(self, first: Retriever, reranker: Any, candidates: int = 20) -> None:
        self.first = first
        self.reranker = reranker
        self.candidates = candidates

    @classmethod
    def from_scope(
        cls,
        scope: SearchScope,
        *,
        reranker: Any = None,
        weight: float = 0.5,
        candidates: int = 30,
        first: Retriever | None = None,
    ) -> RerankRetriever:
        """Hybrid candidates re-ordered by their best sentence (offline re-ranker), or by `reranker`.

        The sentence vectors come from the sentence index, so re-ranking embeds only the query.
        `reranker="cross-encoder"` loads `CrossEncoderReranker()` (needs the model files); any
        object with `rerank(query, chunks, k)` works too.
        """
        if first is None:
            first = HybridRetriever.from_scope(scope)
        if reranker is None:
            reranker = SentenceReranker(
                None,
                weight=weight,
                sentence_vectors=_sentence_vectors(scope),
                query_vector=scope.encode,
            )
        elif isinstance(reranker, str):
            if reranker not in ("cross-encoder", "cross_encoder"):
                raise ValueError(
                    f"Unknown reranker {reranker!r}; use 'cross-encoder' or pass a re-ranker object."
                )
            reranker = CrossEncoderReranker()
        return cls(first, reranker, candidates=candidates)

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        candidates = list(self.first(query, max(k, self.candidates)))
        return self.reranker.rerank(query, candidates, k)

    def __repr__(self) -> str:
        return (
            f"RerankRetriever(first={self.first!r}, reranker={self.reranker!r}, candidates={self.candidates})"
        )


__all__ = [
    "DEFAULT_CROSS_ENCODER",
    "CrossEncoderReranker",
    "RerankRetriever",
    "RerankerUnavailableError",
    "ScoringReranker",
    "SentenceReranker",
    "SentenceVectors",
]
