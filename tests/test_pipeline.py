"""The pipeline core: one question vector, the gate, the prompt, the answerer, and why an answer refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rag_helpers.answers import (
    DONT_KNOW,
    REFUSED_ANSWERER,
    REFUSED_GATE,
    REFUSED_NO_SOURCES,
    AnswerStream,
    Answerer,
)
from rag_helpers.base import Prompt, RetrievedChunk
from rag_helpers.embeddings import QueryEncoder
from rag_helpers.generation import generated_answer
from rag_helpers.pipeline import Pipeline, answer_question, stream_answer

CHUNKS = [
    RetrievedChunk(f"doc.md_{n}", text, 0.2, 0.9 - n / 10, {"document_id": "doc.md", "start": 100 * n})
    for n, text in enumerate(["The cap is €165.", "Rail is preferred.", "Claims go to Ledgerly."])
]


class EchoLLM(Answerer):
    """A language model that replies with fixed text, word by word, and records the prompts it got."""

    backend, model = "echo", "echo-1"

    def __init__(self, reply: str) -> None:
        self.reply, self.calls = reply, []

    def stream(self, prompt: Prompt, **params: Any) -> AnswerStream:
        self.calls.append((prompt, params))
        words = self.reply.split(" ")
        pieces = [word + " " for word in words[:-1]] + words[-1:]
        return AnswerStream(pieces, lambda text: generated_answer(text, prompt, self.backend, self.model))


def test_a_language_model_gets_the_prompt_and_its_citations_are_resolved():
    llm = EchoLLM("The cap is €165 [1]; claims go to Ledgerly [3].")
    answer = answer_question(
        "What is the cap?", answerer=llm, k=3, retriever=lambda q, k: CHUNKS[:k], min_score=None, temperature=0
    )
    ((prompt, params),) = llm.calls
    assert params == {"temperature": 0} and prompt.messages[-1]["role"] == "user"
    assert prompt.question == "What is the cap?" and list(prompt.chunks) == CHUNKS
    assert answer.cited_ids == ["doc.md_0", "doc.md_2"] and answer.refused is None
    assert answer.sources[1].start == 200 and answer.sources[0].score == pytest.approx(0.9)
    assert [source.chunk_id for source in answer.context] == [c.id for c in CHUNKS]


def test_a_streamed_answer_is_cited_and_timed_at_the_end():
    stream = stream_answer(
        "What is the cap?", answerer=EchoLLM("Rail is preferred [2]."), k=3,
        retriever=lambda q, k: CHUNKS[:k], min_score=None,
    )
    assert "".join(stream) == "Rail is preferred [2]."
    answer = stream.answer
    assert answer.cited_ids == ["doc.md_1"]
    assert 0 <= answer.first_piece_seconds <= answer.seconds
    assert answer.byline().startswith("(echo: echo-1, ") and answer.byline().endswith(" s)")


def test_a_model_that_says_it_does_not_know_is_a_refusal_for_the_reason_answerer():
    answer = answer_question(
        "Who won the 1998 World Cup?", answerer=EchoLLM(DONT_KNOW), retriever=lambda q, k: CHUNKS, min_score=None
    )
    assert answer.refused == REFUSED_ANSWERER and answer.sources == ()
    hedged = answer_question(
        "What is the cap?", answerer=EchoLLM("The cap is €165 [1]. The sources do not say when it started."),
        retriever=lambda q, k: CHUNKS, min_score=None,
    )
    assert hedged.refused is None  # an answer that says what is missing still answers


def test_nothing_retrieved_is_a_refusal_without_asking_the_answerer():
    llm = EchoLLM("anything")
    answer = answer_question("What is the cap?", answerer=llm, retriever=lambda q, k: [], min_score=None)
    assert (answer.text, answer.refused, llm.calls) == (DONT_KNOW, REFUSED_NO_SOURCES, [])


class CountingEncoder(QueryEncoder):
    """A query encoder over a fixed vector that counts how often the question is really embedded."""

    def __init__(self, vector: np.ndarray) -> None:
        super().__init__(model=object())
        self.vector, self.computed = vector, 0

    def _encode(self, text: str) -> np.ndarray:
        self.computed += 1
        return self.vector


def test_the_gate_refuses_with_its_reason_and_the_closest_chunks(clean_settings, model):
    from rag_helpers.chunking import chunk_documents
    from rag_helpers.documents import Document
    from rag_helpers.embeddings import embed_one
    from rag_helpers.ingest import ingest
    from rag_helpers.store import get_client, get_collection

    collection = get_collection(get_client(clean_settings), "gate", model)
    ingest(collection, chunk_documents([Document("a.md", "Dogs are welcome in the office.", "a.md")]), model,
           progress=False)
    llm = EchoLLM("never asked")
    pipeline = Pipeline(collection, llm, min_score=0.9)
    answer = pipeline.answer("What is the capital of Peru?")
    assert (answer.text, answer.refused, llm.calls) == (DONT_KNOW, REFUSED_GATE, [])
    assert "below the minimum 0.90" in answer.notes[0] and answer.context[0].chunk_id == "a.md_0"
    assert Pipeline(collection, llm, min_score=None).answer("What is the capital of Peru?").refused is None

    # One question, one vector: the encoder embeds it once for the gate, the retriever and the answerer.
    encoder = CountingEncoder(embed_one("Are dogs allowed?", model))
    answer = Pipeline(collection, EchoLLM("Yes [1]."), encoder=encoder, min_score=0.1).answer("Are dogs allowed?")
    assert encoder.computed == 1 and answer.cited_ids == ["a.md_0"]
    prompt = Pipeline(collection, EchoLLM("x"), encoder=encoder).prepare("Are dogs allowed?")
    assert prompt.question_vector is encoder.vector and encoder.computed == 1


def test_a_pipeline_needs_something_to_answer_from():
    with pytest.raises(ValueError, match="collection"):
        Pipeline(None, EchoLLM("x"))
    with pytest.raises(ValueError, match="answerer"):
        answer_question("Q?", retriever=lambda q, k: CHUNKS)
    with pytest.raises(ValueError, match="empty"):
        answer_question("  ", answerer=EchoLLM("x"), retriever=lambda q, k: CHUNKS)
