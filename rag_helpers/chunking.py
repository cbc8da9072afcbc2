"""Split documents into chunks: the reference character splitter, two better ones, and sentences.

Every splitter returns character spans `(start, end)` into the text, so each `Chunk` knows
exactly where it came from and later notebooks can cite and highlight the source span.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .base import Chunk, Document, Span

# all-MiniLM-L6-v2 reads at most 256 word-pieces, including its [CLS] and [SEP] tokens.
MODEL_MAX_TOKENS = 256
SPECIAL_TOKENS = 2


class Splitter(Protocol):
    """Anything that maps a text to the character spans of its chunks."""

    def __call__(self, text: str) -> list[Span]: ...


def _check_sizes(chunk_size: int, chunk_overlap: int, unit: str = "") -> None:
    for name, value in (("chunk_size", chunk_size), ("chunk_overlap", chunk_overlap)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be a whole number, got {value!r}")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}{unit}")
    if chunk_overlap < 0:
        raise ValueError(f"chunk_overlap must be zero or positive, got {chunk_overlap}{unit}")
    if chunk_overlap >= chunk_size:
        raise ValueError(
            f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size}); "
            "otherwise the splitter never moves forward. A common choice is 10-20% of chunk_size."
        )


# --- The reference splitter ------------------------------------------------------------------


def split_text_spans(text: str, chunk_size: int = 1000, chunk_overlap: int = 20) -> list[Span]:
    """Spans of the reference splitter: fixed windows of `chunk_size` characters, stepping by
    `chunk_size - chunk_overlap`, until the window start passes the end of the text."""
    _check_sizes(chunk_size, chunk_overlap)
    spans = []
    start = 0
    step = chunk_size - chunk_overlap
    while start < len(text):
        spans.append((start, min(start + chunk_size, len(text))))
        start += step
    return spans


def split_text(text: str, chunk_size: int = 1000, chunk_overlap: int = 20) -> list[str]:
    """The original tutorial's character splitter, with its exact output for valid arguments.

    Raises `ValueError` for a non-positive `chunk_size` or for `chunk_overlap >= chunk_size`
    (where the original loops forever).
    """
    return [text[start:end] for start, end in split_text_spans(text, chunk_size, chunk_overlap)]


@dataclass(frozen=True)
class CharacterSplitter:
    """The reference splitter as a `Splitter` object (default: 1000 characters, overlap 20)."""

    chunk_size: int = 1000
    chunk_overlap: int = 20

    def __post_init__(self) -> None:
        _check_sizes(self.chunk_size, self.chunk_overlap)

    def __call__(self, text: str) -> list[Span]:
        return split_text_spans(text, self.chunk_size, self.chunk_overlap)


# --- Structure-aware splitter ----------------------------------------------------------------

# Coarsest first: paragraphs, lines, sentences, words. Below words we cut characters.
STRUCTURE_SEPARATORS: tuple[str, ...] = (r"\n\s*\n", r"\n", r"(?<=[.!?;:])\s+", r"\s+")


@dataclass(frozen=True)
class StructureSplitter:
    """Prefers paragraph, then line, then sentence, then word boundaries.

    Text is cut into the largest natural pieces that fit `chunk_size` characters, then pieces are
    packed greedily into chunks. Each new chunk starts with the previous chunk's last pieces
    (up to `chunk_overlap` characters), so a sentence cut at a boundary is seen whole once.
    """

    chunk_size: int = 1000
    chunk_overlap: int = 100
    separators: Sequence[str] = STRUCTURE_SEPARATORS

    def __post_init__(self) -> None:
        _check_sizes(self.chunk_size, self.chunk_overlap)

    def __call__(self, text: str) -> list[Span]:
        pieces = _pieces(text, 0, len(text), self.chunk_size, tuple(self.separators))
        spans = _pack(pieces, self.chunk_size, self.chunk_overlap)
        return [span for span in (_trim(text, s, e) for s, e in spans) if span[1] > span[0]]


def _pieces(text: str, start: int, end: int, limit: int, separators: tuple[str, ...]) -> list[Span]:
    """Split text[start:end] into contiguous spans no longer than `limit`, at the coarsest separator."""
    if end - start <= limit:
        return [(start, end)]
    if not separators:
        return [(s, min(s + limit, end)) for s in range(start, end, limit)]
    pattern, finer = separators[0], separators[1:]
    # Each piece keeps its trailing separator, so the pieces tile the text with no gaps.
    cuts = [m.end() for m in re.finditer(pattern, text[start:end]) if 0 < m.end() < end - start]
    bounds = [start, *(start + c for c in cuts), end]
    result: list[Span] = []
    for s, e in zip(bounds, bounds[1:]):
        result.extend(_pieces(text, s, e, limit, finer))
    return result


def _pack(pieces: list[Span], limit: int, overlap: int) -> list[Span]:
    chunks: list[Span] = []
    current: list[Span] = []
    for piece in pieces:
        if current and piece[1] - current[0][0] > limit:
            chunks.append((current[0][0], current[-1][1]))
            # Carry over trailing pieces that fit the overlap and still leave room for `piece`.
            carried: list[Span] = []
            for prev in reversed(current):
                if current[-1][1] - prev[0] > overlap or piece[1] - prev[0] > limit:
                    break
                carried.insert(0, prev)
            current = carried
        current.append(piece)
    if current:
        chunks.append((current[0][0], current[-1][1]))
    return chunks


def _trim(text: str, start: int, end: int) -> Span:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# --- Token-aware splitter --------------------------------------------------------------------


class TokenSplitter:
    """Windows of at most `max_tokens` word-pieces, cut only between words.

    Built from a Hugging Face fast tokenizer (e.g. `model.tokenizer`), so no chunk is ever
    silently truncated by the embedding model. The default limit leaves room for the model's
    two special tokens.
    """

    def __init__(self, tokenizer: Any, max_tokens: int = MODEL_MAX_TOKENS - SPECIAL_TOKENS, overlap_tokens: int = 32):
        _check_sizes(max_tokens, overlap_tokens, unit=" tokens")
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError("TokenSplitter needs a fast tokenizer (one that returns character offsets).")
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens

    def __repr__(self) -> str:
        return f"TokenSplitter(max_tokens={self.max_tokens}, overlap_tokens={self.overlap_tokens})"

    def __call__(self, text: str) -> list[Span]:
        offsets = self._offsets(text)
        n = len(offsets)
        spans: list[Span] = []
        first = 0
        while first < n:
            stop = min(first + self.max_tokens, n)
            if stop < n:
                stop = self._word_start_at_or_before(offsets, stop, lowest=first + 1)
            spans.append((offsets[first][0], offsets[stop - 1][1]))
            if stop >= n:
                break
            nxt = self._word_start_at_or_before(offsets, stop - self.overlap_tokens, lowest=first + 1)
            first = max(nxt, first + 1)
        return spans

    def _offsets(self, text: str) -> list[Span]:
        encoded = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False, truncation=False
        )
        return [tuple(o) for o in encoded["offset_mapping"] if o[1] > o[0]]

    @staticmethod
    def _word_start_at_or_before(offsets: list[Span], index: int, lowest: int) -> int:
        """Move `index` back until token `index` starts a new word (not a '##' continuation)."""
        index = max(index, lowest)
        probe = index
        while probe > lowest and offsets[probe][0] == offsets[probe - 1][1]:
            probe -= 1
        # A single "word" longer than the window (e.g. a URL) has to be cut somewhere.
        return probe if offsets[probe][0] != offsets[probe - 1][1] else index


# --- The sentence splitter -------------------------------------------------------------------
# One splitter for every use of sentences: the sentence index (windows, re-ranking) and the
# extractive answerer. Blocks first (paragraphs, list items, headings, table rows), then the
# sentences of each block.

# Words that end with a period without ending the sentence ("e.g. a case", "approx. 5 km").
_ABBREVIATED = "e.g i.e etc vs approx incl excl nr dr mr mrs ms st fig cf ca al resp dept est"
_MONTHS_AND_DAYS = "jan feb mar apr jun jul aug sep sept oct nov dec mon tue wed thu fri sat sun"
ABBREVIATIONS = frozenset(_ABBREVIATED.split() + _MONTHS_AND_DAYS.split())
# A line that starts a new block even without a blank line before it.
BLOCK_START = re.compile(
    r"\s*(?:#{1,6}\s|[-*+•]\s|\d{1,3}[.)]\s|[a-z][.)]\s|\||>|```|[A-Z][\w /&()'-]{0,30}:\s)"
)
HEADING = re.compile(r"\s*#{1,6}\s|\s*\d{1,2}\.\s+[A-Z0-9 .&/,'-]{3,}$|\s*[A-Z][A-Z0-9 &/,'-]{3,}$")
TABLE_SEPARATOR = re.compile(r"\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
LIST_MARKER = re.compile(r"\s*(?:[-*+•]|\d{1,3}[.)]|[a-z][.)])\s+")
# Candidate sentence ends: . ! ? (plus closing quotes, brackets or bold markers), then a space.
SENTENCE_END = re.compile(r"[.!?](?:[\"'”’)\]]|\*\*)*(?=\s+\S)")


def line_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line of `text`, without its line break."""
    spans, start = [], 0
    for line in text.splitlines(keepends=True):
        end = start + len(line.rstrip("\r\n"))
        spans.append((start, end))
        start += len(line)
    return spans


