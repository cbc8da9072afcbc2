"""Choosing who answers: the one place that maps a backend name to an `answers.Answerer`.

    answerer = get_answerer(settings)                      # what LLM_BACKEND (auto) picks
    answerer = get_answerer(settings, backend="offline", embedding_model=model)

Backends (`config.LLM_BACKENDS`): `offline` (the extractive answerer, no language model), `local`
(the course's own model in this process), `hf` (Hugging Face Inference Providers), `openai` (any
OpenAI-compatible server at LLM_BASE_URL). `auto` is openai when LLM_BASE_URL is set (naming a
server is a deliberate choice, while HF_TOKEN is often set for other reasons), else hf with a token,
else offline.
"""

from __future__ import annotations

from typing import Any

from .answers import Answerer
from .config import BACKEND_CHOICES, Settings
from .generation import HF_TOKEN_HELP, HuggingFaceLLM, LLMAuthError, OpenAICompatibleLLM


def choose_backend(settings: Settings, backend: str | None = None) -> str:
    """The backend to use: `backend`, else settings.llm_backend, with `auto` resolved (see above)."""
    choice = (backend or settings.llm_backend or "auto").lower()
    if choice not in BACKEND_CHOICES:
        raise ValueError(f"Unknown LLM backend {choice!r}; use {', '.join(BACKEND_CHOICES)}.")
    if choice != "auto":
        return choice
    if settings.llm_base_url:
        return "openai"
    if settings.hf_token:
        return "hf"
    return "offline"


def get_llm(settings: Settings, backend: str | None = None, model: str | None = None, **options: Any) -> Answerer:
    """The language-model backend the settings (or `backend`) ask for: hf, openai or local.

    `model` overrides settings.llm_model; `options` go to the backend (timeout, retries, backoff,
    params). The hf backend always calls Hugging Face Inference Providers (LLM_BASE_URL is for the
    openai backend, so an HF token is never sent to it); for a dedicated Inference Endpoint, build
    `HuggingFaceLLM(model, token=..., base_url=...)` yourself.
    """
    choice = choose_backend(settings, backend)
    if choice == "hf":
        if not settings.hf_token:
            raise LLMAuthError(f"The hf backend needs a Hugging Face token. {HF_TOKEN_HELP}")
        return HuggingFaceLLM(model or settings.llm_model, token=settings.hf_token, **options)
    if choice == "openai":
        return OpenAICompatibleLLM(
            model or settings.llm_model, base_url=settings.llm_base_url or "", api_key=settings.llm_api_key,
            **options,
        )
    if choice == "local":
        from .local_llm import LocalLLM

        return LocalLLM(model or settings.local_model, device=settings.device, **options)
    raise ValueError(
        "No language model is configured (the offline backend): set HF_TOKEN or LLM_BASE_URL, use the "
        "local backend, or get_answerer(...) to answer by extracting sentences from the sources."
    )


def get_answerer(
    settings: Settings,
    backend: str | None = None,
    model: str | None = None,
    *,
    embedding_model: Any = None,
    **options: Any,
) -> Answerer:
    """The language model the settings (or `backend`) ask for, or the extractive answerer for "offline".

    The extractive answerer scores sentences with `embedding_model` (the one the index was built
    with); when it is None, settings.embedding_model is loaded. `options` go to the backend.
    """
    if choose_backend(settings, backend) != "offline":
        return get_llm(settings, backend, model, **options)
    from .extractive import ExtractiveAnswerer

    if embedding_model is None:
        from .embeddings import load_embedding_model

        embedding_model = load_embedding_model(settings.embedding_model, settings.device, settings.precision)
    return ExtractiveAnswerer(embedding_model, **options)


__all__ = ["choose_backend", "get_answerer", "get_llm"]
