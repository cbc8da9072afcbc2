"""Retrievers: every search technique of the course behind one call shape.

A retriever is a callable `retriever(query, k) -> list[RetrievedChunk]`, best first; each chunk
has a `score` (higher is better) and, where a dense distance exists, a `distance`. Build one by
name from a collection and the embedding model:

    retriever = make_retriever("hybrid", collection, model)
    retriever("What is the hotel cap in London?", k=5)
    evaluate(retriever, questions)          # any retriever works with evaluation.evaluate

| name              | what it does                                                              |
|-------------------|---------------------------------------------------------------------------|
| `dense`           | nearest chunks by embedding (the original tutorial's search)              |
| `bm25`            | keyword search (BM25) over the same chunks                                |
| `hybrid`          | dense + bm25, fused by reciprocal rank fusion (RRF)                       |
| `mmr`             | dense candidates re-picked for diversity (maximal marginal relevance)     |
| `sentence_window` | search single sentences, return the ~1000 characters around each          |
| `expanded`        | hybrid, then search again with pseudo-relevance feedback (offline)        |
| `rerank`          | hybrid candidates re-ordered by their best sentence (offline re-ranker)   |
| `sentence_chunks` | chunks ranked by their best sentence (small-to-big)                       |
| `hybrid_sentence` | dense + bm25 + sentence_chunks, fused by RRF                              |

`DEFAULT_RETRIEVER` is the winner of the leaderboard on the sample questions
(`python bench/retrievers.py`). The sentence-based ones (`sentence_window`, `rerank`,
`sentence_chunks`, `hybrid_sentence`) build a second collection, `<collection>__sentences`, on
first use: one vector per sentence, 4981 for the sample corpus, which took 168 s of CPU (408 s
on a busy 2-core machine); later uses only check it (about 0.5 s).

Every factory takes `where=` / `where_document=` (Chroma filters) and its own options; see
`RETRIEVERS` and `describe_retrievers()`.
"""

from __future__ import annotations

import inspect
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .fusion import reciprocal_rank_fusion
from .keyword import BM25Retriever, check_query, load_bm25_index
from .query_expansion import expansion_terms, rocchio
from .rerank import CrossEncoderReranker, SentenceReranker, mmr_select
from .sentence_window import (
    DEFAULT_WINDOW_CHARS,
    SentenceChunkRetriever,
    SentenceVectors,
    SentenceWindowRetriever,
    build_sentence_index,
)
from .store import RetrievedChunk, collection_distance, similarity_from_distance

Retriever = Callable[[str, int], Sequence[RetrievedChunk]]

# Defaults measured on the sample question set (bench/retrievers.py prints the sensitivity grid).
# RRF's k: 60 is the paper's value for rankings 1000 deep; with 20 candidates per list a smaller k,
# which trusts each list's first few ranks more, did better for every fusion here.
RRF_K = 10
FUSION_CANDIDATES = 20  # chunks each fused retriever contributes
MMR_LAMBDA = 0.8


class UnknownRetrieverError(ValueError):
    """A retriever name that is not in `RETRIEVERS`."""


# --- Query vectors --------------------------------------------------------------------------------


class QueryEncoder:
    """Embeds queries with the model, remembering the last few (one embedding per query, however
    many retrievers of a hybrid ask for it)."""

    def __init__(self, model: Any, cache_size: int = 256) -> None:
        self.model = model
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def __call__(self, text: str) -> np.ndarray:
        vector = self._cache.get(text)
        if vector is None:
            from .embeddings import embed_one

            vector = embed_one(text, self.model)
            self._cache[text] = vector
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return vector

    def __repr__(self) -> str:
        return f"QueryEncoder({getattr(self.model, 'rag_name', type(self.model).__name__)!r})"


def collection_model(collection: Any) -> Any:
    """The embedding model (and precision) a collection was built with, loaded from its stored config."""
    function = getattr(collection, "_embedding_function", None)
    if getattr(function, "model", None) is not None:
        return function.model
    from .embeddings import load_embedding_model

    config = ((collection.configuration_json or {}).get("embedding_function") or {}).get("config") or {}
    if not config.get("model_name"):
        raise ValueError(
            f"Collection {collection.name!r} does not say which embedding model built it: pass model=..."
        )
    return load_embedding_model(config["model_name"], precision=config.get("precision") or "auto")


