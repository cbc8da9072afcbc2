"""Chroma vector store: open an index (embedded or server), its collections, and dense search.

    client = get_client(settings)                      # the folder CHROMA_PATH, or a Chroma server
    collection = get_collection(client, "docs", model) # created with our embedding function
    retrieve(collection, "What is the hotel cap?", k=5)  # the k nearest chunks, best first

Writing chunks (and keeping every index in step) is `ingest`'s job; this module reads and searches.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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

from .base import Chunk, RetrievedChunk, check_query
from .config import PROJECT_ROOT, Settings
from .embeddings import QueryEncoder, embed, load_embedding_model
from .onnx_encoder import load_onnx_encoder

DISTANCES = ("l2", "cosine", "ip")
EMBEDDING_FUNCTION_NAME = "rag_helpers_sentence_transformers"

# Folder (inside the Chroma folder) of the index files kept beside a collection: BM25, sentence vectors.
INDEX_FILES_FOLDER = "rag_helpers_bm25"
BUILD_HELP = "build it with `python -m rag_helpers ingest DIR` (or `rag_helpers.ingest.update_indexes(collection)`)"


class ChromaConnectionError(ConnectionError):
    """The Chroma server named in the settings could not be reached."""


class IndexNotBuiltError(FileNotFoundError):
    """An index a retriever needs is missing or older than the collection's chunks."""


class CollectionNotFoundError(ValueError):
    """The collection asked for does not exist yet."""


class IndexNotFoundError(FileNotFoundError):
    """A command that only reads was pointed at a folder that holds no index."""


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


def get_client(settings: Settings, create: bool = True) -> ClientAPI:
    """An embedded `PersistentClient` at `chroma_path`, or an `HttpClient` when `chroma_host` is set.

    With `create=False` (commands that only read) a missing embedded index raises
    `IndexNotFoundError` instead of creating an empty one.
    """
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


def index_files_root(collection: Any) -> Path:
    """Where the files of a collection's other indexes live (BM25, sentence vectors): next to the
    Chroma data, or in .cache/ for a server or an in-memory client."""
    settings = chroma_settings_of(collection)
    if getattr(settings, "is_persistent", False) and settings.persist_directory:
        return Path(settings.persist_directory) / INDEX_FILES_FOLDER
    host = getattr(settings, "chroma_server_host", None)
    if host:
        port = getattr(settings, "chroma_server_http_port", None)
        return PROJECT_ROOT / ".cache" / "bm25" / f"{host}_{port}"
    return PROJECT_ROOT / ".cache" / "bm25" / "in-memory"


def collection_model(collection: Collection) -> Any:
    """The embedding model (and precision) a collection was built with, loaded from its stored config."""
    config = stored_model_config(collection)
    if not config.get("model_name"):
        raise ValueError(
            f"Collection {collection.name!r} does not say which embedding model built it: pass model=..."
        )
    return load_embedding_model(config["model_name"], precision=config.get("precision") or "auto")


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
