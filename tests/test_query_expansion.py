"""Pseudo-relevance feedback by hand, and the LLM techniques with a scripted language model."""

from __future__ import annotations

import numpy as np
import pytest

from rag_helpers.extractive import ExtractiveAnswerer
from rag_helpers.answers import Answer
from rag_helpers.keyword_index import BM25Index
from rag_helpers.text import tokenize
from rag_helpers.query_expansion import (
    HyDERetriever,
    LanguageModelRequiredError,
    MultiQueryRetriever,
    expansion_terms,
    hypothetical_document,
    multi_query,
    rocchio,
)
from rag_helpers.base import RetrievedChunk


class ScriptedLLM:
    """A language model that answers with fixed text and records what it was asked."""

    backend = "scripted"
    model = "scripted"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.calls: list[list[dict]] = []

    def answer(self, prompt, **params):
        self.calls.append(prompt.messages)
        return Answer(text=self.reply, backend=self.backend, model=self.model)


def test_rocchio_by_hand():
    q = np.array([1.0, 0.0], dtype=np.float32)
    feedback = np.array([[0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    moved = rocchio(q, feedback, alpha=1.0, beta=1.0)
    assert moved == pytest.approx(np.array([1, 1]) / np.sqrt(2))
    weighted = rocchio(q, np.array([[0.0, 1.0], [0.0, -1.0]]), beta=1.0, weights=[3, 1])
    assert weighted == pytest.approx(np.array([1, 0.5]) / np.linalg.norm([1, 0.5]))
    assert rocchio(q, np.zeros((0, 2)), beta=0.5) == pytest.approx(q)
    with pytest.raises(ValueError, match="weights"):
        rocchio(q, feedback, weights=[1])


def test_expansion_terms_prefers_words_common_in_feedback_and_rare_elsewhere():
    texts = [
        "Kafka consumer lag grows when the consumer group rebalances.",
        "Rebalances of the consumer group pause every partition.",
        "The office kitchen is cleaned on Fridays.",
        "Partition counts limit consumers; rebalances follow.",
    ]
    index = BM25Index.build(["a", "b", "c", "d"], texts, titles=False)
    terms = expansion_terms("kafka consumer lag", texts[:2], index, n_terms=3, min_count=2)
    # "group" and "rebalances" are in both feedback texts; "group" is rarer in the index (2 of 4
    # chunks against 3 of 4), so it weighs more. Words seen once in the feedback are left out.
    assert list(terms) == ["group", tokenize("rebalances")[0]]
    assert terms["group"] == 1.0 and 0 < terms[tokenize("rebalances")[0]] < 1
    assert not set(terms) & set(tokenize("kafka consumer lag"))  # never the query's own words
    assert expansion_terms("kafka", [], index) == {}


def test_multi_query_parses_numbered_lines_and_keeps_the_question_first():
    llm = ScriptedLLM(
        "1. hotel limit per night London\n2) nightly accommodation cap UK\n- hotel limit per night london\n"
    )
    queries = multi_query("What is the hotel cap in London?", llm, n=3)
    assert queries == [
        "What is the hotel cap in London?",
        "hotel limit per night London",
        "nightly accommodation cap UK",
    ]
    assert "What is the hotel cap in London?" in llm.calls[0][-1]["content"]


def test_multi_query_retriever_fuses_each_querys_results():
    def base(query, k):
        ids = {"q": ["a", "b"], "x": ["b", "c"]}.get(query[0], [])
        return [RetrievedChunk(i, i, None, 1.0, {"document_id": i}) for i in ids][:k]

    retriever = MultiQueryRetriever(base, ScriptedLLM("x one"), n=1)
    hits = retriever("q?", 3)
    assert retriever.last_queries == ["q?", "x one"]
    assert [h.id for h in hits] == ["b", "a", "c"]  # b is in both rankings


def test_hyde_searches_with_the_passage_vector():
    seen = []

    def encode(text):
        return np.array([1.0, 0.0]) if text.startswith("Q") else np.array([0.0, 1.0])

    def search(vector, k):
        seen.append(vector)
        return []

    llm = ScriptedLLM("The hotel cap in London is 185 pounds per night.")
    assert hypothetical_document("Q: hotel cap?", llm).startswith("The hotel cap")
    HyDERetriever(search, encode, llm, include_question=False)("Q: hotel cap?", 5)
    assert seen[-1] == pytest.approx([0.0, 1.0])
    HyDERetriever(search, encode, llm)("Q: hotel cap?", 5)
    assert seen[-1] == pytest.approx(np.array([1.0, 1.0]) / np.sqrt(2))


def test_llm_techniques_need_a_language_model(model):
    with pytest.raises(LanguageModelRequiredError, match="needs a language model"):
        multi_query("q", None)
    with pytest.raises(LanguageModelRequiredError, match="offline backend"):
        hypothetical_document("q", ExtractiveAnswerer(model))
