"""`python -m rag_helpers ask`: offline on a small real index, and through a scripted LLM server."""

from __future__ import annotations

import json
import re

import pytest
from llm_server import MODEL, Reply, completion

from rag_helpers import cli
from rag_helpers.extractive import EXTRACTED_LABEL

DOCS = {
    "policies/travel.md": "# Travel policy\n\nThe nightly hotel cap is €165, and £185 in London. "
    "Meals are covered by a per diem of €52 per full day.\n\nClaims are filed in Ledgerly within 21 days.",
    "people/kitchen.txt": "Kitchen rules. Label your food with your name. "
    "The fridge is cleaned every Friday afternoon.",
}
COLLECTION = "ask_test"


@pytest.fixture(scope="module")
def db(build_index):
    return build_index("ask", DOCS, COLLECTION)


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch):
    """Settings from the test's environment only, never from a developer's .env."""
    env: dict[str, str] = {"RAG_MIN_SCORE": "off", "RAG_CHECK": "off"}  # about answering; gate and check have their own tests
    monkeypatch.setattr(cli.Settings, "load", classmethod(lambda cls, *a, **k: cls.from_mapping(env)))
    return env


def ask(capsys, db, *argv):
    try:
        code = cli.main(["ask", *map(str, argv), "--db", str(db), "--collection", COLLECTION])
    except SystemExit as stop:  # argparse refuses a bad argument with exit status 2
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


def untimed(text: str) -> str:
    """The output without the answer's time, which differs from run to run."""
    return re.sub(r", \d+\.\d s\)", ")", text)


def test_ask_offline_prints_the_extract_then_the_sources(capsys, db):
    code, out, err = ask(capsys, db, "What is the hotel cap in London?", "-k", 2)
    assert code == 0, err
    assert out.startswith(EXTRACTED_LABEL)
    assert "£185" in out
    assert "Sources:\n  [1] policies/travel.md_0 (policies/travel.md, characters 0-" in out
    assert re.search(r"\(offline: extractive \(sentence-transformers/all-MiniLM-L6-v2\), \d+\.\d s\)$", out.rstrip())
    assert "answering offline" in err  # auto fell back to offline, and says so


def test_ask_json_has_answer_sources_and_context(capsys, db):
    code, out, _ = ask(capsys, db, "How long do I have to file a claim?", "--backend", "offline", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["question"] == "How long do I have to file a claim?"
    assert data["backend"] == "offline" and data["extractive"] is True
    assert "21 days" in data["text"]
    assert data["sources"][0]["chunk_id"] == "policies/travel.md_0"
    start, end = data["sources"][0]["highlights"][0]
    assert "21 days" in DOCS["policies/travel.md"][start:end]
    assert {c["chunk_id"] for c in data["context"]} == {"policies/travel.md_0", "people/kitchen.txt_0"}


def test_ask_stream_prints_the_same_answer(capsys, db):
    _, plain, _ = ask(capsys, db, "When is the fridge cleaned?", "--backend", "offline")
    _, streamed, _ = ask(capsys, db, "When is the fridge cleaned?", "--backend", "offline", "--stream")
    assert untimed(streamed) == untimed(plain)


def test_ask_with_an_openai_compatible_server(capsys, db, server, isolated_settings):
    isolated_settings.update(LLM_BASE_URL=server.url, LLM_MODEL=MODEL)
    server.script = [
        Reply(
            body=completion(
                "It is £185 [1].", usage={"prompt_tokens": 90, "completion_tokens": 6, "total_tokens": 96}
            )
        )
    ]
    code, out, err = ask(capsys, db, "What is the hotel cap in London?", "-k", 1, "--temperature", 0.0)
    assert code == 0, err
    assert out.startswith("It is £185 [1].")
    assert "[1] policies/travel.md_0" in out and "(openai: test-org/test-model, 96 tokens, " in out
    (request,) = server.requests
    assert request.json["model"] == MODEL and request.json["temperature"] == 0.0
    assert request.json["max_tokens"] == 1024 and request.json["top_p"] == 0.7
    assert '<source id="1" document="policies/travel.md">' in request.json["messages"][1]["content"]


def test_ask_original_style_streams_from_the_server(capsys, db, server, isolated_settings):
    isolated_settings.update(LLM_BASE_URL=server.url, LLM_MODEL=MODEL)
    server.script = [Reply(pieces=["£185", " a night [1]"])]
    code, out, _ = ask(capsys, db, "London cap?", "-k", 1, "--style", "original", "--stream")
    assert code == 0
    assert out.startswith("£185 a night [1]\n")
    messages = server.requests[0].json["messages"]
    assert len(messages) == 1 and messages[0]["content"].startswith(
        "You are an assistant for question-answering."
    )
    assert server.requests[0].json["stream"] is True


def test_ask_reports_llm_errors_without_a_traceback(capsys, db, server, isolated_settings):
    isolated_settings.update(LLM_BASE_URL=server.url, LLM_MODEL=MODEL)
    server.script = [Reply(status=401)]
    code, out, err = ask(capsys, db, "London cap?", "--backend", "openai")
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "LLM_API_KEY" in err and "Traceback" not in err


def test_ask_hf_without_a_token_says_how_to_get_one(capsys, db):
    code, _, err = ask(capsys, db, "London cap?", "--backend", "hf")
    assert code == 2 and "HF_TOKEN" in err and "huggingface.co/settings/tokens" in err


def test_ask_rejects_a_bad_k(capsys, db):
    code, _, err = ask(capsys, db, "London cap?", "-k", 0)
    assert code == 2 and "error: argument -k/--k: must be at least 1, got 0" in err


def test_an_offline_ask_embeds_the_question_once(capsys, db, monkeypatch):
    """The pipeline embeds the question once and hands the vector to the gate, the retriever and the
    extractive answerer: every model call (ONNX or torch) is counted, and the question is in one."""
    from sentence_transformers import SentenceTransformer

    from rag_helpers.onnx_encoder import OnnxEncoder

    question = "When is the fridge cleaned?"
    seen: list[str] = []
    for cls in (OnnxEncoder, SentenceTransformer):
        real = cls.encode

        def counting(self, texts, *args, _real=real, **kwargs):
            seen.extend([texts] if isinstance(texts, str) else list(texts))
            return _real(self, texts, *args, **kwargs)

        monkeypatch.setattr(cls, "encode", counting)
    code, out, err = ask(capsys, db, question, "--backend", "offline", "--min-score", "0.1", "--retriever", "rerank")
    assert code == 0, err
    assert "Friday" in out
    assert seen.count(question) == 1, seen[:5]
