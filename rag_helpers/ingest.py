"""Ingest: write chunks into a collection and keep every index of it in step (dense, BM25, sentences).

    collection, model, report = ingest_folder(settings, "data/sample_corpus")   # the whole job
    report = ingest(collection, chunks, model)          # just the chunks, into one collection
    update_indexes(collection, model)                   # BM25 and the sentence index after them

`ingest` is idempotent: it compares each chunk's id and metadata (which holds a content hash)
with what the collection already stores, embeds only new or changed text, replaces a changed
document's chunks without leaving stale ones behind, and commits batch by batch, so an
interrupted run resumes where it stopped. It refuses what would lose data by mistake: a prune of
most of the collection, or a folder other than the one the collection was built from.
`update_indexes` then rebuilds the BM25 index (`keyword_index`) when the chunks changed and
embeds only the changed documents' sentences into the sentence index (`sentence_index`), so the
first search after ingest costs what every later one does.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.errors import InvalidArgumentError, NotFoundError
from tqdm.auto import tqdm

from .base import Chunk, Document
from .chunking import Splitter, chunk_documents
from .config import SAMPLE_CORPUS_DIR, Settings
from .documents import DocumentFolder
from .embeddings import embed
from .keyword_index import build_bm25_index, saved_bm25_size
from .sentence_index import (
    SentenceIndex,
    document_hashes_match,
    documents_from_collection,
    latest_sentence_index,
    load_sentence_index,
    plan_sentence_index,
    read_header,
    remove_legacy_sentence_collection,
    save_sentence_index,
    saved_sentence_index,
    sentence_collection_name,
)
from .store import (
    ChromaConnectionError,
    chunk_metadata,
    collection_distance,
    collection_fingerprint,
    collection_model,
    get_client,
    get_collection,
    index_location,
    max_batch_size,
    open_collection,
    read_collection,
    stored_model_config,
)

# Chunks per embed-then-write round. Each round is one commit: small enough that an interrupted
# run loses only a few seconds of CPU work, large enough that writing costs little per chunk.
DEFAULT_INGEST_BATCH_SIZE = 256

# Collection metadata key holding the absolute path of the folder the collection was built from.
ROOT_KEY = "source_root"

# A prune that would remove more than this share of the collection needs force=True (--force).
MAX_PRUNE_SHARE = 0.5


class PruneRefusedError(ValueError):
    """A prune would remove most (or all) of a collection; nothing was changed."""


class OtherRootError(ValueError):
    """The collection was built from another folder; ingesting this one would duplicate documents."""


@contextlib.contextmanager
def ingest_lock(settings: Settings, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock of the settings' index while ingesting; a second ingest waits for the first.

    It waits before reading what is stored, so it then skips every batch the first one committed.
    The lock is a file in the temporary folder: it covers the processes of one machine (an
    embedded index is only safe there anyway; for a shared server, ingest from one machine).
    """
    import fcntl  # POSIX only, like the course

    key = hashlib.sha256(index_location(settings).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"rag_helpers-ingest-{key}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)




@dataclass
class IngestReport:
    """What one `ingest` call did, and where its time went."""

    collection: str
    chunks: int = 0
    added: int = 0
    updated: int = 0
    skipped: int = 0
    removed: int = 0
    embedded: int = 0
    batches: int = 0
    batch_size: int = 0
    count: int = 0
    scan_seconds: float = 0.0
    embed_seconds: float = 0.0
    write_seconds: float = 0.0
    total_seconds: float = 0.0
    # Files of the folder that were not indexed, as {"id", "reason"} (see documents.SkippedFile).
    skipped_files: list[dict[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people, then one line per skipped file."""
        line = (
            f"{self.collection}: {self.chunks} chunks -> {self.added} added, {self.updated} updated, "
            f"{self.skipped} skipped, {self.removed} removed; {self.count} in the collection. "
            f"Embedding {self.embed_seconds:.1f}s ({self.embedded} chunks), "
            f"writing {self.write_seconds:.1f}s, "
            f"total {self.total_seconds:.1f}s."
        )
        if not self.skipped_files:
            return line
        files = [f"  {item['id']}: {item['reason']}" for item in self.skipped_files]
        return "\n".join([line, f"{len(files)} file(s) not indexed:", *files])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        for key in ("scan_seconds", "embed_seconds", "write_seconds", "total_seconds"):
            data[key] = round(data[key], 4)
        return data


def existing_metadata(collection: Collection, page_size: int | None = None) -> dict[str, dict[str, Any]]:
    """Every stored id with its metadata, read in pages of at most the client's max batch size."""
    data = read_collection(collection, ("metadatas",), page_size)
    return {chunk_id: dict(meta or {}) for chunk_id, meta in zip(data["ids"], data["metadatas"])}


def _batches(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


def _embed_once(
    texts: list[str], model: Any, repeated: set[str], known: dict[str, np.ndarray]
) -> np.ndarray:
    """Vectors of `texts`, embedding each distinct text once; vectors of `repeated` texts are kept in
    `known` for later batches."""
    new = [t for t in dict.fromkeys(texts) if t not in known]
    vectors = dict(zip(new, embed(new, model, progress=False, packed=True))) if new else {}
    known.update((t, v) for t, v in vectors.items() if t in repeated)
    return np.stack([vectors[t] if t in vectors else known[t] for t in texts])


def _check_model(collection: Collection, model: Any) -> None:
    config = stored_model_config(collection)
    built_with, given = config.get("model_name"), getattr(model, "rag_name", None)
    if built_with and given and built_with != given:
        raise ValueError(
            f"Collection {collection.name!r} holds vectors from {built_with!r} "
            f"but the model given is {given!r}. "
            "Load the same model, or ingest into another collection."
        )


def needs_model(
    client: ClientAPI, name: str, chunks: Sequence[Chunk], model_name: str, distance: str = "l2"
) -> bool:
    """Whether ingesting `chunks` into collection `name` must load the model (no torch needed to decide).

    False only when the collection exists, was built with `model_name` and `distance`, and stores
    every chunk's id with the same content hash: `ingest(..., model=None)` then only relabels,
    deletes and reports. Anything else (a new collection, new or changed text, a mismatch that
    `get_collection` reports) needs the model.
    """
    try:
        collection = client.get_collection(name, embedding_function=None)
    except (NotFoundError, InvalidArgumentError, ValueError):
        return True
    config = stored_model_config(collection)
    if config.get("model_name") != model_name or collection_distance(collection) != distance:
        return True
    stored = existing_metadata(collection)
    return any((stored.get(c.id) or {}).get("content_hash") != c.content_hash for c in chunks)


def ingest(
    collection: Collection,
    chunks: Iterable[Chunk],
    model: Any,
    batch_size: int | None = None,
    progress: bool = True,
    prune: bool = False,
    documents: DocumentFolder | Iterable[str | Document] | None = None,
    force: bool = False,
    allow_other_root: bool = False,
) -> IngestReport:
    """Embed and upsert chunks in batches, skipping what is already stored unchanged.

    A document's chunks are replaced as a whole: ids it no longer produces are deleted.
    `model` may be None when `needs_model` said nothing needs embedding (no torch is loaded then).
    `documents` names the documents of the corpus (default: those of `chunks`); one listed with
    no chunks has its old chunks removed. Pass the `DocumentFolder` of `scan_folder` to also
    remove the chunks of files that became empty or binary (unreadable ones keep theirs), list the
    skipped files in the report, and tie the collection to that folder: the first ingest records
    its absolute path in the collection's metadata (`ROOT_KEY`) and another folder raises
    `OtherRootError` (its ids, relative paths, would duplicate the same files) unless
    `allow_other_root`. `prune=True` also removes chunks of every document not in the corpus.
    Removing whole documents raises `PruneRefusedError` (changing nothing) when no document was
    loaded, or, unless `force`, when it would remove more than `MAX_PRUNE_SHARE` of the collection.
    Each batch is committed on its own, so a failed run keeps its finished batches and the next
    run embeds only what is still missing; a lost server connection raises `ChromaConnectionError`.
    """
    try:
        return _ingest(
            collection, list(chunks), model, batch_size, progress, prune, documents, force, allow_other_root
        )
    except Exception as error:
        if not _is_connection_error(error):
            raise
        raise ChromaConnectionError(
            f"Lost the connection to the Chroma server while ingesting into {collection.name!r} "
            f"({type(error).__name__}). Every batch written before is kept: restart the server "
            "(`chroma run --path ... --port ...`) and run the same ingest again to add the rest."
        ) from None


def _is_connection_error(error: BaseException) -> bool:
    """A refused or lost connection: Python's own, or a transport error of httpx (Chroma's HTTP client)."""
    return isinstance(error, ConnectionError) or any(
        cls.__module__ == "httpx" and cls.__name__ == "TransportError" for cls in type(error).__mro__
    )


def check_root(
    collection: Collection, root: str | Path, allow_other_root: bool = False, record: bool = True
) -> None:
    """Record `root` as the collection's source folder, or raise `OtherRootError` if it has another.

    `record=False` only checks (e.g. before loading the model, with a collection opened without one).
    """
    root = str(Path(root).expanduser().resolve())
    metadata = dict(collection.metadata or {})
    recorded = metadata.get(ROOT_KEY)
    if recorded is None:
        if record:
            collection.modify(metadata={**metadata, ROOT_KEY: root})
    elif recorded != root and not allow_other_root:
        raise OtherRootError(
            f"Collection {collection.name!r} was built from {recorded}, not {root}: document ids are "
            "paths inside the folder, so the same files ingested from another folder would be stored "
            "twice. Ingest the same folder again, use another collection (--collection NAME), or pass "
            "--allow-other-root (allow_other_root=True) to mix folders."
        )


def check_root_early(client: ClientAPI, name: str, root: str | Path, allow_other_root: bool = False) -> None:
    """`check_root` without a model, before loading one: a collection that does not exist yet passes."""
    try:
        collection = client.get_collection(name, embedding_function=None)
    except (NotFoundError, InvalidArgumentError, ValueError):
        return
    check_root(collection, root, allow_other_root, record=False)


def _corpus(
    chunks: Sequence[Chunk], documents: DocumentFolder | Iterable[str | Document] | None
) -> tuple[set[str], set[str], int, list[dict[str, str]]]:
    """(ids whose old chunks are replaced, ids whose chunks stay, documents loaded, skipped files)."""
    corpus = {c.document_id for c in chunks}
    if isinstance(documents, DocumentFolder):
        corpus.update(d.id for d in documents.documents)
        corpus.update(s.id for s in documents.skipped if not s.keep_indexed)
        keep = {s.id for s in documents.skipped if s.keep_indexed}
        skipped = [{"id": s.id, "reason": s.reason} for s in documents.skipped]
        return corpus, keep, len(documents.documents), skipped
    listed = [d.id if isinstance(d, Document) else str(d) for d in documents or ()]
    corpus.update(listed)
    loaded = {c.document_id for c in chunks} | {d.id for d in documents or () if isinstance(d, Document)}
    return corpus, set(), len(loaded), []


def _check_removal(
    stored: dict[str, dict[str, Any]], vanishing: list[str], loaded: int, force: bool, prune: bool
) -> None:
    """Refuse to remove whole documents when nothing was loaded, or most of the collection unless `force`."""
    if not vanishing:
        return
    verb = "prune" if prune else "remove"
    if loaded == 0:
        raise PruneRefusedError(
            f"Refusing to {verb}: no document was loaded, so {len(vanishing)} of the collection's "
            f"{len(stored)} chunks would be removed; nothing was changed. Check the folder; to empty "
            "the collection on purpose, delete it instead."
        )
    share = len(vanishing) / len(stored)
    if force or share <= MAX_PRUNE_SHARE:
        return
    gone = sorted({str(stored[i].get("document_id", i)) for i in vanishing})
    examples = ", ".join(gone[:3]) + (", ..." if len(gone) > 3 else "")
    raise PruneRefusedError(
        f"Refusing to {verb} {len(vanishing)} of the collection's {len(stored)} chunks ({share:.0%}), from "
        f"{len(gone)} documents no longer in this folder or no longer readable as text ({examples}); "
        "nothing was changed. Check that this is the folder the collection was built from; to remove "
        "them anyway, add --force (force=True)."
    )


def _ingest(
    collection: Collection,
    chunks: list[Chunk],
    model: Any,
    batch_size: int | None,
    progress: bool,
    prune: bool,
    documents: DocumentFolder | Iterable[str | Document] | None,
    force: bool,
    allow_other_root: bool,
) -> IngestReport:
    started = time.perf_counter()
    _check_model(collection, model)
    limit = max_batch_size(collection)
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    size = min(batch_size or DEFAULT_INGEST_BATCH_SIZE, limit)
    report = IngestReport(collection=collection.name, chunks=len(chunks), batch_size=size)

    ids = [c.id for c in chunks]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicates = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
        raise ValueError(
            f"Duplicate chunk ids {duplicates[:3]}: two documents share an id or were chunked twice. "
            "Chunk each document once, with unique document ids."
        )
    if not isinstance(documents, (DocumentFolder, type(None))):
        documents = list(documents)
    corpus, keep, loaded, report.skipped_files = _corpus(chunks, documents)
    if isinstance(documents, DocumentFolder):
        check_root(collection, documents.root, allow_other_root)

    # Compare with what is stored: new text is embedded, changed metadata alone is only rewritten.
    stored = existing_metadata(collection, page_size=limit)
    to_embed: list[tuple[Chunk, dict[str, Any]]] = []
    to_relabel: list[tuple[str, dict[str, Any]]] = []
    for chunk in chunks:
        meta = chunk_metadata(chunk)
        old = stored.get(chunk.id)
        if old is None:
            to_embed.append((chunk, meta))
            continue
        if old == meta:
            report.skipped += 1
            continue
        # Upsert merges metadata, so keys the chunk no longer has are cleared explicitly.
        cleared = {**meta, **{k: None for k in old if k not in meta}}
        if old.get("content_hash") == meta["content_hash"]:
            to_relabel.append((chunk.id, cleared))
        else:
            to_embed.append((chunk, cleared))
    report.scan_seconds = time.perf_counter() - started
    if to_embed and model is None:
        raise ValueError(
            f"{len(to_embed)} chunks of {collection.name!r} are new or changed (the collection changed "
            "since it was checked?) and no embedding model was given; run the ingest again."
        )

    new_ids = set(ids)
    outdated = [i for i, meta in stored.items() if i not in new_ids and meta.get("document_id") in corpus]
    pruned = [
        i for i, meta in stored.items()
        if prune and i not in new_ids and meta.get("document_id") not in corpus | keep
    ]
    # Whole documents disappearing (not a document's old chunks replaced by new ones) is checked.
    chunked = {c.document_id for c in chunks}
    vanishing = [i for i in outdated + pruned if stored[i].get("document_id") not in chunked]
    _check_removal(stored, vanishing, loaded, force, prune)

    tick = time.perf_counter()
    for batch in _batches(outdated + pruned, limit):
        collection.delete(ids=list(batch))
        report.removed += len(batch)
    for batch in _batches(to_relabel, size):
        collection.update(ids=[i for i, _ in batch], metadatas=[m for _, m in batch])
        report.updated += len(batch)
    report.write_seconds += time.perf_counter() - tick

    # A text that occurs more than once (boilerplate: a repeated heading, footer or table row; 309 of
    # the sample corpus's 5316 sentences) is embedded once and its vector reused.
    repeated = {text for text, n in Counter(c.text for c, _ in to_embed).items() if n > 1}
    known: dict[str, np.ndarray] = {}
    with tqdm(
        total=len(to_embed), desc="Ingesting", unit="chunk", disable=not progress or not to_embed
    ) as bar:
        for batch in _batches(to_embed, size):
            texts = [c.text for c, _ in batch]
            tick = time.perf_counter()
            vectors = _embed_once(texts, model, repeated, known)
            report.embed_seconds += time.perf_counter() - tick
            tick = time.perf_counter()
            collection.upsert(
                ids=[c.id for c, _ in batch],
                embeddings=vectors,
                documents=texts,
                metadatas=[m for _, m in batch],
            )
            report.write_seconds += time.perf_counter() - tick
            report.batches += 1
            report.embedded += len(batch)
            for chunk, _ in batch:
                if chunk.id in stored:
                    report.updated += 1
                else:
                    report.added += 1
            bar.update(len(batch))

    report.count = collection.count()
    report.total_seconds = time.perf_counter() - started
    return report


def update_sentence_index(
    collection: Any,
    model: Any = None,
    documents: Sequence[Document] | None = None,
    progress: bool = False,
    fingerprint: str | None = None,
) -> tuple[SentenceIndex, IngestReport]:
    """Create or refresh the sentence index of `collection` (a file, `sentence_index`); returns it and
    the report (its `chunks` are sentences).

    Incremental: an unchanged document keeps its sentences without being split again, a changed one
    is split again and only sentences whose text the index does not hold yet are embedded (packed,
    `embeddings.embed(..., packed=True)`), a document that is gone loses its sentences. With nothing
    changed nothing is read but the file's header and no model is loaded; `model=None` loads the
    collection's own model only when something needs embedding. `documents` (default: rebuilt from
    the chunks) are the texts the sentences are cut from.
    """
    start = time.perf_counter()
    name = sentence_collection_name(collection)
    built_from = fingerprint or collection_fingerprint(collection)
    config = stored_model_config(collection)
    model_key = f"{config.get('model_name')} {config.get('precision')}"
    report = IngestReport(name)

    docs = list(documents) if documents is not None else None
    path = saved_sentence_index(collection, built_from, model_key)
    current = load_sentence_index(path) if path is not None and docs is not None else None
    if path is not None and (docs is None or (current is not None and document_hashes_match(current, docs))):
        index = current or _LazySentenceIndex.of(path, name)
        report.chunks = report.skipped = report.count = index.count()
        report.total_seconds = time.perf_counter() - start
        return index, report

    docs = docs if docs is not None else documents_from_collection(collection)
    plan = plan_sentence_index(name, docs, latest_sentence_index(collection), built_from, model_key)
    report.scan_seconds = time.perf_counter() - start
    if plan.texts:
        model = model if model is not None else collection_model(collection)
        tick = time.perf_counter()
        distinct = list(dict.fromkeys(plan.texts))  # boilerplate (a footer, a table row) once
        vectors = embed(distinct, model, progress=progress, desc="Sentences", packed=True)
        row_of = {text: n for n, text in enumerate(distinct)}
        index = plan.index
        if index.vectors.shape[1] != vectors.shape[1]:  # nothing was reused: the model's own width
            index.vectors = np.zeros((index.count(), vectors.shape[1]), dtype=np.float32)
        index.vectors[plan.missing] = vectors[[row_of[t] for t in plan.texts]]
        report.embed_seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    save_sentence_index(collection, plan.index)
    report.write_seconds = time.perf_counter() - tick
    report.chunks = report.count = plan.index.count()
    report.added, report.updated, report.removed, report.skipped = (
        plan.added, plan.updated, plan.removed, plan.skipped
    )
    report.embedded = len(plan.texts)
    report.batches = 1 if plan.texts else 0
    report.total_seconds = time.perf_counter() - start
    return plan.index, report


class _LazySentenceIndex:
    """An up-to-date sentence index file, loaded only if something asks for more than its size."""

    def __init__(self, path: Any, name: str, count: int) -> None:
        self.path, self.name, self._count, self._index = path, name, count, None

    @classmethod
    def of(cls, path: Any, name: str) -> Any:
        return cls(path, name, int((read_header(path) or {}).get("count", 0)))

    def count(self) -> int:
        return self._count

    def __len__(self) -> int:
        return self._count

    def __getattr__(self, attribute: str) -> Any:
        if self._index is None:
            self._index = load_sentence_index(self.path)
        return getattr(self._index, attribute)

    def __repr__(self) -> str:
        return f"SentenceIndex({self.name!r}, {self._count} sentences, not loaded)"


@dataclass
class IndexReport:
    """What `update_indexes` did: whether BM25 was rebuilt, and the sentence index's report."""

    collection: str
    bm25_chunks: int = 0
    bm25_rebuilt: bool = False
    sentences: IngestReport | None = None
    # An older version's Chroma collection of sentences (`<collection>__sentences`), now a file, deleted.
    legacy_sentences_removed: bool = False

    def summary(self) -> str:
        """One line for people."""
        bm25 = f"BM25 {'rebuilt' if self.bm25_rebuilt else 'unchanged'} ({self.bm25_chunks} chunks)"
        legacy = (
            f" Deleted the old Chroma collection {self.collection}__sentences: the sentence index is a file now."
            if self.legacy_sentences_removed
            else ""
        )
        if self.sentences is None:
            return f"indexes of {self.collection}: {bm25}.{legacy}"
        s = self.sentences
        return (
            f"indexes of {self.collection}: {bm25}; sentences {s.added} added, {s.updated} updated, "
            f"{s.removed} removed, {s.count} in all (embedding {s.embed_seconds:.1f}s).{legacy}"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "bm25_chunks": self.bm25_chunks,
            "bm25_rebuilt": self.bm25_rebuilt,
            "sentences": self.sentences.to_dict() if self.sentences is not None else None,
            "legacy_sentences_removed": self.legacy_sentences_removed,
        }


def update_indexes(
    collection: Any, model: Any = None, documents: Sequence[Document] | None = None, progress: bool = False
) -> IndexReport:
    """Bring the BM25 and sentence indexes of `collection` in step with its chunks (cheap when unchanged).

    `model=None` loads the collection's model only if sentences need embedding; `documents`
    (default: rebuilt from the chunks) are the texts the sentences are cut from. The Chroma
    collection of sentences an older version kept is deleted (the summary says so).
    """
    fingerprint = collection_fingerprint(collection)
    size, rebuilt = saved_bm25_size(collection, fingerprint), False
    if size is None:  # build it; an up-to-date index is left unread (and bm25s unimported)
        index, rebuilt = build_bm25_index(collection, fingerprint=fingerprint)
        size = len(index)
    legacy = remove_legacy_sentence_collection(collection)
    _, sentences = update_sentence_index(collection, model, documents, progress, fingerprint)
    return IndexReport(collection.name, size, rebuilt, sentences, legacy)


@dataclass
class FolderReport:
    """What `ingest_folder` did: the chunks' ingest report and the other indexes' report."""

    chunks: IngestReport
    indexes: IndexReport
    documents: int


def ingest_folder(
    settings: Settings,
    directory: str | Path,
    *,
    model: Any = None,
    splitter: Splitter | Callable[[str], list[tuple[int, int]]] | None = None,
    distance: str = "l2",
    batch_size: int | None = None,
    prune: bool = False,
    force: bool = False,
    allow_other_root: bool = False,
    follow_links: bool = False,
    progress: bool = True,
    on_wait: Callable[[], None] | None = None,
) -> tuple[Any, Any, FolderReport]:
    """Load, chunk, embed and store every document of `directory`, then bring BM25 and the sentence
    index in step: what `python -m rag_helpers ingest DIR` runs. Returns (collection, model, report).

    Idempotent and incremental (see `ingest`). With `model=None` the model is loaded only when
    something needs embedding (an unchanged re-run imports no torch; `model` is then None).
    Under the index's lock (`ingest_lock`), so a second ingest waits and then skips what the first
    one committed; `on_wait` is called if it has to wait.
    """
    from .documents import scan_folder

    folder = scan_folder(directory, progress=None if progress else False, follow_links=follow_links)
    chunks = chunk_documents(folder.documents, splitter)
    with ingest_lock(settings, on_wait=on_wait):
        client = get_client(settings)
        check_root_early(client, settings.collection, folder.root, allow_other_root)
        # Decided from content hashes before torch is imported: an unchanged re-run loads no model.
        if model is None and needs_model(client, settings.collection, chunks, settings.embedding_model, distance):
            from .embeddings import load_embedding_model

            model = load_embedding_model(settings.embedding_model, device=settings.device, precision=settings.precision)
        if model is None:
            collection = open_collection(client, settings.collection)
        else:
            collection = get_collection(client, settings.collection, model, distance=distance)
        report = ingest(
            collection, chunks, model, batch_size=batch_size, progress=progress, prune=prune,
            documents=folder, force=force, allow_other_root=allow_other_root,
        )
        indexes = update_indexes(collection, model, progress=progress)
    return collection, model, FolderReport(report, indexes, len(folder.documents))


def ensure_index(
    settings: Settings,
    corpus_dir: str | Path = SAMPLE_CORPUS_DIR,
    model: Any = None,
    splitter: Splitter | Callable[[str], list[tuple[int, int]]] | None = None,
    progress: bool = True,
) -> tuple[Any, Any]:
    """Build or refresh the index of `corpus_dir` (chunks, BM25, sentences); cheap when nothing changed.

    Returns `(collection, model)`, the model loaded in any case (notebooks go on to use it). The
    collection then holds exactly the folder's current chunks (`prune=True`); it refuses a
    collection built from another folder (`OtherRootError`).
    """
    from .embeddings import load_embedding_model

    if model is None:
        model = load_embedding_model(settings.embedding_model, device=settings.device, precision=settings.precision)
    collection, model, _ = ingest_folder(
        settings, corpus_dir, model=model, splitter=splitter, prune=True, progress=progress
    )
    return collection, model


__all__ = [
    "MAX_PRUNE_SHARE",
    "ROOT_KEY",
    "FolderReport",
    "IndexReport",
    "IngestReport",
    "OtherRootError",
    "PruneRefusedError",
    "check_root",
    "ensure_index",
    "ingest",
    "ingest_folder",
    "ingest_lock",
    "needs_model",
    "update_indexes",
    "update_sentence_index",
]
