"""Query expansion: search again with a better query.

Offline, with no language model, *pseudo-relevance feedback* assumes the first search's top chunks
are relevant and borrows from them:

* `rocchio` moves the query vector towards the mean of the top chunks' vectors
  (Rocchio, 1971): `q' = alpha * q + beta * mean(top chunks)`, renormalised;
* `expansion_terms` picks the words that are frequent in the top chunks but rare in the collection
  (an RM3-like rule) and adds them, with lower weights, to the keyword query;
* `ExpandedRetriever` does both after a first hybrid search, and searches again.

With a language model (any `answers.Answerer` but the extractive one; `backends.get_llm`):

* `multi_query` asks it for several rewordings of the question; `MultiQueryRetriever` searches
  with each and fuses the rankings with reciprocal rank fusion;
* `hypothetical_document` (HyDE, Gao et al., 2022) asks it to write a passage that would answer the
  question; `HyDERetriever` searches with that passage's vector, which looks more like the chunks
  than a short question does.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .base import Prompt, RetrievedChunk, Retriever, check_query
from .dense import DenseRetriever
from .fusion import DEFAULT_RRF_K, FUSION_CANDIDATES, HybridRetriever, fuse_hits
from .keyword import BM25Retriever
from .keyword_index import BM25Index
from .store import SearchScope, query_encoder, stored_vectors
from .text import tokenize


class LanguageModelRequiredError(ValueError):
    """A technique that needs a language model was given none (or the offline backend)."""


# --- Pseudo-relevance feedback (offline) ------------------------------------------------------


def rocchio(
    query_vector: np.ndarray,
    feedback_vectors: np.ndarray,
    alpha: float = 1.0,
    beta: float = 0.5,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """`alpha * q + beta * (weighted) mean of the feedback vectors`, scaled back to unit length."""
    query_vector = np.asarray(query_vector, dtype=np.float32)
    feedback = np.asarray(feedback_vectors, dtype=np.float32)
    if feedback.size == 0 or beta == 0:
        moved = alpha * query_vector
    else:
        w = np.ones(len(feedback), np.float32) if weights is None else np.asarray(weights, np.float32)
        if len(w) != len(feedback):
            raise ValueError(f"got {len(w)} weights for {len(feedback)} feedback vectors")
        centroid = (w[:, None] * feedback).sum(axis=0) / max(float(w.sum()), 1e-12)
        moved = alpha * query_vector + beta * centroid
    norm = float(np.linalg.norm(moved))
    if norm == 0:
        raise ValueError("the expanded query vector is zero; use a positive alpha")
    return moved / norm


def expansion_terms(
    query: str,
    texts: Sequence[str],
    index: BM25Index,
    n_terms: int = 8,
    min_count: int = 2,
) -> dict[str, float]:
    """Up to `n_terms` tokens of the feedback `texts` worth adding to the query, with weights in (0, 1].

    A term's weight is the sum over feedback texts (earlier texts weigh more) of its share of the
    text's tokens, times its inverse document frequency in the index; terms of the query itself,
    numbers, and terms found fewer than `min_count` times in the feedback are left out. The best
    term gets weight 1.
    """
    asked = set(tokenize(query))
    weights: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    for rank, text in enumerate(texts):
        tokens = [t for t in tokenize(text) if t not in asked and not t[0].isdigit() and len(t) > 2]
        if not tokens:
            continue
        tf = Counter(tokens)
        counts.update(tf)
        rank_weight = 1.0 / (rank + 1)
        for token, count in tf.items():
            weights[token] += rank_weight * count / len(tokens)
    scored = {}
    for token, weight in weights.items():
        if counts[token] < min_count:
            continue
        df = index.document_frequency(token)
        if df == 0:
            continue
        scored[token] = weight * math.log(1 + len(index) / df)
    best = sorted(scored.items(), key=lambda pair: (-pair[1], pair[0]))[:n_terms]
    if not best:
        return {}
    top = best[0][1]
    return {token: value / top for token, value in best}


# --- With a language model --------------------------------------------------------------------


def _require_llm(llm: Any, technique: str) -> None:
    if llm is None or getattr(llm, "backend", "") == "offline":
        raise LanguageModelRequiredError(
            f"{technique} needs a language model, and {'none' if llm is None else 'the offline backend'} was "
            "given. Use the course's own model (backends.get_llm(settings, 'local')), or configure one "
            "(HF_TOKEN=... or LLM_BASE_URL=... in .env); without one, use the 'expanded' retriever "
            "(pseudo-relevance feedback)."
        )


def _ask(llm: Any, system: str, user: str, **params: Any) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return llm.answer(Prompt(messages), **{"temperature": 0.3, "max_tokens": 300, **params}).text


_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)]|q\d+[:.)])\s*", re.IGNORECASE)


def multi_query(question: str, llm: Any, n: int = 3, **params: Any) -> list[str]:
    """The question followed by up to `n` rewordings written by `llm` (duplicates dropped)."""
    _require_llm(llm, "multi-query expansion")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    text = _ask(
        llm,
        "You rewrite questions into search queries for a company's internal documents.",
        f"Write {n} different search queries that would find the answer to the question below. Use other "
        f"words and likely synonyms; keep names and numbers. One query per line, nothing else.\n\n"
        f"Question: {question}",
        **params,
    )
    queries = [question]
    seen = {question.strip().casefold()}
    for line in text.splitlines():
        query = _LIST_MARKER.sub("", line).strip().strip('"').strip()
        if query and query.casefold() not in seen and len(queries) <= n:
            seen.add(query.casefold())
            queries.append(query)
    return queries


def hypothetical_document(question: str, llm: Any, **params: Any) -> str:
    """A passage written by `llm` that would answer `question` (it may be wrong: only its wording matters)."""
    _require_llm(llm, "HyDE")
    return _ask(
        llm,
        "You write short passages in the style of a company's internal documents.",
        "Write a passage of 3 to 5 sentences, as it could appear in a company policy, guide or report, that "
        f"answers the question below. Do not say that you are unsure.\n\nQuestion: {question}",
        **params,
    ).strip()


class MultiQueryRetriever:
    """Search with the question and its LLM rewordings, and fuse the rankings (reciprocal rank fusion)."""

    name = "multi_query"

    def __init__(
        self, base: Retriever, llm: Any, n: int = 3, candidates: int = 20, rrf_k: float = DEFAULT_RRF_K
    ):
        _require_llm(llm, "multi-query expansion")
        self.base, self.llm, self.n, self.candidates, self.rrf_k = base, llm, n, candidates, rrf_k
        self.last_queries: list[str] = []

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        self.last_queries = multi_query(query, self.llm, self.n)
        results = [list(self.base(q, max(k, self.candidates))) for q in self.last_queries]
        return fuse_hits(results, k, self.rrf_k)

    def __repr__(self) -> str:
        return f"MultiQueryRetriever(base={self.base!r}, n={self.n})"


class HyDERetriever:
    """Dense search with the vector of an LLM-written answer passage (plus the question's, by default)."""

    name = "hyde"

    def __init__(
        self,
        search: Callable[[np.ndarray, int], list[RetrievedChunk]],
        encode: Callable[[str], np.ndarray],
        llm: Any,
        include_question: bool = True,
    ):
        _require_llm(llm, "HyDE")
        self.search, self.encode, self.llm, self.include_question = search, encode, llm, include_question
        self.last_passage = ""

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        self.last_passage = hypothetical_document(query, self.llm)
        vector = self.encode(self.last_passage)
        if self.include_question:
            vector = rocchio(self.encode(query), vector[None, :], alpha=1.0, beta=1.0)
        return self.search(vector, k)

    def __repr__(self) -> str:
        return f"HyDERetriever(include_question={self.include_question})"


def hyde_retriever(
    collection: Any,
    model: Any = None,
    llm: Any = None,
    *,
    include_question: bool = True,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
) -> HyDERetriever:
    """HyDE: dense search with the vector of a passage `llm` writes to answer the question."""
    dense = DenseRetriever(collection, query_encoder(collection, model), where, where_document)
    return HyDERetriever(dense.search_vector, dense.encode, llm, include_question=include_question)  # type: ignore[arg-type]


# --- Pseudo-relevance feedback as a retriever -------------------------------------------------


class ExpandedRetriever:
    """Offline query expansion by pseudo-relevance feedback.

    A first hybrid search takes its top `feedback` chunks as relevant; the dense query vector moves
    towards theirs (`rocchio`), the keyword query gains their most telling words (`expansion_terms`,
    weighted by `term_weight`), and a second hybrid search with both gives the result. `score` is
    the second fusion's RRF score; `distance` is None (the second search's distances are to the
    moved query vector, not to the question). `last_terms` holds the words the last query gained.
    """

    name = "expanded"

    def __init__(
        self,
        dense: DenseRetriever,
        bm25: BM25Retriever,
        feedback: int = 3,
        alpha: float = 1.0,
        beta: float = 0.3,
        n_terms: int = 5,
        term_weight: float = 0.3,
        rrf_k: float = DEFAULT_RRF_K,
        candidates: int = FUSION_CANDIDATES,
    ) -> None:
        if dense.encode is None:
            raise ValueError("ExpandedRetriever needs a DenseRetriever with an encoder (encode=QueryEncoder(model)).")
        self.dense, self.bm25 = dense, bm25
        self.first = HybridRetriever([dense, bm25], rrf_k=rrf_k, candidates=candidates)
        self.feedback, self.alpha, self.beta = feedback, alpha, beta
        self.n_terms, self.term_weight = n_terms, term_weight
        self.rrf_k, self.candidates = rrf_k, candidates
        self.last_terms: dict[str, float] = {}

    @classmethod
    def from_scope(cls, scope: SearchScope, **options: Any) -> ExpandedRetriever:
        """Hybrid, then search again with pseudo-relevance feedback (offline query expansion)."""
        return cls(DenseRetriever.from_scope(scope), BM25Retriever.from_scope(scope), **options)

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        depth = max(k, self.candidates)
        first = self.first(query, self.feedback)
        if not first:
            return self.first(query, k)
        feedback = stored_vectors(self.dense.collection, [c.id for c in first])
        weights = [1.0 / (rank + 1) for rank in range(len(first))]
        vector = rocchio(self.dense.encode(query), feedback, self.alpha, self.beta, weights)  # type: ignore[misc]
        dense_hits = self.dense.search_vector(vector, depth)

        self.last_terms = expansion_terms(query, [c.text for c in first], self.bm25.index, self.n_terms)
        tokens = tokenize(query) + list(self.last_terms)
        term_weights = {t: self.term_weight * w for t, w in self.last_terms.items()}
        keyword_hits = self.bm25.search(tokens, depth, weights=term_weights)
        # Distances of the second pass are to the moved query vector, not to the question: dropped.
        fused = fuse_hits([dense_hits, keyword_hits], k, self.rrf_k)
        return [replace(hit, distance=None) for hit in fused]

    def __repr__(self) -> str:
        return (
            f"ExpandedRetriever(feedback={self.feedback}, beta={self.beta}, n_terms={self.n_terms}, "
            f"term_weight={self.term_weight})"
        )


__all__ = [
    "ExpandedRetriever",
    "HyDERetriever",
    "LanguageModelRequiredError",
    "MultiQueryRetriever",
    "expansion_terms",
    "hyde_retriever",
    "hypothetical_document",
    "multi_query",
    "rocchio",
]
