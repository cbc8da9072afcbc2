"""The keyword (BM25) index of a collection: built by ingest from the chunks Chroma stores, opened by
the BM25 retriever (`keyword`).

A `bm25s` index over the chunks' words (`text.tokenize`: stop words out, a light stemmer), saved in
a folder next to the Chroma data (`store.index_files_root`) and named after a fingerprint of the
collection's chunk ids and content hashes (`store.collection_fingerprint`). BM25's statistics are
global (every document frequency changes with the corpus), so any change rebuilds it; that takes
well under a second. `open_bm25_index` only opens it, and raises `store.IndexNotBuiltError` saying
how to build it when it is missing or older than the chunks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .base import RetrievedChunk
from .store import BUILD_HELP, IndexNotBuiltError, collection_fingerprint, index_files_root, read_collection
from .text import STOPWORDS, title_words, tokenize

# Bump when tokenising or the stored layout changes: old cached indexes then no longer match.
INDEX_FORMAT = 2
DEFAULT_K1 = 1.2
DEFAULT_B = 0.75


@dataclass
class BM25Index:
    """A BM25 index over chunks, with their ids, texts and metadata kept alongside."""

    ids: list[str]
    texts: list[str]
    metadatas: list[dict[str, Any]]
    bm25: Any  # bm25s.BM25
    fingerprint: str = ""
    k1: float = DEFAULT_K1
    b: float = DEFAULT_B
    titles: bool = True

    @classmethod
    def build(
        cls,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        *,
        k1: float = DEFAULT_K1,
        b: float = DEFAULT_B,
        titles: bool = True,
        fingerprint: str = "",
    ) -> BM25Index:
        """Index `texts`; with `titles=True` the words of each chunk's document path are indexed too."""
        import bm25s

        if len(ids) != len(texts):
            raise ValueError(f"got {len(ids)} ids for {len(texts)} texts")
        metas = [dict(m or {}) for m in (metadatas if metadatas is not None else [None] * len(ids))]
        corpus = [
            tokenize(f"{title_words(str(meta.get('document_id', '')))}\n{text}" if titles else text)
            for text, meta in zip(texts, metas)
        ]
        bm25 = bm25s.BM25(k1=k1, b=b)
        if ids:
            bm25.index(corpus, show_progress=False)
        return cls(list(ids), list(texts), metas, bm25, fingerprint, k1, b, titles)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def params(self) -> BM25Params:
        """The settings it was built with."""
        return BM25Params(self.k1, self.b, self.titles)

    def document_frequency(self, token: str) -> int:
        """In how many chunks a (tokenised) term occurs."""
        token_id = self.bm25.vocab_dict.get(token) if self.ids else None
        if token_id is None:
            return 0
        indptr = self.bm25.scores["indptr"]
        return int(indptr[token_id + 1] - indptr[token_id])

    def term_scores(self, token: str) -> np.ndarray:
        """BM25 score of one (already tokenised) term for every chunk; zeros for an unknown term."""
        token_id = self.bm25.vocab_dict.get(token) if self.ids else None
        if token_id is None:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self.bm25.get_scores_from_ids([token_id]), dtype=np.float32)

    def scores(self, query: str | Sequence[str], weights: Mapping[str, float] | None = None) -> np.ndarray:
        """BM25 score of every chunk for a query (text, or tokens); `weights` scales individual terms."""
        tokens = tokenize(query) if isinstance(query, str) else list(query)
        total = np.zeros(len(self.ids), dtype=np.float32)
        if not self.ids:
            return total
        known = [t for t in tokens if t in self.bm25.vocab_dict]
        if not known:
            return total
        if weights is None:
            ids = [self.bm25.vocab_dict[t] for t in known]
            return np.asarray(self.bm25.get_scores_from_ids(ids), dtype=np.float32)
        for token in dict.fromkeys(known):
            total += float(weights.get(token, 1.0)) * known.count(token) * self.term_scores(token)
        return total

    def search(
        self,
        query: str | Sequence[str],
        k: int = 5,
        mask: np.ndarray | None = None,
        weights: Mapping[str, float] | None = None,
    ) -> list[tuple[int, float]]:
        """(position, score) of the `k` best chunks with a positive score, best first (`mask`: rows kept)."""
        scores = self.scores(query, weights)
        if mask is not None:
            scores = np.where(mask, scores, 0.0)
        positive = np.flatnonzero(scores > 0)
        if positive.size == 0:
            return []
        # Sort by score, then by position, so equal scores come back in a stable order.
        order = positive[np.lexsort((positive, -scores[positive]))][:k]
        return [(int(i), float(scores[i])) for i in order]

    def chunk(self, position: int, score: float) -> RetrievedChunk:
        """The chunk at `position` as a `RetrievedChunk` with this score (BM25 has no distance)."""
        return RetrievedChunk(
            id=self.ids[position],
            text=self.texts[position],
            distance=None,
            score=score,
            metadata=dict(self.metadatas[position]),
        )

    # --- saving and loading ---

    def save(self, folder: str | Path) -> Path:
        """Write the index to `folder` (the bm25s arrays plus records.json with ids, texts, metadata)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.ids:
            self.bm25.save(str(folder / "bm25"), show_progress=False)
        records = {
            "format": INDEX_FORMAT,
            "fingerprint": self.fingerprint,
            "k1": self.k1,
            "b": self.b,
            "titles": self.titles,
            "ids": self.ids,
            "texts": self.texts,
            "metadatas": self.metadatas,
        }
        (folder / "records.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> BM25Index:
        """Read an index written by `save`."""
        import bm25s

        folder = Path(folder)
        records = json.loads((folder / "records.json").read_text(encoding="utf-8"))
        if records.get("format") != INDEX_FORMAT:
            raise ValueError(
                f"{folder} holds a BM25 index in format {records.get('format')}, not {INDEX_FORMAT}"
            )
        bm25 = bm25s.BM25.load(str(folder / "bm25"), show_progress=False) if records["ids"] else bm25s.BM25()
        return cls(
            records["ids"],
            records["texts"],
            records["metadatas"],
            bm25,
            records["fingerprint"],
            records["k1"],
            records["b"],
            records["titles"],
        )


@dataclass(frozen=True)
class BM25Params:
    """How an index scores: BM25's k1 and b, and whether a chunk's document path counts as its words."""

    k1: float = DEFAULT_K1
    b: float = DEFAULT_B
    titles: bool = True

    def tag(self) -> str:
        """A short hash of these settings, the format and the stop words: part of the index's folder name."""
        raw = json.dumps([INDEX_FORMAT, self.k1, self.b, self.titles, sorted(STOPWORDS)])
        return hashlib.sha256(raw.encode()).hexdigest()[:8]


