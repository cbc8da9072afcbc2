"""Every retriever on a tiny hand-made collection whose right order is known; the registry; the CLI."""

from __future__ import annotations

import json
import re

import pytest

from rag_helpers.chunking import chunk_documents
from rag_helpers.cli import main
from rag_helpers.config import Settings
from rag_helpers.documents import Document
from rag_helpers.embeddings import QueryEncoder
from rag_helpers.fusion import HybridRetriever, reciprocal_rank_fusion
from rag_helpers.ingest import update_indexes
from rag_helpers.registry import (
    DEFAULT_RETRIEVER,
    RETRIEVERS,
    UnknownRetrieverError,
    describe_retrievers,
    make_retriever,
)
from rag_helpers.ingest import ingest
from rag_helpers.store import get_client, get_collection

TEXTS = {
    "policies/travel_2024.md": (
        "# Travel policy 2024\n\n"
        "The nightly hotel cap is 165 euros. In London the hotel cap is 185 pounds.\n\n"
        "Submit each expense claim within 21 days of the end of the trip.\n\n"
        "Rail is mandatory for trips under five hours door to door."
    ),
    "policies/travel_2023.md": (
        "# Travel policy 2023\n\n"
        "The nightly hotel cap is 140 euros. In London the hotel cap is 150 pounds.\n\n"
        "Submit each expense claim within 30 days of the end of the trip.\n\n"
        "Rail is preferred for short trips."
    ),
    "engineering/kafka_runbook.md": (
        "# Kafka consumer lag\n\n"
        "When consumer lag grows, first check whether the consumer group keeps rebalancing.\n\n"
        "Then add consumers, up to the number of partitions. Never delete the offsets topic."
    ),
    "products/lantern.md": (
        "# Lantern S3\n\n"
        "The Lantern S3 gateway has four sensor ports. It connects over LTE-M or Wi-Fi.\n\n"
        "Error code E14 means the probe cable is unplugged. Error code E21 means the battery is low."
    ),
    "people/porto_office.md": (
        "# Porto office\n\n"
        "If the fire alarm sounds, leave the building and gather at the car park behind the office.\n\n"
        "Dogs are welcome in the office on Fridays."
    ),
}
# (question, the chunk that answers it): each paragraph is one chunk, so the right answer is known.
QUESTIONS = [
    ("Which error code means the probe cable is unplugged?", "products/lantern.md_2"),
    ("How many sensor ports does the Lantern S3 have?", "products/lantern.md_1"),
    ("Where do we gather when the fire alarm goes off?", "people/porto_office.md_1"),
    ("What should I do when consumer lag grows?", "engineering/kafka_runbook.md_1"),
]
NAMES = list(RETRIEVERS)


def paragraphs(text: str) -> list[tuple[int, int]]:
    """One span per paragraph: a splitter that makes each paragraph its own chunk."""
    return [(m.start(), m.end()) for m in re.finditer(r"[^\n]+(?:\n(?!\n)[^\n]+)*", text)]


def make_documents(texts: dict[str, str]) -> list[Document]:
    return [Document(i, t, i, {"category": i.split("/")[0]}) for i, t in texts.items()]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("retrievers") / "db"


@pytest.fixture(scope="module")
def collection(db, model):
    client = get_client(Settings.from_mapping({"CHROMA_PATH": str(db)}))
    collection = get_collection(client, "tiny", model)
    docs = make_documents(TEXTS)
    ingest(collection, chunk_documents(docs, paragraphs), model, progress=False, documents=docs)
    update_indexes(collection, model)
    return collection


@pytest.fixture(scope="module")
def retrievers(collection, model):
    encoder = QueryEncoder(model)
    return {name: make_retriever(name, collection, encoder) for name in NAMES}


def test_the_tiny_collection_has_one_chunk_per_paragraph(collection):
    assert collection.count() == 17
    stored = collection.get(ids=["products/lantern.md_2"])["documents"][0]
    assert stored.startswith("Error code E14")


