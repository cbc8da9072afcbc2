"""Tests for rag_helpers.store: real Chroma (embedded and a `chroma run` server), the real model."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from rag_helpers import ingest, store
from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.config import Settings
from rag_helpers.documents import Document
from rag_helpers.embeddings import embed

SPLITTER = CharacterSplitter(chunk_size=120, chunk_overlap=10)

TOPICS = {
    "travel.txt": "Travel policy. Economy class for flights under six hours. "
    "Hotels are booked through the portal. "
    "Meals abroad are reimbursed up to fifty euros a day with receipts. Taxis need a receipt too. "
    "Mileage for private cars is paid at thirty cents a kilometre.",
    "security.txt": "Security handbook. Passwords have at least fourteen characters. Laptops lock after five "
    "minutes. Report phishing to the security desk. Badges are never lent to visitors.",
    "kitchen.md": "Kitchen rules. Label your food with your name. "
    "The fridge is cleaned every Friday afternoon. "
    "Coffee beans are restocked on Mondays.",
}


def make_docs(texts: dict[str, str], category: str = "root") -> list[Document]:
    return [
        Document(
            id=name,
            text=text,
            source=name,
            metadata={
                "category": category,
                "file_name": name,
                "extension": name.rsplit(".", 1)[-1],
                "encoding": "utf-8",
                "size_bytes": len(text.encode()),
            },
        )
        for name, text in texts.items()
    ]


def make_chunks(texts: dict[str, str] = TOPICS):
    return chunk_documents(make_docs(texts), SPLITTER)


@pytest.fixture
def client(clean_settings):
    return store.get_client(clean_settings)


@pytest.fixture
def collection(client, model):
    return store.get_collection(client, "test_collection", model)


def snapshot(collection):
    """Everything a collection stores, keyed by id, for before/after comparisons."""
    got = collection.get(include=["embeddings", "documents", "metadatas"])
    return {
        i: (doc, meta, np.asarray(vec).tolist())
        for i, doc, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])
    }


def ids_of(collection, document_id=None):
    where = {"document_id": document_id} if document_id else None
    return sorted(collection.get(where=where)["ids"])


# --- client and collection -------------------------------------------------------------------


def test_embedded_client_creates_folder_and_turns_telemetry_off(clean_settings):
    client = store.get_client(clean_settings)
    assert clean_settings.chroma_path.is_dir()
    assert client.get_settings().anonymized_telemetry is False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_says_where_and_how_to_start_one():
    port = free_port()
    settings = Settings.from_mapping({"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(port)})
    with pytest.raises(store.ChromaConnectionError) as info:
        store.get_client(settings)
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "chroma run" in message
    assert isinstance(info.value, ConnectionError)


def test_collection_uses_our_embedding_function_and_l2_by_default(collection, model):
    config = collection.configuration_json
    assert store.collection_distance(collection) == "l2"
    assert config["embedding_function"]["name"] == store.EMBEDDING_FUNCTION_NAME
    assert config["embedding_function"]["config"]["model_name"] == model.rag_name
    # query_texts goes through our function: same vector as embedding the text ourselves.
    vector = collection._embed(["hello there"], is_query=True)[0]
    np.testing.assert_allclose(vector, embed(["hello there"], model, progress=False)[0], atol=1e-6)


def test_cosine_collection_and_distance_mismatch(client, model):
    cosine = store.get_collection(client, "cosine_collection", model, distance="cosine")
    assert store.collection_distance(cosine) == "cosine"
    with pytest.raises(ValueError, match="uses the 'cosine' distance"):
        store.get_collection(client, "cosine_collection", model)  # l2 asked for
    with pytest.raises(ValueError, match="Unknown distance"):
        store.get_collection(client, "other_collection", model, distance="manhattan")


def test_collection_built_with_another_model_is_refused(client, model):
    client.create_collection(
        "other_model", embedding_function=store.SentenceTransformerFunction(model_name="someone/other-model")
    )
    with pytest.raises(ValueError, match="someone/other-model"):
        store.get_collection(client, "other_model", model)


def test_foreign_collection_is_refused(client, model):
    client.create_collection("foreign", embedding_function=None)
    with pytest.raises(ValueError, match="not built by rag_helpers"):
        store.get_collection(client, "foreign", model)
    with pytest.raises(ValueError, match="not built by rag_helpers"):
        store.open_collection(client, "foreign")


def test_bad_collection_name_is_a_value_error(client, model):
    with pytest.raises(ValueError, match="Invalid collection name"):
        store.get_collection(client, "x", model)


def test_open_collection_rebuilds_the_model_from_the_stored_config(collection, client, model):
    ingest.ingest(collection, make_chunks(), model, progress=False)
    reopened = store.open_collection(client, "test_collection")
    hits = store.retrieve(reopened, "How long must passwords be?", k=1)
    assert hits[0].document_id == "security.txt"
    with pytest.raises(store.CollectionNotFoundError, match="test_collection"):
        store.open_collection(client, "missing_collection")


def test_retrieve_orders_best_first_and_fills_every_field(collection, model):
    chunks = make_chunks()
    ingest.ingest(collection, chunks, model, progress=False)
    target = chunks[1]
    hits = store.retrieve(collection, target.text, k=4)
    assert len(hits) == 4
    assert hits[0].id == target.id and hits[0].distance == pytest.approx(0.0, abs=1e-4)
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    distances = [h.distance for h in hits]
    assert distances == sorted(distances)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    first = hits[0]
    assert first.text == target.text and first.document_id == target.document_id
    assert (first.start, first.end) == (target.start, target.end)
    # l2 on unit vectors: score is the cosine similarity.
    query = embed([target.text], model, progress=False)[0]
    for hit in hits:
        vector = embed([hit.text], model, progress=False)[0]
        assert hit.score == pytest.approx(float(query @ vector), abs=1e-3)


def test_retrieve_scores_in_a_cosine_collection(client, model):
    cosine = store.get_collection(client, "cosine_scores", model, distance="cosine")
    ingest.ingest(cosine, make_chunks(), model, progress=False)
    query = "What does a taxi need?"
    q = embed([query], model, progress=False)[0]
    for hit in store.retrieve(cosine, query, k=3):
        assert hit.score == pytest.approx(float(q @ embed([hit.text], model, progress=False)[0]), abs=1e-3)
        assert hit.distance == pytest.approx(1 - hit.score, abs=1e-6)


def test_retrieve_k_bounds_filters_and_empty_queries(collection, model):
    chunks = make_chunks()
    assert store.retrieve(collection, "anything", k=3) == []  # empty collection
    ingest.ingest(collection, chunks, model, progress=False)
    assert len(store.retrieve(collection, "travel", k=len(chunks) + 50)) == len(chunks)
    assert len(store.retrieve(collection, "travel", k=1)) == 1
    only = store.retrieve(collection, "passwords", k=50, where={"document_id": "kitchen.md"})
    assert only and {h.document_id for h in only} == {"kitchen.md"}
    for bad_k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            store.retrieve(collection, "travel", k=bad_k)
    for empty in ("", "   \n"):
        with pytest.raises(ValueError, match="query is empty"):
            store.retrieve(collection, empty)
    with pytest.raises(TypeError):
        store.retrieve(collection, ["a list"])


def test_retrieve_takes_a_vector_and_text_filters_and_reads_stored_vectors(collection, model):
    from rag_helpers.embeddings import embed_one

    ingest.ingest(collection, make_chunks(), model, progress=False)
    question = "Where are hotels booked?"
    by_text = store.retrieve(collection, question, 3)
    by_vector = store.retrieve(collection, embed_one(question, model), 3)
    assert [h.id for h in by_vector] == [h.id for h in by_text]
    assert [h.distance for h in by_vector] == pytest.approx([h.distance for h in by_text], abs=1e-5)
    fridge = store.retrieve(collection, "travel", 10, where_document={"$contains": "fridge"})
    assert fridge and all("fridge" in h.text for h in fridge)
    ids = [h.id for h in by_text]
    vectors = store.stored_vectors(collection, ids[::-1])
    assert vectors.shape == (3, 384)
    assert float(vectors[-1] @ embed_one(question, model)) == pytest.approx(by_text[0].score, abs=1e-4)
    with pytest.raises(KeyError, match="no chunks"):
        store.stored_vectors(collection, ["nope"])


def test_read_collection_reads_every_page(collection, model):
    chunks = make_chunks()
    ingest.ingest(collection, chunks, model, progress=False)
    data = store.read_collection(collection, page_size=2)
    assert sorted(data["ids"]) == sorted(c.id for c in chunks)
    assert len(data["documents"]) == len(data["metadatas"]) == len(chunks)
    assert ingest.existing_metadata(collection, page_size=3) == {
        i: m for i, m in zip(data["ids"], data["metadatas"])
    }


def test_similarity_from_distance():
    assert store.similarity_from_distance(0.0, "l2") == 1.0
    assert store.similarity_from_distance(2.0, "l2") == 0.0
    assert store.similarity_from_distance(0.25, "cosine") == 0.75


# --- server mode -----------------------------------------------------------------------------


def chroma_executable() -> str:
    local = Path(sys.executable).with_name("chroma")
    found = str(local) if local.exists() else shutil.which("chroma")
    if not found:
        pytest.fail("The `chroma` command (shipped with the chromadb package) is not installed.")
    return found


class ChromaServer:
    """A real `chroma run` server on a free loopback port; always stopped by `stop()`."""

    def __init__(self, path: Path, log: Path) -> None:
        self.path, self.log_path = path, log
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> ChromaServer:
        self.log = open(self.log_path, "ab")
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "NO_COLOR": "1"}
        self.process = subprocess.Popen(
            [
                chroma_executable(),
                "run",
                "--path",
                str(self.path),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/api/v2/heartbeat"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(f"chroma run exited early:\n{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"chroma run did not answer on port {self.port} within {timeout:.0f}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None
        if getattr(self, "log", None):
            self.log.close()

    def settings(self, collection: str = "server_collection") -> Settings:
        return Settings.from_mapping(
            {"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(self.port), "CHROMA_COLLECTION": collection}
        )


@pytest.fixture
def chroma_server(tmp_path):
    server = ChromaServer(tmp_path / "server_db", tmp_path / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_server_mode_ingest_query_and_restart(chroma_server, model):
    settings = chroma_server.settings()
    client = store.get_client(settings)
    assert type(client).__name__ != "PersistentClient" and client.heartbeat() > 0
    collection = store.get_collection(client, settings.collection, model)
    chunks = make_chunks()
    report = ingest.ingest(collection, chunks, model, progress=False)
    assert report.added == len(chunks) == collection.count()
    hits = store.retrieve(collection, "How long must passwords be?", k=3)
    assert hits[0].document_id == "security.txt"
    assert hits[0].metadata == store.chunk_metadata(next(c for c in chunks if c.id == hits[0].id))
    before = snapshot(collection)

    # Restart the server on the same folder (and a new port): nothing ingested is lost.
    chroma_server.stop()
    with pytest.raises(store.ChromaConnectionError):
        store.get_client(settings)
    chroma_server.port = free_port()
    chroma_server.start()
    settings = chroma_server.settings()
    reopened = store.open_collection(store.get_client(settings), settings.collection)
    assert snapshot(reopened) == before
    assert [h.id for h in store.retrieve(reopened, "How long must passwords be?", k=3)] == [
        h.id for h in hits
    ]
    again = ingest.ingest(
        store.get_collection(store.get_client(settings), settings.collection, model),
        chunks,
        model,
        progress=False,
    )
    assert again.skipped == len(chunks) and again.embedded == 0