def _encoder(model: Any, collection: Any = None) -> QueryEncoder:
    if isinstance(model, QueryEncoder):
        return model
    if model is None:
        if collection is None:
            raise ValueError(
                "This retriever needs the embedding model: pass model=load_embedding_model(...)."
            )
        model = collection_model(collection)
    return QueryEncoder(model)


# --- Dense ------------------------------------------------------------------------------------------


class VectorRetriever:
    """Dense retrieval: the chunks nearest to the query's embedding (like `store.dense_retriever`),
    with optional `where` / `where_document` filters."""

    name = "dense"

    def __init__(
        self,
        collection: Any,
        encode: Callable[[str], np.ndarray],
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> None:
        self.collection = collection
        self.encode = encode
        self.where = where
        self.where_document = where_document
        self.space = collection_distance(collection)

    def search_vector(
        self, vector: np.ndarray, k: int, with_embeddings: bool = False
    ) -> tuple[list[RetrievedChunk], np.ndarray | None]:
        """The `k` chunks nearest to `vector` (and their stored embeddings when asked)."""
        include = ["documents", "metadatas", "distances"] + (["embeddings"] if with_embeddings else [])
        result = self.collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            where=dict(self.where) if self.where else None,
            where_document=dict(self.where_document) if self.where_document else None,
            include=include,
        )
        hits = [
            RetrievedChunk(
                i, t or "", float(d), similarity_from_distance(float(d), self.space), dict(m or {})
            )
            for i, t, m, d in zip(
                result["ids"][0], result["documents"][0], result["metadatas"][0], result["distances"][0]
            )
        ]
        vectors = None
        if with_embeddings:
            raw = result["embeddings"][0] if result.get("embeddings") is not None else []
            vectors = np.asarray(raw, dtype=np.float32).reshape(len(hits), -1)
        return hits, vectors

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        return self.search_vector(self.encode(query), k)[0]

    def __repr__(self) -> str:
        return f"VectorRetriever({self.collection.name!r}{_filters(self.where, self.where_document)})"


def _filters(where: Any, where_document: Any) -> str:
    text = f", where={where!r}" if where else ""
    return text + (f", where_document={where_document!r}" if where_document else "")


# --- Hybrid (fusion) ----------------------------------------------------------------------------------


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
        rrf_k: float = RRF_K,
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

    def rankings(self, query: str, k: int) -> list[list[RetrievedChunk]]:
        """Each retriever's own ranking (the input of the fusion)."""
        depth = max(k, self.candidates)
        return [list(retriever(query, depth)) for retriever in self.retrievers]

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        rankings = self.rankings(query, k)
        by_id: dict[str, RetrievedChunk] = {}
        for ranking in rankings:
            for hit in ranking:
                kept = by_id.get(hit.id)
                if kept is None or (kept.distance is None and hit.distance is not None):
                    by_id[hit.id] = hit
        fused = reciprocal_rank_fusion(
            [[h.id for h in r] for r in rankings], k=self.rrf_k, weights=self.weights
        )
        return [replace(by_id[chunk_id], score=score) for chunk_id, score in fused[:k]]

    def __repr__(self) -> str:
        parts = ", ".join(getattr(r, "name", type(r).__name__) for r in self.retrievers)
        options = f"weights={self.weights}, rrf_k={self.rrf_k}, candidates={self.candidates}"
        return f"HybridRetriever([{parts}], {options})"


# --- MMR -----------------------------------------------------------------------------------------------


class MMRRetriever:
    """Dense candidates re-picked by maximal marginal relevance: relevant, but not repeating each other.

    `score` is the MMR value at the moment each chunk was picked; `distance` is its dense distance.
    """

    name = "mmr"

    def __init__(self, dense: VectorRetriever, lambda_: float = MMR_LAMBDA, candidates: int = 20) -> None:
        if not 0.0 <= lambda_ <= 1.0:
            raise ValueError(f"lambda_ must be between 0 and 1, got {lambda_}")
        self.dense = dense
        self.lambda_ = lambda_
        self.candidates = candidates

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        vector = self.dense.encode(query)
        hits, vectors = self.dense.search_vector(vector, max(k, self.candidates), with_embeddings=True)
        if not hits:
            return []
        picked = mmr_select(vector, vectors, k, self.lambda_)
        return [replace(hits[i], score=value) for i, value in picked]

    def __repr__(self) -> str:
        return f"MMRRetriever(lambda_={self.lambda_}, candidates={self.candidates})"


