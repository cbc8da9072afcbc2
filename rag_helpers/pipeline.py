"""The question-answering pipeline: one core that every caller goes through.

    question -> its vector (embedded once) -> retrieve k chunks -> gate -> prompt -> check -> answer

    pipeline = Pipeline(collection, answerer)                 # dense retrieval, k=5
    pipeline.answer("What is the 2024 hotel cap in London?")  # an answers.Answer
    for piece in (stream := pipeline.stream("...")): ...      # the same, piece by piece
    answer_question(question, collection, model, answerer)    # the one-call form of the same core

The question is embedded once, by the pipeline's `encoder` (an `embeddings.QueryEncoder`); the
retriever built with the same encoder, the gate and the answerer all reuse that vector.

The "don't know" gate compares the question with its closest chunk in the collection (plain dense
search, whatever the retriever): when their cosine similarity is below `min_score`, the answer is
`answers.DONT_KNOW`, refused for the reason "gate", and the answerer is not asked. With nothing
retrieved at all it refuses too ("no_sources"). With a language model, a sufficiency check
(`sufficiency.SufficiencyCheck`) asks it whether the sources state the answer at all, and refuses
("check") when it judges they do not; the answerer may still refuse by itself ("answerer").
Every `Answer` says whether and why in `refused`, and how long it took in `seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .answers import (
    DONT_KNOW,
    REFUSED_CHECK,
    REFUSED_GATE,
    REFUSED_NO_SOURCES,
    Answer,
    AnswerStream,
    Answerer,
    context_sources,
)
from .base import Prompt, Retriever, RetrievedChunk
from .config import DEFAULT_MIN_SCORE, Settings
from .dense import DenseRetriever
from .embeddings import QueryEncoder
from .prompts import DEFAULT_BUDGET, build_prompt
from .store import query_encoder, retrieve


def retrieval_confidence(question: str | np.ndarray, collection: Any) -> float:
    """Cosine similarity of the question (or its vector) to its closest chunk (-1.0 when empty).

    Measured with dense search whatever retriever answers, so one threshold fits every retriever
    and every collection built with the same embedding model (l2 and cosine collections alike).
    """
    hits = retrieve(collection, question, 1)
    return hits[0].score if hits else -1.0


def gate_note(best: float, threshold: float) -> str:
    """Why the gate refused, in words: the best similarity against the threshold."""
    return (
        f"Not answered: the closest chunk is only {best:.2f} similar to the question, below the minimum "
        f"{threshold:.2f} (min_score / RAG_MIN_SCORE; lower it to answer anyway)."
    )


def refusal(prompt: Prompt, answerer: Answerer, reason: str, note: str) -> Answer:
    """The answer the pipeline gives instead of asking the answerer: `DONT_KNOW`, why, and the closest chunks."""
    return Answer(
        text=DONT_KNOW,
        backend=answerer.backend,
        model=answerer.model,
        notes=(note, *prompt.notes),
        context=context_sources(prompt.chunks),
        refused=reason,
    )


class _Timed(AnswerStream):
    """An answerer's stream with the pipeline's timing and notes added to its final `Answer`."""

    def __init__(self, inner: AnswerStream, started: float, notes: tuple[str, ...]) -> None:
        self.first_piece: float | None = None

        def pieces() -> Iterator[str]:
            for piece in inner:
                if self.first_piece is None:
                    self.first_piece = time.perf_counter() - started
                yield piece

        def finish(_text: str) -> Answer:
            answer = inner.answer
            return replace(
                answer,
                notes=answer.notes + notes,
                seconds=time.perf_counter() - started,
                first_piece_seconds=self.first_piece,
            )

        super().__init__(pieces(), finish)


@dataclass
class Pipeline:
    """Everything that answers questions about one collection (see the module docstring).

    `retriever` defaults to dense search with `encoder`; `encoder` defaults to the collection's own
    query encoder (its ONNX export when there is one). Build a retriever with the same encoder
    (`registry.make_retriever(name, collection, pipeline.encoder)`) so the question is embedded once.
    `min_score=None` switches the gate off; without a collection the gate cannot measure and is off.
    """

    collection: Any
    answerer: Answerer
    retriever: Retriever | None = None
    encoder: QueryEncoder | None = None
    k: int = 5
    min_score: float | None = DEFAULT_MIN_SCORE
    where: Mapping[str, Any] | None = None
    style: str = "grounded"
    budget: int | None = DEFAULT_BUDGET
    system: str | None = None
    check: Callable[[Prompt], str | None] | None = None  # e.g. a SufficiencyCheck; None: no check

    def __post_init__(self) -> None:
        if self.collection is None and self.retriever is None:
            raise ValueError("Pass a collection (see ingest.ensure_index) or a retriever to answer from.")
        # A retriever over a collection lets the gate measure against it.
        self.collection = self.collection if self.collection is not None else getattr(self.retriever, "collection", None)
        if self.encoder is None:
            shared = getattr(self.retriever, "encode", None)
            self.encoder = shared if isinstance(shared, QueryEncoder) else None
        if self.encoder is None and self.collection is not None:
            self.encoder = query_encoder(self.collection)
        if self.retriever is None:
            self.retriever = DenseRetriever(self.collection, self.encoder, self.where)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        collection: Any,
        model: Any = None,
        *,
        retriever: str | None = None,
        backend: str | None = None,
        llm_model: str | None = None,
        answerer: Answerer | None = None,
        **options: Any,
    ) -> Pipeline:
        """The pipeline the settings describe: their backend (or `backend`), the named retriever
        (default: the course's default), their "don't know" threshold. `model` is the embedding
        model the collection was built with (loaded when the extractive answerer needs it)."""
        from .backends import get_answerer
        from .registry import DEFAULT_RETRIEVER, make_retriever

        encoder = query_encoder(collection, model)
        if answerer is None:
            answerer = get_answerer(settings, backend, llm_model, embedding_model=model)
        search = make_retriever(retriever or DEFAULT_RETRIEVER, collection, encoder)
        options.setdefault("min_score", settings.min_score)
        if "check" not in options and answerer.backend != "offline" and settings.check_threshold is not None:
            from .sufficiency import SufficiencyCheck

            options["check"] = SufficiencyCheck(answerer, settings.check_threshold)
        return cls(collection, answerer, search, encoder, **options)

    # -- the steps --

    def embed(self, question: str) -> np.ndarray | None:
        """The question's vector (computed once; the encoder remembers it), or None without an encoder."""
        return None if self.encoder is None else self.encoder(question)

    def prepare(self, question: str) -> Prompt:
        """Retrieve `k` chunks for `question` and build the prompt the answerer gets (vector included)."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("The question is empty; pass the text of a question.")
        vector = self.embed(question)
        assert self.retriever is not None
        chunks: list[RetrievedChunk] = list(self.retriever(question, self.k))
        prompt = build_prompt(question, chunks, self.system, style=self.style, budget=self.budget)
        return replace(prompt, question_vector=vector)

    def gate(self, prompt: Prompt) -> str | None:
        """Why the question should not be answered (a note), or None when retrieval is close enough."""
        if self.min_score is None or self.collection is None:
            return None
        query = prompt.question_vector if prompt.question_vector is not None else prompt.question
        best = retrieval_confidence(query, self.collection)
        return None if best >= self.min_score else gate_note(best, self.min_score)

    # -- answering --

    def stream(self, question: str, **params: Any) -> AnswerStream:
        """The answer to `question`, piece by piece; `.answer` holds the complete `Answer`.

        `params` are generation parameters (temperature, max_tokens, top_p, ...).
        """
        started = time.perf_counter()
        prompt = self.prepare(question)
        note = self.gate(prompt)
        if note is not None:
            refused = refusal(prompt, self.answerer, REFUSED_GATE, note)
        elif not prompt.chunks:
            refused = refusal(prompt, self.answerer, REFUSED_NO_SOURCES, "Nothing was retrieved for this question.")
        elif self.check is not None and (note := self.check(prompt)) is not None:
            refused = refusal(prompt, self.answerer, REFUSED_CHECK, note)
        else:
            return _Timed(self.answerer.stream(prompt, **params), started, prompt.notes)
        return _Timed(AnswerStream.of(refused), started, ())

    def answer(self, question: str, **params: Any) -> Answer:
        """The complete answer to `question` (the stream, read to the end)."""
        return self.stream(question, **params).answer


def stream_answer(
    question: str,
    collection: Any = None,
    model: Any = None,
    answerer: Answerer | None = None,
    k: int = 5,
    *,
    retriever: Retriever | None = None,
    where: Mapping[str, Any] | None = None,
    style: str = "grounded",
    budget: int | None = DEFAULT_BUDGET,
    system: str | None = None,
    min_score: float | None = DEFAULT_MIN_SCORE,
    **params: Any,
) -> AnswerStream:
    """Answer `question` from the `k` best chunks of `collection` (or of `retriever`) with `answerer`,
    piece by piece; `.answer` is the full `Answer` at the end.

    `model` is the embedding model (or a `QueryEncoder`) that embeds the question; None uses the
    collection's own. `params` are generation parameters (temperature, max_tokens, top_p, ...).
    `min_score` is the "don't know" gate's threshold (None: off). See `Pipeline`.
    """
    if answerer is None:
        raise ValueError(
            "Pass the answerer: a language model or the extractive answerer, e.g. "
            "backends.get_answerer(settings, embedding_model=model)."
        )
    encoder = model if isinstance(model, QueryEncoder) else None
    if encoder is None and collection is not None and model is not None:
        encoder = query_encoder(collection, model)
    pipeline = Pipeline(
        collection, answerer, retriever, encoder, k, min_score, where, style, budget, system
    )
    return pipeline.stream(question, **params)


def answer_question(
    question: str,
    collection: Any = None,
    model: Any = None,
    answerer: Answerer | None = None,
    k: int = 5,
    **options: Any,
) -> Answer:
    """The complete answer of `stream_answer` (same arguments): retrieve, gate, prompt, answer."""
    return stream_answer(question, collection, model, answerer, k, **options).answer


__all__ = ["Pipeline", "answer_question", "gate_note", "refusal", "retrieval_confidence", "stream_answer"]
