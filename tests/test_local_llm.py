"""The bundled SmolLM2-135M-Instruct: its model folder, the in-process `local` backend, and the real
OpenAI-compatible server (`python -m rag_helpers serve-llm`, i.e. `transformers serve`).

The model folder is converted at most once (cached in .cache/llm/ across sessions) and the server
starts once per session. Answers are greedy (temperature 0) and short, to keep the suite quick.
"""

from __future__ import annotations

import gc
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

from rag_helpers import cli, store
from rag_helpers.config import Settings
from rag_helpers.generation import cite
from rag_helpers.pipeline import get_llm
from rag_helpers.local_llm import (
    LOCAL_MODEL_NAME,
    LocalLLM,
    LocalModelError,
    free_port,
    prepare_model,
    start_server,
)
from rag_helpers.prompts import build_messages, parse_citations

DOCS = {
    "policies/travel.md": "# Travel policy\n\nThe nightly hotel cap is €165, and £185 in London. "
    "Meals are covered by a per diem of €52 per full day.\n\nClaims are filed in Ledgerly within 21 days.",
    "people/kitchen.txt": "Kitchen rules. Label your food with your name. "
    "The fridge is cleaned every Friday afternoon.",
}
COLLECTION = "local_llm_test"
QUESTION = "What is the nightly hotel cap?"
GREEDY = {"temperature": 0.0, "max_tokens": 24}
SERVER_TIMEOUT = 300  # seconds for the server to load the model on a busy 2-core CPU


def _stat(folder: Path) -> tuple[int, int]:
    info = (folder / "model.safetensors").stat()
    return info.st_ino, info.st_mtime_ns


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The converted model folder in the project cache (converted now only if missing)."""
    return prepare_model()


@pytest.fixture(scope="session")
def llm_server(model_dir, tmp_path_factory) -> Iterator[dict[str, str]]:
    """`python -m rag_helpers serve-llm` on a free loopback port, started once for the session."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("serve-llm")  # the command must not depend on the current folder
    log_path = workdir / "serve-llm.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rag_helpers", "serve-llm", "--port", str(port)],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        lines = _wait_for_env_lines(process, log_path)
        yield {**lines, "log": str(log_path)}
    finally:
        process.terminate()
        process.wait(30)


