"""The course's own models through llama.cpp: the in-process `local` backend, the sufficiency check, and
the real OpenAI-compatible server (`python -m rag_helpers serve-llm`, i.e. `python -m llama_cpp.server`).

The server starts once per session with the default model (Qwen2.5-Coder-1.5B-Instruct); plumbing
tests that do not need a model that reads use SmolLM2-135M, which loads in a second. Answers are
greedy and short. Tests assert properties (a cited source, a refusal), never a model's exact words.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag_helpers import cli
from rag_helpers.answers import REFUSED_ANSWERER, REFUSED_CHECK, parse_citations
from rag_helpers.backends import get_llm
from rag_helpers.base import Prompt, RetrievedChunk
from rag_helpers.config import DEFAULT_LOCAL_MODEL, Settings
from rag_helpers.generation import LLMRequestError
from rag_helpers.local_llm import LocalLLM, free_port
from rag_helpers.local_models import LocalModelError, get_local_model
from rag_helpers.prompts import build_prompt
from rag_helpers.sufficiency import SufficiencyCheck, check_prompt, verdict_from_text

DOCS = {
    "policies/travel.md": "# Travel policy\n\nThe nightly hotel cap is €165, and £185 in London. "
    "Meals are covered by a per diem of €52 per full day.\n\nClaims are filed in Ledgerly within 21 days.",
    "people/kitchen.txt": "Kitchen rules. Label your food with your name. "
    "The fridge is cleaned every Friday afternoon.",
}
COLLECTION = "local_llm_test"
QUESTION = "What is the nightly hotel cap in London?"
OFF_TOPIC = "Which team won the 1998 football world cup final?"
TINY = "smollm2-135m-instruct"
SERVER_TIMEOUT = 300  # seconds for the server to load the model on a busy 2-core CPU


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory) -> Iterator[dict[str, str]]:
    """`python -m rag_helpers serve-llm` (the default model) on a free loopback port, once per session."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("serve-llm")  # the command must not depend on the current folder
    log_path = workdir / "serve-llm.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag_helpers", "serve-llm", "--port", str(port)],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        yield {**_wait_for_env_lines(process, log_path), "log": str(log_path)}
    finally:
        process.terminate()
        process.wait(30)


