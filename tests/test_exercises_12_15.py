"""The exercise checks of notebooks 12 and 15 pass a right answer and reject a plausible wrong one.

Each test runs the notebook's own check cell (read from the committed notebook) in a namespace that
holds what the notebook's earlier cells define, small stand-ins where those need the index, and a
planted answer; the printed line says whether the check passed.
"""

from __future__ import annotations

from types import SimpleNamespace

import nbformat
import numpy as np
import pytest

from rag_helpers.answer_metrics import key_fact_recall, token_f1
from rag_helpers.config import PROJECT_ROOT
from rag_helpers.exercises import NOT_YET, PASSED, attempted, check
from rag_helpers.query_expansion import rocchio
from rag_helpers.questions import Question

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def check_cell(notebook: str, exercise: str) -> str:
    """The source of the code cell that calls check("Exercise N", ...) in `notebook`."""
    cells = nbformat.read(NOTEBOOKS / notebook, as_version=4).cells
    found = [c.source for c in cells if c.cell_type == "code" and f'check("{exercise}"' in c.source]
    assert len(found) == 1, f"{notebook}: expected one check cell for {exercise}, found {len(found)}"
    return found[0]


def run_check(capsys, notebook: str, exercise: str, namespace: dict) -> bool:
    """Run the check cell; True when it printed the success line, False when it printed a hint."""
    namespace = {"attempted": attempted, "check": check, **namespace}  # imported by an earlier cell
    exec(compile(check_cell(notebook, exercise), f"{notebook}:{exercise}", "exec"), namespace)
    out = capsys.readouterr().out
    assert out.startswith((PASSED, NOT_YET)), out
    return out.startswith(PASSED)


# --- Notebook 12 -------------------------------------------------------------------------------

NB12 = "12_query_transformations.ipynb"


def _encoder(text: str) -> np.ndarray:
    """A stand-in embedding: a unit vector that depends on the text."""
    vector = np.random.default_rng(sum(map(ord, text))).normal(size=8).astype(np.float32)
    return vector / np.linalg.norm(vector)


def _vector_rank(question, vector, depth=20):
    """A stand-in evidence rank that differs between vectors."""
    return int(abs(float(vector.sum())) * 1000) % depth + 1


def _nb12_exercise1(my_question, passage_only_rank, both_rank, passage="word " * 25):
    journey = Question("How long after a work journey?", "policies/travel.md", "within 21 days", kind="paraphrase")
    other = Question("If I am ill, how much am I paid?", "people/handbook.md", "full salary", kind="paraphrase")
    fact = Question("What is the hotel cap?", "policies/travel.md", "€165", kind="fact")
    return {"questions": [journey, other, fact], "journey": journey, "encoder": _encoder, "rocchio": rocchio,
            "vector_rank": _vector_rank, "my_question": my_question, "my_passage": passage,
            "passage_only_rank": passage_only_rank, "both_rank": both_rank}


def _ranks(question, passage, alpha):
    return _vector_rank(question, rocchio(_encoder(question.q), _encoder(passage)[None, :], alpha=alpha, beta=1.0))


def test_nb12_exercise1_passes_the_right_ranks(capsys):
    ns = _nb12_exercise1(None, None, None)
    other, passage = ns["questions"][1], ns["my_passage"]
    ns.update(my_question=other, passage_only_rank=_ranks(other, passage, 0.0), both_rank=_ranks(other, passage, 1.0))
    assert run_check(capsys, NB12, "Exercise 1", ns)


@pytest.mark.parametrize("wrong", ["journey question", "fact question", "alpha swapped", "short passage"])
def test_nb12_exercise1_rejects_a_wrong_answer(capsys, wrong):
    ns = _nb12_exercise1(None, None, None)
    journey, other, fact = ns["questions"]
    question = {"journey question": journey, "fact question": fact}.get(wrong, other)
    passage = "too short to be a passage" if wrong == "short passage" else ns["my_passage"]
    only, both = _ranks(question, passage, 0.0), _ranks(question, passage, 1.0)
    assert only != both  # the stand-ins tell the two mixes apart
    if wrong == "alpha swapped":  # the passage-only rank computed with the question mixed in, and back
        only, both = both, only
    ns.update(my_question=question, my_passage=passage, passage_only_rank=only, both_rank=both)
    assert not run_check(capsys, NB12, "Exercise 1", ns)


def _moved(base, other):
    return other.better, other.worse


