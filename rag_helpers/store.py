"""Chroma vector store: open an index (embedded or server), ingest chunks in batches, retrieve.

`ingest` is idempotent: it compares each chunk's id and metadata (which holds a content hash)
with what the collection already stores, embeds only new or changed text, replaces a changed
document's chunks without leaving stale ones behind, and commits batch by batch, so an
interrupted run resumes where it stopped. It refuses what would lose data by mistake: a prune of
most of the collection, or a folder other than the one the collection was built from.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import InvalidArgumentError, NotFoundError
from chromadb.utils.embedding_functions import register_embedding_function
from tqdm.auto import tqdm

from .base import CHUNK_KEYS, Chunk, Document, RetrievedChunk, check_query
from .config import Settings
from .documents import DocumentFolder
from .embeddings import QueryEncoder, embed, load_embedding_model
from .onnx_encoder import load_onnx_encoder

DISTANCES = ("l2", "cosine", "ip")
EMBEDDING_FUNCTION_NAME = "rag_helpers_sentence_transformers"

# Chunks per embed-then-write round. Each round is one commit: small enough that an interrupted
# run loses only a few seconds of CPU work, large enough that writing costs little per chunk.
DEFAULT_INGEST_BATCH_SIZE = 256

# Collection metadata key holding the absolute path of the folder the collection was built from.
ROOT_KEY = "source_root"

# A prune that would remove more than this share of the collection needs force=True (--force).
MAX_PRUNE_SHARE = 0.5


class ChromaConnectionError(ConnectionError):
    """The Chroma server named in the settings could not be reached."""


class CollectionNotFoundError(ValueError):
    """The collection asked for does not exist yet."""


class IndexNotFoundError(FileNotFoundError):
    """A command that only reads was pointed at a folder that holds no index."""


class PruneRefusedError(ValueError):
    """A prune would remove most (or all) of a collection; nothing was changed."""


class OtherRootError(ValueError):
    """The collection was built from another folder; ingesting this one would duplicate documents."""


# --- Embedding function ----------------------------------------------------------------------


@register_embedding_function
class SentenceTransformerFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function around our sentence-transformers model.

    Collections remember its name and config (model name and precision), so a collection opened
    later without a model (`open_collection`, or plain `chromadb` after importing this module)
    loads the same model on first use. Chroma's default ONNX model is never downloaded.
    """

    def __init__(
        self, model: Any = None, model_name: str | None = None, precision: str | None = None
    ) -> None:
        if model is None and model_name is None:
            raise ValueError("SentenceTransformerFunction needs a loaded model or a model_name.")
        self._model = model
        self.model_name = model_name or getattr(model, "rag_name", None) or _model_path_name(model)
        self.precision = precision or getattr(model, "rag_precision", "fp32")

    @property
    def model(self) -> Any:
        """The sentence-transformers model, loaded on first use when built from a config."""
        if self._model is None:
            self._model = load_embedding_model(self.model_name, precision=self.precision)
        return self._model

    def __call__(self, input: Documents) -> Embeddings:
        return list(embed(list(input), self.model, progress=False))

    @staticmethod
    def name() -> str:
        return EMBEDDING_FUNCTION_NAME

    def get_config(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "precision": self.precision}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> SentenceTransformerFunction:
        return SentenceTransformerFunction(model_name=config["model_name"], precision=config.get("precision"))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        if not config.get("model_name"):
            raise ValueError(f"{EMBEDDING_FUNCTION_NAME} config needs a model_name, got {config!r}")

    def default_space(self) -> str:  # type: ignore[override]
        return "l2"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return list(DISTANCES)

    def __repr__(self) -> str:
        return f"SentenceTransformerFunction(model_name={self.model_name!r}, precision={self.precision!r})"


def _model_path_name(model: Any) -> str:
    card = getattr(model, "model_card_data", None)
    return getattr(card, "base_model", None) or type(model).__name__


# --- Client and collection -------------------------------------------------------------------


def _chroma_settings() -> ChromaSettings:
    return ChromaSettings(anonymized_telemetry=False)


