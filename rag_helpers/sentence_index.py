"""The sentence index of a collection: one vector per sentence of every document, for sentence
windows, small-to-big and re-ranking.

One NumPy file next to the BM25 index (`store.index_files_root`), named after the fingerprint of the
chunks it was built from (`<collection>__sentences@<fingerprint>.npz`): every sentence's document,
offsets, a hash of its text and its vector, plus a hash of each document's text so that `ingest`
re-embeds only the sentences of changed documents. No second Chroma collection: the retrievers search
it with one matrix product (exact; a few milliseconds for 30,000 sentences) and apply the retriever's
filters themselves (`allowed_rows`): `where` through the chunks of the main collection that match
it, `where_document` on the sentences' own text. `ingest` writes it (`ingest.update_sentence_index`);
this module defines it, plans an update, saves and opens it: `open_sentence_index` raises
`store.IndexNotBuiltError` saying how to build a missing or stale one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.errors import NotFoundError

from .base import CHUNK_KEYS, Chunk, Document, RetrievedChunk
from .chunking import chunk_documents, sentence_spans
from .store import (
    BUILD_HELP,
    IndexNotBuiltError,
    client_of,
    collection_fingerprint,
    index_files_root,
    max_batch_size,
    read_collection,
)

SENTENCES_SUFFIX = "__sentences"
# Bump when the sentence splitter or the file's layout changes: older files are then rebuilt.
INDEX_FORMAT = 1
# Metadata key of the sentence *collection* older versions kept in Chroma (now replaced by the file).
BUILT_FROM_KEY = "built_from_fingerprint"
_HASH_BYTES = 16


def sentence_collection_name(collection: Any) -> str:
    """The name of the sentence index that belongs to `collection` (`<collection>__sentences`)."""
    return f"{collection.name}{SENTENCES_SUFFIX}"


def documents_from_collection(collection: Any, data: Mapping[str, list] | None = None) -> list[Document]:
    """The documents of a collection, pieced together from their chunks' text and offsets.

    Characters no chunk covers (whitespace a splitter dropped between chunks) become line breaks.
    `data` is what `store.read_collection(collection)` returned, when the caller already has it.
    """
    data = data if data is not None else read_collection(collection)
    pieces: dict[str, list[tuple[int, str]]] = {}
    metadata: dict[str, dict[str, Any]] = {}
    for text, meta in zip(data["documents"], data["metadatas"]):
        meta = dict(meta or {})
        if "document_id" not in meta or "start" not in meta:
            raise ValueError(
                f"Collection {collection.name!r} has chunks without document_id/start metadata, so its "
                "documents cannot be rebuilt; it was not written by store.ingest. Pass documents=... instead."
            )
        document_id = str(meta["document_id"])
        pieces.setdefault(document_id, []).append((int(meta["start"]), text or ""))
        metadata.setdefault(document_id, {k: v for k, v in meta.items() if k not in CHUNK_KEYS})
    documents = []
    for document_id in sorted(pieces):
        length = max(start + len(text) for start, text in pieces[document_id])
        characters = ["\n"] * length
        for start, text in sorted(pieces[document_id]):
            characters[start : start + len(text)] = text
        documents.append(Document(document_id, "".join(characters), document_id, metadata[document_id]))
    return documents


def sentence_chunks(documents: Iterable[Document]) -> list[Chunk]:
    """Every sentence of every document as a `Chunk` (id `<document>#s<n>`), with offsets in its document."""
    return chunk_documents(documents, sentence_spans, id_format="{document}#s{index}")


def sentence_id(document_id: str, number: int) -> str:
    """The id of sentence number `number` of a document, as hits and reports name it."""
    return f"{document_id}#s{number}"


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:_HASH_BYTES]


# --- The index ----------------------------------------------------------------------------------


@dataclass(eq=False)
class SentenceIndex:
    """Every sentence of a collection's documents: its document, offsets, text hash and vector.

    Rows are grouped by document (in `documents` order, `bounds[i]:bounds[i + 1]` are document i's)
    and ordered by position inside it, so a sentence's number in its document is its row minus the
    document's first row. `built_from` is the fingerprint of the chunks it was built from; `model` the
    embedding model and precision of its vectors.
    """

    name: str
    documents: np.ndarray  # (documents,) str
    document_hashes: np.ndarray  # (documents,) bytes: hash of each document's text
    bounds: np.ndarray  # (documents + 1,) int64
    starts: np.ndarray  # (sentences,) int64
    ends: np.ndarray
    text_hashes: np.ndarray  # (sentences,) bytes
    vectors: np.ndarray  # (sentences, dim) float32, unit length
    built_from: str = ""
    model: str = ""
    path: Path | None = field(default=None, compare=False)

    def count(self) -> int:
        """How many sentences the index holds."""
        return len(self.starts)

    def __len__(self) -> int:
        return self.count()

    def __repr__(self) -> str:
        return f"SentenceIndex({self.name!r}, {self.count()} sentences of {len(self.documents)} documents)"

    @functools.cached_property
    def document_ids(self) -> np.ndarray:
        """The document of every row."""
        return np.repeat(self.documents, np.diff(self.bounds))

    @functools.cached_property
    def numbers(self) -> np.ndarray:
        """Every row's sentence number inside its document."""
        return np.arange(self.count()) - np.repeat(self.bounds[:-1], np.diff(self.bounds))

    @functools.cached_property
    def _rows_of(self) -> dict[str, tuple[int, int]]:
        return {str(d): (int(a), int(b)) for d, a, b in zip(self.documents, self.bounds[:-1], self.bounds[1:])}

    def rows(self, document_id: str) -> tuple[int, int]:
        """[first, last) rows of a document's sentences ((0, 0) for a document it does not hold)."""
        return self._rows_of.get(document_id, (0, 0))

    def spans(self, document_id: str) -> list[tuple[int, int]]:
        """A document's sentence spans, in order."""
        first, last = self.rows(document_id)
        return list(zip(self.starts[first:last].tolist(), self.ends[first:last].tolist()))

    def spans_by_document(self) -> dict[str, list[tuple[int, int]]]:
        """Every document's sentence spans, in order."""
        return {document_id: self.spans(document_id) for document_id in self._rows_of}

    def by_document(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """{document id: (starts, ends, vectors)} of its sentences, in order (views, no copies)."""
        return {
            document_id: (self.starts[a:b], self.ends[a:b], self.vectors[a:b])
            for document_id, (a, b) in self._rows_of.items()
        }

    def search(
        self, query_vector: np.ndarray, k: int, rows: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The `k` rows (among `rows`, default all) whose vectors lie closest to the query, best first,
        with their cosine similarity; equal scores keep row order."""
        candidates = np.arange(self.count()) if rows is None else np.asarray(rows, dtype=np.int64)
        if k <= 0 or len(candidates) == 0:
            return []
        vectors = self.vectors if rows is None else self._subset(candidates)
        scores = vectors @ np.asarray(query_vector, dtype=np.float32)
        if k < len(scores):
            top = np.argpartition(-scores, k - 1)[:k]
        else:
            top = np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(candidates[i]), float(scores[i])) for i in top]

    def _subset(self, rows: np.ndarray) -> np.ndarray:
        # A retriever searches the same filtered rows every time: keep their vectors together once.
        cache = self.__dict__.setdefault("_subsets", {})
        key = (len(rows), hash(rows.tobytes()))
        if key not in cache:
            cache.clear()
            cache[key] = np.ascontiguousarray(self.vectors[rows])
        return cache[key]

    def hit(
        self, row: int, score: float, text: str = "", space: str = "l2", metadata: Mapping[str, Any] | None = None
    ) -> RetrievedChunk:
        """Row `row` as a hit, `score` its cosine similarity and `distance` as Chroma would report it
        in `space` ("l2": squared Euclidean distance of unit vectors; "cosine" and "ip": 1 - cosine)."""
        distance = 2.0 - 2.0 * score if space == "l2" else 1.0 - score
        document_id = str(self.document_ids[row])
        number = int(self.numbers[row])
        meta = {
            **dict(metadata or {}),
            "document_id": document_id,
            "chunk_index": number,
            "start": int(self.starts[row]),
            "end": int(self.ends[row]),
        }
        return RetrievedChunk(sentence_id(document_id, number), text, max(distance, 0.0), score, meta)


# --- Planning an update ---------------------------------------------------------------------------


@dataclass
class SentencePlan:
    """What a new index holds (`index`, its vectors still to fill at `missing`) and what changed.

    `texts[j]` is the text of row `missing[j]`; rows not in `missing` have vectors already (kept
    from the previous index: its unchanged documents, and any sentence text it already held).
    """

    index: SentenceIndex
    missing: np.ndarray
    texts: list[str]
    added: int = 0
    updated: int = 0
    removed: int = 0
    skipped: int = 0


def plan_sentence_index(
    name: str,
    documents: Sequence[Document],
    previous: SentenceIndex | None,
    built_from: str,
    model: str,
    dim: int | None = None,
) -> SentencePlan:
    """The index of `documents`, reusing `previous` where it can: an unchanged document (same text
    hash) keeps its rows without being split again, and any sentence whose text `previous` holds keeps
    its vector. `previous` of another `model` is not reused. Only `plan.texts` must be embedded."""
    if previous is not None and previous.model != model:
        previous = None
    old_docs = previous.by_document() if previous is not None else {}
    old_hashes = (
        {str(d): bytes(h) for d, h in zip(previous.documents, previous.document_hashes)} if previous else {}
    )
    known: dict[bytes, int] = {}
    if previous is not None:
        known = {bytes(h): row for row, h in enumerate(previous.text_hashes)}
    dim = dim if dim is not None else (previous.vectors.shape[1] if previous is not None else 0)

    ordered = sorted(documents, key=lambda d: d.id)
    ids = [d.id for d in ordered]
    if len(set(ids)) != len(ids):
        raise ValueError("Two documents share an id; give each document a unique id.")
    doc_hashes, bounds = [], [0]
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    sources: list[np.ndarray] = []  # row of `previous` whose vector each new row takes, or -1
    texts: dict[int, str] = {}  # new row -> text, for rows with no vector yet
    plan = SentencePlan(index=None, missing=np.zeros(0, np.int64), texts=[])  # type: ignore[arg-type]
    for document in ordered:
        digest = _digest(document.text)
        first = bounds[-1]
        if old_hashes.get(document.id) == digest:
            a, b = previous.rows(document.id)  # type: ignore[union-attr]
            starts.append(previous.starts[a:b])  # type: ignore[union-attr]
            ends.append(previous.ends[a:b])  # type: ignore[union-attr]
            hashes.append(previous.text_hashes[a:b])  # type: ignore[union-attr]
            sources.append(np.arange(a, b))
            plan.skipped += b - a
        else:
            spans = sentence_spans(document.text)
            pieces = [document.text[s:e] for s, e in spans]
            digests = [_digest(p) for p in pieces]
            starts.append(np.array([s for s, _ in spans], dtype=np.int64))
            ends.append(np.array([e for _, e in spans], dtype=np.int64))
            hashes.append(np.array(digests, dtype=f"S{_HASH_BYTES}"))
            rows = np.array([known.get(h, -1) for h in digests], dtype=np.int64)
            sources.append(rows)
            for n, (piece, row) in enumerate(zip(pieces, rows)):
                if row < 0:
                    texts[first + n] = piece
            old = old_docs.get(document.id)
            old_hashes_of_doc = previous.text_hashes[slice(*previous.rows(document.id))] if old else []  # type: ignore[union-attr]
            for n, h in enumerate(digests):
                if n >= len(old_hashes_of_doc):
                    plan.added += 1
                elif bytes(old_hashes_of_doc[n]) != h:
                    plan.updated += 1
                else:
                    plan.skipped += 1
            plan.removed += max(0, len(old_hashes_of_doc) - len(digests))
        doc_hashes.append(digest)
        bounds.append(first + len(starts[-1]))
    kept = {d.id for d in ordered}
    plan.removed += sum(len(v[0]) for d, v in old_docs.items() if d not in kept)

    total = bounds[-1]
    source = np.concatenate(sources) if sources else np.zeros(0, np.int64)
    vectors = np.zeros((total, dim), dtype=np.float32)
    reused = source >= 0
    if reused.any():
        vectors[reused] = previous.vectors[source[reused]]  # type: ignore[union-attr]
    plan.index = SentenceIndex(
        name=name,
        documents=np.array(ids, dtype=str),
        document_hashes=np.array(doc_hashes, dtype=f"S{_HASH_BYTES}"),
        bounds=np.array(bounds, dtype=np.int64),
        starts=np.concatenate(starts) if starts else np.zeros(0, np.int64),
        ends=np.concatenate(ends) if ends else np.zeros(0, np.int64),
        text_hashes=np.concatenate(hashes) if hashes else np.zeros(0, f"S{_HASH_BYTES}"),
        vectors=vectors,
        built_from=built_from,
        model=model,
    )
    plan.missing = np.array(sorted(texts), dtype=np.int64)
    plan.texts = [texts[row] for row in plan.missing.tolist()]
    return plan


def document_hashes_match(index: SentenceIndex, documents: Sequence[Document]) -> bool:
    """Whether `index` was cut from exactly these documents' texts."""
    if len(documents) != len(index.documents):
        return False
    stored = {str(d): bytes(h) for d, h in zip(index.documents, index.document_hashes)}
    return all(stored.get(d.id) == _digest(d.text) for d in documents)


# --- The file -----------------------------------------------------------------------------------


def sentence_index_path(collection: Any, fingerprint: str) -> Path:
    """The file of the sentence index of `collection` built from the chunks with `fingerprint`."""
    return index_files_root(collection) / f"{sentence_collection_name(collection)}@{fingerprint[:16]}.npz"


def _files(collection: Any) -> list[Path]:
    """The collection's sentence index files, newest first ("@" cannot occur in a collection name)."""
    root = index_files_root(collection)
    found = [p for p in root.glob(f"{sentence_collection_name(collection)}@*.npz") if p.is_file()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def save_sentence_index(collection: Any, index: SentenceIndex) -> Path:
    """Write `index` to `sentence_index_path` (atomically) and remove the collection's older files."""
    path = sentence_index_path(collection, index.built_from)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    header = {
        "format": INDEX_FORMAT, "built_from": index.built_from, "model": index.model, "name": index.name,
        "count": index.count(),
    }
    try:
        np.savez(
            staging,
            header=np.array(json.dumps(header)),
            documents=index.documents,
            document_hashes=index.document_hashes,
            bounds=index.bounds,
            starts=index.starts,
            ends=index.ends,
            text_hashes=index.text_hashes,
            vectors=index.vectors,
        )
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    for old in _files(collection):
        if old != path:
            old.unlink(missing_ok=True)
    index.path = path
    return path


def read_header(path: Path) -> dict[str, Any] | None:
    """The header of a sentence index file (format, built_from, model), or None if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    return header if isinstance(header, dict) and header.get("format") == INDEX_FORMAT else None


def load_sentence_index(path: Path) -> SentenceIndex | None:
    """The sentence index saved at `path`, or None if it is missing, unreadable or of another format."""
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
                return None
            arrays = {key: data[key] for key in (
                "documents", "document_hashes", "bounds", "starts", "ends", "text_hashes", "vectors"
            )}
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    return SentenceIndex(
        name=str(header.get("name", "")),
        built_from=str(header.get("built_from", "")),
        model=str(header.get("model", "")),
        path=path,
        **arrays,
    )


def saved_sentence_index(collection: Any, fingerprint: str, model: str) -> Path | None:
    """The file of an up-to-date sentence index (built from `fingerprint` with `model`), read no further
    than its header; None when there is none."""
    path = sentence_index_path(collection, fingerprint)
    header = read_header(path) if path.is_file() else None
    if header is None or header.get("built_from") != fingerprint or header.get("model") != model:
        return None
    return path


def latest_sentence_index(collection: Any) -> SentenceIndex | None:
    """The collection's newest readable sentence index, whatever chunks it was built from."""
    for path in _files(collection):
        index = load_sentence_index(path)
        if index is not None:
            return index
    return None


def remove_legacy_sentence_collection(collection: Any) -> bool:
    """Delete the Chroma sentence collection an older version kept (now a file); True if there was one.

    Only a collection this package wrote (its metadata names the chunks it was built from) is deleted.
    """
    client = client_of(collection)
    name = sentence_collection_name(collection)
    try:
        legacy = client.get_collection(name, embedding_function=None)
    except (NotFoundError, ValueError):
        return False
    if BUILT_FROM_KEY not in (legacy.metadata or {}):
        return False
    client.delete_collection(name)
    return True


def open_sentence_index(collection: Any, fingerprint: str | None = None) -> SentenceIndex:
    """The sentence index of `collection`; `IndexNotBuiltError` if missing or older than the chunks."""
    name = sentence_collection_name(collection)
    fingerprint = fingerprint or collection_fingerprint(collection)
    path = sentence_index_path(collection, fingerprint)
    index = load_sentence_index(path) if path.is_file() else None
    if index is not None and index.built_from == fingerprint:
        return index
    state = "older than its chunks" if _files(collection) else "missing"
    raise IndexNotBuiltError(f"The sentence index of collection {collection.name!r} ({name}) is {state}: {BUILD_HELP}.")


def load_sentence_vectors(collection: Any, index: SentenceIndex | None = None) -> dict[str, tuple[np.ndarray, ...]]:
    """{document id: (starts, ends, vectors)} of every sentence, sorted by start (re-ranking reads this)."""
    index = index if index is not None else open_sentence_index(collection)
    return index.by_document()


# --- Filters ------------------------------------------------------------------------------------


def matches_document_filter(text: str, where_document: Mapping[str, Any]) -> bool:
    """Whether `text` passes a Chroma `where_document` filter ($contains, $not_contains, $regex,
    $not_regex, combined with $and / $or), evaluated here on a sentence's own text."""
    if len(where_document) != 1:
        return all(matches_document_filter(text, {key: value}) for key, value in where_document.items())
    (operator, value), = where_document.items()
    if operator == "$contains":
        return str(value) in text
    if operator == "$not_contains":
        return str(value) not in text
    if operator == "$regex":
        return re.search(str(value), text) is not None
    if operator == "$not_regex":
        return re.search(str(value), text) is None
    if operator == "$and":
        return all(matches_document_filter(text, part) for part in value)
    if operator == "$or":
        return any(matches_document_filter(text, part) for part in value)
    raise ValueError(
        f"Unknown where_document operator {operator!r}; use $contains, $not_contains, $regex, "
        "$not_regex, $and or $or."
    )


def _chunk_spans(collection: Any, where: Mapping[str, Any]) -> dict[str, list[tuple[int, int]]]:
    """Document id -> spans of the collection's chunks whose metadata matches `where`."""
    spans: dict[str, list[tuple[int, int]]] = {}
    page, offset = max_batch_size(collection), 0
    while True:
        data = collection.get(where=dict(where), include=["metadatas"], limit=page, offset=offset)
        for meta in data["metadatas"]:
            meta = meta or {}
            if "document_id" in meta:
                spans.setdefault(str(meta["document_id"]), []).append(
                    (int(meta.get("start", 0)), int(meta.get("end", 0)))
                )
        if len(data["ids"]) < page:
            return spans
        offset += len(data["ids"])


def allowed_rows(
    index: SentenceIndex,
    collection: Any,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
    texts: Mapping[str, str] | None = None,
) -> np.ndarray | None:
    """The rows a retriever with these filters may return (None: every row).

    `where` filters the chunks' metadata in Chroma, as it does for dense search: a sentence passes
    when it overlaps a chunk that matches. `where_document` is applied to each sentence's own text,
    taken from `texts` ({document id: text}, e.g. rebuilt with `documents_from_collection`).
    """
    if not where and not where_document:
        return None
    keep = np.ones(index.count(), dtype=bool)
    if where:
        keep[:] = False
        for document_id, spans in _chunk_spans(collection, where).items():
            first, last = index.rows(document_id)
            starts, ends = index.starts[first:last], index.ends[first:last]
            for start, end in spans:
                keep[first:last] |= (starts < end) & (ends > start)
    if where_document:
        if texts is None:
            texts = {d.id: d.text for d in documents_from_collection(collection)}
        for row in np.flatnonzero(keep):
            text = texts.get(str(index.document_ids[row]), "")[index.starts[row] : index.ends[row]]
            keep[row] = matches_document_filter(text, where_document)
    return np.flatnonzero(keep)


__all__ = [
    "BUILT_FROM_KEY",
    "INDEX_FORMAT",
    "SentenceIndex",
    "SentencePlan",
    "allowed_rows",
    "document_hashes_match",
    "documents_from_collection",
    "latest_sentence_index",
    "load_sentence_index",
    "load_sentence_vectors",
    "matches_document_filter",
    "open_sentence_index",
    "plan_sentence_index",
    "remove_legacy_sentence_collection",
    "save_sentence_index",
    "saved_sentence_index",
    "sentence_chunks",
    "sentence_collection_name",
    "sentence_id",
    "sentence_index_path",
]
