"""Evaluation: metric functions on hand-computed cases, evidence hits, reports, plots and the CLI."""

from __future__ import annotations

import json
import math

import pytest

from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.documents import Document
from rag_helpers.evaluation import (
    EvalReport,
    Evidence,
    best_separating_threshold,
    dcg_at_k,
    evaluate,
    hit_at_k,
    is_doc_hit,
    is_evidence_hit,
    ndcg_at_k,
    overlap,
    reciprocal_rank,
    suggest_threshold,
)
from rag_helpers.questions import Question
from rag_helpers.reporting import plot_reports
from rag_helpers.base import RetrievedChunk

T, F = True, False
LOG3 = math.log2(3)  # the discount at rank 2


# --- metric functions -------------------------------------------------------------------------


def test_hit_at_k():
    assert hit_at_k([F, T, F], 1) == 0.0
    assert hit_at_k([F, T, F], 2) == 1.0
    assert hit_at_k([F, F, T], 10) == 1.0  # k larger than the results: use what was returned
    assert hit_at_k([F, F, F], 10) == 0.0
    assert hit_at_k([], 5) == 0.0


def test_reciprocal_rank():
    assert reciprocal_rank([T, F]) == 1.0
    assert reciprocal_rank([F, F, T]) == pytest.approx(1 / 3)
    assert reciprocal_rank([F, T, T]) == 0.5  # only the first relevant rank counts
    assert reciprocal_rank([F, F, T], k=2) == 0.0  # beyond the cut-off
    assert reciprocal_rank([F, F], k=10) == 0.0
    assert reciprocal_rank([], k=10) == 0.0


def test_dcg_and_ndcg_by_hand():
    assert dcg_at_k([F, T], 10) == pytest.approx(1 / LOG3)
    # One relevant chunk retrieved, at rank 2: the ideal has it at rank 1 (DCG 1).
    assert ndcg_at_k([F, T], 10) == pytest.approx(1 / LOG3)  # 0.6309
    # Two relevant at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2(3)).
    assert ndcg_at_k([T, F, T], 10) == pytest.approx(1.5 / (1 + 1 / LOG3))  # 0.9197
    assert ndcg_at_k([T, F, T], 2) == pytest.approx(1 / (1 + 1 / LOG3))  # the cut drops rank 3's gain only
    assert ndcg_at_k([T], 10) == 1.0
    assert ndcg_at_k([T, T], 10) == 1.0
    assert ndcg_at_k([F, F, F], 10) == 0.0
    assert ndcg_at_k([], 10) == 0.0
    # Knowing two chunks are relevant while only one came back lowers the ideal's share.
    assert ndcg_at_k([T], 10, n_relevant=2) == pytest.approx(1 / (1 + 1 / LOG3))


@pytest.mark.parametrize("function", [hit_at_k, dcg_at_k, ndcg_at_k])
@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_k_must_be_a_positive_whole_number(function, k):
    with pytest.raises(ValueError, match="k must be a whole number"):
        function([T], k)


def test_overlap():
    assert overlap((0, 10), (5, 20)) == 5
    assert overlap((0, 10), (10, 20)) == 0  # half-open: touching spans share nothing
    assert overlap((3, 4), (0, 100)) == 1
    assert overlap((50, 60), (0, 10)) == 0


# --- evidence hits ----------------------------------------------------------------------------


def hit(doc_id, start, end, text="", distance=None, score=0.0, chunk_id=None):
    """A RetrievedChunk as `store.retrieve` builds it."""
    return RetrievedChunk(
        id=chunk_id or f"{doc_id}_{start}",
        text=text,
        distance=distance,
        score=score,
        metadata={"document_id": doc_id, "start": start, "end": end},
    )


EVIDENCE = Evidence("a.md", "x" * 40, ((100, 140),))


def test_evidence_hit_needs_half_the_quote_inside_the_chunk():
    assert is_evidence_hit(hit("a.md", 0, 120), EVIDENCE)  # 20 of 40 characters: exactly half
    assert not is_evidence_hit(hit("a.md", 0, 119), EVIDENCE)  # 19 of 40
    assert is_evidence_hit(hit("a.md", 120, 1120), EVIDENCE)  # the other half
    assert is_evidence_hit(hit("a.md", 110, 130), EVIDENCE)  # a chunk inside the quote, if big enough
    assert not is_evidence_hit(hit("b.md", 0, 1000), EVIDENCE)  # same span, other document