def _bm25_folder(collection: Any, fingerprint: str, params: BM25Params) -> Path:
    return index_files_root(collection) / f"{collection.name}@{fingerprint[:16]}.{params.tag()}"


def _read_bm25(folder: Path, fingerprint: str) -> BM25Index | None:
    """The index saved in `folder` if it is readable and built from `fingerprint`, else None."""
    if not (folder / "records.json").is_file():
        return None
    try:
        index = BM25Index.load(folder)
    except (ValueError, OSError, KeyError, json.JSONDecodeError):
        return None  # unreadable or from another version
    return index if index.fingerprint == fingerprint else None


def saved_bm25_size(collection: Any, fingerprint: str, params: BM25Params = BM25Params()) -> int | None:
    """How many chunks the collection's saved BM25 index holds, if it is of this format and built
    from `fingerprint`; None otherwise. Reads only its records, so it imports no bm25s."""
    try:
        text = (_bm25_folder(collection, fingerprint, params) / "records.json").read_text(encoding="utf-8")
        records = json.loads(text)
    except (OSError, json.JSONDecodeError):
        return None
    if records.get("format") != INDEX_FORMAT or records.get("fingerprint") != fingerprint:
        return None
    return len(records.get("ids") or [])


def build_bm25_index(
    collection: Any, params: BM25Params = BM25Params(), fingerprint: str | None = None
) -> tuple[BM25Index, bool]:
    """Build (or keep) the collection's BM25 index on disk; returns it and whether it was (re)built.

    One folder per collection in `store.index_files_root(collection)`, named
    `<collection>@<fingerprint>.<settings>`; building a new one removes the collection's older folders.
    """
    fingerprint = fingerprint or collection_fingerprint(collection)
    folder = _bm25_folder(collection, fingerprint, params)
    index = _read_bm25(folder, fingerprint)
    if index is not None:
        return index, False
    data = read_collection(collection)
    index = BM25Index.build(
        data["ids"], [t or "" for t in data["documents"]], data["metadatas"],
        k1=params.k1, b=params.b, titles=params.titles, fingerprint=fingerprint,
    )
    _write_atomically(index, folder.parent, folder)
    return index, True


def open_bm25_index(collection: Any, params: BM25Params = BM25Params()) -> BM25Index:
    """The collection's BM25 index as ingest saved it; `IndexNotBuiltError` if missing or stale."""
    fingerprint = collection_fingerprint(collection)
    index = _read_bm25(_bm25_folder(collection, fingerprint, params), fingerprint)
    if index is None:
        raise IndexNotBuiltError(
            f"The keyword (BM25) index of collection {collection.name!r} is missing or older than its "
            f"chunks ({params}): {BUILD_HELP}."
        )
    return index


def _write_atomically(index: BM25Index, root: Path, folder: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        index.save(staging)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    # Older indexes of this collection (other fingerprints or settings) are stale now.
    # "@" cannot occur in a Chroma collection name, so the prefix matches this collection only.
    prefix = folder.name.split("@")[0] + "@"
    for old in root.glob(f"{prefix}*"):
        if old != folder and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


__all__ = ["BM25Index", "BM25Params", "build_bm25_index", "open_bm25_index", "saved_bm25_size"]
