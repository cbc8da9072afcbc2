"""Keyword search: a BM25 index over a collection's chunks, cached on disk, and its retriever.

Dense vectors find text that *means* the same; BM25 finds text that *says* the same words, which
wins on names, numbers and codes ("ADR-0019", "€165", "Lantern S3"). The index is built with the
`bm25s` library from the texts the Chroma collection already stores, so both searches always look
at the same chunks:

    retriever = BM25Retriever.from_collection(collection)
    retriever("hotel cap London", k=5)       # -> list[RetrievedChunk], best first

Tokenising is deliberately simple and needs no downloads: lower case, words and numbers, English
stop words removed, and a light suffix-stripping stemmer (`light_stem`) so "claims" matches "claim".

The index is saved in a folder next to the Chroma data (`bm25_cache_root`) and named after a
fingerprint of the collection's ids and content hashes (`collection_fingerprint`): when a chunk is
added, changed or removed the fingerprint changes and the next `load_bm25_index` rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import PROJECT_ROOT
from .base import RetrievedChunk, check_query

# Bump when tokenising or the stored layout changes: old cached indexes then no longer match.
INDEX_FORMAT = 2
DEFAULT_K1 = 1.2
DEFAULT_B = 0.75
CACHE_FOLDER = "rag_helpers_bm25"

# Common English function words, plus the words questions start with; none of them says what a
# chunk is about. (bm25s ships a shorter list of 33.)
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all am an and any are as at be because been before being below
    between both but by can could did do does doing done down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves s t d ll m re ve also may might must
    shall us per via
    """.split()  # noqa: SIM905 - a word list is easier to read as text
)

_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+", re.UNICODE)