def test_registry_names_default_and_descriptions():
    assert NAMES[:6] == ["dense", "bm25", "hybrid", "mmr", "sentence_window", "expanded"]
    assert DEFAULT_RETRIEVER in RETRIEVERS
    assert set(describe_retrievers()) == set(NAMES)
    assert all(describe_retrievers().values())


def test_an_unknown_name_lists_the_valid_ones(collection, model):
    with pytest.raises(UnknownRetrieverError, match="choose one of: dense, bm25, hybrid"):
        make_retriever("bm52", collection, model)
    with pytest.raises(TypeError):
        make_retriever("dense", collection, model, no_such_option=1)


@pytest.mark.parametrize("name", NAMES)
def test_each_retriever_puts_the_answer_first(retrievers, name):
    retriever = retrievers[name]
    for question, answer in QUESTIONS:
        hits = retriever(question, 3)
        assert 1 <= len(hits) <= 3
        first = hits[0]
        answer_doc = answer.rsplit("_", 1)[0]
        assert first.document_id == answer_doc, (name, question, [h.id for h in hits])
        if name != "sentence_window":
            assert first.id == answer, (name, question, [h.id for h in hits])
        else:  # a window around the sentence, holding the answer paragraph's text
            start, end = first.start, first.end
            assert first.text.split() == TEXTS[answer_doc][start:end].split()
            assert first.id == f"{answer_doc}@{start}-{end}"


@pytest.mark.parametrize("name", NAMES)
def test_each_retriever_returns_scored_chunks_best_first(retrievers, name):
    hits = retrievers[name]("hotel cap in London", 4)
    assert hits and len(hits) <= 4
    assert len({h.id for h in hits}) == len(hits)
    assert all(isinstance(h.score, float) for h in hits)
    if name != "mmr":  # MMR's value is not monotonic in general; the others rank by score
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all("document_id" in h.metadata and "start" in h.metadata and "end" in h.metadata for h in hits)
    with_distance = {"dense", "mmr"}
    without = {"bm25", "sentence_window", "sentence_chunks", "expanded"}
    if name in with_distance:
        assert all(h.distance is not None for h in hits)
    if name in without:
        assert all(h.distance is None for h in hits)


@pytest.mark.parametrize("name", NAMES)
def test_each_retriever_refuses_bad_input(retrievers, name):
    with pytest.raises(ValueError, match="empty"):
        retrievers[name]("   ", 3)
    with pytest.raises(ValueError, match="positive whole number"):
        retrievers[name]("hotel", 0)


@pytest.mark.parametrize("name", NAMES)
def test_each_retriever_takes_chroma_filters(collection, model, name):
    retriever = make_retriever(name, collection, model, where={"category": "policies"})
    hits = retriever("Which error code means the probe cable is unplugged?", 3)
    assert all(h.document_id.startswith("policies/") for h in hits)
    assert hits or name == "bm25"  # no policy paragraph shares a word with the question
    hits = retriever("How long do I have to submit an expense claim?", 3)
    assert hits and all(h.document_id.startswith("policies/") for h in hits)
    contains = make_retriever(name, collection, model, where_document={"$contains": "Lantern"})
    hits = contains("How long do I have to submit an expense claim?", 3)
    assert all(h.document_id == "products/lantern.md" for h in hits)


def test_dense_matches_store_retrieve(collection, retrievers):
    from rag_helpers.store import retrieve

    for question, _ in QUESTIONS:
        ours = retrievers["dense"](question, 5)
        theirs = retrieve(collection, question, 5)
        assert [h.id for h in ours] == [h.id for h in theirs]
        assert [h.distance for h in ours] == pytest.approx([h.distance for h in theirs], abs=1e-5)


def test_hybrid_is_the_rrf_of_its_parts(retrievers):
    hybrid = retrievers["hybrid"]
    assert isinstance(hybrid, HybridRetriever)
    question = "How long do I have to submit an expense claim?"
    rankings = hybrid.rankings(question, 5)
    expected = reciprocal_rank_fusion([[h.id for h in r] for r in rankings], k=hybrid.rrf_k)[:5]
    hits = hybrid(question, 5)
    assert [(h.id, h.score) for h in hits] == [(i, pytest.approx(s)) for i, s in expected]
    # A chunk found by the dense part keeps its dense distance; one found only by BM25 has none.
    dense_ids = {h.id: h.distance for h in rankings[0]}
    for hit in hits:
        assert hit.distance == (pytest.approx(dense_ids[hit.id]) if hit.id in dense_ids else None)