def get_client(settings: Settings | None = None, create: bool = True) -> ClientAPI:
    """An embedded `PersistentClient` at `chroma_path`, or an `HttpClient` when `chroma_host` is set.

    With `create=False` (commands that only read) a missing embedded index raises
    `IndexNotFoundError` instead of creating an empty one.
    """
    settings = settings or Settings.load()
    if settings.chroma_host:
        host, port = settings.chroma_host, settings.chroma_port
        try:
            client = chromadb.HttpClient(host=host, port=port, settings=_chroma_settings())
            client.heartbeat()
        except Exception as error:
            raise ChromaConnectionError(
                f"Cannot reach a Chroma server at http://{host}:{port} ({error}). Start one with "
                f"`chroma run --path chroma_db --host {host} --port {port}`, or unset CHROMA_HOST "
                f"(or pass --db PATH) to use the embedded index at {settings.chroma_path}."
            ) from None
        return client
    path = Path(settings.chroma_path).expanduser()
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(
            f"The index path {path} is a file, not a folder. Pass --db (or CHROMA_PATH) a folder: "
            "an existing index, or a new folder to create one."
        )
    if not create and not (path / "chroma.sqlite3").is_file():
        what = "is not a Chroma index (no chroma.sqlite3 in it)" if path.is_dir() else "does not exist"
        raise IndexNotFoundError(
            f"No index at {path}: the folder {what}. Pass --db the folder you ingested into, "
            f"or build it first: `python -m rag_helpers ingest DIR --db {path}`."
        )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise NotADirectoryError(
            f"Cannot create the index folder {path} ({error.strerror or error}). "
            "Pass --db a folder you can write to."
        ) from None
    return chromadb.PersistentClient(path=str(path), settings=_chroma_settings())


def index_location(settings: Settings) -> str:
    """Where the settings' index lives, for messages: the server address or the folder."""
    if settings.chroma_host:
        return f"http://{settings.chroma_host}:{settings.chroma_port}"
    return str(Path(settings.chroma_path).expanduser().resolve())


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


def _check_distance(distance: str) -> str:
    distance = (distance or "").lower()
    if distance not in DISTANCES:
        raise ValueError(f"Unknown distance {distance!r}; use one of {', '.join(DISTANCES)}.")
    return distance


def collection_distance(collection: Collection) -> str:
    """The distance space the collection was created with (l2, cosine or ip)."""
    config = collection.configuration_json or {}
    for index in ("hnsw", "spann"):
        space = (config.get(index) or {}).get("space")
        if space:
            return str(space)
    return str((collection.metadata or {}).get("hnsw:space", "l2"))


def _persisted_function(collection: Collection) -> dict[str, Any] | None:
    return (collection.configuration_json or {}).get("embedding_function")


def stored_model_config(collection: Collection) -> dict[str, Any]:
    """What a collection stores about the model that built it (`model_name`, `precision`); {} if nothing."""
    return (_persisted_function(collection) or {}).get("config") or {}


def _check_ours(collection: Collection) -> dict[str, Any]:
    persisted = _persisted_function(collection) or {}
    if persisted.get("type") == "known" and persisted.get("name") == EMBEDDING_FUNCTION_NAME:
        return persisted.get("config") or {}
    found = persisted.get("name") or persisted.get("type") or "none"
    raise ValueError(
        f"Collection {collection.name!r} was not built by rag_helpers (its embedding function is {found!r}). "
        "Pick another collection name (--collection NAME) or delete this one."
    )


def get_collection(client: ClientAPI, name: str, model: Any, distance: str = "l2") -> Collection:
    """Get or create collection `name`, embedding with `model`; `distance` is l2 (default), cosine or ip.

    An existing collection keeps its distance and model: asking for another raises `ValueError`.
    """
    distance = _check_distance(distance)
    function = SentenceTransformerFunction(model)
    try:
        existing = client.get_collection(name, embedding_function=None)
    except NotFoundError:
        existing = None
    except InvalidArgumentError as error:
        raise ValueError(f"Invalid collection name {name!r}: {error}") from None

    if existing is None:
        try:
            return client.get_or_create_collection(
                name, configuration={"hnsw": {"space": distance}}, embedding_function=function
            )
        except InvalidArgumentError as error:
            raise ValueError(f"Invalid collection name {name!r}: {error}") from None

    config = _check_ours(existing)
    built_with = config.get("model_name")
    if built_with != function.model_name:
        raise ValueError(
            f"Collection {name!r} was built with the embedding model {built_with!r}, "
            f"not {function.model_name!r}; vectors from different models cannot be compared. "
            "Use another collection name or rebuild it."
        )
    space = collection_distance(existing)
    if space != distance:
        raise ValueError(
            f"Collection {name!r} uses the {space!r} distance, not {distance!r}; the distance is fixed "
            "when a collection is created. Use another collection name, or delete this one to rebuild it."
        )
    return client.get_collection(name, embedding_function=function)


