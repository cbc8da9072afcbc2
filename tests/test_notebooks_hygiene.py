"""Notebook hygiene: names, clean execution, structure, exercises and solutions, kernel, no secrets or paths.

nbval (configured in pyproject.toml) re-runs the notebooks; these checks read the committed files
and catch what a re-run cannot: a notebook saved half-executed, a leaked token, a missing summary, an
exercise without its check, a solution notebook that is missing, a README map that lists old names.

Each rule is a function that returns its problems as messages (empty: the rule holds). The tests at
the top apply them to notebooks/ and notebooks/solutions/; the tests at the bottom apply them to
small synthetic notebooks, to show that each rule can fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

from rag_helpers.config import PROJECT_ROOT

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
SOLUTION_DIR = NOTEBOOK_DIR / "solutions"
README = PROJECT_ROOT / "README.md"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SOLUTIONS = sorted(SOLUTION_DIR.glob("*.ipynb"))
EVERY_NOTEBOOK = NOTEBOOKS + SOLUTIONS
NAME_PATTERN = re.compile(r"^\d{2}_[a-z0-9_]+\.ipynb$")
KERNEL_NAME = "rag-course"
MAX_CELLS = 35
FIRST_APPENDIX = 90  # notebooks 90-99 are optional appendices: exercises (and so solutions) optional
MIN_EXERCISES, MAX_EXERCISES = 2, 3

TOKEN_PATTERNS = {
    "Hugging Face token": re.compile(r"hf_[A-Za-z0-9]{25,}"),
    "OpenAI-style key": re.compile(r"sk-[A-Za-z0-9_-]{20,}"),
    "GitHub token": re.compile(r"gh[pousr]_[A-Za-z0-9]{30,}"),
    "AWS access key": re.compile(r"AKIA[0-9A-Z]{16}"),
}

# Headings every course notebook needs, in reading order (level, start of the text, case-insensitive).
OPENING_HEADINGS = ((2, "what you will learn"), (2, "prerequisites"))
NBVAL_COMMENT = re.compile(r"^\s*#\s*NBVAL", re.IGNORECASE | re.MULTILINE)
EXERCISE_STATEMENT = re.compile(
    r"^\s*(?:#{1,6}\s*|\*\*|__)?\s*Exercise\s+(\d+)\b", re.IGNORECASE | re.MULTILINE
)
CHECK_CALL = re.compile(r"(?<![\w.])check\(")
CHECK_LABEL = re.compile(r"(?<![\w.])check\(\s*(?:f?[\"'])([^\"']+)[\"']")
ASSERTED_CHECK_LABEL = re.compile(r"\bassert\s+check\(\s*(?:f?[\"'])([^\"']+)[\"']")
NOTEBOOK_NAME = re.compile(r"\b\d{2}_[a-z0-9_]+\.ipynb\b")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


# --- Reading notebooks ----------------------------------------------------------------------------


def _ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(NOTEBOOK_DIR).as_posix() if p.is_relative_to(NOTEBOOK_DIR) else p.name
            for p in paths]


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


def _is_appendix(path: Path) -> bool:
    return path.name[:2].isdigit() and int(path.name[:2]) >= FIRST_APPENDIX


def _widget_views(nb: nbformat.NotebookNode) -> list[str]:
    """The model ids of every widget displayed in the notebook's outputs (apps, progress bars)."""
    return [
        output.data[WIDGET_VIEW]["model_id"]
        for cell in _code_cells(nb)
        for output in cell.get("outputs", [])
        if WIDGET_VIEW in output.get("data", {})
    ]


def _section(nb: nbformat.NotebookNode, title: str) -> list[nbformat.NotebookNode]:
    """The cells from the `## <title>` heading's cell up to the next level-1/2 heading (or the end)."""
    headings = _headings(nb)
    starts = [i for i, level, text in headings if level == 2 and text.lower().startswith(title)]
    if not starts:
        return []
    start = starts[-1]
    ends = [i for i, level, _ in headings if level <= 2 and i > start]
    return nb.cells[start : ends[0] if ends else len(nb.cells)]