def test_hybrid_weights_can_silence_a_part(retrievers):
    dense, bm25 = retrievers["hybrid"].retrievers
    only_bm25 = HybridRetriever([dense, bm25], weights=[0.0, 1.0])
    question = "rail trips hours"
    assert [h.id for h in only_bm25(question, 3)] == [h.id for h in bm25(question, 3)]


def test_mmr_lambda_one_is_dense_and_low_lambda_skips_near_duplicates(collection, model, retrievers):
    question = "What is the nightly hotel cap?"
    plain = make_retriever("mmr", collection, model, lambda_=1.0)(question, 3)
    assert [h.id for h in plain] == [h.id for h in retrievers["dense"](question, 3)]
    # The 2023 and 2024 hotel paragraphs are near-duplicates: dense ranks them first and second,
    # while a diversity-minded MMR picks something else second.
    assert {h.id for h in plain[:2]} == {"policies/travel_2024.md_1", "policies/travel_2023.md_1"}
    diverse = make_retriever("mmr", collection, model, lambda_=0.3)(question, 3)
    assert diverse[0].id == plain[0].id
    assert diverse[1].id not in {"policies/travel_2024.md_1", "policies/travel_2023.md_1"}


def test_sentence_window_returns_non_overlapping_windows_with_spans(collection, model):
    retriever = make_retriever("sentence_window", collection, model, window_chars=60)
    hits = retriever("Which error code means the probe cable is unplugged?", 4)
    assert hits[0].text == "Error code E14 means the probe cable is unplugged."
    assert hits[0].metadata["sentence_id"].startswith("products/lantern.md#s")
    by_doc: dict[str, list[tuple[int, int]]] = {}
    for hit in hits:
        assert hit.text.split() == TEXTS[hit.document_id][hit.start : hit.end].split()
        for start, end in by_doc.get(hit.document_id, []):
            assert hit.end <= start or end <= hit.start  # windows do not overlap
        by_doc.setdefault(hit.document_id, []).append((hit.start, hit.end))
    wide = make_retriever("sentence_window", collection, model, window_chars=1000)
    first = wide("Which error code means the probe cable is unplugged?", 1)[0]
    assert first.start == 0 and first.end == len(TEXTS["products/lantern.md"])
    # The documents rebuilt from the chunks equal the originals, so windows are exact slices of them.
    assert first.text == TEXTS["products/lantern.md"][first.start : first.end]


def test_rerank_orders_candidates_by_their_best_sentence(collection, model):
    retriever = make_retriever("rerank", collection, model, weight=1.0)
    hits = retriever("Which error code means the battery is low?", 3)
    assert hits[0].id == "products/lantern.md_2"
    assert hits[0].score == pytest.approx(max(h.score for h in hits))


def test_the_cross_encoder_reranker_says_what_to_do_offline(collection, model, monkeypatch):
    from rag_helpers.rerank import RerankerUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RerankerUnavailableError, match="Hugging Face Hub"):
        make_retriever("rerank", collection, model, reranker="cross-encoder")
    with pytest.raises(ValueError, match="Unknown reranker"):
        make_retriever("rerank", collection, model, reranker="magic")


def test_expanded_remembers_the_words_it_added(retrievers):
    expanded = retrievers["expanded"]
    hits = expanded("What should I do when consumer lag grows?", 3)
    assert hits[0].id == "engineering/kafka_runbook.md_1"
    # Both hotel paragraphs come back first; words they share and the question lacks are added.
    hits = expanded("What is the hotel cap in London?", 2)
    assert {h.id for h in hits} == {"policies/travel_2024.md_1", "policies/travel_2023.md_1"}
    assert {"nightly", "euro", "pound"} <= set(expanded.last_terms)
    assert all(0 < w <= 1 for w in expanded.last_terms.values())


