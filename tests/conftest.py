"""Shared test fixtures. Module-specific fixtures live in their own test files."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# The course never needs the network: make any accidental Hub call fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(scope="session")
def model():
    """The default embedding model in fp32 (bit-stable, matches the original tutorial)."""
    from rag_helpers.embeddings import load_embedding_model

    return load_embedding_model(precision="fp32", device="cpu")


@pytest.fixture
def clean_settings(tmp_path):
    """Settings that ignore the developer's own .env and environment, with a fresh index folder."""
    from rag_helpers.config import Settings

    return Settings.from_mapping({"CHROMA_PATH": str(tmp_path / "db")})


@pytest.fixture
def server(monkeypatch) -> Iterator:
    """The scripted OpenAI-compatible server (tests/llm_server.py), reachable although the suite is offline."""
    import huggingface_hub.constants
    from llm_server import FakeServer

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # only loopback is called
    fake = FakeServer()
    fake.thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


@pytest.fixture(scope="session")
def build_index(tmp_path_factory, model):
    """Write `docs` ({relative path: text}) to a fresh folder, index it as `collection`; the index folder."""

    def build(name: str, docs: dict[str, str], collection: str):
        from rag_helpers.config import Settings
        from rag_helpers.ingest import ensure_index

        root = tmp_path_factory.mktemp(name)
        for relative, text in docs.items():
            (root / "docs" / relative).parent.mkdir(parents=True, exist_ok=True)
            (root / "docs" / relative).write_text(text, encoding="utf-8")
        settings = Settings.from_mapping({"CHROMA_PATH": str(root / "db"), "CHROMA_COLLECTION": collection})
        ensure_index(settings, root / "docs", model=model, progress=False)
        return root / "db"

    return build


@pytest.fixture
def embedded_texts(monkeypatch) -> list[str]:
    """Every text `ingest` embeds during the test (ingest.embed is wrapped to record them)."""
    from rag_helpers import ingest

    texts: list[str] = []
    real_embed = ingest.embed

    def recording(batch, *args, **kwargs):
        texts.extend(batch)
        return real_embed(batch, *args, **kwargs)

    monkeypatch.setattr(ingest, "embed", recording)
    return texts
