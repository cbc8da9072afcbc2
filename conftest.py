"""Root pytest configuration: applies to unit tests and to notebooks run one at a time."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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


# --- One course index for the session ------------------------------------------------------------
# The notebooks (nbval's kernels inherit this process's environment), the browser tests' JupyterLab
# and the tests that use the course's own settings share one fresh index folder for the whole run,
# never the developer's chroma_db/: the first of them to need the sample corpus's index builds it
# (tests/browser/ runs first, then tests/test_offline_answers.py, then the notebooks), and every later
# one finds it up to date.
# An environment variable wins over .env (config.Settings.load), so this also holds with a .env.
_SESSION_INDEX_ROOT: Path | None = None


def pytest_configure(config):
    global _SESSION_INDEX_ROOT
    _SESSION_INDEX_ROOT = Path(tempfile.mkdtemp(prefix="rag_test_index_"))
    os.environ["CHROMA_PATH"] = str(_SESSION_INDEX_ROOT / "chroma_db")


def pytest_unconfigure(config):
    if _SESSION_INDEX_ROOT is not None:
        shutil.rmtree(_SESSION_INDEX_ROOT, ignore_errors=True)
