"""Retrieval and generation together: question -> retrieved chunks -> prompt -> `Answer`.

    collection, model = store.ensure_index(settings)
    llm = generation.get_llm(settings, embedding_model=model)
    answer = answer_question("What is the 2024 hotel cap in London?", collection, model, llm)
    print(answer.format())

Every backend receives the chunks the prompt numbers as sources (`chunks=`) and the question
(`question=`), so the language-model backends can resolve [n] citations and the offline backend
can answer from the chunks themselves.

Before anything is generated, a "don't know" gate compares the question with its closest chunk in
the collection (plain dense search, whatever the retriever): when their cosine similarity is below
`min_score` (default: the setting RAG_MIN_SCORE, calibrated on the sample questions), the answer is
`REFUSAL_TEXT` and no language model is called. See `retrieval_confidence`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

from .config import Settings
from .generation import LLM, Answer, AnswerStream, context_sources, get_llm
from .prompts import DEFAULT_BUDGET, Prompt, build_prompt

Retriever = Callable[[str, int], Sequence[Any]]
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


def _default_llm(llm: LLM | None, model: Any) -> LLM:
    return llm if llm is not None else get_llm(embedding_model=model)


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
    llm: LLM | None = None,
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

    `model` is the embedding model; it is only needed when `llm` is None, which picks a backend
    from the settings (`generation.get_llm`). `params` are generation parameters (temperature,
    max_tokens, top_p, ...). The answer's notes say when sources were left out for the budget.
    When the closest chunk is less similar than `min_score` (see `gate`), the answer is the refusal.
    """
    prompt = prepare(
        question, collection, k, retriever=retriever, where=where, style=style, budget=budget, system=system
    )
    note = gate(question, collection, retriever, min_score)
    if note is not None:
        return refusal(note, prompt)
    answer = _default_llm(llm, model).generate(
        prompt.messages, chunks=prompt.chunks, question=question, **params
    )
    return replace(answer, notes=answer.notes + prompt.notes) if prompt.notes else answer


def stream_answer(
    question: str,
    collection: Any = None,
    model: Any = None,
    llm: LLM | None = None,
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
    stream = _default_llm(llm, model).stream(
        prompt.messages, chunks=prompt.chunks, question=question, **params
    )
    if not prompt.notes:
        return stream
    return AnswerStream(
        stream, lambda _text: replace(stream.answer, notes=stream.answer.notes + prompt.notes)
    )