def test_evidence_hit_by_text_counts_in_any_document_and_without_offsets():
    copy = RetrievedChunk("b.md_0", "before " + "x" * 40 + " after", 0.5, 0.7, {"document_id": "b.md"})
    assert is_evidence_hit(copy, EVIDENCE)
    no_offsets = RetrievedChunk("a.md_0", "unrelated", 0.5, 0.7, {"document_id": "a.md"})
    assert not is_evidence_hit(no_offsets, EVIDENCE)
    assert is_doc_hit(no_offsets, "a.md")


def test_any_occurrence_of_a_repeated_quote_counts():
    twice = Evidence("a.md", "y" * 20, ((0, 20), (500, 520)))
    assert is_evidence_hit(hit("a.md", 490, 1000), twice)


def test_evidence_locate():
    document = Document("a.md", "intro " * 200 + "The answer is forty-two, always.", "a.md")
    found = Evidence.locate(Question("q", "a.md", "The answer is forty-two"), document)
    assert found.spans == ((1200, 1223),)
    with pytest.raises(ValueError, match="not in a.md"):
        Evidence.locate(Question("q", "a.md", "The answer is forty-three"), document)


# --- evaluate on a tiny corpus with a scripted retriever ----------------------------------------

DOCS = [
    Document("a.md", "A" * 50 + "The vault code is 4242." + "a" * 1000, "a.md"),  # evidence at 50..73
    Document("b.md", "b" * 1500 + "Backups run nightly at 02:00." + "b" * 20, "b.md"),  # evidence: 1500..1529
]
QUESTIONS = [
    Question("What is the vault code?", "a.md", "The vault code is 4242.", "4242", "fact"),
    Question("When do backups run?", "b.md", "Backups run nightly at 02:00.", "02:00", "how"),
    Question("Who painted the ceiling?", None, None, "", "unanswerable"),
]
A0 = hit("a.md", 0, 1000, DOCS[0].text[0:1000], distance=0.4, score=0.8)
A1 = hit("a.md", 980, 1073, DOCS[0].text[980:1073], distance=0.9, score=0.55)
B0 = hit("b.md", 0, 1000, DOCS[1].text[0:1000], distance=0.7, score=0.65)
B1 = hit("b.md", 980, 1549, DOCS[1].text[980:1549], distance=0.7, score=0.65)  # same score as B0


class Scripted:
    """A retriever that returns a fixed list per question and records the k it was asked for."""

    def __init__(self, answers):
        self.answers = answers
        self.asked = []

    def __call__(self, query, k):
        self.asked.append(k)
        return self.answers[query]


def scripted_report(**answers_override):
    answers = {
        "What is the vault code?": [B0, A0, A1],  # evidence at rank 2
        "When do backups run?": [B0, B1],  # a tie: the evidence chunk comes second and stays second
        "Who painted the ceiling?": [A1, B0],
        **answers_override,
    }
    retriever = Scripted(answers)
    report = evaluate(retriever, QUESTIONS, documents=DOCS, name="scripted", progress=False)
    return report, retriever


def test_evaluate_hand_computed_metrics():
    report, retriever = scripted_report()
    assert retriever.asked == [10, 10, 10, 10]  # one untimed warm-up, then once per question, largest k
    values = report.metrics()
    assert values["n"] == 2  # the unanswerable question is left out
    assert values["doc_hit@1"] == 0.5  # b.md first for the backup question only
    assert values["doc_hit@3"] == 1.0
    assert values["evidence_hit@1"] == 0.0
    assert values["evidence_hit@3"] == 1.0
    assert values["evidence_hit@10"] == 1.0  # k larger than what came back
    assert values["mrr@10"] == 0.5  # both evidence chunks at rank 2; the tie keeps the retriever's order
    assert values["ndcg@10"] == pytest.approx(1 / LOG3)
    assert report.metrics("fact")["doc_hit@1"] == 0.0
    assert report.metrics("how")["doc_hit@1"] == 1.0
    assert report.kinds() == ["fact", "how"]
    first, second, unanswerable = report.results
    assert (first.first_doc_rank, first.first_evidence_rank) == (2, 2)
    assert (second.first_doc_rank, second.first_evidence_rank) == (1, 2)
    assert unanswerable.evidence_hits == (False, False)
    assert (unanswerable.best_distance, unanswerable.best_score) == (0.7, 0.65)
    assert first.best_distance == 0.4  # the smallest distance returned
    assert report.latency_ms()["mean"] >= 0


