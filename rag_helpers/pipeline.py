"""Retrieval and generation together: question -> retrieved chunks -> gate -> prompt -> `Answer`.

    collection, model = store.ensure_index(settings)
    answerer = get_answerer(settings, embedding_model=model)
    answer = answer_question("What is the 2024 hotel cap in London?", collection, model, answerer)
    print(answer.format())

The answerer is either a language model (`generation.LLM`: it gets the prompt's messages only, and
its [n] citations are resolved here against the chunks the prompt numbered) or, with no language
model configured (the "offline" backend), the `extractive.ExtractiveAnswerer`, which answers from
the chunks themselves.

Before anything is generated, a "don't know" gate compares the question with its closest chunk in
the collection (plain dense search, whatever the retriever): when their cosine similarity is below
`min_score` (default: the setting RAG_MIN_SCORE, calibrated on the sample questions), the answer is
`REFUSAL_TEXT` and no language model is called. See `retrieval_confidence`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from .base import Retriever
from .config import Settings
from .extractive import ExtractiveAnswerer
from .generation import (
    HF_TOKEN_HELP,
    LLM,
    Answer,
    AnswerStream,
    HuggingFaceLLM,
    LLMAuthError,
    OpenAICompatibleLLM,
    choose_backend,
    cite,
    context_sources,
)
from .prompts import DEFAULT_BUDGET, Prompt, build_prompt

Answerer = LLM | ExtractiveAnswerer
MinScore = float | Literal["settings"] | None

REFUSAL_TEXT = "The documents do not seem to contain the answer to this question."
GATE_BACKEND = "gate"  # the `backend` of an answer the gate refused, no language model involved


def _retrieve(question: str, collection: Any, k: int, retriever: Retriever | None, where: Any) -> list[Any]:
    if retriever is not None:
        return list(retriever(question, k))
    if collection is None:
        raise ValueError("Pass a collection (see store.ensure_index) or a retriever to answer from.")
    from .store import retrieve

    return retrieve(collection, question, k, where)


def prepare(
    question: str,
    collection: Any = None,
    k: int = 5,
    *,
    retriever: Retriever | None = None,
    where: Any = None,
    style: str = "grounded",
    budget: int | None = DEFAULT_BUDGET,
    system: str | None = None,
) -> Prompt:
    """Retrieve `k` chunks for `question` and build the prompt (what `answer_question` sends)."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("The question is empty; pass the text of a question.")
    chunks = _retrieve(question, collection, k, retriever, where)
    return build_prompt(question, chunks, system, style=style, budget=budget)


def get_llm(
    settings: Settings | None = None, backend: str | None = None, model: str | None = None, **options: Any
) -> LLM:
    """The language-model backend the settings (or `backend`) ask for: hf, openai or local.

    `model` overrides settings.llm_model; `options` go to the backend (timeout, retries, backoff,
    params). The hf backend always calls Hugging Face Inference Providers (LLM_BASE_URL is for the
    openai backend, so an HF token is never sent to it); for a dedicated Inference Endpoint, build
    `HuggingFaceLLM(model, token=..., base_url=...)` yourself. With no language model configured
    ("offline"), use `get_answerer`, which gives the extractive answerer.
    """
    settings = settings or Settings.load()
    choice = choose_backend(settings, backend)
    if choice == "hf":
        if not settings.hf_token:
            raise LLMAuthError(f"The hf backend needs a Hugging Face token. {HF_TOKEN_HELP}")
        return HuggingFaceLLM(model or settings.llm_model, token=settings.hf_token, **options)
    if choice == "openai":
        return OpenAICompatibleLLM(
            model or settings.llm_model,
            base_url=settings.llm_base_url or "",
            api_key=settings.llm_api_key,
            **options,
        )
    if choice == "local":
        from .local_llm import LOCAL_MODEL_NAME, LocalLLM

        if model and model != LOCAL_MODEL_NAME:
            raise ValueError(
                f"The local backend runs only {LOCAL_MODEL_NAME}, not {model!r}; serve another model "
                "with an OpenAI-compatible server (LLM_BASE_URL) and use the openai backend."
            )
        return LocalLLM(device=settings.device, **options)
    raise ValueError(
        "No language model is configured (the offline backend): set HF_TOKEN or LLM_BASE_URL, or "
        "use get_answerer(...) to answer by extracting sentences from the sources."
    )


def get_answerer(
    settings: Settings | None = None,
    backend: str | None = None,
    model: str | None = None,
    *,
    embedding_model: Any = None,
    **options: Any,
) -> Answerer:
    """The language model the settings ask for, or the extractive answerer when that is "offline".

    The extractive answerer scores sentences with `embedding_model` (the one the index was built
    with); when it is None, settings.embedding_model is loaded. `options` go to the backend.
    """
    settings = settings or Settings.load()
    if choose_backend(settings, backend) != "offline":
        return get_llm(settings, backend, model, **options)
    if embedding_model is None:
        from .embeddings import load_embedding_model

        embedding_model = load_embedding_model(settings.embedding_model, settings.device, settings.precision)
    return ExtractiveAnswerer(embedding_model, **options)


