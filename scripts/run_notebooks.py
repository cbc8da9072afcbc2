"""Re-execute the course notebooks in place, in reading order, each in a fresh kernel, from a clean state.

    .venv/bin/python scripts/run_notebooks.py            # every notebook, then notebooks/solutions/
    .venv/bin/python scripts/run_notebooks.py 05 12      # only the notebooks whose names start so

The whole run shares one fresh, temporary CHROMA_PATH (so the first notebook builds the index, as
a learner's first run would, and the BM25 and sentence indexes cached next to it start empty); it is
removed afterwards. Widget state is stored in each notebook's metadata, so the saved app and progress
bars display when the notebook is opened without running it. `make notebooks NB="05 12"` calls this.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIRS = (PROJECT_ROOT / "notebooks", PROJECT_ROOT / "notebooks" / "solutions")
KERNEL_NAME = "rag-course"
CELL_TIMEOUT_S = 1800  # one cell; the first build of the sentence index takes minutes on a small CPU


def course_notebooks() -> list[Path]:
    """Every notebook of the course in reading order: notebooks/, then notebooks/solutions/."""
    found: list[Path] = []
    for folder in NOTEBOOK_DIRS:
        if folder.is_dir():
            found += sorted(folder.glob("[0-9]*.ipynb"))
    return found


def select(notebooks: list[Path], prefixes: list[str]) -> list[Path]:
    """The notebooks whose file name starts with one of `prefixes` (all of them when none is given)."""
    if not prefixes:
        return notebooks
    chosen = [path for path in notebooks if any(path.name.startswith(prefix) for prefix in prefixes)]
    unknown = [prefix for prefix in prefixes if not any(p.name.startswith(prefix) for p in notebooks)]
    if unknown:
        names = ", ".join(path.name for path in notebooks)
        raise SystemExit(f"No notebook starts with {', '.join(unknown)}; choose from: {names}")
    return chosen


def run_notebook(path: Path, timeout: int = CELL_TIMEOUT_S) -> float:
    """Execute `path` in a fresh kernel in its own folder, write the outputs back; the seconds taken."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=timeout,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    started = time.perf_counter()
    try:
        client.execute(stderr=subprocess.DEVNULL)  # the kernel's own log lines; cell output is unaffected
    finally:
        # Written even after a failure, so the error is visible in the notebook itself.
        nbformat.write(notebook, path)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the chosen notebooks with a temporary index; print each one's wall time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose names start so, e.g. 05 12")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    notebooks = select(course_notebooks(), args.prefixes)
    state = Path(tempfile.mkdtemp(prefix="rag-notebooks-"))
    os.environ["CHROMA_PATH"] = str(state / "chroma_db")  # the kernels inherit it
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    total, failed = time.perf_counter(), None
    try:
        for path in notebooks:
            name = path.relative_to(PROJECT_ROOT)
            print(f"{name} ...", end=" ", flush=True)
            try:
                seconds = run_notebook(path, args.timeout)
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
                failed = f"{name}: a cell failed (its error is saved in the notebook):\n{str(error)[-1500:]}"
                print("FAILED")
                break
            print(f"{seconds:.1f} s")
    finally:
        shutil.rmtree(state, ignore_errors=True)
    if failed:
        print(failed, file=sys.stderr)
        return 1
    print(f"{len(notebooks)} notebooks in {time.perf_counter() - total:.1f} s; outputs written in place.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