def test_evaluate_no_hits_and_empty_results():
    report, _ = scripted_report(**{"What is the vault code?": [B0], "When do backups run?": []})
    values = report.metrics()
    assert values["doc_hit@10"] == 0.0
    assert values["evidence_hit@10"] == 0.0
    assert values["mrr@10"] == 0.0
    assert values["ndcg@10"] == 0.0
    assert report.results[1].best_distance is None


def test_evaluate_truncates_longer_answers_and_reads_question_files(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(q.to_dict()) for q in QUESTIONS), encoding="utf-8")
    many = [B0] * 5 + [A0]
    answers = {question.q: many for question in QUESTIONS}
    retriever = Scripted(answers)
    report = evaluate(retriever, path, k_values=(3, 1, 3), documents=DOCS, progress=False, warmup=False)
    assert retriever.asked == [3, 3, 3]
    assert report.k_values == (1, 3)
    assert all(len(r.chunk_ids) == 3 for r in report.results)
    assert report.metrics()["doc_hit@3"] == 0.5  # A0 at rank 6 was cut off
    assert "mrr@3" in report.metrics()


def test_evaluate_accepts_chunking_chunks():
    chunks = chunk_documents(DOCS, CharacterSplitter(1000, 20))
    by_doc = {doc.id: [c for c in chunks if c.document_id == doc.id] for doc in DOCS}
    answers = {q.q: by_doc.get(q.doc or "a.md", [])[::-1] for q in QUESTIONS}
    report = evaluate(Scripted(answers), QUESTIONS, documents=DOCS, progress=False)
    # b.md reversed: [b_1 (holds the evidence), b_0]; a.md reversed: [a_1, a_0 (holds it)].
    assert [r.first_evidence_rank for r in report.results[:2]] == [2, 1]
    assert report.results[0].best_distance is None  # plain chunks carry no distance


def test_evaluate_refuses_questions_that_do_not_match_the_documents():
    wrong = [Question("q?", "a.md", "This sentence is nowhere at all."), Question("r?", "zzz.md", "x" * 20)]
    with pytest.raises(ValueError, match="2 question\\(s\\) do not match") as error:
        evaluate(Scripted({}), wrong, documents=DOCS, progress=False)
    assert "zzz.md" in str(error.value)
    with pytest.raises(ValueError, match="no questions"):
        evaluate(Scripted({}), [], documents=DOCS)
    with pytest.raises(ValueError, match="k must be"):
        evaluate(Scripted({}), QUESTIONS, k_values=(0, 5), documents=DOCS)


# --- threshold ---------------------------------------------------------------------------------


def test_best_separating_threshold_by_hand():
    perfect = best_separating_threshold([0.2, 0.3, 0.4], [0.8, 0.9])
    assert perfect.value == pytest.approx(0.6)
    assert (perfect.answerable_kept, perfect.unanswerable_rejected) == (1.0, 1.0)
    assert perfect.balanced_accuracy == 1.0
    assert perfect.answers(0.59) and not perfect.answers(0.61)

    mixed = best_separating_threshold([0.2, 0.5, 0.9], [0.4, 1.0])
    # Cuts: 0.3 -> kept 1/3, rejected 2/2 (0.667); 0.95 -> kept 3/3, rejected 1/2 (0.75): the best.
    assert mixed.value == pytest.approx(0.95)
    assert mixed.balanced_accuracy == pytest.approx(0.75)

    by_score = best_separating_threshold([0.9, 0.8], [0.3], by="score")
    assert by_score.value == pytest.approx(0.55)
    assert by_score.answers(0.6) and not by_score.answers(0.5)

    assert best_separating_threshold([0.1], []) is None
    assert best_separating_threshold([], [0.1]) is None


def test_inverted_groups_fall_back_to_answering_everything():
    inverted = best_separating_threshold([0.9, 1.0], [0.1, 0.2])
    assert (inverted.answerable_kept, inverted.unanswerable_rejected) == (1.0, 0.0)


