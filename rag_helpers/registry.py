"""The retrievers by name: a table of names to constructors, and the one place that builds them.

    retriever = make_retriever("hybrid", collection, model)
    retriever("What is the hotel cap in London?", k=5)      # -> list[RetrievedChunk], best first

Every constructor has the shape `(scope, **options)`: a `store.SearchScope` (the collection, the
query encoder, Chroma's filters) and the technique's own options. It only opens indexes that
`python -m rag_helpers ingest` (or `ingest.ensure_index`) built; the shared preamble (the name
check, the scope) is `make_retriever`, once.

`DEFAULT_RETRIEVER` is the winner of the leaderboard on the sample questions
(`python bench/retrievers.py`): best evidence-hit@5 with the better MRR and the lower latency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .base import Retriever
from .dense import DenseRetriever
from .fusion import HybridRetriever, hybrid_sentence
from .keyword import BM25Retriever
from .mmr import MMRRetriever
from .query_expansion import ExpandedRetriever, MultiQueryRetriever
from .rerank import RerankRetriever
from .store import SearchScope
from .windows import SentenceChunkRetriever, SentenceWindowRetriever

RETRIEVERS: dict[str, Callable[..., Retriever]] = {
    "dense": DenseRetriever.from_scope,
    "bm25": BM25Retriever.from_scope,
    "hybrid": HybridRetriever.from_scope,
    "mmr": MMRRetriever.from_scope,
    "sentence_window": SentenceWindowRetriever.from_scope,
    "expanded": ExpandedRetriever.from_scope,
    "rerank": RerankRetriever.from_scope,
    "sentence_chunks": SentenceChunkRetriever.from_scope,
    "hybrid_sentence": hybrid_sentence,
}

DEFAULT_RETRIEVER = "rerank"


class UnknownRetrieverError(ValueError):
    """A retriever name that is not in `RETRIEVERS`."""


def make_retriever(
    name: str,
    collection: Any,
    model: Any = None,
    *,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    **options: Any,
) -> Retriever:
    """Build the retriever registered as `name` over `collection`; `options` go to its constructor.

    `model` is the embedding model or an `embeddings.QueryEncoder` (default: the model the
    collection was built with, loaded on the first question); `where` / `where_document` are
    Chroma filters. An index the retriever needs that ingest has not built raises
    `store.IndexNotBuiltError`, saying how to build it.
    """
    constructor = RETRIEVERS.get(name)
    if constructor is None:
        raise UnknownRetrieverError(f"Unknown retriever {name!r}; choose one of: {', '.join(RETRIEVERS)}.")
    return constructor(SearchScope.of(collection, model, where, where_document), **options)


def describe_retrievers() -> dict[str, str]:
    """Each registered name with the first line of its constructor's docstring."""
    return {name: (made.__doc__ or "").strip().splitlines()[0] for name, made in RETRIEVERS.items()}


def multi_query_retriever(
    collection: Any, model: Any = None, llm: Any = None, *, base: str = "hybrid", n: int = 3, **options: Any
) -> MultiQueryRetriever:
    """Multi-query expansion: `llm` rewords the question `n` times, `base` searches each, RRF fuses them."""
    return MultiQueryRetriever(make_retriever(base, collection, model, **options), llm, n=n)


__all__ = [
    "DEFAULT_RETRIEVER",
    "RETRIEVERS",
    "UnknownRetrieverError",
    "describe_retrievers",
    "make_retriever",
    "multi_query_retriever",
]
