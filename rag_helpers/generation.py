"""Generate answers from a prompt: LLM backends behind one interface, with clear errors and retries.

Every backend has the same two methods:

    llm.generate(messages, **params) -> Answer
    llm.stream(messages, **params) -> AnswerStream  (an Iterator[str])

`messages` are chat messages (see `rag_helpers.prompts.build_messages`); no retrieval data goes to
the model's interface. `cite(answer, chunks)` resolves an answer's [n] markers against the chunks
the messages numbered as sources (source [n] is `chunks[n-1]`); `pipeline` does that for you.
`params` are generation parameters (temperature, max_tokens, top_p, seed, stop, ...); the defaults
are the original tutorial's.

Backends:
- `HuggingFaceLLM`: Hugging Face Inference Providers through `huggingface_hub.InferenceClient`.
- `OpenAICompatibleLLM`: any OpenAI-compatible server (Ollama, vLLM, llama.cpp server, TGI) by URL.
- `LocalLLM` (in `local_llm`): the bundled SmolLM2-135M-Instruct in this process, no key, no network.
Answering without a language model is `extractive.ExtractiveAnswerer`'s job; `pipeline.get_llm`
and `pipeline.get_answerer` pick a backend from the settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from .base import Chunk, RetrievedChunk
from .config import DEFAULT_LLM_MODEL, Secret, Settings, safe_url
from .prompts import parse_citations

# The original tutorial's generation parameters.
DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0.5, "max_tokens": 1024, "top_p": 0.7}
DEFAULT_TIMEOUT = 120.0  # seconds to wait for a reply (a 72B model writing 1024 tokens can take a while)
DEFAULT_RETRIES = 3  # extra attempts after a 429 or 5xx
DEFAULT_BACKOFF = 1.0  # first wait in seconds; doubles on each retry
MAX_BACKOFF = 30.0
BACKENDS = ("hf", "openai", "offline", "local")
HF_TOKEN_HELP = (
    "Create a token with the 'Make calls to Inference Providers' permission at "
    "https://huggingface.co/settings/tokens and put it in .env as HF_TOKEN=..."
)
# Sent instead of a real key to servers that need none. Without it huggingface_hub would fall back
# to the user's own Hugging Face token and send it to whatever server LLM_BASE_URL points at.
NO_KEY = "no-key"


# --- Results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A chunk cited as [number] in an answer, with where it comes from."""

    number: int
    chunk_id: str
    document_id: str
    start: int  # character offsets of the chunk in its document
    end: int
    text: str
    score: float | None = None
    # Exact spans (document offsets) the answer quotes from this chunk; filled by the extractive answerer.
    highlights: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Usage:
    """Token counts reported by the provider."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True)
class Answer:
    """An answer with the sources it cites, and how it was produced."""

    text: str
    sources: tuple[Source, ...] = ()
    backend: str = ""
    model: str = ""
    usage: Usage | None = None
    extractive: bool = False  # True when the text was extracted from the sources, not generated
    finish_reason: str | None = None
    notes: tuple[str, ...] = ()  # e.g. that sources were left out to fit the prompt budget
    context: tuple[Source, ...] = field(default=(), repr=False)  # every chunk the backend was given

    @property
    def cited_ids(self) -> list[str]:
        """Chunk ids of the cited sources, in source-number order."""
        return [source.chunk_id for source in self.sources]

    def format(self, show_sources: bool = True, show_text: bool = True) -> str:
        """The answer text followed by its numbered sources, for printing.

        `show_text=False` gives only what follows the text (after streaming the text itself).
        """
        lines = [self.text.rstrip()] if show_text else []
        if self.notes:
            lines += ["", *self.notes]
        if show_sources:
            lines += ["", "Sources:" if self.sources else "Sources: none cited."]
            lines += [f"  {format_source_line(source)}" for source in self.sources]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for `ask --json`)."""
        data = asdict(self)
        for key in ("sources", "context"):
            for source in data[key]:
                source["highlights"] = [list(span) for span in source["highlights"]]
        return data


def format_source_line(source: Source) -> str:
    """`[n] chunk-id (document, characters a-b)`: one line per source."""
    return (
        f"[{source.number}] {source.chunk_id} ({source.document_id}, characters {source.start}-{source.end})"
    )