# --- The rules: each returns its problems ---------------------------------------------------------


def cell_count_problems(nb: nbformat.NotebookNode, limit: int = MAX_CELLS) -> list[str]:
    """At most `limit` cells, markdown and exercises included."""
    n = len(nb.cells)
    return [f"has {n} cells; at most {limit} (markdown and exercises included)"] if n > limit else []


def nbval_comment_problems(nb: nbformat.NotebookNode) -> list[str]:
    """nbval markers live in cell tags (nbval-check-output, ...), never in `# NBVAL_` code lines."""
    marked = [i for i, cell in enumerate(_code_cells(nb), start=1) if NBVAL_COMMENT.search(cell.source)]
    return [f"code cells {marked} carry '# NBVAL' comment lines; use cell tags"] if marked else []


def execution_order_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Run top to bottom on a fresh kernel: every code cell with code was run, counts are 1..n in order."""
    cells = _code_cells(nb)
    unrun = [i for i, c in enumerate(cells, start=1) if c.source.strip() and c.execution_count is None]
    counts = [c.execution_count for c in cells if c.execution_count is not None]
    problems = []
    if unrun:
        problems.append(f"code cells {unrun} were not run")
    if counts != list(range(1, len(counts) + 1)):
        problems.append(f"execution counts {counts}, not 1..{len(counts)} in order")
    if problems:
        problems.append("restart the kernel, run all cells and save (or make notebooks NB=NN)")
    return problems


def section_problems(nb: nbformat.NotebookNode, exercises_required: bool = True) -> list[str]:
    """A `# Title` first; What you will learn, Prerequisites, `## Summary`, `## Exercises`, in this order."""
    headings = _headings(nb)
    if not headings or headings[0][:2] != (0, 1):
        return ["should open with a '# Title' in its first cell"]
    required = list(OPENING_HEADINGS) + [(2, "summary")] + ([(2, "exercises")] if exercises_required else [])
    positions, problems = [], []
    for level, start in required:
        where = [
            n for n, (_, lvl, text) in enumerate(headings) if lvl == level and text.lower().startswith(start)
        ]
        if not where:
            problems.append(f"has no '{'#' * level} {start.capitalize()}' heading")
        else:
            positions.append(where[0])
    if not problems and positions != sorted(positions):
        problems.append(f"sections should come in the order {[start for _, start in required]}")
    sections = [text.lower() for _, level, text in headings if level <= 2]
    if not problems and exercises_required and not sections[-1].startswith("exercises"):
        problems.append(f"'## Exercises' should be the last section, found {sections[-2:]}")
    return problems


def exercise_problems(nb: nbformat.NotebookNode) -> list[str]:
    """2-3 exercises under `## Exercises`, one markdown cell each, each followed by a cell calling check(."""
    section = _section(nb, "exercises")
    if not section:
        return ["has no '## Exercises' section"]
    statements = [
        i for i, c in enumerate(section) if c.cell_type == "markdown" and EXERCISE_STATEMENT.search(c.source)
    ]
    problems = []
    for i in statements:
        numbers = EXERCISE_STATEMENT.findall(section[i].source)
        if len(numbers) > 1:
            problems.append(f"exercises {numbers} share one cell; give each its own cell and check")
    if not MIN_EXERCISES <= len(statements) <= MAX_EXERCISES:
        problems.append(
            f"gives {len(statements)} exercises ('**Exercise N.**' cells); "
            f"{MIN_EXERCISES}-{MAX_EXERCISES} expected"
        )
    for n, i in enumerate(statements):
        following = section[i + 1 : statements[n + 1] if n + 1 < len(statements) else len(section)]
        if not any(c.cell_type == "code" and CHECK_CALL.search(c.source) for c in following):
            label = EXERCISE_STATEMENT.search(section[i].source).group(0).strip(" *#_")
            problems.append(f"{label} is not followed by a code cell that calls check(...)")
    return problems


def check_labels(nb: nbformat.NotebookNode, pattern: re.Pattern = CHECK_LABEL) -> set[str]:
    """The labels (first arguments) of the check("...") calls that `pattern` finds in the code cells."""
    return {label for cell in _code_cells(nb) for label in pattern.findall(cell.source)}


def solution_problems(path: Path, solution_dir: Path = SOLUTION_DIR) -> list[str]:
    """notebooks/solutions/<same name> exists and asserts every check the notebook's exercises call."""
    solution = solution_dir / path.name
    if not solution.is_file():
        return [f"has no worked solutions: create {solution_dir.name}/{path.name}"]
    asserted = check_labels(_read(solution), ASSERTED_CHECK_LABEL)
    if not asserted:
        return [f"{solution_dir.name}/{path.name} has no `assert check(...)`"]
    missing = sorted(check_labels(_read(path)) - asserted)
    return [f"{solution_dir.name}/{path.name} does not `assert check(...)` {missing}"] if missing else []


def orphan_solution_problems(solution: Path, notebook_dir: Path = NOTEBOOK_DIR) -> list[str]:
    """A solution notebook belongs to a notebook of the same name."""
    if (notebook_dir / solution.name).is_file():
        return []
    return [f"no notebook {solution.name} for this solution"]


def widget_state_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Displayed widgets (apps, progress bars) have their state saved, children included."""
    # Without it JupyterLab shows "VBox(children=..." or a bar stuck at 0% until the notebook is run
    # again; `make notebooks` saves it.
    views = _widget_views(nb)
    if not views:
        return []
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    missing = [model_id for model_id in views if model_id not in state]
    if missing:
        return [
            f"{len(missing)} of {len(views)} displayed widgets have no saved state; run make notebooks NB=NN"
        ]
    references = {
        value[len("IPY_MODEL_") :]
        for model in state.values()
        for value in json.dumps(model.get("state", {})).split('"')
        if value.startswith("IPY_MODEL_")
    }
    return [] if references <= set(state) else ["saved widgets refer to models that were not saved"]


def notebook_map(readme: str) -> list[str]:
    """The notebook names in README's notebook map: the table whose first column is headed `notebook`."""
    names, inside = [], False
    for line in readme.splitlines():
        is_row = line.lstrip().startswith("|")
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if is_row else []
        if not cells:
            if inside:
                break
            continue
        if not inside:
            inside = cells[0].lower() == "notebook"
            continue
        names += NOTEBOOK_NAME.findall(cells[0])
    return names


def readme_map_problems(readme: str, notebook_dir: Path = NOTEBOOK_DIR) -> list[str]:
    """README's map lists exactly notebooks/*.ipynb, once each, mentions solutions/, names no old notebook."""
    listed = notebook_map(readme)
    if not listed:
        return ["README.md has no notebook map (a table whose first column is headed 'notebook')"]
    present = {p.name for p in notebook_dir.glob("*.ipynb")}
    solutions = {p.name for p in (notebook_dir / "solutions").glob("*.ipynb")}
    problems = []
    if sorted(set(listed) - present):
        problems.append(f"the map lists notebooks that do not exist: {sorted(set(listed) - present)}")
    if sorted(present - set(listed)):
        problems.append(f"the map does not list {sorted(present - set(listed))}")
    if len(listed) != len(set(listed)):
        problems.append("the map lists a notebook twice")
    if "solutions/" not in readme:
        problems.append("README.md does not point to notebooks/solutions/")
    stale = sorted(set(NOTEBOOK_NAME.findall(readme)) - present - solutions)
    if stale:
        problems.append(f"README.md names notebooks that no longer exist: {stale}")
    return problems


MODULE_NAME = re.compile(r"\brag_helpers((?:\.[A-Za-z_]\w*)+)")
STRAY_RESULTS = {"None", "Ellipsis", "(Ellipsis, Ellipsis)", "False"}
STARTED_BAR = re.compile(r"^\s*[^|]*\b0%\|")


def _missing_name(dotted: str) -> str | None:
    """The part of `rag_helpers.<dotted>` that does not exist (a module or an attribute), or None."""
    import importlib

    parts = dotted.strip(".").split(".")
    module, found = "rag_helpers", importlib.import_module("rag_helpers")
    for part in parts:
        if hasattr(found, part):
            found = getattr(found, part)
            continue
        try:
            module = f"{module}.{part}"
            found = importlib.import_module(module)
        except ImportError:
            return f"rag_helpers.{'.'.join(parts)}"
    return None


def named_module_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Every `rag_helpers.x.y` a markdown cell names exists (a module, or a name in one)."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for match in MODULE_NAME.finditer(cell.source):
            missing = _missing_name(match.group(1))
            if missing:
                problems.append(f"markdown cell {i} names {missing}, which does not exist")
    return problems


def stale_output_problems(nb: nbformat.NotebookNode) -> list[str]:
    """No "Skipped: ..." step (the course's own model can run every one), no stray None/False/Ellipsis
    result, and no progress bar saved as its 0% text."""
    problems = []
    for i, cell in enumerate(_code_cells(nb), start=1):
        for output in cell.outputs:
            text = "".join(_output_texts(nbformat.from_dict({"outputs": [output]})))
            if re.search(r"\bSkipped:", text):  # "Skipped: ... needs a language model"
                problems.append(f"code cell {i} prints 'Skipped'")
            if output.output_type == "execute_result" and output.data.get("text/plain", "").strip() in STRAY_RESULTS:
                problems.append(f"code cell {i} shows a stray {output.data['text/plain'].strip()!r} (end it with ';')")
            if WIDGET_VIEW in output.get("data", {}) and STARTED_BAR.match(output.data.get("text/plain", "")):
                problems.append(f"code cell {i} saves its progress bar as 0% text (run make notebooks)")
    return problems


# --- The rules applied to the course --------------------------------------------------------------


def _assert_none(path: Path, problems: list[str]) -> None:
    assert not problems, f"{_ids([path])[0]}: " + "; ".join(problems)


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_name_follows_pattern(path):
    assert NAME_PATTERN.match(path.name), f"{path.name} should look like 01_lowercase_slug.ipynb"


def test_numbers_are_unique():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert len(numbers) == len(set(numbers)), f"two notebooks share a number: {sorted(numbers)}"


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_is_valid_nbformat(path):
    nbformat.validate(_read(path))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_at_most_35_cells(path):
    _assert_none(path, cell_count_problems(_read(path)))


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_executed_in_order_from_a_clean_kernel(path):
    _assert_none(path, execution_order_problems(_read(path)))


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_nbval_markers_are_cell_tags_not_code(path):
    """A learner sees clean code: nbval-check-output etc. live in the cell's tags, not in `# NBVAL_` lines."""
    _assert_none(path, nbval_comment_problems(_read(path)))


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_no_errors_except_where_expected(path):
    for i, cell in enumerate(_code_cells(_read(path)), start=1):
        expects_error = "raises-exception" in cell.metadata.get("tags", [])
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if expects_error:
            assert errors, f"{path.name} code cell {i} is tagged raises-exception but did not raise"
        else:
            assert not errors, f"{path.name} code cell {i} raised {errors[0].ename}: {errors[0].evalue}"


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_no_token_like_strings(path):
    raw = path.read_text(encoding="utf-8")
    for kind, pattern in TOKEN_PATTERNS.items():
        match = pattern.search(raw)
        assert match is None, (
            f"{path.name} contains something that looks like a {kind}: {match.group()[:6]}..."
        )


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_outputs_do_not_leak_machine_paths(path):
    forbidden = {str(PROJECT_ROOT), str(Path.home()) + "/"} - {"/", "//"}
    for i, cell in enumerate(_code_cells(_read(path)), start=1):
        for text in _output_texts(cell):
            for needle in forbidden:
                assert needle not in text, f"{path.name} code cell {i} prints the local path {needle!r}"
            assert "site-packages" not in text, f"{path.name} code cell {i} prints an installed-package path"


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_uses_the_course_kernel(path):
    kernelspec = _read(path).metadata.get("kernelspec", {})
    assert kernelspec.get("name") == KERNEL_NAME, (
        f"{path.name} uses kernel {kernelspec.get('name')!r}; "
        f"select 'RAG course (.venv)' ({KERNEL_NAME}) and save"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_has_title_and_required_sections(path):
    _assert_none(path, section_problems(_read(path), exercises_required=not _is_appendix(path)))


EXERCISE_NOTEBOOKS = [p for p in NOTEBOOKS if not _is_appendix(p) or _section(_read(p), "exercises")]


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=_ids(EXERCISE_NOTEBOOKS))
def test_each_exercise_is_followed_by_a_check(path):
    _assert_none(path, exercise_problems(_read(path)))


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=_ids(EXERCISE_NOTEBOOKS))
def test_has_a_solution_notebook_that_asserts_its_checks(path):
    _assert_none(path, solution_problems(path))


