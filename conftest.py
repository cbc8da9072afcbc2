"""Root pytest configuration: applies to unit tests and to notebooks run one at a time."""

from __future__ import annotations

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