def open_collection(client: ClientAPI, name: str, model: Any = None) -> Collection:
    """Open an existing collection; without `model`, queries use the model and precision it was built with."""
    try:
        existing = client.get_collection(name, embedding_function=None)
    except (NotFoundError, InvalidArgumentError):
        existing = None
    if existing is None:
        available = sorted(c.name for c in client.list_collections())
        raise CollectionNotFoundError(
            f"No collection named {name!r} in this index (it has: {', '.join(available) or 'none'}). "
            "Build it first, e.g. `python -m rag_helpers ingest data/sample_corpus`, "
            "or pass --collection NAME."
        )
    if model is not None:
        return get_collection(client, name, model, distance=collection_distance(existing))
    _check_ours(existing)
    # No embedding function given: Chroma rebuilds ours from the collection's stored config.
    return existing


def delete_collection(client: ClientAPI, name: str) -> bool:
    """Delete collection `name` if it exists; returns whether it did."""
    try:
        client.delete_collection(name)
    except (NotFoundError, ValueError):
        return False
    return True


def client_of(collection: Collection) -> ClientAPI:
    """A client of the index `collection` lives in (to open its sibling collections)."""
    # Clients of one index share their system, so making one per call is cheap.
    settings = chroma_settings_of(collection)
    return chromadb.Client(settings, tenant=collection.tenant, database=collection.database)


def chroma_settings_of(collection: Collection) -> ChromaSettings:
    """The Chroma settings of the index `collection` lives in (its folder, or its server's address)."""
    # Chroma's Collection has no public accessor for its client or settings; this is the one place
    # that reads its private server handle.
    return collection._client.get_settings()


def query_encoder(collection: Collection, model: Any = None) -> QueryEncoder:
    """A `QueryEncoder` for searching `collection` with `model` (an encoder is kept as it is), else with
    the collection's own model, loaded on the first question that needs it.

    Questions go through the model's ONNX export when there is one (`onnx_encoder`) and no other
    precision than fp32 was asked for: the same vector in about 4 ms instead of 15 on a 2-core CPU,
    and a `query` command that never imports torch.
    """
    if isinstance(model, QueryEncoder):
        return model
    if model is None:
        name = stored_model_config(collection).get("model_name")
        fast = (lambda: load_onnx_encoder(name)) if name else None
        return QueryEncoder(load=lambda: collection_model(collection), fast=fast)
    if getattr(model, "rag_precision", "fp32") != "fp32":  # a model loaded for bf16 or fp16 keeps it
        return QueryEncoder(model)
    return QueryEncoder(model, fast=lambda: load_onnx_encoder(getattr(model, "rag_name", "")))


@dataclass(frozen=True)
class SearchScope:
    """What a retriever searches: a collection, the query encoder, and Chroma's two filters."""

    collection: Collection
    encode: QueryEncoder
    where: Mapping[str, Any] | None = None
    where_document: Mapping[str, Any] | None = None

    @classmethod
    def of(
        cls,
        collection: Collection,
        model: Any = None,
        where: Mapping[str, Any] | None = None,
        where_document: Mapping[str, Any] | None = None,
    ) -> SearchScope:
        """The scope of `collection`, embedding with `model` (default: the collection's own, loaded lazily)."""
        return cls(collection, query_encoder(collection, model), where, where_document)

    @property
    def filters(self) -> dict[str, Any]:
        """`where` and `where_document` as keyword arguments."""
        return {"where": self.where, "where_document": self.where_document}


def max_batch_size(collection: Collection) -> int:
    """The largest number of records this collection's client accepts in one call."""
    return int(client_of(collection).get_max_batch_size())