@pytest.mark.parametrize("path", SOLUTIONS, ids=_ids(SOLUTIONS))
def test_solution_belongs_to_a_notebook(path):
    _assert_none(path, orphan_solution_problems(path))


WIDGET_NOTEBOOKS = [path for path in EVERY_NOTEBOOK if _widget_views(_read(path))]


@pytest.mark.parametrize("path", WIDGET_NOTEBOOKS, ids=_ids(WIDGET_NOTEBOOKS))
def test_widget_outputs_carry_their_saved_state(path):
    _assert_none(path, widget_state_problems(_read(path)))


def test_readme_notebook_map_lists_exactly_the_notebooks():
    assert README.is_file(), "README.md is missing; it should hold the notebook map"
    problems = readme_map_problems(README.read_text(encoding="utf-8"))
    assert not problems, "README.md: " + "; ".join(problems)


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_modules_named_in_the_text_exist(path):
    _assert_none(path, named_module_problems(_read(path)))


@pytest.mark.parametrize("path", EVERY_NOTEBOOK, ids=_ids(EVERY_NOTEBOOK))
def test_no_skipped_steps_or_stray_outputs(path):
    _assert_none(path, stale_output_problems(_read(path)))


# --- Each rule can fail: synthetic notebooks ------------------------------------------------------