def _nb12_exercise2(tuned, n_results, counts):
    questions = [Question(f"q{i}", "d", "e") for i in range(4)]
    report = SimpleNamespace(results=[None] * n_results, better=[1, 2], worse=[3])
    return {"questions": questions, "moved": _moved, "search_reports": {"hybrid": None}, "tuned": tuned,
            "tuned_report": report, "tuned_better": [None] * counts[0], "tuned_worse": [None] * counts[1]}


def test_nb12_exercise2_passes_the_right_answer(capsys):
    ns = _nb12_exercise2(SimpleNamespace(n_terms=3, beta=0.1), 4, (2, 1))
    assert run_check(capsys, NB12, "Exercise 2", ns)


@pytest.mark.parametrize("tuned, n_results, counts", [
    (SimpleNamespace(n_terms=5, beta=0.3), 4, (2, 1)),  # the default expansion, not tuned
    (SimpleNamespace(n_terms=3, beta=0.3), 4, (2, 1)),  # beta left at its default
    (SimpleNamespace(n_terms=3, beta=0.1), 2, (2, 1)),  # evaluated on a few questions only
    (SimpleNamespace(n_terms=3, beta=0.1), 4, (1, 2)),  # better and worse swapped
])
def test_nb12_exercise2_rejects_a_wrong_answer(capsys, tuned, n_results, counts):
    assert not run_check(capsys, NB12, "Exercise 2", _nb12_exercise2(tuned, n_results, counts))


# --- Notebook 15 -------------------------------------------------------------------------------

NB15 = "15_evaluating_answers.ipynb"
HOTEL = Question("What is the standard nightly hotel cap under the 2024 Travel & Expense Policy?",
                 "policies/travel_expense_policy_2024.md", "€165", "€165 per night (London: £185).")


def _nb15_exercise1(answer):
    return {"questions": [HOTEL], "key_fact_recall": key_fact_recall, "token_f1": token_f1, "my_answer": answer}


def test_nb15_exercise1_passes_the_facts_in_other_words(capsys):
    answer = ("Staying overnight for work, you may book hotels costing up to 165 euros as standard; "
              "for London the ceiling is 185 pounds [1].")
    assert run_check(capsys, NB15, "Exercise 1", _nb15_exercise1(answer))


@pytest.mark.parametrize("answer", [
    "€165 per night (London: £185) [1].",  # the reference itself: F1 too high
    "Hotels may cost up to 165 euros a night as standard [1].",  # London's cap left out
    "The cap is set in the 2024 policy [1].",  # no facts at all
])
def test_nb15_exercise1_rejects_a_wrong_answer(capsys, answer):
    assert not run_check(capsys, NB15, "Exercise 1", _nb15_exercise1(answer))


THRESHOLDS = [0.30 + 0.005 * i for i in range(71)]
ANSWERABLE = [0.32, 0.36, 0.41, 0.44, 0.47] + [0.5 + 0.01 * i for i in range(35)]  # 40 scores
UNANSWERABLE = [0.33, 0.45, 0.5, 0.55, 0.6, 0.62]


def _nb15_exercise2(gate, refused):
    return {"thresholds": THRESHOLDS, "answerable_scores": ANSWERABLE, "unanswerable_scores": UNANSWERABLE,
            "gate_5": gate, "refused_at_gate_5": refused}


def _right_gate():
    return max(t for t in THRESHOLDS if sum(s < t for s in ANSWERABLE) / len(ANSWERABLE) <= 0.05)


def test_nb15_exercise2_passes_the_largest_gate(capsys):
    gate = _right_gate()
    assert run_check(capsys, NB15, "Exercise 2", _nb15_exercise2(gate, sum(s < gate for s in UNANSWERABLE)))


@pytest.mark.parametrize("wrong", ["smallest", "too high", "answerable counted", "off the grid"])
def test_nb15_exercise2_rejects_a_wrong_answer(capsys, wrong):
    gate = _right_gate()
    refused = sum(s < gate for s in UNANSWERABLE)
    if wrong == "smallest":  # within 5%, but not the largest such threshold
        gate = THRESHOLDS[0]
        refused = sum(s < gate for s in UNANSWERABLE)
    elif wrong == "too high":  # the first threshold over 5%
        gate = min(t for t in THRESHOLDS if t > gate)
        refused = sum(s < gate for s in UNANSWERABLE)
    elif wrong == "answerable counted":  # counted the answerable questions below the gate instead
        refused = sum(s < gate for s in ANSWERABLE)
        assert refused != sum(s < gate for s in UNANSWERABLE)
    elif wrong == "off the grid":
        gate = 0.4125
    assert not run_check(capsys, NB15, "Exercise 2", _nb15_exercise2(gate, refused))
