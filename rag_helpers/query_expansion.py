"""Query expansion: search again with a better query.

Offline, with no language model, *pseudo-relevance feedback* assumes the first search's top chunks
are relevant and borrows from them:

* `rocchio` moves the query vector towards the mean of the top chunks' vectors
  (Rocchio, 1971): `q' = alpha * q + beta * mean(top chunks)`, renormalised;
* `expansion_terms` picks the words that are frequent in the top chunks but rare in the collection
  (an RM3-like rule) and adds them, with lower weights, to the keyword query.

With a language model configured (`rag_helpers.generation.get_llm`):

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
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .fusion import DEFAULT_RRF_K, reciprocal_rank_fusion
from .keyword import BM25Index, tokenize
from .store import RetrievedChunk

Retriever = Callable[[str, int], Sequence[RetrievedChunk]]


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
            "given. Configure one (HF_TOKEN=... or LLM_BASE_URL=... in .env) and pass "
            "generation.get_llm(); offline, use the 'expanded' retriever (pseudo-relevance feedback)."
        )


def _ask(llm: Any, system: str, user: str, **params: Any) -> str:
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    return llm.generate(messages, **{"temperature": 0.3, "max_tokens": 300, **params}).text


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
        by_id: dict[str, RetrievedChunk] = {}
        for hits in results:
            for hit in hits:
                by_id.setdefault(hit.id, hit)
        fused = reciprocal_rank_fusion([[h.id for h in hits] for hits in results], k=self.rrf_k)
        return [_with_score(by_id[chunk_id], score) for chunk_id, score in fused[:k]]

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


def _with_score(chunk: RetrievedChunk, score: float) -> RetrievedChunk:
    return replace(chunk, score=float(score))


__all__ = [
    "HyDERetriever",
    "LanguageModelRequiredError",
    "MultiQueryRetriever",
    "expansion_terms",
    "hypothetical_document",
    "multi_query",
    "rocchio",
]
