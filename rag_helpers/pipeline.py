"""Retrieval and generation together: question -> retrieved chunks -> prompt -> `Answer`.

    collection, model = store.ensure_index(settings)
    llm = generation.get_llm(settings, embedding_model=model)
    answer = answer_question("What is the 2024 hotel cap in London?", collection, model, llm)
    print(answer.format())

Every backend receives the chunks the prompt numbers as sources (`chunks=`) and the question
(`question=`), so the language-model backends can resolve [n] citations and the offline backend
can answer from the chunks themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from .generation import LLM, Answer, AnswerStream, get_llm
from .prompts import DEFAULT_BUDGET, Prompt, build_prompt

Retriever = Callable[[str, int], Sequence[Any]]


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
    **params: Any,
) -> Answer:
    """Answer `question` from the `k` best chunks of `collection` (or of `retriever`) with `llm`.

    `model` is the embedding model; it is only needed when `llm` is None, which picks a backend
    from the settings (`generation.get_llm`). `params` are generation parameters (temperature,
    max_tokens, top_p, ...). The answer's notes say when sources were left out for the budget.
    """
    prompt = prepare(
        question, collection, k, retriever=retriever, where=where, style=style, budget=budget, system=system
    )
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
    **params: Any,
) -> AnswerStream:
    """Like `answer_question`, but yields text as it arrives; `.answer` is the full `Answer` at the end."""
    prompt = prepare(
        question, collection, k, retriever=retriever, where=where, style=style, budget=budget, system=system
    )
    stream = _default_llm(llm, model).stream(
        prompt.messages, chunks=prompt.chunks, question=question, **params
    )
    if not prompt.notes:
        return stream
    return AnswerStream(
        stream, lambda _text: replace(stream.answer, notes=stream.answer.notes + prompt.notes)
    )