# --- Pseudo-relevance feedback --------------------------------------------------------------------------


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
        dense: VectorRetriever,
        bm25: BM25Retriever,
        feedback: int = 3,
        alpha: float = 1.0,
        beta: float = 0.3,
        n_terms: int = 5,
        term_weight: float = 0.3,
        rrf_k: float = RRF_K,
        candidates: int = FUSION_CANDIDATES,
    ) -> None:
        self.dense, self.bm25 = dense, bm25
        self.first = HybridRetriever([dense, bm25], rrf_k=rrf_k, candidates=candidates)
        self.feedback, self.alpha, self.beta = feedback, alpha, beta
        self.n_terms, self.term_weight = n_terms, term_weight
        self.rrf_k, self.candidates = rrf_k, candidates
        self.last_terms: dict[str, float] = {}

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        depth = max(k, self.candidates)
        first = self.first(query, self.feedback)
        if not first:
            return self.first(query, k)
        ids = [c.id for c in first]
        stored = self.dense.collection.get(ids=ids, include=["embeddings"])
        position = {chunk_id: n for n, chunk_id in enumerate(stored["ids"])}
        feedback = np.asarray([stored["embeddings"][position[i]] for i in ids], dtype=np.float32)
        weights = [1.0 / (rank + 1) for rank in range(len(ids))]
        vector = rocchio(self.dense.encode(query), feedback, self.alpha, self.beta, weights)
        dense_hits = self.dense.search_vector(vector, depth)[0]

        self.last_terms = expansion_terms(query, [c.text for c in first], self.bm25.index, self.n_terms)
        from .keyword import tokenize

        tokens = tokenize(query) + list(self.last_terms)
        term_weights = {t: self.term_weight * w for t, w in self.last_terms.items()}
        keyword_hits = self.bm25.search(tokens, depth, weights=term_weights)

        by_id = {h.id: h for h in keyword_hits}
        by_id.update({h.id: h for h in dense_hits})
        fused = reciprocal_rank_fusion(
            [[h.id for h in dense_hits], [h.id for h in keyword_hits]], k=self.rrf_k
        )
        # Distances of the second pass are to the moved query vector, not to the question: dropped.
        return [replace(by_id[chunk_id], score=score, distance=None) for chunk_id, score in fused[:k]]

    def __repr__(self) -> str:
        return (
            f"ExpandedRetriever(feedback={self.feedback}, beta={self.beta}, n_terms={self.n_terms}, "
            f"term_weight={self.term_weight})"
        )


# --- Re-ranking ----------------------------------------------------------------------------------------


class RerankRetriever:
    """Fetch `candidates` chunks with a first retriever, re-order them with a re-ranker, keep the top k."""

    name = "rerank"

    def __init__(self, first: Retriever, reranker: Any, candidates: int = 20) -> None:
        self.first = first
        self.reranker = reranker
        self.candidates = candidates

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        candidates = list(self.first(query, max(k, self.candidates)))
        return self.reranker.rerank(query, candidates, k)

    def __repr__(self) -> str:
        return (
            f"RerankRetriever(first={self.first!r}, reranker={self.reranker!r}, candidates={self.candidates})"
        )


# --- Filters chosen per question ----------------------------------------------------------------------


class QueryFilteredRetriever:
    """Picks Chroma filters for each question, e.g. `metadata.year_filter_from_question`.

    `build(where)` makes the underlying retriever for one `where` filter (None: no filter); one is
    built per distinct filter and kept, so questions naming the same year share it.
    """

    name = "filtered"

    def __init__(
        self,
        build: Callable[[Mapping[str, Any] | None], Retriever],
        where_for: Callable[[str], Mapping[str, Any] | None],
    ) -> None:
        self.build = build
        self.where_for = where_for
        self._built: dict[str, Retriever] = {}
        self.last_where: Mapping[str, Any] | None = None

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        check_query(query, k)
        where = self.where_for(query)
        key = json.dumps(where, sort_keys=True, default=str)
        if key not in self._built:
            self._built[key] = self.build(where)
        self.last_where = where
        return list(self._built[key](query, k))

    def __repr__(self) -> str:
        return f"QueryFilteredRetriever(where_for={getattr(self.where_for, '__name__', self.where_for)!r})"


