"""The indexes beside the dense vectors: built and kept in step by ingest, opened by retrievers.

Two indexes serve the techniques of layer 3, both derived from the chunks Chroma stores:

* **keyword (BM25):** a `bm25s` index over the chunks' words, saved in a folder next to the Chroma
  data (`bm25_cache_root`) and named after a fingerprint of the collection's chunk ids and content
  hashes (`collection_fingerprint`). BM25's statistics are global (every document frequency
  changes with the corpus), so a change rebuilds it; that takes well under a second.
* **sentences:** a second Chroma collection, `<collection>__sentences`, with one vector per
  sentence of every document (`chunking.sentence_spans`), for sentence windows and re-ranking.
  It is written with `store.ingest`, so only the sentences of changed documents are embedded,
  and its vectors are also snapshotted to a NumPy file beside the BM25 index
  (`sentence_vectors_path`), which re-ranking reads instead of querying Chroma per document.

`update_indexes(collection)` builds or refreshes both (it is what `python -m rag_helpers ingest`
and `ensure_index` run after ingesting chunks); `open_bm25_index` / `open_sentence_index` only
open them, and raise `IndexNotBuiltError` saying how to build them when they are missing or
older than the chunks. So the first search after ingest costs what every later one does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.errors import NotFoundError

from .base import CHUNK_KEYS, Chunk, Document, RetrievedChunk
from .chunking import Splitter, chunk_documents, sentence_spans
from .config import PROJECT_ROOT, SAMPLE_CORPUS_DIR, Settings
from .documents import scan_folder
from .store import (
    IngestReport,
    chroma_settings_of,
    chunk_metadata,
    client_of,
    collection_distance,
    collection_model,
    get_client,
    get_collection,
    ingest,
    ingest_lock,
    needs_model,
    open_collection,
    read_collection,
    stored_model_config,
)

CACHE_FOLDER = "rag_helpers_bm25"
SENTENCES_SUFFIX = "__sentences"
# Metadata key of the sentence collection: the fingerprint of the chunks it was built from.
BUILT_FROM_KEY = "built_from_fingerprint"
# ... and a hash of the sentences it holds (ids, offsets, texts, model, distance): when both match, an
# unchanged re-run skips reading its thousands of records back.
SENTENCES_KEY = "sentences_fingerprint"
FIX = "build it with `python -m rag_helpers ingest DIR` (or `rag_helpers.indexes.update_indexes(collection)`)"


class IndexNotBuiltError(FileNotFoundError):
    """An index a retriever needs is missing or older than the collection's chunks."""


# --- Tokenising ----------------------------------------------------------------------------

# Bump when tokenising or the stored layout changes: old cached indexes then no longer match.
INDEX_FORMAT = 2
DEFAULT_K1 = 1.2
DEFAULT_B = 0.75

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


# --- The keyword (BM25) index ------------------------------------------------------------------


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
    settings = chroma_settings_of(collection)
    if getattr(settings, "is_persistent", False) and settings.persist_directory:
        return Path(settings.persist_directory) / CACHE_FOLDER
    host = getattr(settings, "chroma_server_host", None)
    if host:
        port = getattr(settings, "chroma_server_http_port", None)
        return PROJECT_ROOT / ".cache" / "bm25" / f"{host}_{port}"
    return PROJECT_ROOT / ".cache" / "bm25" / "in-memory"


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


def _bm25_folder(collection: Any, fingerprint: str, k1: float, b: float, titles: bool, cache_dir: Any) -> Path:
    root = Path(cache_dir) if cache_dir is not None else bm25_cache_root(collection)
    return root / f"{collection.name}@{fingerprint[:16]}.{_params_tag(k1, b, titles)}"


def _read_bm25(folder: Path, fingerprint: str) -> BM25Index | None:
    """The index saved in `folder` if it is readable and built from `fingerprint`, else None."""
    if not (folder / "records.json").is_file():
        return None
    try:
        index = BM25Index.load(folder)
    except (ValueError, OSError, KeyError, json.JSONDecodeError):
        return None  # unreadable or from another version
    return index if index.fingerprint == fingerprint else None