def _wait_for_env_lines(process: subprocess.Popen, log_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + SERVER_TIMEOUT
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


def ask(capsys, monkeypatch, env: dict[str, str], db: Path, *argv: str) -> tuple[int, str, str]:
    monkeypatch.setattr(cli.Settings, "load", classmethod(lambda cls, *a, **k: cls.from_mapping(env)))
    code = cli.main(["ask", *argv, "--db", str(db), "--collection", COLLECTION])
    out, err = capsys.readouterr()
    return code, out, err


# --- The model folder ------------------------------------------------------------------------------


@pytest.mark.slow
def test_model_folder_is_a_plain_bf16_checkpoint(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    assert config["dtype"] == "bfloat16"
    assert (model_dir / "tokenizer.json").is_file()
    assert not list(model_dir.parent.glob(f".{model_dir.name}-*")), "a temporary conversion folder was left"


@pytest.mark.slow
def test_prepared_folder_is_reused_not_rebuilt(model_dir):
    before = _stat(model_dir)
    messages: list[str] = []
    assert prepare_model(model_dir, progress=messages.append) == model_dir
    assert messages == [] and _stat(model_dir) == before


def test_incomplete_folder_is_reported_not_used(tmp_path):
    half = tmp_path / LOCAL_MODEL_NAME
    half.mkdir()
    (half / "config.json").write_text("{}")
    with pytest.raises(LocalModelError, match="not a complete model folder; delete it"):
        prepare_model(half, progress=None)


def test_local_backend_is_chosen_only_when_asked():
    from rag_helpers.generation import choose_backend

    assert choose_backend(Settings.from_mapping({"LLM_BACKEND": "local"})) == "local"
    assert choose_backend(Settings.from_mapping({}), "local") == "local"
    assert choose_backend(Settings.from_mapping({})) == "offline"  # auto's offline default stays extractive
    llm = get_llm(Settings.from_mapping({"LLM_BACKEND": "local", "RAG_DEVICE": "cpu"}))
    assert isinstance(llm, LocalLLM) and llm.device == "cpu" and llm.backend == "local"


def test_local_backend_rejects_unknown_parameters():
    with pytest.raises(ValueError, match="does not take frequency_penalty"):
        LocalLLM(params={"frequency_penalty": 1.0})
    with pytest.raises(ValueError, match="runs only SmolLM2-135M-Instruct"):
        get_llm(Settings.from_mapping({}), "local", "llama3.2")


# --- The server ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_server_lists_the_bundled_model(llm_server):
    assert llm_server["LLM_MODEL"] == LOCAL_MODEL_NAME
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", llm_server["LLM_BASE_URL"])
    with urllib.request.urlopen(f"{llm_server['LLM_BASE_URL']}/models", timeout=10) as response:
        assert [item["id"] for item in json.load(response)["data"]] == [LOCAL_MODEL_NAME]


@pytest.mark.slow
def test_plain_and_streamed_chat_completions(llm_server, hub_online):
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=llm_server["LLM_BASE_URL"], api_key="no-key", timeout=120)
    message = [{"role": "user", "content": "Hola, qué tal?"}]  # the original tutorial's first message
    plain = client.chat.completions.create(
        model=LOCAL_MODEL_NAME, messages=message, temperature=0.0, max_tokens=16, stream=False
    )
    text = plain.choices[0].message.content
    assert text.strip() and plain.choices[0].finish_reason in ("stop", "length")
    pieces = [
        event.choices[0].delta.content
        for event in client.chat.completions.create(
            model=LOCAL_MODEL_NAME, messages=message, temperature=0.0, max_tokens=16, stream=True
        )
        if event.choices and event.choices[0].delta.content
    ]
    assert len(pieces) > 1, "the server sent the answer in one piece, not streamed"
    assert "".join(pieces) == text  # greedy decoding: the same answer both ways


@pytest.mark.slow
def test_ask_openai_backend_against_the_server(llm_server, hub_online, db, capsys, monkeypatch):
    env = {"LLM_BASE_URL": llm_server["LLM_BASE_URL"], "LLM_MODEL": llm_server["LLM_MODEL"]}
    code, out, err = ask(
        capsys, monkeypatch, env, db, QUESTION, "--backend", "openai", "--json", "-k", "2",
        "--temperature", "0", "--max-tokens", "48",
    )  # fmt: skip
    assert code == 0, err
    data = json.loads(out)
    assert data["backend"] == "openai" and data["model"] == LOCAL_MODEL_NAME and not data["extractive"]
    assert data["text"].strip() and data["usage"]["completion_tokens"] > 0
    # The prompt's sources are the retrieved chunks, and every [n] in the text resolves to one of them.
    # (SmolLM2-135M rarely writes [n] markers at all; larger models do, through the same code.)
    assert [source["chunk_id"] for source in data["context"]][:1] == ["policies/travel.md_0"]
    numbers = parse_citations(data["text"], len(data["context"]))
    assert [source["number"] for source in data["sources"]] == sorted(numbers)
    for source in data["sources"]:
        assert source["chunk_id"] == data["context"][source["number"] - 1]["chunk_id"]
    assert "165" in data["text"], data["text"]  # greedy: it copies the figure from the source


@pytest.mark.slow
def test_second_start_reuses_the_model_folder(model_dir):
    before = _stat(model_dir)
    messages: list[str] = []
    with start_server(progress=messages.append, timeout=SERVER_TIMEOUT) as server:
        assert server.running() and server.model == LOCAL_MODEL_NAME
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=10) as response:
            assert json.load(response)["data"][0]["id"] == LOCAL_MODEL_NAME
    assert not server.running()
    assert messages == [] and _stat(model_dir) == before


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


# --- The in-process backend -----------------------------------------------------------------------------


@pytest.mark.slow
def test_local_backend_streams_and_resolves_citations(db, model, capsys, monkeypatch):
    llm = get_llm(Settings.from_mapping({}), "local")
    assert isinstance(llm, LocalLLM)
    chunks = store.retrieve(
        store.open_collection(store.get_client(Settings.from_mapping({"CHROMA_PATH": str(db)})), COLLECTION),
        QUESTION,
        k=2,
    )
    messages = build_messages(QUESTION, chunks)
    whole = llm.generate(messages, **GREEDY)
    stream = llm.stream(messages, **GREEDY)
    pieces = list(stream)
    assert len(pieces) > 1, "the answer came in one piece, not streamed"
    streamed = cite(stream.answer, chunks)
    assert streamed.text == whole.text == "".join(pieces).strip()
    assert streamed.backend == "local" and streamed.model == LOCAL_MODEL_NAME and not streamed.extractive
    assert streamed.usage.completion_tokens <= GREEDY["max_tokens"]
    assert [s.number for s in streamed.sources] == sorted(parse_citations(streamed.text, len(chunks)))

    code, out, err = ask(
        capsys, monkeypatch, {}, db, QUESTION, "--backend", "local", "--stream", "-k", "2",
        "--temperature", "0", "--max-tokens", str(GREEDY["max_tokens"]),
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith(streamed.text)  # the CLI streams the same greedy answer
    assert re.search(rf"\(local: {LOCAL_MODEL_NAME}, \d+ tokens\)\s*$", out)


@pytest.mark.slow
def test_abandoned_stream_stops_the_model():
    llm = LocalLLM()
    stream = llm.stream([{"role": "user", "content": "Count from one to one hundred."}], max_tokens=200)
    first = next(stream)
    assert first
    started = time.monotonic()
    del stream  # a reader that drops the stream closes it: generation is cancelled, not run to the end
    gc.collect()
    assert time.monotonic() - started < 30