def source_from_chunk(
    number: int, chunk: RetrievedChunk | Chunk, highlights: Sequence[tuple[int, int]] = ()
) -> Source:
    """The `Source` for chunk `number` (1-based) of a prompt."""
    return Source(
        number=number,
        chunk_id=chunk.id,
        document_id=chunk.document_id or "unknown",
        start=chunk.start,
        end=chunk.end,
        text=chunk.text,
        score=float(chunk.score) if isinstance(chunk, RetrievedChunk) else None,
        highlights=tuple(highlights),
    )


def resolve_sources(
    text: str,
    chunks: Sequence[RetrievedChunk] | None,
    highlights: dict[int, Sequence[tuple[int, int]]] | None = None,
) -> tuple[Source, ...]:
    """The sources an answer cites: its [n] markers mapped to `chunks[n-1]`, in number order."""
    if not chunks:
        return ()
    highlights = highlights or {}
    numbers = sorted(parse_citations(text, len(chunks)))
    return tuple(source_from_chunk(n, chunks[n - 1], highlights.get(n, ())) for n in numbers)


def context_sources(chunks: Sequence[RetrievedChunk] | None) -> tuple[Source, ...]:
    """Every chunk given to the backend, as numbered sources."""
    return tuple(source_from_chunk(n, chunk) for n, chunk in enumerate(chunks or (), start=1))


def make_answer(
    text: str,
    chunks: Sequence[RetrievedChunk] | None,
    backend: str,
    model: str,
    **extra: Any,
) -> Answer:
    """An `Answer` for `text` with its citations resolved against `chunks`."""
    highlights = extra.pop("highlights", None)
    return Answer(
        text=text,
        sources=resolve_sources(text, chunks, highlights),
        backend=backend,
        model=model,
        context=context_sources(chunks),
        **extra,
    )


def cite(answer: Answer, chunks: Sequence[RetrievedChunk]) -> Answer:
    """`answer` with its [n] markers resolved against `chunks` and every chunk kept as context."""
    return replace(
        answer,
        sources=resolve_sources(answer.text, chunks, {s.number: s.highlights for s in answer.sources}),
        context=context_sources(chunks),
    )


class AnswerStream(Iterator[str]):
    """Text pieces as they arrive; once exhausted, `.answer` holds the complete `Answer`."""

    def __init__(self, pieces: Iterable[str], finish: Callable[[str], Answer]) -> None:
        self._pieces = iter(pieces)
        self._finish = finish
        self._parts: list[str] = []
        self._answer: Answer | None = None

    def __iter__(self) -> AnswerStream:
        return self

    def __next__(self) -> str:
        if self._answer is not None:
            raise StopIteration
        try:
            piece = next(self._pieces)
        except StopIteration:
            self._answer = self._finish("".join(self._parts))
            raise
        self._parts.append(piece)
        return piece

    @property
    def text(self) -> str:
        """The text received so far."""
        return "".join(self._parts)

    @property
    def answer(self) -> Answer:
        """The complete answer (reads the rest of the stream first if needed)."""
        for _ in self:
            pass
        assert self._answer is not None
        return self._answer


class LLM(Protocol):
    """What every language-model backend provides (see the module docstring)."""

    backend: str
    model: str

    def generate(self, messages: list[dict], **params: Any) -> Answer: ...

    def stream(self, messages: list[dict], **params: Any) -> AnswerStream: ...


# --- Errors ------------------------------------------------------------------------------------


class LLMError(RuntimeError):
    """Generation failed; the message says why and what to do."""

    def __init__(
        self, message: str, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code  # the HTTP status, when there was one
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After header)


class LLMAuthError(LLMError):
    """The server rejected the token or key (HTTP 401/403)."""


class LLMRateLimitError(LLMError):
    """Too many requests (HTTP 429), still after retrying."""


class LLMServerError(LLMError):
    """The provider failed (HTTP 5xx, or an error in the middle of a stream), still after retrying."""


class LLMTimeoutError(LLMError, TimeoutError):
    """No reply within the timeout."""


class LLMConnectionError(LLMError, ConnectionError):
    """The server could not be reached at all."""