def test_retrievers_work_without_a_model_argument(collection):
    # The collection remembers its model; every retriever loads it when none is given.
    hits = make_retriever("hybrid", collection)("How many sensor ports does the Lantern S3 have?", 1)
    assert hits[0].id == "products/lantern.md_1"


# --- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def question_file(tmp_path_factory, collection):
    folder = tmp_path_factory.mktemp("questions")
    corpus = folder / "corpus"
    for document_id, text in TEXTS.items():
        path = corpus / document_id
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    lines = [
        {
            "q": q,
            "doc": a.rsplit("_", 1)[0],
            "evidence": TEXTS[a.rsplit("_", 1)[0]].split("\n\n")[int(a[-1])][:40],
        }
        for q, a in QUESTIONS
    ]
    lines.append({"q": "What is the capital of Mars?", "doc": None, "evidence": None, "kind": "unanswerable"})
    path = folder / "tiny.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path, corpus


@pytest.fixture
def eval_argv(db, question_file) -> list[str]:
    """`eval` over the tiny collection with the tiny question file and its corpus."""
    path, corpus = question_file
    return ["eval", "--db", str(db), "--collection", "tiny", "--questions", str(path), "--corpus", str(corpus)]


@pytest.mark.parametrize("name", NAMES)
def test_cli_eval_takes_every_retriever(capsys, eval_argv, name):
    argv = eval_argv
    assert main([*argv, "--retriever", name, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["index"]["retriever"] == name
    assert report["answerable"] == 4 and report["unanswerable"] == 1
    assert report["metrics"]["all"]["evidence_hit@5"] == 1.0


def test_cli_eval_prints_the_table_for_a_retriever(capsys, eval_argv):
    argv = eval_argv
    assert main([*argv, "--retriever", "bm25"]) == 0
    out = capsys.readouterr().out
    assert "tiny (bm25): 5 questions" in out and "top-chunk score" in out


def test_cli_query_prints_scores_for_other_retrievers(capsys, db):
    base = [
        "query",
        "How many sensor ports does the Lantern S3 have?",
        "--db",
        str(db),
        "--collection",
        "tiny",
    ]
    assert main([*base, "-k", "2"]) == 0
    dense = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Rank 1: products/lantern\.md_1, distance: \d+\.\d{4}", dense[0])
    assert main([*base, "-k", "2", "--retriever", "bm25"]) == 0
    keyword = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"Rank 1: products/lantern\.md_1, score: \d+\.\d{4}", keyword[0])
    assert main([*base, "-k", "2", "--retriever", "hybrid", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["id"] == "products/lantern.md_1" and rows[0]["score"] > 0


def test_cli_rejects_an_unknown_retriever(capsys, db):
    with pytest.raises(SystemExit):
        main(["query", "hello", "--db", str(db), "--retriever", "nope"])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


class ScriptedLLM:
    backend = "scripted"
    model = "scripted"

    def __init__(self, reply: str) -> None:
        self.reply = reply

    def answer(self, prompt, **params):
        from rag_helpers.answers import Answer

        return Answer(text=self.reply, backend=self.backend, model=self.model)


def test_multi_query_and_hyde_retrievers_over_a_collection(collection, model):
    from rag_helpers.query_expansion import hyde_retriever
    from rag_helpers.registry import multi_query_retriever

    llm = ScriptedLLM("probe cable unplugged error\nwhat E14 means")
    multi = multi_query_retriever(collection, model, llm, base="bm25", n=2)
    assert multi("What does the code on the display mean?", 2)[0].id == "products/lantern.md_2"
    assert multi.last_queries[1:] == ["probe cable unplugged error", "what E14 means"]

    passage = ScriptedLLM("Error code E14 is shown when the probe cable is unplugged from the gateway.")
    hyde = hyde_retriever(collection, model, passage, include_question=False)
    assert hyde("What does the blinking code mean?", 1)[0].id == "products/lantern.md_2"
    assert hyde.last_passage.startswith("Error code E14")
