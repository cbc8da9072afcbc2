"""Answer metrics by hand, `eval-answers --answers`, and the "don't know" gate on a real index."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rag_helpers.answer_metrics import (
    citation_scores,
    groundedness,
    holds_evidence,
    is_refusal,
    key_fact_recall,
    name_facts,
    numeric_facts,
    score_answer,
    token_f1,
    unsupported_numbers,
)
from rag_helpers.answer_report import AnswerFileError, AnswerRecord, load_answers, score_answers
from rag_helpers.questions import Question

# --- token-F1 ---------------------------------------------------------------------------------


def test_token_f1_by_hand():
    # answer words: cap is eur 165 per night (6; "the" and "[1]" dropped)
    # reference words: eur 165 per night london gbp 185 (7); shared: eur 165 per night (4)
    # P = 4/6, R = 4/7, F1 = 2PR / (P + R) = 32/52
    f1 = token_f1("The cap is €165 per night [1]", "€165 per night (London: £185).")
    assert f1 == pytest.approx(32 / 52)


def test_token_f1_extremes_and_normalisation():
    assert token_f1("Within 30 days.", "within 30 days") == 1.0
    assert token_f1("1,000 euros", "€1000") == 1.0  # thousands separator and currency name normalised
    assert token_f1("Montréal", "montreal") == 1.0  # accents folded
    assert token_f1("nothing in common", "30 days") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "30 days") == 0.0


def test_token_f1_drops_the_offline_label():
    answer = "Extracted from the sources (no language model configured):\n- Within 30 days [1]"
    assert token_f1(answer, "Within 30 days.") == 1.0


# --- key facts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["€1,000", "1000 EUR", "1,000 euros", "EUR 1000", "€1k", "1 thousand euros", "EUR 1,000.00"]
)
def test_currency_and_thousands_variants_are_one_fact(text):
    assert numeric_facts(text) == {"eur 1000"}


def test_numeric_facts_kinds():
    assert numeric_facts("£185 per night") == {"gbp 185"}
    assert numeric_facts("15 % of 200 items") == {"15%", "200"}
    assert numeric_facts("on 12 March 2024 or March 12, 2024") == {"2024-03-12"}
    assert numeric_facts("until May 2025 at 09:30") == {"2025-05", "09:30"}
    assert numeric_facts("five hours", number_words=True) == {"5"}
    assert numeric_facts("five hours") == set()


def test_names_skip_sentence_openers():
    assert name_facts("Within 21 days. Flights need the CFO's prior approval.") == {"cfo"}
    assert name_facts("€165 per night (London: £185).") == {"london"}
    assert name_facts("Maple Ridge uses TPv2 in Montréal.") == {"maple ridge", "tpv2", "montreal"}


def test_key_fact_recall_by_hand():
    reference = "€1,000 per year, paid in March 2024 by Maple Ridge."  # eur 1000, 2024-03, maple ridge
    assert key_fact_recall("1000 EUR a year (March 2024) [1]", reference) == pytest.approx(2 / 3)
    assert key_fact_recall("Maple Ridge pays 1,000 euros in March 2024.", reference) == 1.0
    assert key_fact_recall("185 euros", "£185") == 0.0  # the currency is part of the fact
    assert key_fact_recall("It takes five hours.", "Under 5 hours.") == 1.0
    assert key_fact_recall("anything", "yes, it is allowed") is None  # no facts to recall


# --- groundedness --------------------------------------------------------------------------------

SOURCES = [
    "The nightly hotel cap in Lisbon is 140 euros. Receipts must be uploaded within 30 days of the trip.",
    "The coffee machine on the second floor is descaled every Monday.",
]


def test_supported_sentence_is_grounded():
    assert groundedness("The nightly hotel cap in Lisbon is 140 euros [1].", SOURCES) == 1.0


def test_invented_number_is_not_grounded():
    invented = "The nightly hotel cap in Lisbon is 190 euros [1]."
    assert unsupported_numbers(invented, SOURCES) == {"eur 190"}
    assert groundedness(invented, SOURCES) == 0.0
    mixed = "The nightly hotel cap in Lisbon is 140 euros [1]. Receipts must be uploaded within 45 days [1]."
    assert groundedness(mixed, SOURCES) == 0.5


def test_invented_claim_without_numbers_is_not_grounded():
    assert groundedness("Employees may bring their dogs to the Porto office on Fridays.", SOURCES) == 0.0


def test_groundedness_skips_label_and_refusal():
    assert groundedness("I don't know: the sources do not contain the answer.", SOURCES) is None
    extracted = "Extracted from the sources (no language model configured):\n- The coffee machine " \
        "on the second floor is descaled every Monday. [2]"
    assert groundedness(extracted, SOURCES) == 1.0


# --- citations -------------------------------------------------------------------------------------

EVIDENCE = "Receipts must be uploaded within 30 days"


def test_citation_scores_on_a_tiny_case():
    sources = [
        "The coffee machine is descaled every Monday.",  # [1] no evidence
        "Hotels: 140 euros. Receipts must be uploaded within 30 days of the trip.",  # [2] whole quote
        "uploaded within 30 days of the trip. Keep the paper copy.",  # [3] the second half, cut by a boundary
    ]
    assert [holds_evidence(s, EVIDENCE) for s in sources] == [False, True, True]
    assert citation_scores("Within 30 days [1][2].", sources, EVIDENCE) == (0.5, 1.0)
    assert citation_scores("Within 30 days [2][3].", sources, EVIDENCE) == (1.0, 1.0)
    assert citation_scores("Within 30 days [1].", sources, EVIDENCE) == (0.0, 0.0)
    assert citation_scores("Within 30 days.", sources, EVIDENCE) == (None, 0.0)
    assert citation_scores("Within 30 days [1].", sources[:1], EVIDENCE) == (0.0, None)  # retrieval missed it
    assert citation_scores("Within 30 days [9].", sources, None) == (None, None)  # unanswerable


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I don't know: the sources do not contain the answer.",
        "The documents do not seem to contain the answer to this question.",
        "Extracted from the sources (no language model configured):\nThe sources do not seem to contain "
        "the answer to this question: no sentence in the retrieved chunks is close enough to it.",
        "The provided sources do not mention a birthday leave.",
        "I cannot find this in the documents.",
        "There is no information about dogs in the sources.",
    ],
)
def test_refusal_phrases(text):
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "The hotel cap is €165 per night [1].",
        "Dogs are not allowed in the office [2].",
        "Within 30 days [1]. The 2023 policy does not mention London separately.",  # a refusal later on
    ],
)
def test_answers_are_not_refusals(text):
    assert not is_refusal(text)


def test_score_answer_on_answerable_and_unanswerable():
    question = Question("How long to upload receipts?", "travel.md", EVIDENCE, "Within 30 days.", "fact")
    scores = score_answer(question, "Within 30 days [1].", [SOURCES[0]], latency_ms=12.5)
    assert (scores.token_f1, scores.key_fact_recall, scores.citation_recall) == (1.0, 1.0, 1.0)
    assert not scores.refused and scores.words == 3
    unanswerable = Question("Dogs in Porto?", None, None, "The documents do not say.", "unanswerable")
    refused = score_answer(unanswerable, "I don't know.", SOURCES)
    assert refused.correct_refusal is True and refused.token_f1 is None
    assert refused.to_dict()["correctness"] == {"refused": True}


# --- answers files and eval-answers --answers ---------------------------------------------------------

QUESTIONS = [
    {"q": "How long to upload receipts?", "doc": "travel.md", "evidence": EVIDENCE,
     "answer": "Within 30 days.", "kind": "fact"},
    {"q": "Are dogs allowed in Porto?", "doc": None, "evidence": None,
     "answer": "The documents do not say.", "kind": "unanswerable"},
]


def _write_jsonl(path, rows):
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), "utf-8")
    return path


def _eval_answers(*args):
    code = (
        "import sys; from rag_helpers.cli import main; rc = main(sys.argv[1:]); "
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr); sys.exit(rc)"
    )
    return subprocess.run([sys.executable, "-c", code, "eval-answers", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_answers_file_is_scored_without_torch(tmp_path):
    questions = _write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    answers = _write_jsonl(tmp_path / "a.jsonl", [
        {"q": "How long to upload receipts?", "answer": "Within 30 days [1].", "contexts": [SOURCES[0]]},
        {"q": "Are dogs allowed in Porto?", "answer": "The documents do not say.", "contexts": SOURCES},
    ])
    result = _eval_answers("--answers", answers, "--questions", questions, "--json")
    assert result.returncode == 0, result.stderr
    assert "NO-TORCH" in result.stderr
    data = json.loads(result.stdout)
    first = data["per_question"][0]
    assert first["q"] == "How long to upload receipts?"
    assert first["correctness"] == {"token_f1": 1.0, "key_fact_recall": 1.0}
    assert first["groundedness"] == 1.0 and first["citation_precision"] == 1.0
    assert data["summary"]["refused_unanswerable"] == 1.0 and data["summary"]["false_refusals"] == 0.0


def test_malformed_answers_line_names_the_line(tmp_path):
    questions = _write_jsonl(tmp_path / "q.jsonl", QUESTIONS)
    answers = _write_jsonl(tmp_path / "a.jsonl", [
        {"q": "How long to upload receipts?", "answer": "Within 30 days.", "contexts": []},
        '{"q": "Are dogs allowed in Porto?", "answer": ',
    ])
    result = _eval_answers("--answers", answers, "--questions", questions)
    assert result.returncode == 2
    assert "a.jsonl, line 2: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"q": "x"}, '"answer" is missing'),
        ({"q": "x", "answer": "y", "contexts": "one text"}, '"contexts" must be a list'),
        (["not", "an", "object"], "expected an object"),
    ],
)
def test_bad_answer_objects(tmp_path, row, message):
    path = _write_jsonl(tmp_path / "a.jsonl", [row])
    with pytest.raises(AnswerFileError, match=message):
        load_answers(path)


def test_unknown_or_repeated_question_is_an_error():
    questions = [Question(**QUESTIONS[0])]
    with pytest.raises(AnswerFileError, match="line 1: question 'Who\\?' is not in the question file"):
        score_answers(questions, [AnswerRecord("Who?", "x")])
    twice = [AnswerRecord(QUESTIONS[0]["q"], "a"), AnswerRecord(QUESTIONS[0]["q"], "b")]
    with pytest.raises(AnswerFileError, match="answered twice"):
        score_answers(questions, twice)


def test_report_table_and_aggregates():
    questions = [Question(**row) for row in QUESTIONS]
    records = [AnswerRecord(QUESTIONS[0]["q"], "I don't know.", (SOURCES[0],), 10.0),
               AnswerRecord(QUESTIONS[1]["q"], "Dogs are welcome [1].", (SOURCES[1],), 30.0)]
    report = score_answers(questions, records, name="tiny")
    assert report.metrics()["refused"] == 1.0  # a false refusal on the answerable question
    assert report.metrics("unanswerable")["refused"] == 0.0
    assert report.metrics("unanswerable")["latency_ms_p50"] == 30.0
    table = report.table()
    assert table.splitlines()[0] == "tiny: 2 answers (1 answerable, 1 unanswerable)"
    assert "unanswerable" in table and "fact" in table
    page = report._repr_html_()
    assert page.startswith("<div><p><b>tiny: 2 answers") and "<th>kind</th>" in page
    assert "<td>unanswerable</td>" in page and "<li>" in page


# --- the "don't know" gate on a real index ------------------------------------------------------------

DOCUMENTS = {
    "travel.md": "# Travel policy\n\nThe nightly hotel cap in Lisbon is 140 euros. The nightly hotel cap in "
    "London is 185 pounds. Receipts must be uploaded within 30 days of the trip.\n",
    "kitchen.md": "# Office kitchen\n\nThe coffee machine on the second floor is descaled every Monday. "
    "Fruit is delivered on Tuesdays and Thursdays.\n",
}
OFF_TOPIC = "Which team won the 1998 football world cup final?"


@pytest.fixture(scope="module")
def index(tmp_path_factory, model):
    from rag_helpers.chunking import CharacterSplitter, chunk_documents
    from rag_helpers.config import Settings
    from rag_helpers.documents import load_documents
    from rag_helpers.ingest import ingest
    from rag_helpers.store import get_client, get_collection

    root = tmp_path_factory.mktemp("gate")
    (root / "docs").mkdir()
    for name, text in DOCUMENTS.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    documents = load_documents(root / "docs", progress=False)
    settings = Settings.from_mapping({"CHROMA_PATH": str(root / "db")})
    collection = get_collection(get_client(settings), "gate_test", model)
    ingest(collection, chunk_documents(documents, CharacterSplitter(200, 20)), model, progress=False)
    return collection, settings, root / "docs"


@pytest.mark.slow
def test_gate_refuses_an_off_topic_question(index, model):
    from rag_helpers.config import DEFAULT_MIN_SCORE
    from rag_helpers.extractive import ExtractiveAnswerer
    from rag_helpers.answers import DONT_KNOW, REFUSED_GATE
    from rag_helpers.pipeline import answer_question, retrieval_confidence

    collection, _, _ = index
    llm = ExtractiveAnswerer(model)
    assert retrieval_confidence(OFF_TOPIC, collection) < DEFAULT_MIN_SCORE
    refused = answer_question(OFF_TOPIC, collection, model, llm, k=2, min_score=DEFAULT_MIN_SCORE)
    assert refused.text == DONT_KNOW and refused.refused == REFUSED_GATE
    assert is_refusal(refused.text) and refused.sources == ()
    assert "RAG_MIN_SCORE" in refused.notes[0] and len(refused.context) == 2  # the closest chunks, for show
    answered = answer_question(
        "What is the nightly hotel cap in London?", collection, model, llm, k=2, min_score=DEFAULT_MIN_SCORE
    )
    assert answered.refused is None and "185" in answered.text
    ungated = answer_question(OFF_TOPIC, collection, model, llm, k=2, min_score=None)
    assert ungated.refused != REFUSED_GATE


@pytest.mark.slow
def test_gate_in_stream_and_without_collection(index, model):
    from rag_helpers.extractive import ExtractiveAnswerer
    from rag_helpers.answers import DONT_KNOW, REFUSED_GATE, REFUSED_NO_SOURCES
    from rag_helpers.dense import dense_retriever
    from rag_helpers.pipeline import answer_question, stream_answer

    collection, _, _ = index
    llm = ExtractiveAnswerer(model)
    stream = stream_answer(OFF_TOPIC, collection, model, llm, k=2, min_score=0.3)
    assert "".join(stream) == DONT_KNOW and stream.answer.refused == REFUSED_GATE
    # a retriever that knows its collection is gated too; a bare function has no collection to measure
    gated = answer_question(OFF_TOPIC, answerer=llm, retriever=dense_retriever(collection), min_score=0.3)
    assert gated.refused == REFUSED_GATE
    bare = answer_question(OFF_TOPIC, answerer=llm, retriever=lambda q, k: [], min_score=0.3)
    assert bare.refused == REFUSED_NO_SOURCES


@pytest.mark.slow
def test_ask_min_score_option(index, capsys):
    from rag_helpers.answers import DONT_KNOW as REFUSAL_TEXT
    from rag_helpers.cli import main

    _, settings, _ = index
    common = ["--db", str(settings.chroma_path), "--collection", "gate_test", "--backend", "offline",
              "--retriever", "dense", "-k", "2"]
    assert main(["ask", OFF_TOPIC, *common]) == 0
    out = capsys.readouterr().out
    assert REFUSAL_TEXT in out and "not answered: retrieval found nothing close enough" in out
    assert main(["ask", OFF_TOPIC, *common, "--min-score", "off", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["refused"] != "gate"
    with pytest.raises(SystemExit):
        main(["ask", OFF_TOPIC, *common, "--min-score", "2"])
    assert "between -1 and 1" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_answers_generates_and_scores(index, tmp_path, capsys):
    from rag_helpers.cli import main

    _, settings, docs = index
    questions = _write_jsonl(tmp_path / "q.jsonl", [
        {"q": "What is the nightly hotel cap in London?", "doc": "travel.md",
         "evidence": "The nightly hotel cap in London is 185 pounds", "answer": "185 pounds per night.",
         "kind": "fact"},
        {"q": OFF_TOPIC, "doc": None, "evidence": None, "answer": "The documents do not say.",
         "kind": "unanswerable"},
    ])
    saved = tmp_path / "answers.jsonl"
    code = main(["eval-answers", "--db", str(settings.chroma_path), "--collection", "gate_test",
                 "--backend", "offline", "--retriever", "dense", "-k", "2", "--questions", str(questions),
                 "--corpus", str(docs), "--min-score", "0.45", "--save", str(saved), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    fact, off_topic = data["per_question"]
    assert fact["correctness"]["key_fact_recall"] == 1.0 and fact["groundedness"] == 1.0
    assert fact["citation_recall"] == 1.0 and not fact["refused"]
    assert off_topic["refused"] and data["summary"]["refused_unanswerable"] == 1.0
    assert [record.q for record in load_answers(saved)] == [fact["q"], OFF_TOPIC]  # re-scorable with --answers


def test_min_score_setting():
    from rag_helpers.config import DEFAULT_MIN_SCORE, Settings

    assert Settings.from_mapping({}).min_score == DEFAULT_MIN_SCORE
    assert Settings.from_mapping({"RAG_MIN_SCORE": "0.3"}).min_score == 0.3
    assert Settings.from_mapping({"RAG_MIN_SCORE": "off"}).min_score is None
    with pytest.raises(ValueError, match="RAG_MIN_SCORE: expected a cosine similarity between -1 and 1"):
        Settings.from_mapping({"RAG_MIN_SCORE": "high"})


@pytest.mark.slow
def test_the_app_shows_the_refusal(index, model):
    from rag_helpers.answers import REFUSED_GATE
    from rag_helpers.widget import QAApp

    collection, settings, _ = index
    app = QAApp(collection, model, settings=settings, retrievers=["dense"], k=2)
    answer = app.ask(OFF_TOPIC)
    assert answer is not None and answer.refused == REFUSED_GATE and app.error is None
    assert "I don't know" in app.answer_box.value and "not answered" in app.answer_box.value
    # A new conversation: asked as a follow-up, the off-topic question would be searched for with it.
    app.new_conversation()
    assert app.ask("What is the nightly hotel cap in London?").refused is None