def light_stem(word: str) -> str:
    """Strip common English endings so that word forms meet ("policies" -> "policy", "expired" and
    "expires" -> "expir").

    A small, predictable stand-in for a real stemmer (Porter/Snowball): plural -s/-es/-ies, then
    -ed/-ing when at least four letters remain, then a final -e. Words shorter than four letters
    and anything with digits stay as they are.
    """
    if len(word) < 4 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    else:
        for suffix in ("ing", "ed"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 4:
                word = word[: -len(suffix)]
                if word[-1] == word[-2] and word[-1] not in "lsz":
                    word = word[:-1]  # "planned" -> "plan", "submitting" -> "submit"
                break
    if len(word) >= 4 and word.endswith("e"):
        word = word[:-1]
    return word


def tokenize(text: str, stopwords: Iterable[str] = STOPWORDS, stem: bool = True) -> list[str]:
    """Lower-case words and numbers of `text`, without stop words, stemmed with `light_stem`."""
    stop = stopwords if isinstance(stopwords, (set, frozenset)) else frozenset(stopwords)
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if token in stop:
            continue
        tokens.append(light_stem(token) if stem else token)
    return tokens


def title_words(document_id: str) -> str:
    """The words of a document's path ("policies/travel_policy_2024.md" -> "policies travel policy 2024")."""
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", document_id)
    return re.sub(r"[/_\-.]+", " ", stem).strip()


# --- Reading a collection ---------------------------------------------------------------------


def read_collection(collection: Any, include: Sequence[str] = ("documents", "metadatas")) -> dict[str, list]:
    """Every record of a collection ({"ids": [...], "documents": [...], "metadatas": [...]}), in pages."""
    page_size = int(collection._client.get_max_batch_size())
    data: dict[str, list] = {"ids": [], **{key: [] for key in include}}
    offset = 0
    while True:
        page = collection.get(include=list(include), limit=page_size, offset=offset)
        data["ids"].extend(page["ids"])
        for key in include:
            data[key].extend(page.get(key) or [None] * len(page["ids"]))
        if len(page["ids"]) < page_size:
            return data
        offset += len(page["ids"])


def collection_fingerprint(collection: Any) -> str:
    """A hash of every chunk id with its content hash: it changes whenever any chunk does."""
    data = read_collection(collection, include=("metadatas",))
    pairs = []
    needs_text = []
    for chunk_id, meta in zip(data["ids"], data["metadatas"]):
        content = (meta or {}).get("content_hash")
        if content is None:
            needs_text.append(chunk_id)
        pairs.append([chunk_id, content])
    if needs_text:  # not written by `ingest`: hash the text itself
        texts = collection.get(ids=needs_text, include=["documents"])
        by_id = dict(zip(texts["ids"], texts["documents"]))
        pairs = [
            [i, c if c is not None else hashlib.sha256((by_id.get(i) or "").encode()).hexdigest()]
            for i, c in pairs
        ]
    pairs.sort()
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()


def bm25_cache_root(collection: Any) -> Path:
    """Where a collection's BM25 indexes are cached: next to the Chroma data, or in .cache/ for a server."""
    settings = collection._client.get_settings()
    if getattr(settings, "is_persistent", False) and settings.persist_directory:
        return Path(settings.persist_directory) / CACHE_FOLDER
    host = getattr(settings, "chroma_server_host", None)
    if host:
        port = getattr(settings, "chroma_server_http_port", None)
        return PROJECT_ROOT / ".cache" / "bm25" / f"{host}_{port}"
    return PROJECT_ROOT / ".cache" / "bm25" / "in-memory"


# --- The index --------------------------------------------------------------------------------


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


def _params_tag(k1: float, b: float, titles: bool) -> str:
    raw = json.dumps([INDEX_FORMAT, k1, b, titles, sorted(STOPWORDS)])
    return hashlib.sha256(raw.encode()).hexdigest()[:8]


def load_bm25_index(
    collection: Any,
    *,
    cache_dir: str | Path | None = None,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    titles: bool = True,
    rebuild: bool = False,
) -> BM25Index:
    """The BM25 index of `collection`: from the disk cache when the collection is unchanged, else built.

    The cache lives in `cache_dir` (default `bm25_cache_root(collection)`), one folder per collection
    named `<collection>@<fingerprint>.<settings>`; building a new one removes the collection's older
    folders. `rebuild=True` ignores what is cached.
    """
    fingerprint = collection_fingerprint(collection)
    root = Path(cache_dir) if cache_dir is not None else bm25_cache_root(collection)
    tag = _params_tag(k1, b, titles)
    folder = root / f"{collection.name}@{fingerprint[:16]}.{tag}"
    if not rebuild and (folder / "records.json").is_file():
        try:
            index = BM25Index.load(folder)
            if index.fingerprint == fingerprint:
                return index
        except (ValueError, OSError, KeyError, json.JSONDecodeError):
            pass  # unreadable or from another version: rebuild below
    data = read_collection(collection)
    index = BM25Index.build(
        data["ids"],
        [t or "" for t in data["documents"]],
        data["metadatas"],
        k1=k1,
        b=b,
        titles=titles,
        fingerprint=fingerprint,
    )
    _write_atomically(index, root, folder)
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


# --- The retriever ----------------------------------------------------------------------------


def filter_mask(
    collection: Any,
    index: BM25Index,
    where: Mapping[str, Any] | None,
    where_document: Mapping[str, Any] | None,
) -> np.ndarray | None:
    """A boolean mask of the index rows that match Chroma's `where` / `where_document` filters (None: all)."""
    if not where and not where_document:
        return None
    allowed = set(
        collection.get(
            where=dict(where) if where else None,
            where_document=dict(where_document) if where_document else None,
            include=[],
        )["ids"]
    )
    return np.fromiter((chunk_id in allowed for chunk_id in index.ids), dtype=bool, count=len(index.ids))


class BM25Retriever:
    """Keyword retriever: `retriever(query, k)` -> the k chunks with the highest BM25 score."""

    name = "bm25"

    def __init__(
        self,
        index: BM25Index,
        collection: Any = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> None:
        if (where or where_document) and collection is None:
            raise ValueError("filters (where / where_document) need the collection: pass collection=...")
        self.index = index
        self.collection = collection
        self.where = where
        self.where_document = where_document
        self._mask = filter_mask(collection, index, where, where_document) if collection is not None else None

    @classmethod
    def from_collection(
        cls,
        collection: Any,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
        **index_options: Any,
    ) -> BM25Retriever:
        """Load (or build and cache) the collection's BM25 index and search it."""
        return cls(load_bm25_index(collection, **index_options), collection, where, where_document)

    def refresh(self) -> BM25Retriever:
        """Pick up changes to the collection (rebuilds the index only if it changed)."""
        self.index = load_bm25_index(
            self.collection, k1=self.index.k1, b=self.index.b, titles=self.index.titles
        )
        self._mask = filter_mask(self.collection, self.index, self.where, self.where_document)
        return self

    def search(
        self, query: str | Sequence[str], k: int = 5, weights: Mapping[str, float] | None = None
    ) -> list[RetrievedChunk]:
        """Like calling the retriever, but also takes tokens and per-term weights (for query expansion)."""
        check_query(query if isinstance(query, str) else " ".join(query), k)
        return [self.index.chunk(i, s) for i, s in self.index.search(query, k, self._mask, weights)]

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        return self.search(query, k)

    def __repr__(self) -> str:
        where = f", where={self.where!r}" if self.where else ""
        where += f", where_document={self.where_document!r}" if self.where_document else ""
        return f"BM25Retriever({len(self.index)} chunks{where})"


__all__ = [
    "STOPWORDS",
    "BM25Index",
    "BM25Retriever",
    "bm25_cache_root",
    "collection_fingerprint",
    "filter_mask",
    "light_stem",
    "load_bm25_index",
    "read_collection",
    "title_words",
    "tokenize",
]