class LLMRequestError(LLMError):
    """The server refused the request itself (HTTP 400/404/422...): a wrong model name or parameter."""


def _redact(text: str, secret: Secret | None) -> str:
    if secret and secret.get() and secret.get() in text:
        text = text.replace(secret.get(), "********")
    return text


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Backends on huggingface_hub.InferenceClient --------------------------------------------------


class ChatClientLLM:
    """Shared base of the backends that call a chat-completions API through `InferenceClient`."""

    backend = "chat"
    key_name = "the API key"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: Secret | str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = MAX_BACKOFF,
        params: dict[str, Any] | None = None,
    ) -> None:
        if not model:
            raise ValueError("No model name given; set LLM_MODEL in .env or pass model=...")
        if retries < 0:
            raise ValueError(f"retries must be zero or more, got {retries}")
        self.model = model
        self.base_url = base_url.rstrip("/") if base_url else None
        self._api_key = api_key if isinstance(api_key, Secret) or api_key is None else Secret(api_key)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.params = {**DEFAULT_PARAMS, **(params or {})}

    def __repr__(self) -> str:
        where = f", base_url={safe_url(self.base_url)!r}" if self.base_url else ""
        key = ", api_key=set" if self._api_key else ""
        return f"{type(self).__name__}(model={self.model!r}{where}{key}, timeout={self.timeout})"

    @property
    def where(self) -> str:
        """Where requests go, for messages (credentials in the URL left out)."""
        return safe_url(self.base_url) if self.base_url else "Hugging Face Inference Providers"

    def _client(self) -> Any:
        from huggingface_hub import InferenceClient

        key = self._api_key.get() if self._api_key else None
        if self.base_url:
            return InferenceClient(base_url=self.base_url, api_key=key, timeout=self.timeout)
        return InferenceClient(model=self.model, api_key=key, timeout=self.timeout)

    def _request_params(self, params: dict[str, Any]) -> dict[str, Any]:
        # `stream` is chosen by the method called (generate or stream), not by a parameter.
        merged = {**self.params, **{k: v for k, v in params.items() if k != "stream"}}
        return {key: value for key, value in merged.items() if value is not None}

    # -- error handling --

    def _auth_help(self, status: int) -> str:
        if status == 403:
            return f"{self.key_name} is valid but not allowed to use {self.model!r}; check its permissions."
        return f"check {self.key_name}."

    def _translate(self, error: Exception) -> LLMError | None:
        """The LLMError for a client exception, or None if it is not one we know."""
        import httpx2
        from huggingface_hub.errors import (
            HfHubHTTPError,
            InferenceTimeoutError,
            OfflineModeIsEnabled,
            TextGenerationError,
        )

        if isinstance(error, LLMError):
            return error
        if isinstance(error, OfflineModeIsEnabled):
            return LLMConnectionError(
                "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set, and it blocks every request "
                f"huggingface_hub makes, including this one to {self.where}. Unset it to use the "
                f"{self.backend} backend, "
                "or answer without a language model (--backend offline)."
            )
        if isinstance(error, (InferenceTimeoutError, httpx2.TimeoutException)):
            return LLMTimeoutError(
                f"{self.where} did not reply within {self.timeout} seconds. Try again, use a smaller "
                "max_tokens, stream the answer (--stream), or wait longer (--timeout SECONDS, or "
                "timeout=... in Python)."
            )
        if isinstance(error, HfHubHTTPError) and getattr(error, "response", None) is not None:
            status = error.response.status_code
            retry_after = _retry_after(error.response)
            detail = _short(_redact(str(getattr(error, "server_message", None) or ""), self._api_key))
            detail = f" Server said: {detail}" if detail else ""
            if status in (401, 403):
                return LLMAuthError(
                    f"{self.where} refused the request (HTTP {status}): {self._auth_help(status)}{detail}",
                    status,
                )
            if status == 429:
                return LLMRateLimitError(
                    f"{self.where} is rate limiting requests (HTTP 429; tried {self.retries + 1} times). "
                    "Wait a minute and try again, use a smaller model, or answer offline (--backend offline)."
                    + detail,
                    status,
                    retry_after,
                )
            if status >= 500:
                return LLMServerError(
                    f"{self.where} had a server error (HTTP {status}; tried {self.retries + 1} times). "
                    "The model may be loading or overloaded: try again later or choose another model."
                    + detail,
                    status,
                    retry_after,
                )
            return LLMRequestError(
                f"{self.where} rejected the request (HTTP {status}). Check the model name ({self.model!r}) "
                f"and the generation parameters.{detail}",
                status,
            )
        if isinstance(error, json.JSONDecodeError):
            return self._not_openai("its reply is not JSON")
        if isinstance(error, TextGenerationError):
            return LLMServerError(f"{self.where} reported an error while generating: {_short(str(error))}")
        if isinstance(error, httpx2.TransportError):
            return LLMConnectionError(
                f"Could not reach {self.where} ({type(error).__name__}). Check that the server is running "
                "and that the address is right."
            )
        return None

    def _not_openai(self, what: str) -> LLMServerError:
        return LLMServerError(
            f"The server at {self.where} did not return an OpenAI-compatible reply ({what}). Check that "
            "LLM_BASE_URL is the address of its OpenAI-compatible API (often ending in /v1)."
        )

    def _raise_translated(self, error: Exception) -> None:
        """Raise the LLMError for `error`, or `error` itself when it is not one we know."""
        translated = self._translate(error)
        if translated is None:
            raise error
        if translated is error:
            raise error
        # The client's own exception is left out of the chain: a server may echo the request's
        # credentials in its error body, and tracebacks print the whole chain.
        raise translated from None

    def _retryable(self, error: LLMError) -> bool:
        return isinstance(error, (LLMRateLimitError, LLMServerError)) and error.status_code is not None

    def _delay(self, attempt: int, error: LLMError) -> float:
        """Exponential backoff, or longer when the server says so, capped at `max_backoff`."""
        delay = self.backoff * (2**attempt)
        if error.retry_after is not None:
            delay = max(delay, error.retry_after)
        return min(delay, self.max_backoff)

    def _call(self, client: Any, messages: list[dict], stream: bool, params: dict[str, Any]) -> Any:
        """One chat-completion request, retried on 429/5xx with exponential backoff."""
        request = self._request_params(params)
        attempt = 0
        while True:
            try:
                try:
                    return client.chat_completion(messages, model=self.model, stream=stream, **request)
                except Exception as error:  # noqa: BLE001 - translated if known, re-raised as is if not
                    self._raise_translated(error)
            except LLMError as error:
                if not self._retryable(error) or attempt >= self.retries:
                    raise
                time.sleep(self._delay(attempt, error))
                attempt += 1

    # -- the interface --

    def generate(self, messages: list[dict], **params: Any) -> Answer:
        """Send `messages` and return the whole answer (`pipeline` resolves its [n] citations)."""
        with self._client() as client:
            output = self._call(client, messages, False, params)
        if not output.choices:
            raise LLMServerError(f"{self.where} sent a reply without any answer in it (no choices).")
        choice = output.choices[0]
        usage = getattr(output, "usage", None)
        return make_answer(
            (choice.message.content or "").strip(),
            None,
            self.backend,
            self.model,
            usage=_usage(usage),
            finish_reason=getattr(choice, "finish_reason", None),
        )

    def stream(self, messages: list[dict], **params: Any) -> AnswerStream:
        """Send `messages` and yield the answer text as it arrives; `.answer` has the rest when done."""
        state: dict[str, Any] = {}

        def pieces() -> Iterator[str]:
            with self._client() as client:
                events = self._call(client, messages, True, params)
                seen = {"events": 0, "choices": 0}
                try:
                    for event in events:
                        seen["events"] += 1
                        if getattr(event, "usage", None):
                            state["usage"] = _usage(event.usage)
                        for choice in event.choices or ():
                            seen["choices"] += 1
                            if choice.finish_reason:
                                state["finish_reason"] = choice.finish_reason
                            if choice.delta and choice.delta.content:
                                yield choice.delta.content
                except Exception as error:  # noqa: BLE001 - translated if known, re-raised as is if not
                    self._raise_translated(error)
                # A stream that ends without any answer event is a wrong address or a broken server,
                # not an empty answer.
                if not seen["events"]:
                    raise self._not_openai("no answer events in the stream")
                if not seen["choices"]:
                    raise LLMServerError(f"{self.where} sent a reply without any answer in it (no choices).")

        def finish(text: str) -> Answer:
            return make_answer(
                text.strip(),
                None,
                self.backend,
                self.model,
                usage=state.get("usage"),
                finish_reason=state.get("finish_reason"),
            )

        return AnswerStream(pieces(), finish)