def _default_answerer(answerer: Answerer | None, model: Any) -> Answerer:
    return answerer if answerer is not None else get_answerer(embedding_model=model)


def generate(answerer: Answerer, prompt: Prompt, question: str, **params: Any) -> Answer:
    """The answer to `prompt`: generated by a language model, or extracted from the prompt's chunks."""
    if isinstance(answerer, ExtractiveAnswerer):
        return answerer.reply(question, prompt.chunks)
    return cite(answerer.generate(prompt.messages, **params), prompt.chunks)


def stream(answerer: Answerer, prompt: Prompt, question: str, **params: Any) -> AnswerStream:
    """Like `generate`, but the text comes as it is written; `.answer` holds the `Answer` at the end."""
    if isinstance(answerer, ExtractiveAnswerer):
        return answerer.stream(question, prompt.chunks)
    pieces = answerer.stream(prompt.messages, **params)
    return AnswerStream(pieces, lambda _text: cite(pieces.answer, prompt.chunks))


def retrieval_confidence(question: str, collection: Any) -> float:
    """Cosine similarity of the question to its closest chunk in `collection` (-1.0 when it is empty).

    Measured with dense search whatever retriever answers, so one threshold fits every retriever
    and every collection built with the same embedding model (l2 and cosine collections alike).
    """
    from .store import retrieve

    hits = retrieve(collection, question, 1)
    return hits[0].score if hits else -1.0


def _gate_collection(collection: Any, retriever: Retriever | None) -> Any:
    if collection is not None:
        return collection
    return getattr(retriever, "collection", None)


def gate(question: str, collection: Any, retriever: Retriever | None, min_score: MinScore) -> str | None:
    """Why the question should not be answered (a note), or None when retrieval is strong enough.

    `min_score="settings"` reads RAG_MIN_SCORE and skips the gate when no collection is known (a
    custom retriever); a number needs the collection; None switches the gate off.
    """
    threshold = Settings.load().min_score if min_score == "settings" else min_score
    if threshold is None:
        return None
    target = _gate_collection(collection, retriever)
    if target is None:
        if min_score == "settings":
            return None
        raise ValueError(
            "min_score needs the collection to measure against: pass collection=... (or min_score=None)."
        )
    best = retrieval_confidence(question, target)
    if best >= threshold:
        return None
    return (
        f"Not answered: the closest chunk is only {best:.2f} similar to the question, below the minimum "
        f"{threshold:.2f} (min_score / RAG_MIN_SCORE; lower it to answer anyway)."
    )


def refusal(note: str, prompt: Prompt) -> Answer:
    """The answer the gate gives instead of generating: `REFUSAL_TEXT`, the note, the closest chunks."""
    return Answer(
        text=REFUSAL_TEXT,
        backend=GATE_BACKEND,
        model="don't-know gate",
        notes=(note, *prompt.notes),
        context=context_sources(prompt.chunks),
    )


def answer_question(
    question: str,
    collection: Any = None,
    model: Any = None,
    llm: Answerer | None = None,
    k: int = 5,
    *,
    retriever: Retriever | None = None,
    where: Any = None,
    style: str = "grounded",
    budget: int | None = DEFAULT_BUDGET,
    system: str | None = None,
    min_score: MinScore = "settings",
    **params: Any,
) -> Answer:
    """Answer `question` from the `k` best chunks of `collection` (or of `retriever`) with `llm`.

    `llm` is a language model or the extractive answerer; None picks one from the settings
    (`get_answerer`, which uses the embedding model `model` for the extractive one). `params` are
    generation parameters (temperature, max_tokens, top_p, ...). The answer's notes say when sources were left out for the budget.
    When the closest chunk is less similar than `min_score` (see `gate`), the answer is the refusal.
    """
    prompt = prepare(
        question, collection, k, retriever=retriever, where=where, style=style, budget=budget, system=system
    )
    note = gate(question, collection, retriever, min_score)
    if note is not None:
        return refusal(note, prompt)
    answer = generate(_default_answerer(llm, model), prompt, question, **params)
    return replace(answer, notes=answer.notes + prompt.notes) if prompt.notes else answer


def stream_answer(
    question: str,
    collection: Any = None,
    model: Any = None,
    llm: Answerer | None = None,
    k: int = 5,
    *,
    retriever: Retriever | None = None,
    where: Any = None,
    style: str = "grounded",
    budget: int | None = DEFAULT_BUDGET,
    system: str | None = None,
    min_score: MinScore = "settings",
    **params: Any,
) -> AnswerStream:
    """Like `answer_question`, but yields text as it arrives; `.answer` is the full `Answer` at the end."""
    prompt = prepare(
        question, collection, k, retriever=retriever, where=where, style=style, budget=budget, system=system
    )
    note = gate(question, collection, retriever, min_score)
    if note is not None:
        refused = refusal(note, prompt)
        return AnswerStream([refused.text], lambda _text: refused)
    pieces = stream(_default_answerer(llm, model), prompt, question, **params)
    if not prompt.notes:
        return pieces
    return AnswerStream(
        pieces, lambda _text: replace(pieces.answer, notes=pieces.answer.notes + prompt.notes)
    )
