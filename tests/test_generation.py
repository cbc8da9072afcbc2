"""LLM backends end to end: the real `InferenceClient` against a scripted OpenAI-compatible server
on 127.0.0.1."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from llm_server import MODEL, FakeServer, Reply, completion

from rag_helpers.config import Secret
from rag_helpers.answers import Answer
from rag_helpers.generation import (
    DEFAULT_PARAMS,
    HuggingFaceLLM,
    LLMAuthError,
    LLMConnectionError,
    LLMError,
    LLMRateLimitError,
    LLMRequestError,
    LLMServerError,
    LLMTimeoutError,
    NO_KEY,
    OpenAICompatibleLLM,
)
from rag_helpers.prompts import build_prompt
from rag_helpers.base import RetrievedChunk

TOKEN = "hf_" + "TESTtokenThatMustNeverBePrinted123"  # built at run time: no token-like literal in the repo


# --- The scripted server (tests/llm_server.py) ------------------------------------------------------


@pytest.fixture(autouse=True)
def online_but_with_an_ambient_token(monkeypatch):
    """Lift the suite's HF_HUB_OFFLINE for these loopback calls, and put a Hugging Face token in
    the environment that no request may ever carry."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_" + "AMBIENTtokenFromTheEnvironment")


def hit(chunk_id: str, text: str, start: int) -> RetrievedChunk:
    document_id = chunk_id.rpartition("_")[0]
    return RetrievedChunk(
        id=chunk_id,
        text=text,
        distance=0.3,
        score=0.85,
        metadata={"document_id": document_id, "chunk_index": 3, "start": start, "end": start + len(text)},
    )


CHUNKS = [
    hit("policies/travel_expense_policy_2024.md_3", "The nightly cap is €165, or £185 in London.", 2940),
    hit("policies/travel_expense_policy_2023.md_3", "The nightly cap is €140, or £150 in London.", 2930),
    hit("people/employee_handbook.md_19", "Expense claims are filed in Ledgerly.", 18620),
]
PROMPT = build_prompt("What is the London hotel cap in 2024?", CHUNKS)


def openai_llm(server: FakeServer, **options: Any) -> OpenAICompatibleLLM:
    options = {"retries": 2, "backoff": 0.01, "timeout": 5, **options}
    return OpenAICompatibleLLM(MODEL, base_url=server.url, **options)


def hf_llm(server: FakeServer, **options: Any) -> HuggingFaceLLM:
    options = {"retries": 2, "backoff": 0.01, "timeout": 5, **options}
    return HuggingFaceLLM(MODEL, token=Secret(TOKEN), base_url=server.url, **options)


# --- Normal and streamed replies -----------------------------------------------------------------


def test_reply_is_parsed_and_citations_resolve_to_chunks(server):
    usage = {"prompt_tokens": 321, "completion_tokens": 17, "total_tokens": 338}
    server.script = [
        Reply(body=completion("The 2024 cap in London is £185 [1]; it was £150 in 2023 [2].", usage))
    ]
    answer = openai_llm(server).answer(PROMPT)

    assert isinstance(answer, Answer)
    assert answer.text == "The 2024 cap in London is £185 [1]; it was £150 in 2023 [2]."
    assert answer.backend == "openai" and answer.model == MODEL and not answer.extractive
    assert answer.cited_ids == [CHUNKS[0].id, CHUNKS[1].id]
    first = answer.sources[0]
    assert (first.number, first.document_id, first.start, first.end) == (
        1,
        "policies/travel_expense_policy_2024.md",
        2940,
        2940 + len(CHUNKS[0].text),
    )
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.total_tokens) == (321, 338)
    assert answer.finish_reason == "stop"
    assert [source.chunk_id for source in answer.context] == [c.id for c in CHUNKS]

    # What the client sent.
    (request,) = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.json["model"] == MODEL
    assert request.json["messages"] == PROMPT.messages
    assert request.json["stream"] is True  # every request streams; `answer` reads the stream
    for name, value in DEFAULT_PARAMS.items():
        assert request.json[name] == value
    assert (request.json["temperature"], request.json["max_tokens"], request.json["top_p"]) == (
        0.5,
        1024,
        0.7,
    )
    # No key configured: a placeholder, never the Hugging Face token from the environment.
    assert request.headers["authorization"] == f"Bearer {NO_KEY}"


def test_hugging_face_backend_sends_its_token_and_parameters(server):
    server.script = [Reply(body=completion("Out of range [9] is ignored, [3] is kept."))]
    llm = hf_llm(server)
    answer = llm.answer(PROMPT, temperature=0.1, max_tokens=64, seed=7, stop=["\n\n"])

    assert answer.backend == "hf" and answer.cited_ids == [CHUNKS[2].id]
    assert answer.usage is None  # the reply had no usage block
    (request,) = server.requests
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.json["model"] == MODEL
    assert (request.json["temperature"], request.json["max_tokens"], request.json["top_p"]) == (0.1, 64, 0.7)
    assert request.json["seed"] == 7 and request.json["stop"] == ["\n\n"]
    assert TOKEN not in repr(llm) and "api_key=set" in repr(llm)


def test_openai_backend_sends_the_configured_key(server):
    server.script = [Reply(body=completion("ok"))]
    OpenAICompatibleLLM(MODEL, base_url=server.url, api_key=Secret("sk-local-123")).answer(PROMPT)
    assert server.requests[0].headers["authorization"] == "Bearer sk-local-123"