def is_heading(line: str) -> bool:
    """Whether a line is a heading: markdown #, a numbered title, or a short line in capitals."""
    if re.match(r"\s*#{1,6}\s", line):
        return True
    return bool(HEADING.match(line)) and len(line.strip()) <= 80


def split_blocks(text: str) -> list[tuple[int, int]]:
    """Spans of paragraphs, list items, headings and table rows; wrapped lines are joined."""
    blocks: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    previous_line = ""
    for start, end in line_spans(text):
        line = text[start:end]
        if not line.strip():
            if current:
                blocks.append(current)
            current = None
            previous_line = ""
            continue
        new_block = (
            current is None
            or bool(BLOCK_START.match(line))
            or is_heading(line)
            or is_heading(previous_line)
            or previous_line.lstrip().startswith("|")
        )
        if new_block:
            if current:
                blocks.append(current)
            first = start + len(line) - len(line.lstrip())
            current = (first, end)
        else:
            current = (current[0], end)  # type: ignore[index]
        previous_line = line
    if current:
        blocks.append(current)
    return [(s, e) for s, e in blocks if text[s:e].strip()]


def _ends_sentence(text: str, position: int) -> bool:
    """Whether the period at `position` ends a sentence (not an abbreviation, not an initial)."""
    if text[position] != ".":
        return True
    word = re.search(r"([\w.]+)$", text[:position])
    token = word.group(1).lower() if word else ""
    if token in ABBREVIATIONS or (len(token) == 1 and token.isalpha()):
        return False
    following = text[position + 1 :].lstrip(" \"'”’)]*\n\t")
    return not following[:1].islower()


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Sentence spans of one block of prose (absolute when `offset` is the block's start).

    A period ends a sentence unless it follows an abbreviation ("e.g.", "approx.") or an initial
    ("J. Smith"), or a lower-case word follows it; a leading list marker ("1.") is no sentence.
    """
    spans, start = [], 0
    marker = LIST_MARKER.match(text)
    skip = marker.end() if marker else 0  # "1. Agree the purpose..." is one sentence, not "1." and the rest
    for match in SENTENCE_END.finditer(text):
        if match.start() >= skip and _ends_sentence(text, match.start()):
            end = match.end()
            if text[start:end].strip():
                spans.append((start, end))
            start = end
            while start < len(text) and text[start].isspace():
                start += 1
    if text[start:].strip():
        spans.append((start, len(text.rstrip())))
    return [(offset + s, offset + e) for s, e in spans]


def _lines_of_long_block(text: str, start: int, end: int, max_chars: int) -> list[Span]:
    """A block longer than `max_chars` cut before each line that starts flush left (a checklist,
    a run of "**Key:** value" lines); indented lines stay with the line they continue."""
    if end - start <= max_chars:
        return [(start, end)]
    cuts = [start, *(start + m.start() + 1 for m in re.finditer(r"\n(?=\S)", text[start:end])), end]
    return list(zip(cuts, cuts[1:]))


def sentence_spans(text: str, min_chars: int = 12, max_block_chars: int = 300) -> list[Span]:
    """(start, end) of the sentences, list items, table rows and headings of `text`.

    Table separator rows (|---|) and pieces without a letter or digit are left out; a piece
    shorter than `min_chars` (a stray "1." or "OK.") joins the next piece, so every span is worth a
    vector of its own; a block longer than `max_block_chars` is first cut into its lines.
    """
    pieces = [
        span
        for block_start, block_end in split_blocks(text)
        if not TABLE_SEPARATOR.match(text[block_start:block_end])
        for start, end in _lines_of_long_block(text, block_start, block_end, max_block_chars)
        for span in split_sentences(text[start:end], start)
        if any(character.isalnum() for character in text[span[0] : span[1]])
    ]
    spans: list[Span] = []
    pending: int | None = None
    for start, end in pieces:
        first = start if pending is None else pending
        if end - first < min_chars:
            pending = first
            continue
        spans.append((first, end))
        pending = None
    if pending is not None:
        last = pieces[-1][1]
        if spans:
            spans[-1] = (spans[-1][0], last)
        else:
            spans.append((pending, last))
    return spans


@dataclass(frozen=True)
class SentenceSplitter:
    """The sentence splitter as a `Splitter` object: one span per sentence (see `sentence_spans`)."""

    min_chars: int = 12
    max_block_chars: int = 300

    def __call__(self, text: str) -> list[Span]:
        return sentence_spans(text, self.min_chars, self.max_block_chars)


# --- From documents to chunks ----------------------------------------------------------------


# Document metadata key (set by `documents` for PDFs): where each page starts in the text.
PAGE_STARTS = "page_starts"
# Chunk metadata computed from it; never copied from a document's own metadata.
PAGE_KEYS = ("page", "page_end")


def page_at(page_starts: Sequence[int], offset: int) -> int:
    """The page (1-based) that character `offset` lies on, given the offset where each page starts."""
    return max(1, bisect.bisect_right(page_starts, offset))


def page_span(text: str, page_starts: Sequence[int], start: int, end: int) -> dict[str, int]:
    """`{"page": p, "page_end": q}`: the pages of the first and last non-blank character of text[start:end]."""
    piece = text[start:end]
    first = start + len(piece) - len(piece.lstrip())
    last = start + len(piece.rstrip()) - 1
    if last < first:  # only whitespace: where it starts
        first = last = start
    return {"page": page_at(page_starts, first), "page_end": page_at(page_starts, last)}


def chunk_documents(
    documents: Iterable[Document],
    splitter: Splitter | Callable[[str], list[Span]] | None = None,
    id_format: str = "{document}_{index}",
) -> list[Chunk]:
    """Split each document; chunk ids are `f"{document.id}_{i}"`, as in the original tutorial.

    `id_format` names the chunks otherwise (the sentence index uses "{document}#s{index}").
    Each chunk carries its document's metadata. A document with page offsets (a PDF's
    `metadata["page_starts"]`) gives each chunk the scalar `page` and `page_end` instead (1-based:
    the pages its first and last characters lie on), since a vector store keeps only scalars.
    """
    splitter = splitter or CharacterSplitter()
    chunks = []
    for document in documents:
        page_starts = document.metadata.get(PAGE_STARTS)
        shared = {k: v for k, v in document.metadata.items() if k != PAGE_STARTS and k not in PAGE_KEYS}
        for i, (start, end) in enumerate(splitter(document.text)):
            metadata = dict(shared)
            if page_starts:
                metadata.update(page_span(document.text, page_starts, start, end))
            chunks.append(
                Chunk(
                    id=id_format.format(document=document.id, index=i),
                    text=document.text[start:end],
                    document_id=document.id,
                    index=i,
                    start=start,
                    end=end,
                    metadata=metadata,
                )
            )
    return chunks