def _code(source: str, count: int | None = None, outputs: list | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source, execution_count=count)
    cell.outputs = outputs or []
    return cell


def _good_notebook() -> nbformat.NotebookNode:
    """A small notebook that follows every rule."""
    md = nbformat.v4.new_markdown_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        md("# 01. Title\n\n## What you will learn\n- one thing\n\n## Prerequisites\nNotebook 00."),
        _code("x = 1", 1),
        md("## Summary\n- x is one."),
        md("## Exercises\n\n**Exercise 1.** Make `y` two."),
        _code("y = ...  # your code here", 2),
        _code('from rag_helpers.exercises import check\ncheck("Exercise 1", ("y", lambda: y == 2))', 3),
        md("**Exercise 2.** Make `z` three."),
        _code("z = ...  # your code here", 4),
        _code('check("Exercise 2", ("z", lambda: z == 3))', 5),
    ]
    return nb


def _solution_notebook(labels: tuple[str, ...] = ("Exercise 1", "Exercise 2")) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Solutions: 01. Title")] + [
        _code(f'assert check("{label}", ("ok", lambda: True))', n) for n, label in enumerate(labels, start=1)
    ]
    return nb


def test_the_synthetic_notebook_passes_every_rule():
    nb = _good_notebook()
    problems = (
        cell_count_problems(nb) + nbval_comment_problems(nb) + execution_order_problems(nb)
        + section_problems(nb) + exercise_problems(nb) + widget_state_problems(nb)
        + named_module_problems(nb) + stale_output_problems(nb)
    )
    assert problems == []