def test_streamed_reply_yields_pieces_then_a_full_answer(server):
    usage = {"prompt_tokens": 300, "completion_tokens": 9, "total_tokens": 309}
    server.script = [Reply(pieces=["The 2024 ", "London cap ", "is £185 [1]", "."], usage=usage)]
    stream = hf_llm(server).stream(PROMPT)

    pieces = list(stream)
    assert pieces == ["The 2024 ", "London cap ", "is £185 [1]", "."]
    answer = stream.answer
    assert answer.text == "The 2024 London cap is £185 [1]."
    assert answer.cited_ids == [CHUNKS[0].id]
    assert answer.finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 9
    (request,) = server.requests
    assert request.json["stream"] is True and request.json["messages"] == PROMPT.messages
    assert request.json["temperature"] == 0.5


# --- Errors ---------------------------------------------------------------------------------------


def test_401_is_an_auth_error_that_says_what_to_do_and_hides_the_token(server):
    # A server that echoes the credentials it got must not get them printed.
    server.script = [Reply(status=401, body={"error": f"Invalid credentials in header: Bearer {TOKEN}"})]
    with pytest.raises(LLMAuthError) as caught:
        hf_llm(server).answer(PROMPT)
    error = caught.value
    assert error.status_code == 401
    assert "HF_TOKEN" in str(error) and "huggingface.co/settings/tokens" in str(error)
    assert TOKEN not in str(error) and "********" in str(error)
    assert error.__cause__ is None and error.__suppress_context__
    assert len(server.requests) == 1  # not retried


def test_403_says_the_token_lacks_permission(server):
    server.script = [Reply(status=403)]
    with pytest.raises(LLMAuthError, match="permission"):
        hf_llm(server).answer(PROMPT)


def test_401_on_a_keyless_openai_server_asks_for_llm_api_key(server):
    server.script = [Reply(status=401)]
    with pytest.raises(LLMAuthError, match="LLM_API_KEY"):
        openai_llm(server).answer(PROMPT)


def test_429_then_success_is_retried(server):
    server.script = [Reply(status=429, headers={"retry-after": "0"}), Reply(body=completion("Fine now [1]."))]
    answer = hf_llm(server).answer(PROMPT)
    assert answer.text == "Fine now [1]."
    assert len(server.requests) == 2
    assert server.requests[0].json == server.requests[1].json


def test_429_every_time_gives_up_after_the_retries(server):
    server.script = [Reply(status=429)] * 5
    with pytest.raises(LLMRateLimitError, match="429") as caught:
        hf_llm(server, retries=2).answer(PROMPT)
    assert "--backend offline" in str(caught.value) and "tried 3 times" in str(caught.value)
    assert len(server.requests) == 3  # the first try and two retries


def test_500_is_retried_then_reported(server):
    server.script = [Reply(status=500)] * 3
    with pytest.raises(LLMServerError, match="HTTP 500") as caught:
        openai_llm(server, retries=2).answer(PROMPT)
    assert caught.value.status_code == 500 and "try again later" in str(caught.value)
    assert len(server.requests) == 3


def test_503_then_success_in_a_stream(server):
    server.script = [Reply(status=503), Reply(pieces=["ok [2]"])]
    stream = openai_llm(server).stream(PROMPT)
    assert "".join(stream) == "ok [2]"
    assert stream.answer.cited_ids == [CHUNKS[1].id]
    assert len(server.requests) == 2


def test_an_error_in_the_middle_of_a_stream_is_a_server_error(server):
    server.script = [Reply(pieces=["The cap ", "is"], stream_error="CUDA out of memory")]
    stream = hf_llm(server).stream(PROMPT)
    received = []
    with pytest.raises(LLMServerError, match="CUDA out of memory"):
        for piece in stream:
            received.append(piece)  # noqa: PERF402 - keeps what arrived before the error
    assert received == ["The cap ", "is"]
    assert len(server.requests) == 1  # text was already shown: no silent retry


def test_a_reply_without_choices_is_a_server_error(server):
    body = completion("unused")
    body["choices"] = []
    server.script = [Reply(body=body)]
    with pytest.raises(LLMServerError, match="no choices"):
        openai_llm(server).answer(PROMPT)


def test_no_retries_when_asked(server):
    server.script = [Reply(status=500), Reply(body=completion("never reached"))]
    with pytest.raises(LLMServerError):
        openai_llm(server, retries=0).answer(PROMPT)
    assert len(server.requests) == 1


def test_timeout_is_reported_and_not_retried(server):
    server.script = [Reply(body=completion("too late"), delay=1.5)]
    with pytest.raises(LLMTimeoutError, match="did not reply within 0.2 seconds") as caught:
        openai_llm(server, timeout=0.2).answer(PROMPT)
    assert isinstance(caught.value, TimeoutError)
    assert len(server.requests) == 1


def test_404_is_a_request_error_that_names_the_model(server):
    server.script = [Reply(status=404, body={"error": "model 'test-org/test-model' not found"})]
    with pytest.raises(LLMRequestError, match="test-org/test-model"):
        openai_llm(server).answer(PROMPT)
    assert len(server.requests) == 1


def test_unreachable_server_is_a_connection_error():
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    llm = OpenAICompatibleLLM(MODEL, base_url=f"http://127.0.0.1:{port}/v1", retries=0, timeout=2)
    with pytest.raises(LLMConnectionError, match="Could not reach"):
        llm.answer(PROMPT)


def test_hub_offline_mode_is_explained(server, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(LLMConnectionError, match="HF_HUB_OFFLINE"):
        openai_llm(server).answer(PROMPT)
    assert server.requests == []


def test_every_llm_error_is_a_runtime_error_for_the_cli():
    for error in (
        LLMAuthError,
        LLMRateLimitError,
        LLMServerError,
        LLMTimeoutError,
        LLMConnectionError,
        LLMRequestError,
    ):
        assert issubclass(error, LLMError) and issubclass(error, RuntimeError)
