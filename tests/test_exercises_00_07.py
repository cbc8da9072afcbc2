"""The exercise checks of notebooks 01, 04 and 07 reject plausible wrong answers (and accept right ones).

Each test runs the notebook's own check cell, unchanged, in a namespace with small stand-ins for the
notebook's objects (a fake embedding model, a fake timer, a fake app), so it needs no model and no index.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rag_helpers.exercises import NOT_YET, PASSED, attempted, check

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def check_cell(notebook: str, exercise: str) -> str:
    """The source of the exercise notebook's cell that calls check(exercise, ...)."""
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and f'check("{exercise}"' in source:
            return source
    raise AssertionError(f"{notebook} has no check cell for {exercise}")


def run_check(notebook: str, exercise: str, namespace: dict, capsys) -> bool:
    """Run the check cell with `namespace`; True when it printed the success line, False for a hint."""
    namespace = {"attempted": attempted, "check": check, **namespace}
    exec(compile(check_cell(notebook, exercise), notebook, "exec"), namespace)  # noqa: S102 - our own notebook
    out = capsys.readouterr().out
    assert out.startswith((PASSED, NOT_YET)), out
    return out.startswith(PASSED)


# --- Notebook 01, exercise 2: which change moves a sentence's vector more -------------------------

PORTO = "The 2023 hotel cap in Porto is €140 per night."
UNIT = {
    PORTO: np.array([1.0, 0.0, 0.0]),
    PORTO.replace("2023", "2024"): np.array([0.98, np.sqrt(1 - 0.98**2), 0.0]),
    PORTO.replace("Porto", "Leeds"): np.array([0.81, 0.0, np.sqrt(1 - 0.81**2)]),
}


def embeddings_namespace(**answers) -> dict:
    def embed(texts, model, progress=True):
        return np.stack([UNIT[text] for text in texts])

    return {"embed": embed, "cosine": lambda a, b: float(np.dot(a, b)), "model": None, **answers}


def test_01_exercise_2_accepts_the_right_cosines(capsys):
    right = embeddings_namespace(year_cosine=0.98, city_cosine=0.81, bigger_change="city")
    assert run_check("01_embeddings.ipynb", "Exercise 2", right, capsys)


@pytest.mark.parametrize(
    "answers",
    [
        {"year_cosine": 0.81, "city_cosine": 0.98, "bigger_change": "year"},  # the two cosines swapped
        {"year_cosine": 0.95, "city_cosine": 0.90, "bigger_change": "city"},  # any two cosines in range
        {"year_cosine": 0.98, "city_cosine": 0.81, "bigger_change": "year"},  # the wrong conclusion
    ],
)
def test_01_exercise_2_rejects_a_wrong_answer(answers, capsys):
    assert not run_check("01_embeddings.ipynb", "Exercise 2", embeddings_namespace(**answers), capsys)


# --- Notebook 04, exercise 1: chunks per second at three batch sizes --------------------------------

TEXTS = [f"chunk {i}" for i in range(12)]
SECONDS = 0.5  # what the fake timer says every run of the sample takes


def timing_namespace(batch_speeds) -> dict:
    def throughput(function, n_items):
        return function(), n_items / SECONDS

    return {
        "throughput": throughput,
        "embed": lambda texts, model, batch_size=None, progress=True: None,
        "texts": TEXTS,
        "model_fp32": None,
        "batch_speeds": batch_speeds,
    }


def test_04_exercise_1_accepts_measured_speeds(capsys):
    speed = len(TEXTS) / SECONDS
    right = timing_namespace({1: speed * 0.9, 4: speed * 1.1, 16: speed})
    assert run_check("04_batch_embedding.ipynb", "Exercise 1", right, capsys)


@pytest.mark.parametrize(
    "batch_speeds",
    [
        {1: SECONDS, 4: SECONDS, 16: SECONDS},  # seconds per run, not chunks per second
        {1: 1 / SECONDS, 4: 1 / SECONDS, 16: 1 / SECONDS},  # speed of one chunk, not of the whole sample
        {1: 1.0, 4: 2.0, 16: 3.0},  # any positive floats
    ],
)
def test_04_exercise_1_rejects_a_wrong_answer(batch_speeds, capsys):
    assert not run_check("04_batch_embedding.ipynb", "Exercise 1", timing_namespace(batch_speeds), capsys)


# --- Notebook 07, exercise 2: the app, driven from code ----------------------------------------------

LONDON = "How much may I spend on a hotel in London?"
BM25_TOP5 = [f"policies/travel_expense_policy_2024.md_{i}" for i in range(5)]


def app_namespace(question: str, context_ids: list[str]) -> dict:
    answer = SimpleNamespace(context=[SimpleNamespace(chunk_id=i) for i in context_ids])

    def get_retriever(name):
        assert name == "bm25"
        return lambda query, k: [SimpleNamespace(id=i) for i in BM25_TOP5[:k]] if query == LONDON else []

    app = SimpleNamespace(
        backend=SimpleNamespace(value="offline"),
        k=SimpleNamespace(value=5),
        retriever=SimpleNamespace(value="bm25"),
        question=SimpleNamespace(value=question),
        answer=answer,
        error=None,
        get_retriever=get_retriever,
    )
    return {"app": app, "london_answer": answer}


def test_07_exercise_2_accepts_the_asked_question(capsys):
    assert run_check("07_generation_and_app.ipynb", "Exercise 2", app_namespace(LONDON, BM25_TOP5), capsys)


@pytest.mark.parametrize(
    ("question", "context_ids"),
    [
        ("What is the standard nightly hotel cap?", BM25_TOP5),  # another question
        (LONDON, ["policies/travel_expense_policy_2023.md_3", *BM25_TOP5[:4]]),  # searched with the previous turn
    ],
)
def test_07_exercise_2_rejects_a_wrong_answer(question, context_ids, capsys):
    assert not run_check("07_generation_and_app.ipynb", "Exercise 2", app_namespace(question, context_ids), capsys)
