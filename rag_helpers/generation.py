"""Language models over HTTP, behind the one `answers.Answerer` interface, with clear errors and retries.

    llm = OpenAICompatibleLLM("qwen2.5-coder-1.5b-instruct", base_url="http://127.0.0.1:8765/v1")
    stream = llm.stream(prompt)          # pieces as the model writes them; stream.answer at the end
    llm.answer(prompt)                   # the whole `Answer`, its [n] citations resolved

`prompt` is a `base.Prompt` (see `prompts.build_prompt`); only its messages are sent, its chunks
resolve the answer's [n] markers. A bare chat request is `llm.answer(Prompt(messages))`.
`params` are generation parameters (temperature, max_tokens, top_p, seed, stop, ...); the defaults
are the original tutorial's. Every request is streamed; the non-streaming `answer` reads the stream.

Backends:
- `HuggingFaceLLM`: Hugging Face Inference Providers through `huggingface_hub.InferenceClient`.
- `OpenAICompatibleLLM`: any OpenAI-compatible server (Ollama, vLLM, llama.cpp server, TGI) by URL.
The course's own model runs in this process in `local_llm`; answering without a language model is
`extractive.ExtractiveAnswerer`'s job; `backends.get_answerer` picks one from the settings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from .answers import REFUSED_ANSWERER, Answer, AnswerStream, Answerer, Usage, make_answer, says_dont_know
from .attribution import check_citations, citation_note
from .base import Prompt
from .config import DEFAULT_LLM_MODEL, Secret, redact, safe_url

# The original tutorial's generation parameters.
DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0.5, "max_tokens": 1024, "top_p": 0.7}
DEFAULT_TIMEOUT = 120.0  # seconds to wait for a reply (a 72B model writing 1024 tokens can take a while)
DEFAULT_RETRIES = 3  # extra attempts after a 429 or 5xx
DEFAULT_BACKOFF = 1.0  # first wait in seconds; doubles on each retry
MAX_BACKOFF = 30.0
HF_TOKEN_HELP = (
    "Create a token with the 'Make calls to Inference Providers' permission at "
    "https://huggingface.co/settings/tokens and put it in .env as HF_TOKEN=..."
)
# Sent instead of a real key to servers that need none. Without it huggingface_hub would fall back
# to the user's own Hugging Face token and send it to whatever server LLM_BASE_URL points at.
NO_KEY = "no-key"


def generated_answer(text: str, prompt: Prompt, backend: str, model: str, **extra: Any) -> Answer:
    """The `Answer` for text a language model wrote: "I don't know" marked refused, citations checked
    against the sources (`attribution`; the notes list what was mended) and resolved."""
    text = text.strip()
    refused = REFUSED_ANSWERER if says_dont_know(text) else None
    notes: tuple[str, ...] = ()
    if refused is None:
        text, changes = check_citations(text, prompt.chunks)
        notes = (citation_note(changes),) if changes else ()
    return make_answer(text, prompt.chunks, backend, model, refused=refused, notes=notes, **extra)


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


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- Backends on huggingface_hub.InferenceClient --------------------------------------------------


class ChatClientLLM(Answerer):
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
        # Every request streams (`answer` reads the stream), so a `stream` parameter is ignored.
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
            detail = _short(redact(str(getattr(error, "server_message", None) or ""), [self._api_key]))
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

    def _call(self, client: Any, messages: list[dict], params: dict[str, Any]) -> Any:
        """One streamed chat-completion request, retried on 429/5xx with exponential backoff."""
        request = self._request_params(params)
        attempt = 0
        while True:
            try:
                try:
                    return client.chat_completion(messages, model=self.model, stream=True, **request)
                except Exception as error:  # noqa: BLE001 - translated if known, re-raised as is if not
                    self._raise_translated(error)
            except LLMError as error:
                if not self._retryable(error) or attempt >= self.retries:
                    raise
                time.sleep(self._delay(attempt, error))
                attempt += 1

    # -- the interface --

    def stream(self, prompt: Prompt, **params: Any) -> AnswerStream:
        """Send the prompt's messages and yield the answer as it arrives; `.answer` has it all at the end."""
        state: dict[str, Any] = {}

        def pieces() -> Iterator[str]:
            with self._client() as client:
                events = self._call(client, prompt.messages, params)
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
            return generated_answer(
                text, prompt, self.backend, self.model,
                usage=state.get("usage"), finish_reason=state.get("finish_reason"),
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


__all__ = [
    "DEFAULT_PARAMS",
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
    "generated_answer",
]
