"""The exercise checks of notebooks 09, 11 and the appendix 90 reject plausible wrong answers.

Each test runs the notebook's own check cell (read from the .ipynb, so a test and the notebook cannot drift
apart) in a namespace where the expensive objects (retrievers, reports, the index) are small stand-ins,
once with a planted wrong answer, which must fail, and once with the right one, which must pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rag_helpers.config import DEFAULT_MIN_SCORE
from rag_helpers.exercises import NOT_YET, PASSED, attempted, check

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def check_cell(notebook: str, exercise: str) -> str:
    """The source of the code cell of `notebook` that runs `check("<exercise>", ...)`."""
    cells = json.loads((NOTEBOOKS / notebook).read_text(encoding="utf-8"))["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    found = [s for s in sources if f'check("{exercise}"' in s]
    assert len(found) == 1, f"{notebook}: {len(found)} cells check {exercise}"
    return found[0]


def run_check(notebook: str, exercise: str, namespace: dict) -> str:
    """Execute the check cell in `namespace`; what it printed (the verdict line)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(check_cell(notebook, exercise), {"math": math, "np": np, "check": check, "attempted": attempted, **namespace})
    return printed.getvalue()


class FakeReport:
    """Just enough of an evaluation report: metrics() with a chosen MRR@10."""

    def __init__(self, mrr: float) -> None:
        self.mrr = mrr

    def metrics(self, kind: str | None = None) -> dict[str, float]:
        return {"mrr@10": self.mrr, "evidence_hit@5": 0.8}


# ---- notebook 09, exercise 2: MRR@10 of the hybrid retriever for RRF constants 1, 10, 60 ----------

HYBRID_MRR = {1: 0.551, 10: 0.587, 60: 0.612}


def hybrid_namespace() -> dict:
    def make_retriever(name, collection, encoder, rrf_k=60, **options):
        assert name == "hybrid"
        return ("hybrid", rrf_k)

    def evaluate(retriever, questions, **options):
        return FakeReport(HYBRID_MRR[retriever[1]])

    return {"make_retriever": make_retriever, "evaluate": evaluate, "collection": None, "encoder": None,
            "questions": [], "documents": [], "reports": {"hybrid": FakeReport(HYBRID_MRR[60])}}


@pytest.mark.parametrize(
    "wrong",
    [
        {1: 0.612, 10: 0.612, 60: 0.612},  # rrf_k never passed: the default retriever three times
        {1: 0.8, 10: 0.8, 60: 0.612},  # evidence-hit@5 instead of MRR for the other two
        {1: 0.587, 10: 0.551, 60: 0.612},  # the values swapped
    ],
)
def test_09_exercise_2_rejects_a_wrong_mrr_by_k(wrong):
    out = run_check("09_hybrid_search.ipynb", "Exercise 2", {**hybrid_namespace(), "mrr_by_k": wrong})
    assert out.startswith(NOT_YET), out


def test_09_exercise_2_passes_the_right_answer():
    out = run_check("09_hybrid_search.ipynb", "Exercise 2", {**hybrid_namespace(), "mrr_by_k": dict(HYBRID_MRR)})
    assert out.startswith(PASSED), out


# ---- notebook 11, exercise 1: MRR@10 of the re-ranker for weights 0, 0.5, 1 -----------------------

RERANK_MRR = {0.0: 0.601, 0.5: 0.656, 1.0: 0.540}
HYBRID_11 = 0.608


def rerank_namespace() -> dict:
    def make_retriever(name, collection, encoder, weight=0.5, **options):
        assert name == "rerank"
        return ("rerank", weight)

    def evaluate(retriever, questions, **options):
        return FakeReport(RERANK_MRR[retriever[1]])

    reports = {"rerank": FakeReport(RERANK_MRR[0.5]), "hybrid": FakeReport(HYBRID_11)}
    return {"make_retriever": make_retriever, "evaluate": evaluate, "collection": None, "encoder": None,
            "questions": [], "documents": [], "reports": reports}


