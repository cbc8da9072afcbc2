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
def clean_settings(tmp_path):
    """Settings that ignore the developer's own .env and environment, with a fresh index folder."""
    from rag_helpers.config import Settings

    return Settings.from_mapping({"CHROMA_PATH": str(tmp_path / "db")})


# --- nbval: which parts of a notebook cell's output are compared ---------------------------------
# stderr carries warnings and progress bars, text/html carries widget and table markup: both vary
# between machines and library versions, so nbval compares only the other outputs of checked cells.
NBVAL_SKIP_COMPARE = ("stderr", "text/html")


def pytest_collection_modifyitems(items):
    """Extend each notebook's nbval `skip_compare` list (nbval's documented hook point)."""
    for item in items:
        notebook = item.parent
        skip = getattr(notebook, "skip_compare", None)
        if item.path.suffix == ".ipynb" and skip is not None:
            notebook.skip_compare = tuple(skip) + tuple(k for k in NBVAL_SKIP_COMPARE if k not in skip)