def test_suggest_threshold_uses_distances_then_scores():
    report, _ = scripted_report()
    # Answerable best distances 0.4 and 0.7, unanswerable 0.7: the cut between 0.4 and 0.7 wins.
    threshold = suggest_threshold(report)
    assert threshold.by == "distance"
    assert threshold.value == pytest.approx(0.55)
    chunks = chunk_documents(DOCS)
    # Chunks from a retriever without distances (BM25, say): only scores, higher is better.
    scored = [
        RetrievedChunk(c.id, c.text, None, s, {"document_id": c.document_id, "start": c.start, "end": c.end})
        for c, s in zip(chunks, (0.9, 0.8, 0.1), strict=False)
    ]
    answers = {QUESTIONS[0].q: scored[:1], QUESTIONS[1].q: scored[1:2], QUESTIONS[2].q: scored[2:3]}
    by_score = suggest_threshold(evaluate(Scripted(answers), QUESTIONS, documents=DOCS, progress=False))
    assert by_score.by == "score"
    assert by_score.value == pytest.approx(0.45)


# --- rendering -----------------------------------------------------------------------------------


def test_table_html_and_dict():
    report, _ = scripted_report()
    text = report.table()
    assert text.splitlines()[0] == "scripted: 3 questions (2 answerable, 1 unanswerable)"
    assert "ev@10" in text and "nDCG@10" in text
    assert [line.split()[0] for line in text.splitlines()[3:6]] == ["all", "fact", "how"]
    narrow = report.table(k=5)
    assert "doc@5" in narrow and "doc@1" not in narrow
    assert "don't know" in narrow
    with pytest.raises(ValueError, match="k=7 was not evaluated"):
        report.table(k=7)
    assert str(report) == text
    assert report.summary(5).startswith("evidence-hit@5 1.000, doc-hit@5 1.000, MRR@10 0.500")

    page = report._repr_html_()
    assert page.startswith("<div>") and "<th>ev@1</th>" in page and "&#x27;t know" in page

    data = json.loads(json.dumps(report.to_dict()))
    assert data["metrics"]["all"]["mrr@10"] == 0.5
    assert data["metrics"]["how"]["n"] == 1
    assert data["unanswerable_questions"] == [
        {"q": "Who painted the ceiling?", "best_distance": 0.7, "best_score": 0.65}
    ]
    assert data["best_distance"]["answerable"] == {"n": 2, "min": 0.4, "median": 0.55, "max": 0.7}
    assert data["threshold"]["by"] == "distance"
    assert set(data["latency_ms"]) == {"mean", "p95"}
    assert [row["first_evidence_rank"] for row in data["per_question"]] == [2, 2, None]
    assert "per_question" not in report.to_dict(per_question=False)


def test_empty_report_renders():
    report = EvalReport(results=[], name="empty")
    assert report.metrics()["n"] == 0 and report.metrics()["mrr@10"] is None
    assert "empty: 0 questions" in report.table()
    assert report.to_dict()["threshold"] is None


def test_plot_reports_compares_side_by_side():
    baseline, _ = scripted_report()
    better, _ = scripted_report(**{"What is the vault code?": [A0, B0]})
    figure = plot_reports({"baseline": baseline, "better": better})
    axes = figure.axes[0]
    assert axes.get_title() == "Retrieval quality on 2 answerable questions"
    assert "MRR" in axes.get_ylabel() and "0-1" in axes.get_ylabel()  # not "fraction of questions"
    assert "metric" in axes.get_xlabel()
    assert [t.get_text() for t in axes.get_xticklabels()] == ["doc@5", "ev@5", "MRR@10", "nDCG@10"]
    assert len(axes.patches) == 8  # 4 metrics x 2 reports
    heights = [round(p.get_height(), 3) for p in axes.patches]
    assert heights[:4] == [1.0, 1.0, 0.5, 0.631] and heights[4:] == [1.0, 1.0, 0.75, 0.815]
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["baseline", "better"]

    one = plot_reports({"b": baseline}, metrics=["evidence_hit@1"], kind="how", title="How questions")
    assert one.axes[0].get_title() == "How questions"
    with pytest.raises(ValueError, match="has no metric recall@5"):
        plot_reports({"b": baseline}, metrics=["recall@5"])
    with pytest.raises(ValueError, match="no reports"):
        plot_reports({})


# --- command line --------------------------------------------------------------------------------