@pytest.mark.parametrize(
    "wrong",
    [
        {0.0: 0.601, 0.5: 0.656, 1.0: 0.656},  # w = 1.0 never evaluated: the default's MRR copied
        {0.0: HYBRID_11, 0.5: 0.656, 1.0: 0.540},  # w = 0 taken from hybrid's report, not measured
        {0.0: 0.540, 0.5: 0.656, 1.0: 0.601},  # the ends swapped
    ],
)
def test_11_exercise_1_rejects_a_wrong_mrr_by_weight(wrong):
    out = run_check("11_reranking.ipynb", "Exercise 1", {**rerank_namespace(), "mrr_by_weight": wrong})
    assert out.startswith(NOT_YET), out


def test_11_exercise_1_passes_the_right_answer():
    out = run_check("11_reranking.ipynb", "Exercise 1",
                    {**rerank_namespace(), "mrr_by_weight": dict(RERANK_MRR)})
    assert out.startswith(PASSED), out


# ---- appendix 90, exercise 1: cosine from a squared L2 distance, and the gate as a distance --------


class Hit:
    def __init__(self, distance: float) -> None:
        self.distance = distance
        self.score = 1 - distance / 2


def distance_namespace(cosine_from_l2, gate_l2) -> dict:
    return {"cosine_from_l2": cosine_from_l2, "gate_l2": gate_l2, "DEFAULT_MIN_SCORE": DEFAULT_MIN_SCORE,
            "top_l2": [Hit(0.76), Hit(0.87), Hit(1.03)]}


@pytest.mark.parametrize(
    ("cosine_from_l2", "gate_l2"),
    [
        (lambda d: 1 - d, 1.1),  # squared L2 taken for the cosine distance
        (lambda d: 1 - d / 4, 1.1),  # 4 is "opposite", so divided by 4
        (lambda d: 1 - d / 2, 0.55),  # the gate converted as a cosine distance, 1 - cos
    ],
)
def test_90_exercise_1_rejects_wrong_conversions(cosine_from_l2, gate_l2):
    out = run_check("90_appendix_chroma_server_and_distances.ipynb", "Exercise 1",
                    distance_namespace(cosine_from_l2, gate_l2))
    assert out.startswith(NOT_YET), out


def test_90_exercise_1_passes_the_right_answer():
    out = run_check("90_appendix_chroma_server_and_distances.ipynb", "Exercise 1",
                    distance_namespace(lambda d: 1 - d / 2, 2 - 2 * DEFAULT_MIN_SCORE))
    assert out.startswith(PASSED), out


# ---- appendix 90, exercise 2: L2 and cosine on vectors of different lengths ------------------------


def scaled_namespace() -> dict:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    lengths = 1 + np.arange(len(vectors)) % 3
    query = vectors[4] + 0.3 * rng.normal(size=8)
    query /= np.linalg.norm(query)
    return {"vectors_all": vectors, "scaled": vectors * lengths[:, None], "question_vector": query}


def right_top5(ns: dict) -> tuple[list[int], list[int]]:
    scaled, q = ns["scaled"], ns["question_vector"]
    by_l2 = list(np.argsort(((scaled - q) ** 2).sum(axis=1), kind="stable")[:5])
    cosine = scaled @ q / np.linalg.norm(scaled, axis=1)
    return by_l2, list(np.argsort(-cosine, kind="stable")[:5])


def test_90_exercise_2_rejects_l2_on_the_unit_vectors():
    ns = scaled_namespace()
    by_l2, by_cosine = right_top5(ns)
    unit_l2 = list(np.argsort(((ns["vectors_all"] - ns["question_vector"]) ** 2).sum(axis=1))[:5])
    assert unit_l2 != by_l2, "the planted wrong answer must differ from the right one"
    for wrong in ({"top5_l2": unit_l2, "top5_cosine": by_cosine},  # L2 on the unit vectors, not `scaled`
                  {"top5_l2": by_l2, "top5_cosine": list(np.argsort(-(ns["scaled"] @ ns["question_vector"]))[:5])}):
        out = run_check("90_appendix_chroma_server_and_distances.ipynb", "Exercise 2", {**ns, **wrong})
        assert out.startswith(NOT_YET), out  # the second: a dot product with the long rows, not a cosine


def test_90_exercise_2_passes_the_right_answer():
    ns = scaled_namespace()
    by_l2, by_cosine = right_top5(ns)
    out = run_check("90_appendix_chroma_server_and_distances.ipynb", "Exercise 2",
                    {**ns, "top5_l2": by_l2, "top5_cosine": by_cosine})
    assert out.startswith(PASSED), out