# --- Factories and the registry ------------------------------------------------------------------------


def make_dense(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
) -> VectorRetriever:
    """Dense retrieval (`VectorRetriever`)."""
    return VectorRetriever(collection, _encoder(model, collection), where, where_document)


def make_bm25(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    **index_options: Any,
) -> BM25Retriever:
    """Keyword retrieval (BM25) over the collection's cached index; `model` is not needed."""
    return BM25Retriever(load_bm25_index(collection, **index_options), collection, where, where_document)


def make_hybrid(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    rrf_k: float = RRF_K,
    weights: Sequence[float] | None = None,
    candidates: int = FUSION_CANDIDATES,
) -> HybridRetriever:
    """Dense and BM25 fused with reciprocal rank fusion; `weights` = (dense, bm25)."""
    dense = make_dense(collection, model, where=where, where_document=where_document)
    bm25 = make_bm25(collection, where=where, where_document=where_document)
    return HybridRetriever([dense, bm25], weights=weights, rrf_k=rrf_k, candidates=candidates)


def make_mmr(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    lambda_: float = MMR_LAMBDA,
    candidates: int = 20,
) -> MMRRetriever:
    """Dense candidates re-picked by maximal marginal relevance."""
    dense = make_dense(collection, model, where=where, where_document=where_document)
    return MMRRetriever(dense, lambda_=lambda_, candidates=candidates)


def make_sentence_window(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    window_chars: int = DEFAULT_WINDOW_CHARS,
    candidates: int = 40,
    documents: Any = None,
    progress: bool = False,
) -> SentenceWindowRetriever:
    """Sentence search widened to windows; builds `<collection>__sentences` on first use."""
    encode = _encoder(model, collection)
    return SentenceWindowRetriever(
        collection,
        encode.model,
        encode=encode,
        documents=documents,
        window_chars=window_chars,
        candidates=candidates,
        where=where,
        where_document=where_document,
        progress=progress,
    )


def make_expanded(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    **options: Any,
) -> ExpandedRetriever:
    """Hybrid search, then a second one expanded by pseudo-relevance feedback (offline)."""
    dense = make_dense(collection, model, where=where, where_document=where_document)
    bm25 = make_bm25(collection, where=where, where_document=where_document)
    return ExpandedRetriever(dense, bm25, **options)


def make_sentence_chunks(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    candidates: int = 100,
    progress: bool = False,
) -> SentenceChunkRetriever:
    """Chunks ranked by their best-matching sentence (small-to-big); builds `<collection>__sentences`."""
    encode = _encoder(model, collection)
    sentences = build_sentence_index(collection, encode.model, progress=progress)
    return SentenceChunkRetriever(collection, sentences, encode, candidates, where, where_document)


def make_hybrid_sentence(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    rrf_k: float = RRF_K,
    weights: Sequence[float] | None = None,
    candidates: int = FUSION_CANDIDATES,
    progress: bool = False,
) -> HybridRetriever:
    """Dense chunks + BM25 + best sentence, fused by reciprocal rank fusion; `weights` in that order."""
    encode = _encoder(model, collection)
    filters = {"where": where, "where_document": where_document}
    parts = [
        make_dense(collection, encode, **filters),
        make_bm25(collection, **filters),
        make_sentence_chunks(collection, encode, progress=progress, **filters),
    ]
    return HybridRetriever(parts, weights=weights, rrf_k=rrf_k, candidates=candidates)


