"""The pipeline: choosing the answerer (a language model or the extractive one) and citing its answer."""

from __future__ import annotations

from typing import Any

import pytest

from rag_helpers.base import RetrievedChunk
from rag_helpers.config import Settings
from rag_helpers.extractive import ExtractiveAnswerer
from rag_helpers.generation import Answer, AnswerStream, HuggingFaceLLM, LLMAuthError, OpenAICompatibleLLM
from rag_helpers.pipeline import answer_question, get_answerer, get_llm, stream_answer

TOKEN = "hf_" + "TESTtokenThatMustNeverBePrinted123"  # built at run time: no token-like literal in the repo
CHUNKS = [
    RetrievedChunk(f"doc.md_{n}", text, 0.2, 0.9 - n / 10, {"document_id": "doc.md", "start": 100 * n})
    for n, text in enumerate(["The cap is €165.", "Rail is preferred.", "Claims go to Ledgerly."])
]


class EchoLLM:
    """A language model that replies with fixed text and records the messages it was sent."""

    backend, model = "echo", "echo-1"

    def __init__(self, reply: str) -> None:
        self.reply, self.calls = reply, []

    def generate(self, messages: list[dict], **params: Any) -> Answer:
        self.calls.append((messages, params))
        return Answer(self.reply, backend=self.backend, model=self.model)

    def stream(self, messages: list[dict], **params: Any) -> AnswerStream:
        answer = self.generate(messages, **params)
        return AnswerStream(answer.text.split(" "), lambda _text: answer)


def test_get_llm_builds_the_chosen_backend_without_showing_the_token():
    llm = get_llm(Settings.from_mapping({"HF_TOKEN": TOKEN}))
    assert isinstance(llm, HuggingFaceLLM) and llm.model == "Qwen/Qwen2.5-72B-Instruct"
    assert TOKEN not in repr(llm)
    custom = get_llm(
        Settings.from_mapping({"LLM_BASE_URL": "http://127.0.0.1:8080/v1", "LLM_MODEL": "llama3"})
    )
    assert isinstance(custom, OpenAICompatibleLLM) and custom.model == "llama3"
    assert custom.base_url == "http://127.0.0.1:8080/v1"
    assert get_llm(Settings.from_mapping({"HF_TOKEN": TOKEN}), model="other/model").model == "other/model"


def test_get_llm_explains_missing_configuration():
    with pytest.raises(LLMAuthError, match="HF_TOKEN"):
        get_llm(Settings.from_mapping({}), "hf")
    with pytest.raises(ValueError, match="LLM_BASE_URL"):
        get_llm(Settings.from_mapping({}), "openai")
    with pytest.raises(ValueError, match="get_answerer"):
        get_llm(Settings.from_mapping({}))  # no token, no server: offline, which is no language model


def test_get_answerer_gives_the_extractive_answerer_offline_with_the_given_model(model):
    answerer = get_answerer(Settings.from_mapping({}), embedding_model=model)
    assert isinstance(answerer, ExtractiveAnswerer) and answerer.embedding_model is model
    assert answerer.backend == "offline" and "extractive" in answerer.model
    assert isinstance(get_answerer(Settings.from_mapping({"HF_TOKEN": TOKEN})), HuggingFaceLLM)


def test_a_language_model_gets_only_messages_and_its_citations_are_resolved_here():
    llm = EchoLLM("The cap is €165 [1]; claims go to Ledgerly [3].")
    answer = answer_question(
        "What is the cap?", llm=llm, k=3, retriever=lambda q, k: CHUNKS[:k], min_score=None, temperature=0
    )
    ((messages, params),) = llm.calls
    assert params == {"temperature": 0} and messages[-1]["role"] == "user"
    assert answer.cited_ids == ["doc.md_0", "doc.md_2"]
    assert answer.sources[1].start == 200 and answer.sources[0].score == pytest.approx(0.9)
    assert [source.chunk_id for source in answer.context] == [c.id for c in CHUNKS]


def test_a_streamed_answer_is_cited_at_the_end():
    stream = stream_answer(
        "What is the cap?", llm=EchoLLM("Rail [2]."), k=3, retriever=lambda q, k: CHUNKS[:k], min_score=None
    )
    assert "".join(stream) == "Rail[2]."
    assert stream.answer.cited_ids == ["doc.md_1"]
