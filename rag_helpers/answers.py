"""Answers, and the one interface every answerer implements (language models and the extractive one).

    stream = answerer.stream(prompt)     # an AnswerStream: text pieces as they are written
    for piece in stream: print(piece, end="")
    stream.answer                        # the complete `Answer`, citations resolved
    answerer.answer(prompt)              # the same `Answer` without watching it being written

`prompt` is a `base.Prompt`: chat messages, the chunks they number as sources [1], [2], ..., and
the question. An `Answer` says who answered, which sources it cites, and whether it is a refusal
(`refused`, with the reason), so nothing downstream has to recognise "I don't know" by its words.
Reading [n] citations back (`parse_citations`) and recognising a refusal written by a model
(`says_dont_know`) happen here, once.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from .base import Chunk, Prompt, RetrievedChunk

# The one sentence of "I don't know": the grounded prompt asks a model for it word for word, and
# the pipeline answers with it when it refuses before asking (the reason goes in `Answer.refused`).
DONT_KNOW = "I don't know: the sources do not contain the answer."

# Why an answer is a refusal (`Answer.refused`); None when it answers.
REFUSED_GATE = "gate"  # retrieval found nothing close enough; no answerer was asked
REFUSED_NO_SOURCES = "no_sources"  # nothing was retrieved at all
REFUSED_ANSWERER = "answerer"  # the answerer read the sources and said they do not hold the answer
REFUSED_CHECK = "check"  # a sufficiency check judged that the sources do not hold the answer
REFUSAL_REASONS: dict[str, str] = {
    REFUSED_GATE: "not answered: retrieval found nothing close enough",
    REFUSED_NO_SOURCES: "not answered: no sources were retrieved",
    REFUSED_ANSWERER: "the answerer found no answer in the sources",
    REFUSED_CHECK: "not answered: the check found no answer in the sources",
}


# --- Citations ------------------------------------------------------------------------------------

# [1], [1][3], [1, 3], [1-3], [Source 2]: a bracket holding numbers, ranges and optional "source" words.
_NUMBER = r"(?:sources?\s*)?\d+(?:\s*[-–]\s*\d+)?"
CITATION_PATTERN = re.compile(rf"\[\s*({_NUMBER}(?:\s*[,;]\s*{_NUMBER})*)\s*\]", re.IGNORECASE)


def iter_citation_numbers(text: str, n_sources: int | None = None) -> list[tuple[int, int, int]]:
    """Every cited number with the span of the bracket it came from: (number, start, end), in text order."""
    found = []
    for match in CITATION_PATTERN.finditer(text):
        for part in re.split(r"[,;]", match.group(1)):
            numbers = [int(n) for n in re.findall(r"\d+", part)]
            if len(numbers) == 2:
                first, last = numbers
                if last < first or (n_sources is not None and last > n_sources) or last - first > 50:
                    # A range that cannot be a citation (a year span like [2019-2024]): ignore it whole.
                    continue
                numbers = list(range(first, last + 1))
            for number in numbers:
                if number >= 1 and (n_sources is None or number <= n_sources):
                    found.append((number, match.start(), match.end()))
    return found


def parse_citations(text: str, n_sources: int | None = None) -> list[int]:
    """The source numbers cited in `text` as [n] markers, each once, in order of first mention.

    Numbers outside 1..`n_sources` are ignored (a model may invent [7] when given five sources).
    """
    seen: dict[int, None] = {}
    for number, _, _ in iter_citation_numbers(text, n_sources):
        seen.setdefault(number)
    return list(seen)


# --- Refusals written as text -----------------------------------------------------------------------

_DONT_KNOW_PATTERN = re.compile(
    r"\b(?:i|we)\s+(?:do\s+not|don't|dont|cannot|can't)\s+know\b"
    r"|\b(?:sources?|documents?|context|passages?|excerpts?|texts?|information)"
    r"(?:\s+(?:provided|given|above))?"
    r"\s+(?:do|does|did)\s*(?:not|n't)\s+(?:seem\s+to\s+|appear\s+to\s+)?"
    r"(?:contain|include|mention|say|state|specify|provide|cover|answer|address)\b"
    r"|\bno\s+(?:relevant\s+)?information\s+(?:about|on|regarding)\b"
    r"|\b(?:cannot|can't|can\s+not|unable\s+to)\s+(?:find|determine|answer|tell)\b"
    r"|\bnot\s+(?:mentioned|stated|specified|provided|covered|found|given)\s+in\s+the\s+"
    r"(?:sources?|documents?|context)\b"
    r"|\bnothing\s+to\s+extract\b",
    re.IGNORECASE,
)


def says_dont_know(text: str) -> bool:
    """True when the text's first sentence says the sources do not hold the answer ("I don't know").

    For text a model wrote (or an answers file): only the opening counts, so an answer that gives
    what it found and then says what is missing is an answer.
    """
    text = CITATION_PATTERN.sub(" ", text).strip()
    first = re.split(r"(?<=[.!?:])\s+", text, maxsplit=1)[0] if text else ""
    return bool(_DONT_KNOW_PATTERN.search(first))


# --- Results --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A chunk given to the answerer as source [number], with where it comes from."""

    number: int
    chunk_id: str
    document_id: str
    start: int  # character offsets of the chunk in its document
    end: int
    text: str
    score: float | None = None
    # Exact spans (document offsets) the answer quotes from this chunk; filled by the extractive answerer.
    highlights: tuple[tuple[int, int], ...] = ()
    page: int | None = None  # the page the chunk starts on, for PDF sources
    page_end: int | None = None


