"""scripts/run_notebooks.py: choosing notebooks, a clean index per kernel, and the times file it keeps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

from rag_helpers.config import PROJECT_ROOT

SPEC = importlib.util.spec_from_file_location("run_notebooks", PROJECT_ROOT / "scripts" / "run_notebooks.py")
runner = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(runner)

MACHINE = {"cpu": "Test CPU", "cores": 2, "load_average_at_start": 1.0}


@pytest.fixture
def notebooks(tmp_path, monkeypatch) -> Path:
    """A notebooks/ folder with two notebooks and one solution, which the runner then sees as the course."""
    root = tmp_path / "notebooks"
    (root / "solutions").mkdir(parents=True)
    for name in ("00_setup.ipynb", "01_embeddings.ipynb", "solutions/01_embeddings.ipynb"):
        (root / name).write_text("{}", encoding="utf-8")
    monkeypatch.setattr(runner, "NOTEBOOK_ROOT", root)
    monkeypatch.setattr(runner, "NOTEBOOK_DIRS", (root, root / "solutions"))
    return root


def test_prefixes_choose_notebooks_and_their_solutions(notebooks):
    chosen = runner.select(runner.course_notebooks(), ["01"])
    keys = [runner.notebook_key(p) for p in chosen]
    assert keys == ["01_embeddings.ipynb", "solutions/01_embeddings.ipynb"]
    assert runner.select(runner.course_notebooks(), []) == runner.course_notebooks()


def test_an_unknown_prefix_names_the_choices(notebooks):
    with pytest.raises(SystemExit, match="No notebook starts with 77; choose from: 00_setup.ipynb"):
        runner.select(runner.course_notebooks(), ["01", "77"])


def test_each_kernel_gets_the_index_folder_it_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("CHROMA_PATH", "/learners/own/index")
    env = runner.kernel_env(tmp_path / "chroma_db")
    assert env["CHROMA_PATH"] == str(tmp_path / "chroma_db")
    assert env["HF_HUB_OFFLINE"] and env["ANONYMIZED_TELEMETRY"]


def test_times_merge_per_notebook_and_forget_renamed_ones(notebooks):
    times = {"00_setup.ipynb": 10.0, "01_embeddings.ipynb": 20.0, "02_gone.ipynb": 5.0}
    old = {"machine": MACHINE, "notebooks": times}
    merged = runner.merge_times(old, {"01_embeddings.ipynb": 21.04}, MACHINE)
    assert merged["notebooks"] == {"00_setup.ipynb": 10.0, "01_embeddings.ipynb": 21.0}
    assert merged["machine"] == MACHINE


def test_times_from_another_machine_are_dropped(notebooks):
    old = {"machine": {**MACHINE, "cpu": "Other CPU"}, "notebooks": {"00_setup.ipynb": 10.0}}
    merged = runner.merge_times(old, {"01_embeddings.ipynb": 21.0}, MACHINE)
    assert merged["notebooks"] == {"01_embeddings.ipynb": 21.0}


def test_a_broken_times_file_is_replaced_with_a_warning(notebooks, tmp_path, capsys):
    path = tmp_path / "docs" / "notebook_times.json"
    path.parent.mkdir()
    path.write_text("{not json", encoding="utf-8")
    runner.write_times({"00_setup.ipynb": 3.0}, MACHINE, path)
    assert json.loads(path.read_text(encoding="utf-8"))["notebooks"] == {"00_setup.ipynb": 3.0}
    assert "was not valid JSON" in capsys.readouterr().err


def test_the_machine_is_described():
    info = runner.machine_info()
    assert info["cpu"] and isinstance(info["cores"], int) and info["cores"] >= 1


def test_a_saved_progress_bar_shows_its_final_state_as_text():
    state = {
        "bar": {"state": {"children": ["IPY_MODEL_left", "IPY_MODEL_progress", "IPY_MODEL_right"]}},
        "left": {"state": {"value": "Embedding: 100%"}},
        "progress": {"state": {"value": 3, "max": 3}},
        "right": {"state": {"value": " 3/3 [00:00&lt;00:00, 13.48batch/s]"}},
    }
    cell = nbformat.v4.new_code_cell("bar")
    cell.outputs = [nbformat.v4.new_output(
        "display_data",
        data={"text/plain": "Embedding:   0%|          | 0/3", runner.WIDGET_VIEW: {"model_id": "bar"}},
    )]
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata["widgets"] = {runner.WIDGET_STATE: {"state": state}}
    runner.finish_progress_text(notebook)
    assert cell.outputs[0]["data"]["text/plain"] == "Embedding: 100%|##########| 3/3 [00:00<00:00, 13.48batch/s]"