def read_collection(
    collection: Collection, include: Sequence[str] = ("documents", "metadatas"), page_size: int | None = None
) -> dict[str, list]:
    """Every record of a collection ({"ids": [...], "documents": [...], ...}), read in pages."""
    page_size = page_size or max_batch_size(collection)
    data: dict[str, list] = {"ids": [], **{key: [] for key in include}}
    offset = 0
    while True:
        page = collection.get(include=list(include), limit=page_size, offset=offset)
        data["ids"].extend(page["ids"])
        for key in include:
            values = page.get(key)
            data[key].extend(values if values is not None else [None] * len(page["ids"]))
        if len(page["ids"]) < page_size:
            return data
        offset += len(page["ids"])


def collection_model(collection: Collection) -> Any:
    """The embedding model (and precision) a collection was built with, loaded from its stored config."""
    config = stored_model_config(collection)
    if not config.get("model_name"):
        raise ValueError(
            f"Collection {collection.name!r} does not say which embedding model built it: pass model=..."
        )
    return load_embedding_model(config["model_name"], precision=config.get("precision") or "auto")


# --- Ingest ----------------------------------------------------------------------------------


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


def _metadata_value(value: Any) -> str | int | float | bool | None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def chunk_metadata(chunk: Chunk) -> dict[str, str | int | float | bool]:
    """The metadata `ingest` stores for a chunk: its document's metadata plus `CHUNK_KEYS`."""
    meta = {str(k): _metadata_value(v) for k, v in chunk.metadata.items()}
    meta.update(
        document_id=chunk.document_id,
        chunk_index=chunk.index,
        start=chunk.start,
        end=chunk.end,
        content_hash=chunk.content_hash,
    )
    return {k: v for k, v in meta.items() if v is not None}


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
    vectors = dict(zip(new, embed(new, model, progress=False))) if new else {}
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


# --- Retrieve --------------------------------------------------------------------------------


def similarity_from_distance(distance: float, space: str = "l2") -> float:
    """Cosine similarity of unit vectors from a Chroma distance (l2 is squared: d = 2 - 2 cos)."""
    if space == "l2":
        return 1.0 - distance / 2.0
    return 1.0 - distance  # cosine: 1 - cos; ip: 1 - dot, equal to cos for unit vectors


def hits_from_result(result: Mapping[str, Any], space: str = "l2") -> list[RetrievedChunk]:
    """The hits of a Chroma query result (its first query), best first, scored from their distances."""
    ids = result["ids"][0]
    texts = (result.get("documents") or [[None] * len(ids)])[0]
    metas = (result.get("metadatas") or [[None] * len(ids)])[0]
    distances = (result.get("distances") or [[None] * len(ids)])[0]
    hits = []
    for chunk_id, text, meta, distance in zip(ids, texts, metas, distances):
        d = None if distance is None else float(distance)
        score = similarity_from_distance(d, space) if d is not None else 0.0
        hits.append(RetrievedChunk(chunk_id, text or "", d, score, dict(meta or {})))
    return hits


def retrieve(
    collection: Collection,
    query: str | np.ndarray,
    k: int = 5,
    where: Mapping[str, Any] | None = None,
    where_document: Mapping[str, Any] | None = None,
) -> list[RetrievedChunk]:
    """The `k` chunks closest to `query`, best first (fewer when the collection holds fewer).

    `query` is a question (embedded with the collection's model) or a query vector already
    embedded; `where` / `where_document` are Chroma's metadata and text filters.
    """
    if isinstance(query, np.ndarray):
        check_query("a query vector", k)
        target: dict[str, Any] = {"query_embeddings": [np.asarray(query, dtype=np.float32)]}
    else:
        check_query(query, k)
        target = {"query_texts": [query]}
    result = collection.query(
        **target,
        n_results=k,
        where=dict(where) if where else None,
        where_document=dict(where_document) if where_document else None,
        include=["documents", "metadatas", "distances"],
    )
    return hits_from_result(result, collection_distance(collection))


def stored_vectors(collection: Collection, ids: Sequence[str]) -> np.ndarray:
    """The stored embeddings of `ids`, one row per id in the order given."""
    if not ids:
        return np.zeros((0, 0), dtype=np.float32)
    stored = collection.get(ids=list(ids), include=["embeddings"])
    row = {chunk_id: n for n, chunk_id in enumerate(stored["ids"])}
    missing = [i for i in ids if i not in row]
    if missing:
        raise KeyError(f"Collection {collection.name!r} has no chunks {missing[:3]}")
    return np.asarray([stored["embeddings"][row[i]] for i in ids], dtype=np.float32)
