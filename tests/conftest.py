"""Shared test fixtures. Module-specific fixtures live in their own test files."""

from __future__ import annotations

import os

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
def clean_settings(tmp_path, monkeypatch):
    """Settings that ignore the developer's own .env and environment."""
    from rag_helpers.config import Settings

    for name in list(os.environ):
        if name.startswith(("HF_TOKEN", "LLM_", "CHROMA_", "RAG_")):
            monkeypatch.delenv(name, raising=False)
    return Settings.load(environ={}, use_dotenv=False).__class__.from_mapping({"CHROMA_PATH": str(tmp_path / "db")})