def test_rule_cell_count_fails_over_35():
    nb = _good_notebook()
    nb.cells += [nbformat.v4.new_markdown_cell("more")] * (MAX_CELLS + 1 - len(nb.cells))
    assert cell_count_problems(nb) == [
        f"has {MAX_CELLS + 1} cells; at most 35 (markdown and exercises included)"
    ]
    assert cell_count_problems(_good_notebook()) == []


def test_rule_nbval_comment_lines_fail():
    nb = _good_notebook()
    nb.cells[1].source = "# NBVAL_CHECK_OUTPUT\nx = 1"
    assert nbval_comment_problems(nb)
    nb.cells[1].source = "x = 1  # nbval markers are tags"
    assert nbval_comment_problems(nb) == []


@pytest.mark.parametrize(
    "counts", [(1, 3, 4, 5, 6), (2, 1, 3, 4, 5), (1, 2, 3, 4, None)], ids=["gap", "reordered", "unrun"]
)
def test_rule_execution_order_fails(counts):
    nb = _good_notebook()
    for cell, count in zip(_code_cells(nb), counts):
        cell.execution_count = count
    assert execution_order_problems(nb)


def test_rule_execution_order_ignores_empty_unrun_cells():
    nb = _good_notebook()
    nb.cells.insert(2, _code("", None))  # nbclient never runs an empty cell
    assert execution_order_problems(nb) == []


