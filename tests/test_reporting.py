"""Reporting: the one table helper, the retriever leaderboard on a tiny collection, the plots."""

from __future__ import annotations

import re

from rag_helpers.chunking import chunk_documents
from rag_helpers.documents import Document
from rag_helpers.evaluation import compare_retrievers
from rag_helpers.questions import Question
from rag_helpers.reporting import (
    Table,
    cpu_p50,
    latency_p50,
    leaderboard_rows,
    leaderboard_table,
    metric_axis_label,
    plot_answer_reports,
)
from rag_helpers.ingest import update_indexes
from rag_helpers.ingest import ingest
from rag_helpers.store import get_client, get_collection

TEXTS = {
    "a.md": "The Lantern S3 gateway has four sensor ports.",
    "b.md": "Error code E14 means the probe cable is unplugged.",
    "c.md": "Dogs are welcome in the Porto office on Fridays.",
}
QUESTIONS = [
    Question("How many sensor ports does the S3 have?", "a.md", "four sensor ports"),
    Question("What does E14 mean?", "b.md", "probe cable is unplugged"),
    Question("Can I bring my dog to work in Porto?", "c.md", "Dogs are welcome", kind="paraphrase"),
    Question("What is the capital of Mars?", None, None, kind="unanswerable"),
]


def test_leaderboard_compares_retrievers(clean_settings, model):
    collection = get_collection(get_client(clean_settings), "board", model)
    docs = [Document(i, t, i, {"category": "root"}) for i, t in TEXTS.items()]
    ingest(collection, chunk_documents(docs), model, progress=False, documents=docs)
    update_indexes(collection, model)
    reports = compare_retrievers(["dense", "bm25"], collection, model, QUESTIONS, documents=docs)
    assert list(reports) == ["dense", "bm25"]
    assert reports["bm25"].name == "bm25" and len(reports["bm25"].results) == 4
    assert latency_p50(reports["dense"]) > 0
    assert all(r.cpu_ms is not None for r in reports["dense"].results) and cpu_p50(reports["dense"]) >= 0

    rows = leaderboard_rows(reports)
    assert {r["retriever"] for r in rows} == {"dense", "bm25"}
    by_name = {r["retriever"]: r for r in rows}
    assert by_name["dense"]["evidence_hit@5"] == 1.0 and by_name["dense"]["vs_dense"] == 0.0
    assert by_name["dense"]["fact@5"] == 1.0 and "paraphrase@5" in by_name["dense"]
    assert rows[0]["evidence_hit@5"] >= rows[1]["evidence_hit@5"]

    table = leaderboard_table(reports)
    lines = table.splitlines()
    assert lines[0].startswith("3 answerable questions")
    assert lines[1].split()[:3] == ["retriever", "ev@1", "ev@5"]
    assert "p50 ms" in lines[1] and "CPU p50 ms" in lines[1]
    assert re.match(r"(dense|bm25)\s+\d\.\d{3}\s+\d\.\d{3}", lines[3])
    markdown = leaderboard_table(reports, markdown=True).splitlines()
    assert markdown[0].startswith("| retriever | ev@1 | ev@5 |") and markdown[1].startswith("|---|")
    assert leaderboard_table({}) == "(no reports)"


def test_table_aligns_text_escapes_html_and_writes_markdown():
    table = Table("Title", ["name", "value"], [["a", "0.500"], ["<b>", "12.000"]], ["a note"])
    assert table.text().splitlines() == [
        "Title",
        "name   value",
        "----  ------",
        "a      0.500",
        "<b>   12.000",
        "a note",
    ]
    assert str(table) == table.text()
    assert "<td>&lt;b&gt;</td>" in table.html() and "<li>a note</li>" in table._repr_html_()
    assert table.markdown().splitlines() == ["| name | value |", "|---|---|", "| a | 0.500 |", "| <b> | 12.000 |"]


def test_the_y_axis_names_the_metric():
    assert metric_axis_label(["doc_hit@5", "evidence_hit@5"]).startswith("hit rate")
    assert metric_axis_label(["mrr@10"]).startswith("MRR@10")
    mixed = metric_axis_label(["evidence_hit@5", "mrr@10", "ndcg@10"])
    assert "MRR" in mixed and "nDCG" in mixed and "fraction of questions" not in mixed


def test_plot_answer_reports_needs_reports():
    import pytest

    with pytest.raises(ValueError, match="no reports"):
        plot_answer_reports({})
