"""Notebook hygiene: names, clean execution, structure, kernel, and no secrets or machine paths.

nbval (configured in pyproject.toml) re-runs the notebooks; these checks read the committed files
and catch what a re-run cannot: a notebook saved half-executed, a leaked token, a missing summary.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from rag_helpers.config import PROJECT_ROOT

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NAME_PATTERN = re.compile(r"^\d{2}_[a-z0-9_]+\.ipynb$")
KERNEL_NAME = "rag-course"

TOKEN_PATTERNS = {
    "Hugging Face token": re.compile(r"hf_[A-Za-z0-9]{25,}"),
    "OpenAI-style key": re.compile(r"sk-[A-Za-z0-9_-]{20,}"),
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"),
    "AWS access key": re.compile(r"AKIA[0-9A-Z]{16}"),
}

# Headings every notebook needs, in reading order (matched case-insensitively at the heading's start).
REQUIRED_HEADINGS = ("what you will learn", "prerequisites", "summary", "exercises")


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def _headings(nb: nbformat.NotebookNode) -> list[tuple[int, int, str]]:
    """(cell index, level, text) of every markdown heading, in order."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            match = re.match(r"^(#{1,6})\s+(.+?)\s*$", line)
            if match:
                found.append((i, len(match.group(1)), match.group(2)))
    return found


def _output_texts(cell: nbformat.NotebookNode) -> list[str]:
    """Every piece of text in a cell's outputs (streams, text data, error messages)."""
    texts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            texts.append(output.text)
        for key, value in output.get("data", {}).items():
            if key.startswith("text/") or key == "application/json":
                texts.append(value if isinstance(value, str) else json.dumps(value))
        if output.output_type == "error":
            texts.append(f"{output.ename}: {output.evalue}\n" + "\n".join(output.traceback))
    return texts


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_name_follows_pattern(path):
    assert NAME_PATTERN.match(path.name), f"{path.name} should look like 01_lowercase_slug.ipynb"


def test_numbers_are_unique():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {sorted(numbers)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_is_valid_nbformat(path):
    nbformat.validate(_read(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_executed_in_order_from_a_clean_kernel(path):
    counts = [c.execution_count for c in _code_cells(_read(path))]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts}; restart the kernel and run all cells, then save"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_nbval_markers_are_cell_tags_not_code(path):
    """A learner sees clean code: nbval-check-output etc. live in the cell's tags, not in `# NBVAL_` lines."""
    marked = [i for i, cell in enumerate(_code_cells(_read(path)), start=1) if "# NBVAL_" in cell.source]
    assert not marked, f"{path.name} code cells {marked} carry '# NBVAL_' comment lines; use cell tags"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_errors_except_where_expected(path):
    for i, cell in enumerate(_code_cells(_read(path)), start=1):
        expects_error = "raises-exception" in cell.metadata.get("tags", [])
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if expects_error:
            assert errors, f"{path.name} code cell {i} is tagged raises-exception but did not raise"
        else:
            assert not errors, f"{path.name} code cell {i} raised {errors[0].ename}: {errors[0].evalue}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_no_token_like_strings(path):
    raw = path.read_text(encoding="utf-8")
    for kind, pattern in TOKEN_PATTERNS.items():
        match = pattern.search(raw)
        assert match is None, f"{path.name} contains something that looks like a {kind}: {match.group()[:6]}..."


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_outputs_do_not_leak_machine_paths(path):
    forbidden = {str(PROJECT_ROOT), str(Path.home()) + "/"} - {"/", "//"}
    for i, cell in enumerate(_code_cells(_read(path)), start=1):
        for text in _output_texts(cell):
            for needle in forbidden:
                assert needle not in text, f"{path.name} code cell {i} prints the local path {needle!r}"
            assert "site-packages" not in text, f"{path.name} code cell {i} prints an installed-package path"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_uses_the_course_kernel(path):
    kernelspec = _read(path).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == KERNEL_NAME, (
        f"{path.name} uses kernel {kernelspec.get('name')!r}; select 'RAG course (.venv)' ({KERNEL_NAME}) and save"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_has_title_and_required_sections(path):
    nb = _read(path)
    headings = _headings(nb)
    assert headings and headings[0][:2] == (0, 1), f"{path.name} should open with a '# Title' in its first cell"
    positions = []
    for required in REQUIRED_HEADINGS:
        where = [i for i, (_, _, text) in enumerate(headings) if text.lower().startswith(required)]
        assert where, f"{path.name} has no '## {required.capitalize()}' heading"
        positions.append(where[0])
    assert positions == sorted(positions), f"{path.name}: sections should come in the order {REQUIRED_HEADINGS}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_ends_with_summary_and_exercises(path):
    nb = _read(path)
    headings = _headings(nb)
    last_two = [text.lower() for _, _, text in headings][-2:]
    assert last_two[0].startswith("summary") and last_two[1].startswith("exercises"), (
        f"{path.name} should end with '## Summary' then '## Exercises', found {last_two}"
    )
    exercises_cell = [i for i, _, text in headings if text.lower().startswith("exercises")][-1]
    assert all(c.cell_type == "markdown" for c in nb.cells[exercises_cell:]), (
        f"{path.name}: nothing but text should follow the exercises"
    )
    exercises = nb.cells[exercises_cell].source
    count = len(re.findall(r"^\d+\.\s+\S", exercises, flags=re.MULTILINE))
    assert 2 <= count <= 3, f"{path.name} should give 2-3 exercises as a numbered list, found {count}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_listed_in_readme_notebook_map(path):
    readme_path = PROJECT_ROOT / "README.md"
    assert readme_path.is_file(), "README.md is missing; it should hold the notebook map"
    readme = readme_path.read_text(encoding="utf-8")
    assert path.name in readme, f"README.md's notebook map does not mention {path.name}"


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def _widget_views(nb: nbformat.NotebookNode) -> list[str]:
    """The model ids of every widget displayed in the notebook's outputs (apps, progress bars)."""
    return [
        output.data[WIDGET_VIEW]["model_id"]
        for cell in _code_cells(nb)
        for output in cell.get("outputs", [])
        if WIDGET_VIEW in output.get("data", {})
    ]


WIDGET_NOTEBOOKS = [path for path in NOTEBOOKS if _widget_views(_read(path))]


@pytest.mark.parametrize("path", WIDGET_NOTEBOOKS, ids=_ids(WIDGET_NOTEBOOKS))
def test_widget_outputs_carry_their_saved_state(path):
    # Without the state in the metadata, JupyterLab shows "VBox(children=..." or a bar stuck at 0%
    # until the notebook is run again; `make notebooks` saves it.
    nb = _read(path)
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    missing = [model_id for model_id in _widget_views(nb) if model_id not in state]
    assert not missing, (
        f"{path.name}: {len(missing)} displayed widgets have no saved state; "
        f"run make notebooks NB={path.name[:2]}"
    )
    # A displayed model's children must be saved too, or the view cannot be rebuilt.
    references = {
        value[len("IPY_MODEL_") :]
        for model in state.values()
        for value in json.dumps(model.get("state", {})).split('"')
        if value.startswith("IPY_MODEL_")
    }
    assert references <= set(state), f"{path.name}: saved widgets refer to models that were not saved"