@pytest.mark.parametrize(
    "heading, expected",
    [("## Summary", "has no '## Summary' heading"), ("## Exercises", "has no '## Exercises' heading")],
)
def test_rule_sections_fail_without_summary_or_exercises(heading, expected):
    nb = _good_notebook()
    for cell in nb.cells:
        cell.source = cell.source.replace(heading, "## Something else")
    assert expected in section_problems(nb)


def test_rule_sections_fail_when_exercises_are_not_last():
    nb = _good_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("## Further reading"))
    assert section_problems(nb)
    assert section_problems(_good_notebook(), exercises_required=False) == []


def test_rule_exercise_without_check_fails():
    nb = _good_notebook()
    del nb.cells[8]  # exercise 2's check cell
    assert exercise_problems(nb) == ["Exercise 2 is not followed by a code cell that calls check(...)"]


def test_rule_exercises_in_one_list_fail():
    nb = _good_notebook()
    nb.cells[3:] = [nbformat.v4.new_markdown_cell("## Exercises\n\n**Exercise 1.** a\n\n**Exercise 2.** b")]
    problems = exercise_problems(nb)
    assert any("share one cell" in p for p in problems) and any("1 exercises" in p for p in problems)


def test_rule_too_many_exercises_fail():
    nb = _good_notebook()
    for n in (3, 4):
        statement = nbformat.v4.new_markdown_cell(f"**Exercise {n}.** more")
        nb.cells += [statement, _code(f'check("Exercise {n}")')]
    assert exercise_problems(nb) == ["gives 4 exercises ('**Exercise N.**' cells); 2-3 expected"]


