"""The extractive answerer: no language model, just the retrieved sentences closest to the question.

It splits each retrieved chunk into sentences (list items and table rows count as sentences),
keeping their character offsets, embeds the question and every sentence in one batch with the
embedding model already used for retrieval, and returns the best two or three sentences with
[n] citations, clearly labelled as extracted rather than generated. It is deterministic, and it
says "I don't know" (`answers.DONT_KNOW`, refused) when no sentence is close enough to the question.
It cannot tell reliably when the sources do not hold the answer at all: it then quotes the closest
sentences, which the label presents as extracts, not as a verified answer. It is the "offline"
backend, behind the same `answers.Answerer` interface as a language model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .base import Prompt, RetrievedChunk
from .chunking import split_blocks, split_sentences
from .chunking import LIST_MARKER as _LIST_MARKER
from .chunking import TABLE_SEPARATOR as _TABLE_SEPARATOR
from .chunking import is_heading as _is_heading
from .answers import (
    DONT_KNOW,
    REFUSED_ANSWERER,
    REFUSED_NO_SOURCES,
    AnswerStream,
    Answerer,
    make_answer,
)
from .embeddings import EmbeddingCache, embed, embed_cached

EXTRACTED_LABEL = "Extracted from the sources (no language model configured):"
NOT_FOUND_NOTE = "No sentence in the retrieved chunks is close enough to the question."
NO_SOURCES_NOTE = "No sources were retrieved, so there is nothing to extract an answer from."


@dataclass(frozen=True)
class Sentence:
    """A sentence (or list item, or table row) of a chunk: `text == chunk_text[start:end]`."""

    text: str
    start: int
    end: int
    kind: str = "sentence"  # sentence | item | table | table_header | heading
    context: str = ""  # the heading (and table header) it sits under, to help embed short lines
    partial_start: bool = False  # cut by the chunk boundary
    partial_end: bool = False
    lead: int | None = None  # index (in the chunk's sentence list) of the lead-in it follows, if any
    header: tuple[str, ...] = ()  # a table row's column names, when its header row is in the chunk

    @property
    def is_lead(self) -> bool:
        """A lead-in ("The cap is:", "Q: ...?", a bold label) introduces an answer but is none itself."""
        if self.kind not in ("sentence", "item"):
            return False
        text = self.text.strip()
        bare = text.rstrip("*\"'”’) ")
        return bare.endswith((":", "?")) or (
            text.startswith("**") and text.endswith("**") and len(text) < 100
        )


def _is_table_row(line: str) -> bool:
    """A markdown table row: "| a | b |", or one the chunk boundary cut before its first pipe ("b | c |")."""
    return line.startswith("|") or (line.endswith("|") and "\n" not in line)


def table_cells(row: str) -> tuple[str, ...]:
    """The cells of a markdown table row, stripped; empty cells kept so columns stay aligned."""
    return tuple(cell.strip() for cell in row.strip().strip("|").split("|"))


def table_row_text(cells: Sequence[str], header: Sequence[str] = ()) -> str:
    """A table row as prose: "London: £185", or "Maple Ridge — Country: Canada; Live since: March 2024".

    The first cell names the row; with the column names known (and as many as the cells, more than
    two), every other cell says which column it is; otherwise the cells follow, separated by semicolons.
    """
    named = len(header) == len(cells) and len(cells) > 2
    rest = [
        f"{name}: {cell}" if named and name else cell
        for name, cell in zip(header[1:] if named else [""] * len(cells), cells[1:], strict=False)
        if cell
    ]
    first = cells[0] if cells else ""
    if not first:
        return "; ".join(rest)
    if not rest:
        return first
    return f"{first} — {'; '.join(rest)}" if named else f"{first}: {'; '.join(rest)}"


def _raw_sentences(text: str) -> list[Sentence]:
    sentences: list[Sentence] = []
    heading, table_header = "", ""
    header: tuple[str, ...] = ()
    blocks = split_blocks(text)
    for number, (start, end) in enumerate(blocks):
        block = text[start:end]
        stripped = block.strip()
        if _TABLE_SEPARATOR.match(block):
            continue
        if _is_table_row(stripped):
            cells = table_cells(stripped)
            following = (
                text[blocks[number + 1][0] : blocks[number + 1][1]] if number + 1 < len(blocks) else ""
            )
            if _TABLE_SEPARATOR.match(following):
                # The row above |---| names the columns: context for the rows below, not an answer itself.
                header = cells
                table_header = " | ".join(cell for cell in cells if cell)
                sentences.append(Sentence(block, start, end, "table_header", heading))
            else:
                context = (
                    f"{heading}: {table_header}" if heading and table_header else heading or table_header
                )
                sentences.append(Sentence(block, start, end, "table", context, header=header))
            continue
        header = ()
        table_header = ""
        if _is_heading(block):
            heading = re.sub(r"^[#\s]+", "", stripped)
            sentences.append(Sentence(block, start, end, "heading", heading))
            continue
        marker = _LIST_MARKER.match(block)
        kind = "item" if marker else "sentence"
        body_start = start + (
            marker.end() if marker else 0
        )  # quote "Submit within 21 days", not "- Submit..."
        for s, e in split_sentences(text[body_start:end], body_start):
            sentences.append(Sentence(text[s:e], s, e, kind, heading))
    return sentences


def _link_leads(sentences: list[Sentence]) -> list[Sentence]:
    """Point each sentence that follows a lead-in at it: the next sentence, or every row/item of
    the table or list the lead-in introduces."""
    linked: list[Sentence] = []
    pending: int | None = None
    for index, sentence in enumerate(sentences):
        if sentence.kind == "heading":
            pending = None
        elif sentence.kind == "table_header":
            pass  # a lead-in before a table reaches across its header to the rows
        else:
            if pending is not None:
                sentence = replace(sentence, lead=pending)
            if sentence.is_lead:
                pending = index
            elif not (sentence.kind in ("table", "item") and pending is not None):
                pending = None
        linked.append(sentence)
    return linked


def chunk_sentences(text: str, starts_document: bool = False) -> list[Sentence]:
    """Every sentence of a chunk with its offsets, kind, heading context and lead-in.

    The first and last sentences are marked partial when the chunk boundary cuts them
    (a chunk that does not start the document and starts mid-sentence, not with a capital, a
    digit, a quote or a markdown mark; one that ends without final punctuation).
    """
    sentences = _link_leads(_raw_sentences(text))
    if sentences:
        first = sentences[0].text[:1]
        starts_cleanly = first.isupper() or first.isdigit() or first in "#|*-•\"'“‘([€£$"
        if not starts_document and not starts_cleanly:
            sentences[0] = _drop_cut_word(replace(sentences[0], partial_start=True), text, at_start=True)
        if not re.search(r"[.!?:)|*\"'”’]\s*$", sentences[-1].text):
            sentences[-1] = _drop_cut_word(replace(sentences[-1], partial_end=True), text, at_start=False)
    return sentences


def _drop_cut_word(sentence: Sentence, text: str, at_start: bool) -> Sentence:
    """The sentence without the word the chunk boundary cut ("wil" of "will"), so that quotes and
    highlights start and end on whole words. A word with white space between it and the chunk's edge
    is whole; one touching the edge may be cut. Unchanged when that would leave nothing."""
    start, end = sentence.start, sentence.end
    if at_start and start == 0 and text[:1].isalnum():
        match = re.compile(r"\S*\s+").match(text, start, end)
        start = match.end() if match else start
    elif not at_start and end == len(text) and text[end - 1 : end].isalnum():
        match = re.search(r"\s+\S*$", text[start:end])
        end = start + match.start() if match else end
    if start >= end or start == sentence.start and end == sentence.end:
        return sentence
    return replace(sentence, text=text[start:end], start=start, end=end)


@dataclass(frozen=True)
class Extract:
    """A sentence picked for the answer, with the number of the source it came from."""

    number: int
    sentence: Sentence
    similarity: float  # cosine between the question and the sentence, or 0.9 x its lead-in's if higher
    score: float  # similarity blended with the chunk's retrieval score, plus the answer-type bonus
    document_start: int | None  # offsets of the sentence in its document, when the chunk knows its start
    document_end: int | None
    lead: Sentence | None = None  # the lead-in it follows ("The nightly cap is:"), quoted before it


@dataclass(frozen=True)
class ExtractiveAnswer:
    """The offline answer text, the sentences it quotes, and their document spans per source number.

    `refused` is None when sentences were found, else why not (`answers.REFUSED_*`), with `note`.
    """

    text: str
    extracts: tuple[Extract, ...] = ()
    refused: str | None = None
    note: str = ""
    highlights: dict[int, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """Whether any sentence was quoted."""
        return self.refused is None


def _chunk_start(chunk: RetrievedChunk) -> int | None:
    """The chunk's start in its document, or None when the hit does not carry its offsets."""
    value = chunk.metadata.get("start")
    return None if value is None else int(value)