def _saved_bm25_size(
    collection: Any,
    fingerprint: str,
    *,
    cache_dir: str | Path | None = None,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    titles: bool = True,
) -> int | None:
    """How many chunks the collection's saved BM25 index holds, if it is of this format and built
    from `fingerprint`; None otherwise. Reads only its records, so it imports no bm25s."""
    folder = _bm25_folder(collection, fingerprint, k1, b, titles, cache_dir)
    try:
        records = json.loads((folder / "records.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if records.get("format") != INDEX_FORMAT or records.get("fingerprint") != fingerprint:
        return None
    return len(records.get("ids") or [])


def build_bm25_index(
    collection: Any,
    *,
    cache_dir: str | Path | None = None,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    titles: bool = True,
    fingerprint: str | None = None,
) -> tuple[BM25Index, bool]:
    """Build (or keep) the collection's BM25 index on disk; returns it and whether it was (re)built.

    One folder per collection in `cache_dir` (default `bm25_cache_root(collection)`), named
    `<collection>@<fingerprint>.<settings>`; building a new one removes the collection's older folders.
    """
    fingerprint = fingerprint or collection_fingerprint(collection)
    folder = _bm25_folder(collection, fingerprint, k1, b, titles, cache_dir)
    index = _read_bm25(folder, fingerprint)
    if index is not None:
        return index, False
    data = read_collection(collection)
    index = BM25Index.build(
        data["ids"], [t or "" for t in data["documents"]], data["metadatas"],
        k1=k1, b=b, titles=titles, fingerprint=fingerprint,
    )
    _write_atomically(index, folder.parent, folder)
    return index, True


def open_bm25_index(
    collection: Any,
    *,
    cache_dir: str | Path | None = None,
    k1: float = DEFAULT_K1,
    b: float = DEFAULT_B,
    titles: bool = True,
) -> BM25Index:
    """The collection's BM25 index as `update_indexes` saved it; `IndexNotBuiltError` if missing or stale."""
    fingerprint = collection_fingerprint(collection)
    index = _read_bm25(_bm25_folder(collection, fingerprint, k1, b, titles, cache_dir), fingerprint)
    if index is None:
        raise IndexNotBuiltError(
            f"The keyword (BM25) index of collection {collection.name!r} is missing or older than its "
            f"chunks (k1={k1}, b={b}, titles={titles}): {FIX}."
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



# --- The sentence index ----------------------------------------------------------------------


def sentence_collection_name(collection: Any) -> str:
    """The name of the sentence collection that belongs to `collection`."""
    return f"{collection.name}{SENTENCES_SUFFIX}"


def documents_from_collection(collection: Any) -> list[Document]:
    """The documents of a collection, pieced together from their chunks' text and offsets.

    Characters no chunk covers (whitespace a splitter dropped between chunks) become line breaks.
    """
    data = read_collection(collection)
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


def build_sentence_index(
    collection: Any,
    model: Any = None,
    documents: Sequence[Document] | None = None,
    progress: bool = False,
    fingerprint: str | None = None,
) -> tuple[Any, IngestReport]:
    """Create or refresh `<collection>__sentences` from the collection's documents; returns it and the report.

    Incremental: `store.ingest` embeds only new or changed sentences and removes those of documents
    that are gone; with nothing changed no model is loaded. `model=None` loads the collection's
    own model when something needs embedding.
    """
    start = time.perf_counter()
    docs = list(documents) if documents is not None else documents_from_collection(collection)
    chunks = sentence_chunks(docs)
    client = client_of(collection)
    name = sentence_collection_name(collection)
    distance = collection_distance(collection)
    config = stored_model_config(collection)
    built_from = fingerprint or collection_fingerprint(collection)
    digest = _sentences_digest(chunks, f"{config.get('model_name')} {config.get('precision')}", distance)
    current = _up_to_date_sentences(client, name, built_from, digest)
    if current is not None:
        if not sentence_vectors_path(collection, digest).is_file():  # an index from before snapshots
            save_sentence_vectors(collection, current, digest)
        count = current.count()
        report = IngestReport(name, chunks=len(chunks), skipped=len(chunks), count=count)
        report.total_seconds = time.perf_counter() - start
        return current, report
    if model is None and needs_model(client, name, chunks, str(config.get("model_name")), distance):
        model = collection_model(collection)
    if model is None:
        sentences = open_collection(client, name)
    else:
        sentences = get_collection(client, name, model, distance=distance)
    # The sentence index mirrors the chunks, so removing most of it (force) is what a big change asks for.
    report = ingest(sentences, chunks, model, progress=progress, prune=True, documents=docs, force=True)
    metadata = dict(sentences.metadata or {})
    if metadata.get(BUILT_FROM_KEY) != built_from or metadata.get(SENTENCES_KEY) != digest:
        sentences.modify(metadata={**metadata, BUILT_FROM_KEY: built_from, SENTENCES_KEY: digest})
    changed = report.added or report.updated or report.removed
    if changed or not sentence_vectors_path(collection, digest).is_file():
        save_sentence_vectors(collection, sentences, digest)
    return sentences, report


def _sentences_digest(chunks: Sequence[Chunk], model: str, distance: str) -> str:
    """A hash of what the sentence collection must hold: every sentence's id and stored metadata, and
    the model (name and precision) and distance of its vectors."""
    rows = [[c.id, chunk_metadata(c)] for c in chunks]  # the metadata has the offsets and text hash
    payload = json.dumps([model, distance, rows], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _up_to_date_sentences(client: Any, name: str, built_from: str, digest: str) -> Any:
    """The sentence collection if built from these chunks and holding exactly these sentences, else None."""
    try:
        sentences = client.get_collection(name, embedding_function=None)
    except (NotFoundError, ValueError):
        return None
    metadata = sentences.metadata or {}
    if metadata.get(BUILT_FROM_KEY) == built_from and metadata.get(SENTENCES_KEY) == digest:
        return sentences
    return None


# Reading a document's sentence vectors back from Chroma costs 20-50 ms (all 5316 of the sample
# corpus: 1 s); the same vectors from a NumPy file next to the BM25 index load in milliseconds. The
# file is named after the sentence collection's own fingerprint, so a stale one is never read.


def sentence_vectors_path(collection: Any, digest: str) -> Path:
    """The snapshot file of the sentence vectors of `collection` whose sentences hash to `digest`."""
    return bm25_cache_root(collection) / f"{sentence_collection_name(collection)}@{digest[:16]}.npz"


def save_sentence_vectors(collection: Any, sentences: Any, digest: str) -> Path:
    """Write every sentence's document, offsets and vector to `sentence_vectors_path` (atomically),
    removing the collection's older snapshots."""
    data = read_collection(sentences, ("metadatas", "embeddings"))
    metadatas = data["metadatas"]
    path = sentence_vectors_path(collection, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    try:
        np.savez(
            staging,
            document_id=np.array([str(m["document_id"]) for m in metadatas], dtype=str),
            start=np.array([int(m["start"]) for m in metadatas], dtype=np.int64),
            end=np.array([int(m["end"]) for m in metadatas], dtype=np.int64),
            vectors=np.asarray(data["embeddings"], dtype=np.float32).reshape(len(metadatas), -1)
            if metadatas
            else np.zeros((0, 1), dtype=np.float32),
        )
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    for old in path.parent.glob(f"{sentence_collection_name(collection)}@*.npz"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def load_sentence_vectors(collection: Any, sentences: Any) -> dict[str, tuple[np.ndarray, ...]] | None:
    """{document id: (starts, ends, vectors)} of every sentence, sorted by start, from the snapshot
    of the sentence collection's current contents; None when there is none (read Chroma instead)."""
    digest = (sentences.metadata or {}).get(SENTENCES_KEY)
    path = sentence_vectors_path(collection, digest) if digest else None
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path) as data:
            documents, starts, ends, vectors = (data[k] for k in ("document_id", "start", "end", "vectors"))
    except (OSError, ValueError, KeyError):
        return None  # unreadable: Chroma still has every vector
    order = np.lexsort((starts, documents))
    documents, starts, ends, vectors = documents[order], starts[order], ends[order], vectors[order]
    bounds = np.flatnonzero(documents[1:] != documents[:-1]) + 1
    return {
        str(documents[rows[0]]): (starts[rows], ends[rows], vectors[rows])
        for rows in np.split(np.arange(len(documents)), bounds)
        if len(rows)
    }


def open_sentence_index(collection: Any) -> Any:
    """The sentence collection of `collection`; `IndexNotBuiltError` if missing or older than the chunks."""
    name = sentence_collection_name(collection)
    try:
        sentences = client_of(collection).get_collection(name, embedding_function=None)
    except (NotFoundError, ValueError):
        raise IndexNotBuiltError(
            f"The sentence index of collection {collection.name!r} ({name}) is missing: {FIX}."
        ) from None
    if (sentences.metadata or {}).get(BUILT_FROM_KEY) != collection_fingerprint(collection):
        raise IndexNotBuiltError(
            f"The sentence index of collection {collection.name!r} ({name}) is older than its chunks: {FIX}."
        )
    return sentences


# --- Keeping every index in step -----------------------------------------------------------------


@dataclass
class IndexReport:
    """What `update_indexes` did: whether BM25 was rebuilt, and the sentence collection's ingest report."""

    collection: str
    bm25_chunks: int = 0
    bm25_rebuilt: bool = False
    sentences: IngestReport | None = None

    def summary(self) -> str:
        """One line for people."""
        bm25 = f"BM25 {'rebuilt' if self.bm25_rebuilt else 'unchanged'} ({self.bm25_chunks} chunks)"
        if self.sentences is None:
            return f"indexes of {self.collection}: {bm25}."
        s = self.sentences
        return (
            f"indexes of {self.collection}: {bm25}; sentences {s.added} added, {s.updated} updated, "
            f"{s.removed} removed, {s.count} in all (embedding {s.embed_seconds:.1f}s)."
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "bm25_chunks": self.bm25_chunks,
            "bm25_rebuilt": self.bm25_rebuilt,
            "sentences": self.sentences.to_dict() if self.sentences is not None else None,
        }


def update_indexes(
    collection: Any, model: Any = None, documents: Sequence[Document] | None = None, progress: bool = False
) -> IndexReport:
    """Bring the BM25 and sentence indexes of `collection` in step with its chunks (cheap when unchanged).

    `model=None` loads the collection's model only if sentences need embedding; `documents`
    (default: rebuilt from the chunks) are the texts the sentences are cut from.
    """
    fingerprint = collection_fingerprint(collection)
    size, rebuilt = _saved_bm25_size(collection, fingerprint), False
    if size is None:  # build it; an up-to-date index is left unread (and bm25s unimported)
        index, rebuilt = build_bm25_index(collection, fingerprint=fingerprint)
        size = len(index)
    _, sentences = build_sentence_index(collection, model, documents, progress, fingerprint)
    return IndexReport(collection.name, size, rebuilt, sentences)


def ensure_index(
    settings: Settings | None = None,
    corpus_dir: str | Path = SAMPLE_CORPUS_DIR,
    model: Any = None,
    splitter: Splitter | Callable[[str], list[tuple[int, int]]] | None = None,
    progress: bool = True,
) -> tuple[Any, Any]:
    """Build or refresh the index of `corpus_dir` (chunks, BM25, sentences); cheap when nothing changed.

    Returns `(collection, model)`. The collection then holds exactly the folder's current chunks
    (ingest with `prune=True`); it refuses a collection built from another folder (`OtherRootError`).
    """
    from .embeddings import load_embedding_model

    settings = settings or Settings.load()
    if model is None:
        model = load_embedding_model(
            settings.embedding_model, device=settings.device, precision=settings.precision
        )
    folder = scan_folder(corpus_dir, progress=None if progress else False)
    chunks = chunk_documents(folder.documents, splitter)
    with ingest_lock(settings):
        collection = get_collection(get_client(settings), settings.collection, model)
        ingest(collection, chunks, model, progress=progress, prune=True, documents=folder)
        update_indexes(collection, model, progress=progress)
    return collection, model



__all__ = [
    "STOPWORDS",
    "BM25Index",
    "IndexNotBuiltError",
    "IndexReport",
    "bm25_cache_root",
    "build_bm25_index",
    "build_sentence_index",
    "collection_fingerprint",
    "documents_from_collection",
    "ensure_index",
    "light_stem",
    "open_bm25_index",
    "open_sentence_index",
    "load_sentence_vectors",
    "save_sentence_vectors",
    "sentence_vectors_path",
    "sentence_chunks",
    "sentence_collection_name",
    "title_words",
    "tokenize",
    "update_indexes",
]
