"""Shared types every stage uses: `Document`, `Chunk`, the retrieved hit, the `Retriever` protocol, `Prompt`.

This is the bottom layer (L0, with `config`): it imports nothing from the package, and no other
module defines or guesses these shapes. Data flows one way through them:
files -> `Document` -> `Chunk` -> vectors -> indexes -> `RetrievedChunk` hits -> `Prompt` -> answer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Span = tuple[int, int]

# The keys `ingest` stores with every chunk, so a hit can be traced back to its document span.
CHUNK_KEYS = ("document_id", "chunk_index", "start", "end", "content_hash")


@dataclass(frozen=True)
class Document:
    """One source file: `id` is its path relative to the loaded folder (forward slashes)."""

    id: str
    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A piece of a document; `text == document.text[start:end]`."""

    id: str
    text: str
    document_id: str
    index: int
    start: int
    end: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def content_hash(self) -> str:
        """A short fingerprint of the text, used to skip unchanged chunks on re-ingest."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class RetrievedChunk:
    """One search hit: the chunk's id and text, its score (higher is better), and its stored metadata.

    `distance` is the vector store's distance when the hit came from dense search, else None.
    The offsets and document id come from the metadata `ingest` stores (`CHUNK_KEYS`).
    """

    id: str
    text: str
    distance: float | None
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def document_id(self) -> str:
        """The id of the document the chunk came from."""
        return str(self.metadata.get("document_id", ""))

    @property
    def start(self) -> int:
        """Start offset of the chunk in its document."""
        return int(self.metadata.get("start", 0))

    @property
    def end(self) -> int:
        """End offset (exclusive) of the chunk in its document."""
        return int(self.metadata.get("end", 0))


@runtime_checkable
class Retriever(Protocol):
    """Anything that maps a query to its `k` best hits, best first: `retriever(query, k)`."""

    def __call__(self, query: str, k: int = 5) -> Sequence[RetrievedChunk]: ...


Message = dict[str, str]  # one chat message: {"role": "system" | "user" | "assistant", "content": ...}


@dataclass(frozen=True)
class Prompt:
    """What an answerer is given: chat messages, the chunks they number, and the question itself.

    Source [n] of the messages is `chunks[n-1]`. `question_vector` is the question's embedding when
    the pipeline computed it already (an answerer that needs it then does not embed it again).
    `dropped` and `truncated` say what a length budget left out; `notes` says so in words.
    A bare chat request is `Prompt(messages)`.
    """

    messages: list[Message]
    chunks: tuple[RetrievedChunk | Chunk, ...] = ()
    question: str = ""
    question_vector: Any = field(default=None, repr=False, compare=False)
    dropped: tuple[RetrievedChunk | Chunk, ...] = ()
    truncated: bool = False
    style: str = "grounded"
    notes: tuple[str, ...] = ()


def check_query(query: str, k: int) -> None:
    """Raise a clear error for an empty/non-string query or a k that is not a positive integer."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError(
            "The query is empty; ask a question, e.g. retriever('What is the travel policy?', 5)."
        )
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive whole number, got {k!r}")


__all__ = [
    "CHUNK_KEYS", "Chunk", "Document", "Message", "Prompt", "Retriever", "RetrievedChunk", "Span", "check_query",
]