def _display(sentence: Sentence) -> str:
    text = " ".join(sentence.text.split())
    if sentence.kind == "table":
        # A table row reads as "London: £185", not "| London | £185 |".
        text = table_row_text(table_cells(text), sentence.header)
    if sentence.partial_start:
        text = "…" + text
    if sentence.partial_end:
        text = text + "…"
    return text


def _repeat_key(text: str) -> str:
    """Text reduced to its words without numbers: the same sentence from two versions of a
    document ("per diem of €45" / "of €52") gets the same key, and only the better one is quoted."""
    return " ".join(re.sub(r"[\W_\d]+", " ", text).casefold().split())


# Questions whose answer is a number, a date or an amount.
NUMERIC_QUESTION = re.compile(
    r"\b(how (much|many|long|often|old|far|big|large|soon)|when|"
    r"what (date|year|time|day|percentage|price|cost|fee)s?|"
    r"which (date|year|day|month)|deadline|limit|cap)\b",
    re.IGNORECASE,
)


def distinctive_tokens(text: str) -> list[str]:
    """Tokens with a digit ("2024", "5.1", "s3", "pg-eu-02"): they tell near-identical documents apart."""
    tokens = re.findall(r"\w[\w.\-]*\w|\w", text.casefold())
    return sorted({token for token in tokens if re.search(r"\d", token)})