def test_rule_solution_must_exist_and_assert_every_check(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    path = tmp_path / "01_title.ipynb"
    nbformat.write(_good_notebook(), path)
    assert solution_problems(path, solutions) == ["has no worked solutions: create solutions/01_title.ipynb"]
    nbformat.write(_solution_notebook(("Exercise 1",)), solutions / path.name)
    assert solution_problems(path, solutions) == [
        "solutions/01_title.ipynb does not `assert check(...)` ['Exercise 2']"
    ]
    unasserted = _solution_notebook()
    for cell in _code_cells(unasserted):
        cell.source = cell.source.replace("assert check(", "check(")
    nbformat.write(unasserted, solutions / path.name)
    assert solution_problems(path, solutions) == ["solutions/01_title.ipynb has no `assert check(...)`"]
    nbformat.write(_solution_notebook(), solutions / path.name)
    assert solution_problems(path, solutions) == []
    nbformat.write(_solution_notebook(), solutions / "02_gone.ipynb")
    assert orphan_solution_problems(solutions / "02_gone.ipynb", tmp_path)
    assert orphan_solution_problems(solutions / path.name, tmp_path) == []


def test_rule_widget_state_must_be_saved():
    nb = _good_notebook()
    data = {WIDGET_VIEW: {"model_id": "abc", "version_major": 2}}
    view = {"output_type": "display_data", "metadata": {}, "data": data}
    nb.cells[1].outputs = [nbformat.from_dict(view)]
    assert widget_state_problems(nb)
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": {"abc": {"state": {"children": ["IPY_MODEL_def"]}}}}}
    assert widget_state_problems(nb) == ["saved widgets refer to models that were not saved"]
    nb.metadata["widgets"][WIDGET_STATE]["state"]["def"] = {"state": {}}
    assert widget_state_problems(nb) == []


def test_rule_readme_map_must_match_the_folder(tmp_path):
    (tmp_path / "solutions").mkdir()
    for name in ("00_setup.ipynb", "01_embeddings.ipynb"):
        nbformat.write(_good_notebook(), tmp_path / name)
    table = "| notebook | what you do |\n|---|---|\n| `00_setup.ipynb` | set up |\n"
    good = table + "| `01_embeddings.ipynb` | vectors |\n\nWorked solutions: `notebooks/solutions/`.\n"
    assert readme_map_problems(good, tmp_path) == []
    assert readme_map_problems(table + "\nsolutions/\n", tmp_path) == [
        "the map does not list ['01_embeddings.ipynb']"
    ]
    old = good.replace("01_embeddings", "02_chunking")
    problems = readme_map_problems(old, tmp_path)
    assert "the map lists notebooks that do not exist: ['02_chunking.ipynb']" in problems
    stale = good + "\nDownload it as `02_chunking.ipynb` shows.\n"
    assert readme_map_problems(stale, tmp_path) == [
        "README.md names notebooks that no longer exist: ['02_chunking.ipynb']"
    ]
    assert readme_map_problems(good.replace("`notebooks/solutions/`", "the folder"), tmp_path) == [
        "README.md does not point to notebooks/solutions/"
    ]
    assert readme_map_problems("no table here", tmp_path)


def test_rule_named_modules_fail_for_a_missing_one():
    nb = _good_notebook()
    nb.cells[0].source += "\n\nSee `rag_helpers.mmr.mmr_select` and `rag_helpers.ingest`."
    assert named_module_problems(nb) == []
    nb.cells[0].source += " Also `rag_helpers.retrievers` and `rag_helpers.rerank.mmr_select`."
    assert len(named_module_problems(nb)) == 2


@pytest.mark.parametrize("text", ["Skipped: no LLM", None, "False", "Ellipsis"])
def test_rule_stale_outputs_fail(text):
    nb = _good_notebook()
    if text and text.startswith("Skipped"):
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    else:
        nb.cells[1].outputs = [nbformat.v4.new_output("execute_result", data={"text/plain": str(text)}, execution_count=1)]
    assert stale_output_problems(nb)


def test_rule_a_progress_bar_saved_at_zero_fails():
    nb = _good_notebook()
    data = {"text/plain": "Embedding:   0%|          | 0/3", WIDGET_VIEW: {"model_id": "m"}}
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data=data)]
    assert stale_output_problems(nb)
    nb.cells[1].outputs[0].data["text/plain"] = "Embedding: 100%|##########| 3/3"
    assert stale_output_problems(nb) == []
