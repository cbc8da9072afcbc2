"""The exercise checks of notebooks 16-19 reject a plausible wrong answer and pass a right one.

Each test runs the notebook's own check cell (read from the .ipynb, so the test follows the notebook)
with the names it needs: real data where it is cheap (the sample corpus, the saved follow-up run), small
stand-ins where the real thing needs an index or a language model (a retriever, a saved injection run).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest

from rag_helpers.config import PROJECT_ROOT, SAMPLE_CORPUS_DIR
from rag_helpers.documents import Document, scan_folder
from rag_helpers.exercises import attempted, check

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def cell_with(notebook: str, needle: str) -> str:
    """The source of the first code cell of `notebook` that contains `needle`."""
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and needle in cell.source:
            return cell.source
    raise AssertionError(f"{notebook} has no code cell with {needle!r}")


def run_check(notebook: str, label: str, names: dict[str, Any]) -> bool:
    """Run the cell of `notebook` that calls check("<label>", ...) with `names`; what check returned."""
    results: list[bool] = []

    def recording_check(*args: Any) -> bool:
        results.append(check(*args))
        return results[-1]

    namespace = {"attempted": attempted, **names, "check": recording_check}
    exec(cell_with(notebook, f'check("{label}"'), namespace)  # noqa: S102 - the notebook's own cell
    assert len(results) == 1, f"the {label} cell of {notebook} should call check once"
    return results[0]


@pytest.fixture(scope="module")
def sample_documents() -> list[Document]:
    return scan_folder(SAMPLE_CORPUS_DIR, progress=False).documents


# --- 16 follow-up questions --------------------------------------------------------------------------


def test_16_exercise_1_needs_a_rewrite_that_retrieves_the_evidence(capsys):
    from rag_helpers.questions import load_conversations

    lantern = next(c for c in load_conversations() if c.id == "lantern-reset-s3")
    # Stand-in retriever: the evidence comes back only for a question naming the S3 and its reset.
    names = {
        "lantern": lantern,
        "documents": [],
        "locate_evidence": lambda questions, documents: [None],
        "is_evidence_hit": lambda hit, located: hit == "evidence",
        "retriever": lambda query, k: ["evidence"] if "S3" in query and "reset" in query.lower() else ["other"],
    }
    for wrong in (lantern.follow_up, "How long do I hold the Reset button on the Lantern S2?", ...):
        assert run_check("16_follow_up_questions.ipynb", "Exercise 1", {**names, "my_rewrite": wrong}) is False
    right = "How long do I hold the Reset button to factory reset a Lantern S3?"
    assert run_check("16_follow_up_questions.ipynb", "Exercise 1", {**names, "my_rewrite": right}) is True
    assert "follow-up as asked" in capsys.readouterr().out


def test_16_exercise_2_compares_conversation_by_conversation():
    from rag_helpers.robustness import FollowupReport, FollowupResult

    run = json.loads((PROJECT_ROOT / "bench" / "results" / "followups.json").read_text(encoding="utf-8"))
    saved = {
        name: FollowupReport([FollowupResult(**r) for r in report["results"]], tuple(report["strategies"]),
                             report["k"], name)
        for name, report in run["reports"].items()
    }
    report = saved["dense"]
    joined = {r.id: r.hit for r in report.of("concatenate")}
    right = (
        sum(r.hit and not joined[r.id] for r in report.of("condense")),
        sum(joined[r.id] and not r.hit for r in report.of("condense")),
    )
    totals = (report.hits("condense"), report.hits("concatenate"))  # the table's totals, not the disagreements
    for wrong in (totals, (0, 0), (right[0] + 1, right[1])):
        if wrong == right:
            continue
        names = {"saved": saved, "condense_only": wrong[0], "concatenate_only": wrong[1]}
        assert run_check("16_follow_up_questions.ipynb", "Exercise 2", names) is False
    names = {"saved": saved, "condense_only": right[0], "concatenate_only": right[1]}
    assert run_check("16_follow_up_questions.ipynb", "Exercise 2", names) is True


# --- 17 prompt injection -------------------------------------------------------------------------------


def test_17_exercise_1_needs_every_line_marked():
    from rag_helpers.prompts import datamark

    def spaces_only(text):  # forgets that every line starts with a marker and that runs of spaces are one
        return "^" + text.replace(" ", "^")

    names = {"datamark": datamark}
    assert run_check("17_prompt_injection.ipynb", "Exercise 1", {**names, "my_datamark": spaces_only}) is False
    assert run_check("17_prompt_injection.ipynb", "Exercise 1", {**names, "my_datamark": lambda text: ...}) is False
    assert run_check("17_prompt_injection.ipynb", "Exercise 1", {**names, "my_datamark": datamark}) is True


def test_17_exercise_2_leaves_the_refusals_out():
    outcomes = [
        {"style": "original", "case": "a", "succeeded": True, "refused": None},
        {"style": "original", "case": "b", "succeeded": False, "refused": "check"},
        {"style": "grounded", "case": "a", "succeeded": True, "refused": None},
        {"style": "grounded", "case": "b", "succeeded": False, "refused": None},
    ]
    run = {"attacks": {"outcomes": outcomes}}
    over_all_cases = {"original": 0.5, "grounded": 0.5}  # the refusal counted as a defence
    for wrong in (over_all_cases, {"original": 1.0}, ...):
        assert run_check("17_prompt_injection.ipynb", "Exercise 2", {"run": run, "answered_rate": wrong}) is False
    right = {"original": 1.0, "grounded": 0.5}
    assert run_check("17_prompt_injection.ipynb", "Exercise 2", {"run": run, "answered_rate": right}) is True


# --- 18 PDF and HTML sources --------------------------------------------------------------------------


def test_18_exercise_1_wants_the_sentence_page_not_the_chunk_page(sample_documents):
    from rag_helpers.chunking import chunk_documents

    document = next(d for d in sample_documents if d.id == "people/porto_fire_drill_report_2024_10.pdf")
    chunks = chunk_documents([document])
    sentence = "Install a flashing red alarm light"
    holding = next(c for c in chunks if sentence in c.text)
    assert holding.metadata["page"] == 1  # the chunk starts on page 1, the sentence is on page 2
    import bisect

    names = {"document": document, "chunks": chunks, "sentence": sentence, "bisect": bisect}
    wrong = {**names, "alarm_page": holding.metadata["page"], "alarm_chunk": holding.id}
    assert run_check("18_pdf_and_html_sources.ipynb", "Exercise 1", wrong) is False
    wrong_chunk = {**names, "alarm_page": 2, "alarm_chunk": chunks[0].id}
    assert run_check("18_pdf_and_html_sources.ipynb", "Exercise 1", wrong_chunk) is False
    right = {**names, "alarm_page": 2, "alarm_chunk": holding.id}
    assert run_check("18_pdf_and_html_sources.ipynb", "Exercise 1", right) is True


def test_18_exercise_2_wants_the_newsletter_link_in_the_navigation():
    import tempfile
    import warnings
    from pathlib import Path

    names: dict[str, Any] = {"Path": Path, "tempfile": tempfile, "warnings": warnings, "scan_folder": scan_folder}
    exec(cell_with("18_pdf_and_html_sources.ipynb", "def load_page"), names)  # noqa: S102 - defines load_page
    names["Document"] = Document
    in_a_div = ("<html><body><div><a href='/n'>Subscribe to the newsletter</a></div>"
                "<p>The Lisbon office opens on 2 June.</p></body></html>")
    only_nav = "<html><body><nav>The Lisbon office opens on 2 June. Subscribe to the newsletter</nav></body></html>"
    for wrong in (in_a_div, only_nav):
        assert run_check("18_pdf_and_html_sources.ipynb", "Exercise 2", {**names, "my_page": wrong}) is False
    right = ("<html><body><nav><a href='/n'>Subscribe to the newsletter</a></nav>"
             "<main><p>The Lisbon office opens on 2 June.</p></main></body></html>")
    assert run_check("18_pdf_and_html_sources.ipynb", "Exercise 2", {**names, "my_page": right}) is True


# --- 19 your own documents ----------------------------------------------------------------------------


def test_19_exercise_1_needs_an_exact_quote_from_the_pdf(sample_documents):
    from rag_helpers.questions import validate_questions

    folder = SimpleNamespace(documents=sample_documents)
    question = {
        "q": "Up to what amount is a single lost item covered by the travel insurance?",
        "doc": "policies/business_travel_insurance_summary_2024.pdf",
        "evidence": "Baggage and personal belongings €2,500 per trip, at most €500 for a single",
        "answer": "€500.", "kind": "fact",
    }
    names = {"folder": folder, "validate_questions": validate_questions}
    paraphrased = {**question, "evidence": "at most €500 for any single item of baggage"}
    other_doc = {**question, "doc": "policies/travel_expense_policy_2024.md"}
    for wrong in (paraphrased, other_doc):
        assert run_check("19_your_own_documents.ipynb", "Exercise 1", {**names, "my_pdf_question": wrong}) is False
    assert run_check("19_your_own_documents.ipynb", "Exercise 1", {**names, "my_pdf_question": question}) is True


def test_19_exercise_2_wants_the_smallest_k_at_the_best_hit():
    figures = {1: 0.6, 3: 0.9, 5: 0.9, 10: 0.9}
    names = {"K_VALUES": (1, 3, 5, 10), "hit": lambda name, k: figures[k]}
    for wrong in (10, 5, 1, 4):
        assert run_check("19_your_own_documents.ipynb", "Exercise 2", {**names, "hybrid_k": wrong}) is False
    assert run_check("19_your_own_documents.ipynb", "Exercise 2", {**names, "hybrid_k": 3}) is True