def _wait_for_env_lines(process: subprocess.Popen, log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + SERVER_TIMEOUT
    text = ""
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        found = dict(re.findall(r"^(LLM_BASE_URL|LLM_MODEL)=(\S+)$", text, re.MULTILINE))
        if len(found) == 2:
            return found
        if process.poll() is not None:
            pytest.fail(f"serve-llm exited with code {process.returncode}:\n{text}")
        time.sleep(0.5)
    pytest.fail(f"serve-llm printed no LLM_BASE_URL/LLM_MODEL within {SERVER_TIMEOUT} s:\n{text}")


@pytest.fixture
def hub_online(monkeypatch):
    """The suite sets HF_HUB_OFFLINE, which blocks huggingface_hub even on loopback; lift it."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture(scope="module")
def db(build_index):
    return build_index("local-llm", DOCS, COLLECTION)


def ask(capsys, monkeypatch, env: dict[str, str], db: Path, *argv: str) -> tuple[int, dict, str]:
    """`ask ... --json` with settings from `env` only; (exit code, the JSON answer, stderr)."""
    monkeypatch.setattr(cli.Settings, "load", classmethod(lambda cls, *a, **k: cls.from_mapping(env)))
    code = cli.main(["ask", *argv, "--json", "--db", str(db), "--collection", COLLECTION])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


def assert_citations_resolve(data: dict) -> None:
    """Every [n] in the text is a cited source, and each cited source is the n-th chunk of the prompt."""
    numbers = parse_citations(data["text"], len(data["context"]))
    assert [source["number"] for source in data["sources"]] == sorted(numbers)
    for source in data["sources"]:
        assert source["chunk_id"] == data["context"][source["number"] - 1]["chunk_id"]


HOTEL = RetrievedChunk(
    "policies/travel.md_0", DOCS["policies/travel.md"], 0.3, 0.8,
    {"document_id": "policies/travel.md", "start": 0, "end": len(DOCS["policies/travel.md"])},
)


# --- Choosing and configuring the local backend --------------------------------------------------------


def test_the_local_backend_and_its_model_come_from_the_settings():
    llm = get_llm(Settings.from_mapping({"LLM_BACKEND": "local"}))
    assert isinstance(llm, LocalLLM) and llm.backend == "local"
    assert llm.info.name == DEFAULT_LOCAL_MODEL and llm.model == get_local_model().display_name
    tiny = get_llm(Settings.from_mapping({"LLM_BACKEND": "local", "LLM_LOCAL_MODEL": TINY}))
    assert tiny.info.name == TINY


def test_unknown_models_and_parameters_are_refused_with_the_choices():
    with pytest.raises(LocalModelError, match="choose one of: qwen2.5-coder-1.5b-instruct, smollm2-135m"):
        LocalLLM("llama3.2")
    with pytest.raises(ValueError, match="does not take frequency_penalty"):
        LocalLLM(TINY, params={"frequency_penalty": 1.0})


def test_the_check_asks_with_the_answer_prompts_own_beginning():
    prompt = build_prompt(QUESTION, [HOTEL])
    asked = check_prompt(prompt)
    answer_text, check_text = prompt.messages[-1]["content"], asked.messages[-1]["content"]
    shared = answer_text.rsplit("\n\n", 1)[0]
    assert check_text.startswith(shared) and check_text.endswith("YES if they do, NO if they do not.")
    assert asked.messages[0] == prompt.messages[0]  # the same system message: llama.cpp reuses its cache
    assert (verdict_from_text("YES."), verdict_from_text("no, they do not"), verdict_from_text("Maybe")) == (
        1.0, 0.0, None,
    )


# --- In this process ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_tiny_model_streams_and_stops_at_max_tokens():
    llm = LocalLLM(TINY, progress=None)
    stream = llm.stream(Prompt([{"role": "user", "content": "Count from one to twenty."}]), temperature=0, max_tokens=8)
    pieces = list(stream)
    answer = stream.answer
    assert len(pieces) > 1 and answer.text == "".join(pieces).strip()
    assert answer.usage.completion_tokens <= 8 and answer.finish_reason == "length"
    assert answer.usage.prompt_tokens > 0


@pytest.mark.slow
def test_a_prompt_longer_than_the_context_is_a_clear_error():
    llm = LocalLLM(TINY, n_ctx=256, progress=None)
    with pytest.raises(LLMRequestError, match="Retrieve fewer chunks"):
        llm.answer(Prompt([{"role": "user", "content": "word " * 600}]), max_tokens=4)


@pytest.mark.slow
def test_the_default_model_reads_and_cites_in_process(db, capsys, monkeypatch):
    code, data, err = ask(
        capsys, monkeypatch, {"RAG_MIN_SCORE": "off"}, db, QUESTION, "--backend", "local", "-k", "2",
        "--temperature", "0", "--max-tokens", "60",
    )  # fmt: skip
    assert code == 0, err
    assert data["backend"] == "local" and data["model"] == get_local_model().display_name
    assert data["refused"] is None and data["seconds"] > 0
    assert_citations_resolve(data)
    assert "policies/travel.md_0" in [source["chunk_id"] for source in data["sources"]], data["text"]


@pytest.mark.slow
def test_the_check_scores_an_answerable_question_above_an_unanswerable_one():
    llm = LocalLLM(progress=None)
    check = SufficiencyCheck(llm)
    answerable = check.score(build_prompt(QUESTION, [HOTEL]))
    unanswerable = check.score(build_prompt("What is the hotel cap in Tokyo?", [HOTEL]))
    assert 0.0 <= unanswerable < answerable <= 1.0 and answerable > check.threshold


# --- The server ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_server_lists_the_default_model(llm_server):
    assert llm_server["LLM_MODEL"] == DEFAULT_LOCAL_MODEL
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", llm_server["LLM_BASE_URL"])
    with urllib.request.urlopen(f"{llm_server['LLM_BASE_URL']}/models", timeout=10) as response:
        assert [item["id"] for item in json.load(response)["data"]] == [DEFAULT_LOCAL_MODEL]


@pytest.mark.slow
def test_plain_and_streamed_chat_completions_through_inference_client(llm_server, hub_online):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=llm_server["LLM_BASE_URL"], api_key="no-key", timeout=120)
    message = [{"role": "user", "content": "Hola, qué tal?"}]  # the original tutorial's first message
    plain = client.chat_completion(message, model=DEFAULT_LOCAL_MODEL, temperature=0.0, max_tokens=16)
    text = plain.choices[0].message.content
    assert text.strip() and plain.choices[0].finish_reason in ("stop", "length")
    pieces = [
        event.choices[0].delta.content
        for event in client.chat_completion(
            message, model=DEFAULT_LOCAL_MODEL, temperature=0.0, max_tokens=16, stream=True
        )
        if event.choices and event.choices[0].delta.content
    ]
    assert len(pieces) > 1, "the server sent the answer in one piece, not streamed"
    assert "".join(pieces) == text  # greedy decoding: the same answer both ways


@pytest.mark.slow
def test_ask_through_the_server_cites_and_refuses_off_topic(llm_server, hub_online, db, capsys, monkeypatch):
    env = {"LLM_BASE_URL": llm_server["LLM_BASE_URL"], "LLM_MODEL": llm_server["LLM_MODEL"], "RAG_MIN_SCORE": "off"}
    options = ("--backend", "openai", "-k", "2", "--temperature", "0", "--max-tokens", "60")
    code, data, err = ask(capsys, monkeypatch, env, db, QUESTION, *options)
    assert code == 0, err
    assert data["backend"] == "openai" and data["model"] == DEFAULT_LOCAL_MODEL and data["refused"] is None
    assert_citations_resolve(data)
    assert "policies/travel.md_0" in [source["chunk_id"] for source in data["sources"]], data["text"]
    # The similarity gate is off: the check (or the model itself) must say the sources do not answer it.
    code, data, err = ask(capsys, monkeypatch, env, db, OFF_TOPIC, *options)
    assert code == 0, err
    assert data["refused"] in (REFUSED_CHECK, REFUSED_ANSWERER), data["text"]


def test_serve_llm_reports_a_taken_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "rag_helpers", "serve-llm", "--port", str(port)],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: Port {port} on 127.0.0.1 is already in use (Address already in use): stop the program "
        "using it or choose another port with --port."
    ]
    assert "LLM_BASE_URL" not in result.stdout