def make_rerank(
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    reranker: Any = None,
    weight: float = 0.5,
    candidates: int = 30,
    first: Retriever | None = None,
    progress: bool = False,
) -> RerankRetriever:
    """Hybrid candidates re-ordered by their best sentence (offline `SentenceReranker`), or by `reranker`.

    The sentence vectors come from `<collection>__sentences` (built on first use), so re-ranking
    embeds only the query. `reranker="cross-encoder"` loads `rerank.CrossEncoderReranker()`
    (needs the model files); any object with `rerank(query, chunks, k)` works too.
    """
    encode = _encoder(model, collection)
    if first is None:
        first = make_hybrid(collection, encode, where=where, where_document=where_document)
    if reranker is None:
        sentences = build_sentence_index(collection, encode.model, progress=progress)
        reranker = SentenceReranker(
            encode.model, weight=weight, sentence_vectors=SentenceVectors(sentences), query_vector=encode
        )
    elif isinstance(reranker, str):
        if reranker not in ("cross-encoder", "cross_encoder"):
            raise ValueError(
                f"Unknown reranker {reranker!r}; use 'cross-encoder' or pass a re-ranker object."
            )
        reranker = CrossEncoderReranker()
    return RerankRetriever(first, reranker, candidates=candidates)


RETRIEVERS: dict[str, Callable[..., Retriever]] = {
    "dense": make_dense,
    "bm25": make_bm25,
    "hybrid": make_hybrid,
    "mmr": make_mmr,
    "sentence_window": make_sentence_window,
    "expanded": make_expanded,
    "rerank": make_rerank,
    "sentence_chunks": make_sentence_chunks,
    "hybrid_sentence": make_hybrid_sentence,
}

# The leaderboard's winner on the sample questions (bench/retrievers.py): best evidence-hit@5
# (tied with hybrid_sentence, +12 points over dense) with the better MRR and the lower latency.
DEFAULT_RETRIEVER = "rerank"


def retriever_names() -> list[str]:
    """The registered retriever names, in registry order."""
    return list(RETRIEVERS)


def make_retriever(
    name: str, collection: Any, model: Any = None, *, progress: bool = False, **options: Any
) -> Retriever:
    """Build the retriever registered as `name` over `collection`; `options` go to its factory.

    `model` is the embedding model (default: the one the collection was opened with);
    `progress=True` shows a progress bar while an index it needs is built (the sentence index).
    `where` may also be a function of the question that returns the filter, e.g.
    `where=metadata.year_filter_from_question` ("according to the 2024 policy ..." searches only
    documents of 2024).
    """
    factory = RETRIEVERS.get(name)
    if factory is None:
        raise UnknownRetrieverError(f"Unknown retriever {name!r}; choose one of: {', '.join(RETRIEVERS)}.")
    if "progress" in inspect.signature(factory).parameters:
        options["progress"] = progress
    where = options.get("where")
    if callable(where):  # a filter chosen per question
        options.pop("where")
        encode = _encoder(model, collection)
        return QueryFilteredRetriever(lambda w: factory(collection, encode, where=w, **options), where)
    return factory(collection, model, **options)


def multi_query_retriever(
    collection: Any, model: Any = None, llm: Any = None, *, base: str = "hybrid", n: int = 3, **options: Any
) -> Any:
    """Multi-query expansion: `llm` rewords the question `n` times, `base` searches each, RRF fuses them."""
    from .query_expansion import MultiQueryRetriever

    return MultiQueryRetriever(make_retriever(base, collection, model, **options), llm, n=n)


def hyde_retriever(
    collection: Any, model: Any = None, llm: Any = None, *, include_question: bool = True, **filters: Any
) -> Any:
    """HyDE: dense search with the vector of a passage `llm` writes to answer the question."""
    from .query_expansion import HyDERetriever

    dense = make_dense(collection, model, **filters)
    return HyDERetriever(
        lambda vector, k: dense.search_vector(vector, k)[0],
        dense.encode,
        llm,
        include_question=include_question,
    )


def describe_retrievers() -> dict[str, str]:
    """Each registered name with the first line of its factory's docstring."""
    return {name: (factory.__doc__ or "").strip().splitlines()[0] for name, factory in RETRIEVERS.items()}


__all__ = [
    "DEFAULT_RETRIEVER",
    "RETRIEVERS",
    "ExpandedRetriever",
    "HybridRetriever",
    "MMRRetriever",
    "QueryEncoder",
    "QueryFilteredRetriever",
    "RerankRetriever",
    "UnknownRetrieverError",
    "VectorRetriever",
    "collection_model",
    "describe_retrievers",
    "hyde_retriever",
    "make_retriever",
    "multi_query_retriever",
    "retriever_names",
]
