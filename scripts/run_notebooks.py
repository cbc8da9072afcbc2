"""Re-execute the course notebooks in place, in reading order, each in a fresh kernel, from a clean state.

    .venv/bin/python scripts/run_notebooks.py            # every notebook, then notebooks/solutions/
    .venv/bin/python scripts/run_notebooks.py 05 12      # only the notebooks whose names start so

Each notebook gets its own fresh, temporary CHROMA_PATH (removed afterwards), so every one pays for
the indexes it needs, as a learner opening only that notebook would; the BM25 cache lives inside that
folder, so it starts empty too. Widget state is stored in each notebook's metadata, so the saved app
and progress bars display when the notebook is opened without running it. Each notebook's wall time
goes to docs/notebook_times.json with the machine it was measured on (the instructor guide's minutes
come from there); a notebook over 90 s is flagged. A failed notebook does not stop the others; the exit
status is 1 if any failed. `make notebooks NB="05 12"` calls this.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from rag_helpers.environment import describe_machine

PROJECT_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_ROOT = PROJECT_ROOT / "notebooks"
NOTEBOOK_DIRS = (NOTEBOOK_ROOT, NOTEBOOK_ROOT / "solutions")
TIMES_PATH = PROJECT_ROOT / "docs" / "notebook_times.json"
KERNEL_NAME = "rag-course"
CELL_TIMEOUT_S = 1800  # one cell; generous, so a slow machine reports a time instead of a timeout
TARGET_S = 90.0  # every notebook should run within this from a clean state on a 2-core CPU


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
        names = ", ".join(sorted({path.name for path in notebooks}))
        raise SystemExit(f"No notebook starts with {', '.join(unknown)}; choose from: {names}")
    return chosen


def kernel_env(chroma_path: Path) -> dict[str, str]:
    """This process's environment for a kernel, with its own index folder and nothing phoning home."""
    env = dict(os.environ)
    env["CHROMA_PATH"] = str(chroma_path)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("ANONYMIZED_TELEMETRY", "False")
    return env


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def finish_progress_text(notebook: nbformat.NotebookNode) -> None:
    """Give each saved progress bar the text of its final state.

    A tqdm bar is a widget; its output also keeps a plain-text copy made when it was created
    ("0%| 0/442"), which is what a viewer without widgets (GitHub, nbviewer, a diff) shows. Replace
    it with the bar's last state from the saved widget state ("100%|##########| 442/442 [...]").
    """
    state = notebook.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if view and "text/plain" in output["data"]:
                text = progress_text(state, view.get("model_id", ""))
                if text:
                    output["data"]["text/plain"] = text


def progress_text(state: dict, model_id: str) -> str | None:
    """`prefix|bar| suffix` of a tqdm widget (an HBox of HTML, FloatProgress, HTML), or None."""
    children = state.get(model_id, {}).get("state", {}).get("children", [])
    parts = [state.get(child.removeprefix("IPY_MODEL_"), {}).get("state", {}) for child in children]
    if len(parts) != 3 or "max" not in parts[1]:
        return None
    done = parts[1].get("value", 0) / (parts[1]["max"] or 1)
    bar = "#" * int(10 * min(max(done, 0.0), 1.0))
    return html.unescape(f"{parts[0].get('value', '')}|{bar:<10}|{parts[2].get('value', '')}")


def run_notebook(path: Path, timeout: int = CELL_TIMEOUT_S) -> float:
    """Execute `path` in a fresh kernel with a fresh temporary index; write the outputs back; the seconds."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=KERNEL_NAME,
        timeout=timeout,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    state = Path(tempfile.mkdtemp(prefix="rag-notebook-"))
    started = time.perf_counter()
    try:
        # stderr: the kernel's own log lines; cell output is unaffected.
        client.execute(stderr=subprocess.DEVNULL, env=kernel_env(state / "chroma_db"))
    finally:
        # Written even after a failure, so the error is visible in the notebook itself.
        finish_progress_text(notebook)
        nbformat.write(notebook, path)
        shutil.rmtree(state, ignore_errors=True)
    return time.perf_counter() - started


def machine_info() -> dict[str, object]:
    """What the timings depend on (`environment.describe_machine`: CPU model and kind, cores, GPUs),
    with the load average when the run began."""
    machine = describe_machine()
    machine["load_average_at_start"] = machine.pop("load_average")
    return machine


def notebook_key(path: Path) -> str:
    """A notebook's name in the times file: `05_chroma_index.ipynb`, `solutions/05_chroma_index.ipynb`."""
    return path.relative_to(NOTEBOOK_ROOT).as_posix()


def merge_times(old: dict, seconds: dict[str, float], machine: dict[str, object]) -> dict:
    """The times file after this run: this run's figures replace older ones of the same notebooks.

    Figures from another machine (CPU or core count differ) or of notebooks that no longer exist are
    dropped, so the file never mixes machines or keeps renamed notebooks.
    """
    same_machine = all(old.get("machine", {}).get(key) == machine[key] for key in ("cpu", "cores"))
    kept = dict(old.get("notebooks", {})) if same_machine else {}
    kept.update({name: round(value, 1) for name, value in seconds.items()})
    existing = {notebook_key(path) for path in course_notebooks()}
    notebooks = {name: kept[name] for name in sorted(kept) if name in existing}
    return {
        "about": "wall seconds per notebook, each from a clean state (fresh kernel, fresh temporary index), "
        "written by scripts/run_notebooks.py; run time only, without teaching time",
        "updated": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "notebooks": notebooks,
    }


def write_times(seconds: dict[str, float], machine: dict[str, object], path: Path = TIMES_PATH) -> None:
    """Merge this run's wall times into `path` (JSON), creating it if needed."""
    try:
        old = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        print(f"warning: {path.name} was not valid JSON; starting it afresh", file=sys.stderr)
        old = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merge_times(old, seconds, machine), indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Run the chosen notebooks, each from a clean state; print and record each one's wall time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefixes", nargs="*", help="run only notebooks whose names start so, e.g. 05 12")
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds allowed per cell")
    parser.add_argument("--no-times", action="store_true", help="do not update docs/notebook_times.json")
    args = parser.parse_args(argv)
    notebooks = select(course_notebooks(), args.prefixes)
    machine = machine_info()
    seconds: dict[str, float] = {}
    failed: list[str] = []
    slow: list[str] = []
    total = time.perf_counter()
    for path in notebooks:
        name = notebook_key(path)
        print(f"notebooks/{name} ...", end=" ", flush=True)
        try:
            seconds[name] = run_notebook(path, args.timeout)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as error:
            print("FAILED")
            failed.append(
                f"notebooks/{name}: a cell failed (its error is saved in the notebook):\n{str(error)[-1500:]}"
            )
            continue
        over = seconds[name] > TARGET_S
        print(f"{seconds[name]:.1f} s" + (f"  <- over {TARGET_S:.0f} s" if over else ""))
        if over:
            slow.append(f"{name} ({seconds[name]:.0f} s)")
    if seconds and not args.no_times:
        write_times(seconds, machine)
    recorded = "" if args.no_times or not seconds else f", times in docs/{TIMES_PATH.name}"
    print(
        f"{len(seconds)} of {len(notebooks)} notebooks ran in {time.perf_counter() - total:.1f} s on "
        f"{machine['cpu']} ({machine['cores']} cores, load {machine['load_average_at_start']} at start); "
        f"outputs written in place{recorded}."
    )
    if slow:
        print(f"Over {TARGET_S:.0f} s (not an error; make them faster): {', '.join(slow)}")
    for message in failed:
        print(message, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