@dataclass(frozen=True)
class Usage:
    """Token counts reported by the provider."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True)
class Answer:
    """An answer with the sources it cites, how it was produced, and whether (and why) it refused."""

    text: str
    sources: tuple[Source, ...] = ()
    backend: str = ""
    model: str = ""
    usage: Usage | None = None
    extractive: bool = False  # True when the text was extracted from the sources, not generated
    finish_reason: str | None = None
    notes: tuple[str, ...] = ()  # e.g. that sources were left out to fit the prompt budget
    context: tuple[Source, ...] = field(default=(), repr=False)  # every chunk the answerer was given
    refused: str | None = None  # None, or why it did not answer: one of `REFUSAL_REASONS`
    seconds: float | None = None  # from the question to the last piece of the answer
    first_piece_seconds: float | None = None  # from the question to the first piece (streaming)

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

    def byline(self) -> str:
        """Who answered and how long it took: "(local: Qwen2.5-Coder-1.5B-Instruct, 412 tokens, 9.8 s)"."""
        parts = [f"{self.backend}: {self.model}"]
        if self.usage and self.usage.total_tokens:
            parts.append(f"{self.usage.total_tokens} tokens")
        if self.seconds is not None:
            parts.append(f"{self.seconds:.1f} s")
        if self.refused:
            parts.append(REFUSAL_REASONS.get(self.refused, self.refused))
        return f"({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for `ask --json`)."""
        data = asdict(self)
        for key in ("sources", "context"):
            for source in data[key]:
                source["highlights"] = [list(span) for span in source["highlights"]]
        return data


def format_source_line(source: Source) -> str:
    """`[n] chunk-id (document, page 3, characters a-b)`: one line per source."""
    page = ""
    if source.page is not None:
        last = source.page_end if source.page_end is not None else source.page
        page = f"page {source.page}, " if last == source.page else f"pages {source.page}-{last}, "
    return f"[{source.number}] {source.chunk_id} ({source.document_id}, {page}characters {source.start}-{source.end})"


def _page(chunk: RetrievedChunk | Chunk, key: str) -> int | None:
    value = chunk.metadata.get(key)
    return None if value is None else int(value)


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
        page=_page(chunk, "page"),
        page_end=_page(chunk, "page_end"),
    )


def resolve_sources(
    text: str,
    chunks: Sequence[RetrievedChunk | Chunk] | None,
    highlights: dict[int, Sequence[tuple[int, int]]] | None = None,
) -> tuple[Source, ...]:
    """The sources an answer cites: its [n] markers mapped to `chunks[n-1]`, in number order."""
    if not chunks:
        return ()
    highlights = highlights or {}
    numbers = sorted(parse_citations(text, len(chunks)))
    return tuple(source_from_chunk(n, chunks[n - 1], highlights.get(n, ())) for n in numbers)


def context_sources(chunks: Sequence[RetrievedChunk | Chunk] | None) -> tuple[Source, ...]:
    """Every chunk given to the answerer, as numbered sources."""
    return tuple(source_from_chunk(n, chunk) for n, chunk in enumerate(chunks or (), start=1))


def make_answer(
    text: str,
    chunks: Sequence[RetrievedChunk | Chunk] | None,
    backend: str,
    model: str,
    **extra: Any,
) -> Answer:
    """An `Answer` for `text` with its citations resolved against `chunks` (and all of them as context)."""
    highlights = extra.pop("highlights", None)
    return Answer(
        text=text,
        sources=resolve_sources(text, chunks, highlights),
        backend=backend,
        model=model,
        context=context_sources(chunks),
        **extra,
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

    @classmethod
    def of(cls, answer: Answer, pieces: Iterable[str] | None = None) -> AnswerStream:
        """A stream of an answer that is already complete (its text in one piece, or `pieces`)."""
        return cls([answer.text] if pieces is None else pieces, lambda _text: answer)


class Answerer(ABC):
    """What answers a `Prompt`: a language-model backend, or the extractive answerer.

    Subclasses implement `stream`; `answer` is built on it, so both always give the same `Answer`.
    `backend` names the kind (hf, openai, local, offline) and `model` the model, for the answer's byline.
    """

    backend: str = ""
    model: str = ""

    @abstractmethod
    def stream(self, prompt: Prompt, **params: Any) -> AnswerStream:
        """The answer to `prompt`, piece by piece; `.answer` holds the `Answer` at the end."""

    def answer(self, prompt: Prompt, **params: Any) -> Answer:
        """The complete answer to `prompt`."""
        return self.stream(prompt, **params).answer

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"


__all__ = [
    "CITATION_PATTERN",
    "DONT_KNOW",
    "REFUSAL_REASONS",
    "REFUSED_ANSWERER",
    "REFUSED_CHECK",
    "REFUSED_GATE",
    "REFUSED_NO_SOURCES",
    "Answer",
    "AnswerStream",
    "Answerer",
    "Source",
    "Usage",
    "context_sources",
    "format_source_line",
    "iter_citation_numbers",
    "make_answer",
    "parse_citations",
    "resolve_sources",
    "says_dont_know",
    "source_from_chunk",
]