def _retry_after(response: Any) -> float | None:
    try:
        return float(response.headers.get("retry-after", ""))
    except (TypeError, ValueError):
        return None  # absent, or an HTTP date (rare for APIs): use the normal backoff


def _usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    values = {
        name: getattr(usage, name, None) for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    }
    if all(value is None for value in values.values()):
        return None
    return Usage(**values)


class HuggingFaceLLM(ChatClientLLM):
    """Chat completions on Hugging Face Inference Providers (or a Hugging Face Inference Endpoint URL)."""

    backend = "hf"
    key_name = "the Hugging Face token (HF_TOKEN)"

    def __init__(
        self,
        model: str = DEFAULT_LLM_MODEL,
        *,
        token: Secret | str | None = None,
        base_url: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, base_url=base_url, api_key=token, **options)

    def _auth_help(self, status: int) -> str:
        if status == 403:
            return (
                f"the Hugging Face token is valid but may not call {self.model!r}. Give it the "
                "'Make calls to Inference Providers' permission, or accept the model's terms on its page."
            )
        if not self._api_key:
            return f"no Hugging Face token was given. {HF_TOKEN_HELP}"
        return f"the Hugging Face token (HF_TOKEN) is missing, expired or invalid. {HF_TOKEN_HELP}"


class OpenAICompatibleLLM(ChatClientLLM):
    """Chat completions on any OpenAI-compatible server: Ollama, vLLM, llama.cpp server, TGI."""

    backend = "openai"
    key_name = "the API key (LLM_API_KEY)"

    def __init__(
        self, model: str, *, base_url: str, api_key: Secret | str | None = None, **options: Any
    ) -> None:
        if not base_url:
            raise ValueError(
                "An OpenAI-compatible backend needs the server's address: set LLM_BASE_URL "
                "(e.g. http://localhost:11434/v1 for Ollama)."
            )
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc.rpartition("@")[2]:
            raise ValueError(
                f"LLM_BASE_URL must be the http(s) address of an OpenAI-compatible server, such as "
                f"http://localhost:11434/v1 (Ollama); got {safe_url(base_url)!r}."
            )
        super().__init__(model, base_url=base_url, api_key=api_key or Secret(NO_KEY), **options)
        self._has_key = bool(api_key)

    def __repr__(self) -> str:
        text = super().__repr__()
        return text if self._has_key else text.replace(", api_key=set", "")

    def _auth_help(self, status: int) -> str:
        if not self._has_key:
            return "the server wants an API key: set LLM_API_KEY in .env."
        return "the API key (LLM_API_KEY) was refused; check it against the server's configuration."


# --- Choosing a backend --------------------------------------------------------------------------


def choose_backend(settings: Settings, backend: str | None = None) -> str:
    """The backend to use: `backend`, else settings.llm_backend; "auto" is openai when LLM_BASE_URL
    is set (naming a server is a deliberate choice, while HF_TOKEN is often set for other reasons),
    else hf with a token, else offline."""
    choice = (backend or settings.llm_backend or "auto").lower()
    if choice == "auto":
        if settings.llm_base_url:
            return "openai"
        if settings.hf_token:
            return "hf"
        return "offline"
    if choice not in BACKENDS:
        raise ValueError(f"Unknown LLM backend {choice!r}; use auto, {', '.join(BACKENDS)}.")
    return choice


__all__ = [
    "DEFAULT_PARAMS",
    "LLM",
    "Answer",
    "AnswerStream",
    "ChatClientLLM",
    "HuggingFaceLLM",
    "LLMAuthError",
    "LLMConnectionError",
    "LLMError",
    "LLMRateLimitError",
    "LLMRequestError",
    "LLMServerError",
    "LLMTimeoutError",
    "OpenAICompatibleLLM",
    "Source",
    "Usage",
    "choose_backend",
    "cite",
    "make_answer",
    "resolve_sources",
]