@dataclass(repr=False, eq=False)
class ExtractiveAnswerer(Answerer):
    """Answer a question with the retrieved sentences most similar to it (see the module docstring).

    Each sentence is embedded with its document's name and section heading in front (`context`),
    so a short table row, or a line from one of two near-identical policies, says what it is about.
    Its score blends its cosine to the question (or `lead_weight` x that of the lead-in it follows,
    such as "The nightly cap is:" before a table, when higher) with its chunk's retrieval score
    (`chunk_weight`), plus `number_bonus` for sentences with digits when the question asks for a
    number or a date, plus up to `keyword_bonus` when it shares the question's tokens with digits
    ("2024", "S3", "5.1"), minus `partial_penalty` for a sentence cut by the chunk boundary.
    The best sentences within `margin` of the top one are kept, at most `max_sentences`, with
    repeats (the same sentence in two versions of a document) quoted once, in source order; below
    `min_similarity` it reports that nothing matched. The defaults were tuned on the sample corpus
    and its question set; `cache` (an `EmbeddingCache`) reuses sentence vectors across questions.
    `stream` and `answer` give the same `answers.Answer` a language-model backend gives.
    """

    backend = "offline"

    embedding_model: Any
    max_sentences: int = 3
    min_similarity: float = 0.35
    margin: float = 0.15
    chunk_weight: float = 0.3
    lead_weight: float = 0.9
    number_bonus: float = 0.03
    keyword_bonus: float = 0.03
    partial_penalty: float = 0.05
    context: bool = True
    batch_size: int | None = None
    cache: EmbeddingCache | None = None  # reuse sentence vectors across questions (chunks come back often)

    def __post_init__(self) -> None:
        if self.max_sentences < 1:
            raise ValueError(f"max_sentences must be at least 1, got {self.max_sentences}")
        if not 0.0 <= self.chunk_weight <= 1.0:
            raise ValueError(f"chunk_weight must be between 0 and 1, got {self.chunk_weight}")

    @property
    def model(self) -> str:  # type: ignore[override]
        """Named like a language-model backend's `model`, for the answer's "(offline: ...)" line."""
        return f"extractive ({getattr(self.embedding_model, 'rag_name', type(self.embedding_model).__name__)})"

    def __repr__(self) -> str:
        return f"ExtractiveAnswerer(model={self.model!r})"

    def stream(self, prompt: Prompt, **params: Any) -> AnswerStream:
        """The extracted answer to the prompt's question from its chunks, one line at a time.

        Generation parameters (`params`) do not apply and are ignored. The question's vector is
        reused from the prompt when the pipeline computed it.
        """
        extract = self.extract(prompt.question, prompt.chunks, prompt.question_vector)
        answer = make_answer(
            extract.text, prompt.chunks, self.backend, self.model, extractive=True,
            highlights=extract.highlights, refused=extract.refused,
            notes=(extract.note,) if extract.note else (),
        )
        return AnswerStream.of(answer, answer.text.splitlines(keepends=True))

    def _embedding_text(self, sentence: Sentence, document: str = "") -> str:
        """What gets embedded for a sentence: with `context`, prefixed by its document's name and heading."""
        text = " ".join(sentence.text.split())
        if sentence.kind == "table":
            text = " | ".join(cell.strip() for cell in text.strip("|").split("|"))
        if not self.context:
            return text
        # "travel expense policy 2024 - 4. Accommodation: London | £185" tells the model what a
        # short line or table row is about, and which of two near-identical documents it is from.
        title = (
            re.sub(r"[_/]+", " ", re.sub(r"\.\w+$", "", document)).strip() if document != "unknown" else ""
        )
        prefix = " - ".join(part for part in (title, sentence.context) if part)
        return f"{prefix}: {text}" if prefix else text

    def score(
        self, question: str, chunks: Sequence[RetrievedChunk], question_vector: np.ndarray | None = None
    ) -> list[Extract]:
        """Every sentence that could be quoted, scored against the question, best first.

        `question_vector` is the question's embedding if already computed (else it is embedded here).
        """
        per_chunk = []
        for number, chunk in enumerate(chunks, start=1):
            start = _chunk_start(chunk)
            per_chunk.append((number, start, chunk_sentences(chunk.text, starts_document=start == 0)))
        keys = [
            (n, i)
            for n, _, sentences in per_chunk
            for i, s in enumerate(sentences)
            if s.kind not in ("heading", "table_header") and len(re.findall(r"\w+", s.text)) >= 2
        ]
        if not keys:
            return []
        by_key = {(n, i): s for n, _, sentences in per_chunk for i, s in enumerate(sentences)}
        documents = {n: chunk.document_id or "unknown" for n, chunk in enumerate(chunks, start=1)}
        texts = [self._embedding_text(by_key[key], documents[key[0]]) for key in keys]
        if question_vector is None:
            texts.insert(0, question)
        if self.cache is not None:
            vectors = embed_cached(
                texts, self.embedding_model, self.cache, batch_size=self.batch_size, progress=False
            )
        else:
            vectors = embed(texts, self.embedding_model, batch_size=self.batch_size, progress=False)
        if question_vector is None:
            question_vector, vectors = vectors[0], vectors[1:]
        similarity = dict(zip(keys, (vectors @ np.asarray(question_vector, np.float32)).tolist(), strict=True))
        numeric = bool(NUMERIC_QUESTION.search(question))
        keywords = distinctive_tokens(question)
        embedded = dict(zip(keys, texts[-len(keys):], strict=True))
        starts = {n: start for n, start, _ in per_chunk}

        extracts = []
        for number, index in keys:
            sentence = by_key[(number, index)]
            if sentence.is_lead or len(re.findall(r"\w+", sentence.text)) < (
                2 if sentence.kind == "table" else 3
            ):
                # A lead-in or a fragment is no answer on its own (a row like "| London | £185 |" is).
                continue
            own = similarity[(number, index)]
            inherited = (
                self.lead_weight * similarity.get((number, sentence.lead), -1.0)
                if sentence.lead is not None
                else -1.0
            )
            lead = by_key[(number, sentence.lead)] if sentence.lead is not None else None
            value = max(own, inherited)
            score = (1 - self.chunk_weight) * value + self.chunk_weight * chunks[number - 1].score
            if numeric and re.search(r"\d", sentence.text):
                score += self.number_bonus
            if sentence.partial_start or sentence.partial_end:
                score -= self.partial_penalty  # a sentence cut by the chunk boundary reads badly
            if keywords and self.keyword_bonus:
                where = embedded[(number, index)].casefold()
                matched = sum(
                    1 for token in keywords if re.search(rf"(?<!\w){re.escape(token)}(?!\w)", where)
                )
                score += self.keyword_bonus * matched / len(keywords)
            start = starts[number]
            extracts.append(
                Extract(
                    number=number,
                    sentence=sentence,
                    similarity=value,
                    score=score,
                    document_start=None if start is None else start + sentence.start,
                    document_end=None if start is None else start + sentence.end,
                    lead=lead,
                )
            )
        # Best first; ties keep source order, then position, so the result is deterministic.
        extracts.sort(key=lambda e: (-round(e.score, 6), e.number, e.sentence.start))
        return extracts

    def select(self, scored: Sequence[Extract]) -> list[Extract]:
        """The sentences to quote: the best ones within `margin` of the top, without repeats."""
        if not scored or scored[0].similarity < self.min_similarity:
            return []
        top = scored[0].score
        picked: list[Extract] = []
        seen: list[str] = []
        for extract in scored:
            if len(picked) >= self.max_sentences or extract.score < top - self.margin:
                break
            if extract.similarity < self.min_similarity:
                continue
            key = _repeat_key(extract.sentence.text)
            # Skip repeats, and fragments of a sentence already quoted (or quoted from another chunk).
            if any(key in other or other in key for other in seen):
                continue
            seen.append(key)
            picked.append(extract)
        return sorted(picked, key=lambda e: (e.number, e.sentence.start))

    def extract(
        self, question: str, chunks: Sequence[RetrievedChunk], question_vector: np.ndarray | None = None
    ) -> ExtractiveAnswer:
        """The extracted answer to `question` from `chunks` (best first)."""
        if not chunks:
            return ExtractiveAnswer(f"{EXTRACTED_LABEL}\n{DONT_KNOW}", (), REFUSED_NO_SOURCES, NO_SOURCES_NOTE)
        picked = self.select(self.score(question, chunks, question_vector))
        if not picked:
            return ExtractiveAnswer(f"{EXTRACTED_LABEL}\n{DONT_KNOW}", (), REFUSED_ANSWERER, NOT_FOUND_NOTE)
        lines = [EXTRACTED_LABEL]
        highlights: dict[int, list[tuple[int, int]]] = {}
        shown_leads: set[tuple[int, int]] = set()
        for extract in picked:
            text = _display(extract.sentence)
            spans = [(extract.document_start, extract.document_end)]
            lead = extract.lead
            if lead is not None and (extract.number, lead.start) not in shown_leads:
                shown_leads.add((extract.number, lead.start))
                text = f"{_display(lead)} {text}"
                start = _chunk_start_of(extract)
                if start is not None:
                    spans.insert(0, (start + lead.start, start + lead.end))
            lines.append(f"- {text} [{extract.number}]")
            for span in spans:
                if span[0] is not None and span[1] is not None:
                    highlights.setdefault(extract.number, []).append((span[0], span[1]))
        return ExtractiveAnswer("\n".join(lines), tuple(picked), highlights=highlights)


def _chunk_start_of(extract: Extract) -> int | None:
    if extract.document_start is None:
        return None
    return extract.document_start - extract.sentence.start