CLI_DOCS = {
    "animals/cats.md": "Cats sleep for about fifteen hours a day and groom themselves often.\n",
    "geology/volcanoes.md": (
        "Volcanoes form where magma rises through the crust. " * 20
        + "Mount Etna in Sicily is the most active volcano in Europe."
    ),
    "finance/tax.txt": "Quarterly VAT returns are due one month after the quarter ends. Late filing costs 5%.\n",
}
CLI_QUESTIONS = [
    {"q": "How many hours a day do cats sleep?", "doc": "animals/cats.md",
     "evidence": "Cats sleep for about fifteen hours a day", "answer": "15", "kind": "fact"},
    {"q": "Which is the most active volcano in Europe?", "doc": "geology/volcanoes.md",
     "evidence": "Mount Etna in Sicily is the most active volcano", "answer": "Etna", "kind": "fact"},
    {"q": "When are quarterly VAT returns due?", "doc": "finance/tax.txt",
     "evidence": "Quarterly VAT returns are due one month after the quarter ends.",
     "answer": "a month after", "kind": "how"},
    {"q": "What is the capital of Mongolia?", "doc": None, "evidence": None, "kind": "unanswerable"},
]


@pytest.fixture
def cli_index(tmp_path, model, monkeypatch):
    """A small folder, its question file, and an embedded index built from it."""
    from rag_helpers.documents import load_documents
    from rag_helpers.ingest import ingest
    from rag_helpers.store import get_client, get_collection

    for doc_id, text in CLI_DOCS.items():
        path = tmp_path / "corpus" / doc_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    questions = tmp_path / "questions.jsonl"
    questions.write_text("\n".join(json.dumps(q) for q in CLI_QUESTIONS) + "\n", encoding="utf-8")
    for name in ("CHROMA_HOST", "CHROMA_COLLECTION", "CHROMA_PATH"):
        monkeypatch.delenv(name, raising=False)
    from rag_helpers.config import Settings

    settings = Settings.from_mapping({"CHROMA_PATH": str(tmp_path / "db"), "CHROMA_COLLECTION": "evaltest"})
    collection = get_collection(get_client(settings), "evaltest", model)
    ingest(collection, chunk_documents(load_documents(tmp_path / "corpus")), model, progress=False)
    from rag_helpers.questions import load_questions, validate_questions

    assert validate_questions(load_questions(questions), tmp_path / "corpus") == []
    return ["--db", str(tmp_path / "db"), "--collection", "evaltest",
            "--questions", str(questions), "--corpus", str(tmp_path / "corpus")]


@pytest.mark.slow
def test_cli_eval_json(cli_index, capsys):
    from rag_helpers.cli import main

    assert main(["eval", *cli_index, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["questions"], data["answerable"], data["unanswerable"]) == (4, 3, 1)
    assert data["index"]["collection"] == "evaltest"
    assert data["index"]["chunks"] == 4  # the volcano text is 1100+ characters: two chunks
    assert data["index"]["distance"] == "l2"
    assert data["metrics"]["all"]["doc_hit@10"] == 1.0  # the whole index fits in the top 10
    assert data["metrics"]["all"]["evidence_hit@1"] == 1.0  # three unmistakable questions
    assert data["metrics"]["all"]["mrr@10"] == 1.0
    assert [r["first_evidence_rank"] for r in data["per_question"]] == [1, 1, 1, None]
    assert data["per_question"][1]["top_ids"][0] == "geology/volcanoes.md_1"  # the deep chunk
    unanswerable = data["unanswerable_questions"][0]
    assert unanswerable["best_distance"] > data["best_distance"]["answerable"]["max"]
    assert data["threshold"]["balanced_accuracy"] == 1.0


@pytest.mark.slow
def test_cli_eval_table_and_errors(cli_index, capsys, tmp_path):
    from rag_helpers.cli import main

    assert main(["eval", *cli_index, "--k", "2"]) == 0
    out = capsys.readouterr().out
    assert "doc@2" in out and "ev@2" in out and "doc@5" not in out
    assert out.strip().splitlines()[-1].startswith("evidence-hit@2 1.000")

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "x"}\n', encoding="utf-8")
    options = [*cli_index[:4], "--corpus", cli_index[-1], "--questions", str(bad)]
    assert main(["eval", *options]) == 2
    assert "bad.jsonl, line 1: missing key(s) doc, evidence" in capsys.readouterr().err
    assert main(["eval", *cli_index[:2], "--collection", "nothing_here", *cli_index[4:]]) == 2
    assert "No collection named 'nothing_here'" in capsys.readouterr().err
