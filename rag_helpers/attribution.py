"""Check a generated answer's [n] citations against the sources it was given, and mend the wrong ones.

    text, changes = check_citations(answer_text, prompt.chunks)

A small model often states a fact correctly and cites the wrong number ("the London cap was £150
[3]" when source [1] says it). Each sentence of the answer is compared, word by word, with every
source (`support`: the share of the sentence's content words a source contains, the same stemmed
words as keyword search). When the cited sources hold little of the sentence and another source
holds most of it, the citation is moved there; a sentence with no citation that one source clearly
supports gets one; a sentence that only points at a source ("This is stated in [3].") is judged by
the sentence before it. Every change is listed, so the answer can say what was mended; a sentence
no source supports is left as the model wrote it (the answer metrics' groundedness judges that).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .answers import CITATION_PATTERN, iter_citation_numbers
from .base import Chunk, RetrievedChunk
from .text import tokenize

WELL_SUPPORTED = 0.6  # a source holding this share of a sentence's words supports it
POORLY_SUPPORTED = 0.35  # cited sources holding less than this do not
MIN_WORDS = 3  # shorter sentences ("Yes [1].") say too little to judge

# A sentence runs to a full stop followed by white space (so "3.2.1" and "€1.5" stay whole), with any
# citations written after the stop ("... cap. [1]"); a line break ends one too.
_SENTENCE = re.compile(r"(?:[^\n.!?]|[.!?](?!\s|$))+(?:[.!?]+(?=\s|$)(?:[ \t]*\[[^\]\n]*\])*)?")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of an answer, citations after a full stop kept with it."""
    return [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if m.group(0).strip()]


def content_words(text: str) -> set[str]:
    """Stemmed words without stop words or citation markers."""
    return set(tokenize(CITATION_PATTERN.sub(" ", text)))


def support(sentence: set[str], source: set[str]) -> float:
    """The share of the sentence's words the source contains (0 for an empty sentence)."""
    return len(sentence & source) / len(sentence) if sentence else 0.0


def _recite(sentence: str, number: int) -> str:
    """The sentence with its citation markers replaced by [number] (added before the final stop if none)."""
    if CITATION_PATTERN.search(sentence):
        first = True

        def replace(match: re.Match[str]) -> str:
            nonlocal first
            keep, first = first, False
            return f"[{number}]" if keep else ""

        return re.sub(r"\s+([.!?])", r"\1", CITATION_PATTERN.sub(replace, sentence))
    stripped = sentence.rstrip()
    tail = sentence[len(stripped):]
    if stripped and stripped[-1] in ".!?":
        return f"{stripped[:-1]} [{number}]{stripped[-1]}{tail}"
    return f"{stripped} [{number}]{tail}"


def check_citations(text: str, chunks: Sequence[RetrievedChunk | Chunk]) -> tuple[str, list[str]]:
    """The answer with wrong citations moved to the source that supports the sentence; and the changes."""
    if not chunks or not text.strip():
        return text, []
    sources = [content_words(chunk.text) for chunk in chunks]
    pieces, changes, previous_best = [], [], None
    spans = split_sentences(text)
    cursor = 0
    for start, end in spans:
        pieces.append(text[cursor:start])
        sentence = text[start:end]
        cursor = end
        words = content_words(sentence)
        cited = sorted({n for n, _, _ in iter_citation_numbers(sentence, len(chunks))})
        scores = [support(words, source) for source in sources]
        best = max(range(len(chunks)), key=lambda i: scores[i]) + 1
        if len(words) >= MIN_WORDS:
            previous_best = best if scores[best - 1] >= WELL_SUPPORTED else None
            target = best if scores[best - 1] >= WELL_SUPPORTED else None
        else:  # a pointer ("This is stated in [3].") follows what the sentence before it said
            target = previous_best
        cited_support = max((scores[n - 1] for n in cited), default=0.0) if len(words) >= MIN_WORDS else None
        wrong = cited and target is not None and target not in cited and (
            cited_support is None or cited_support < POORLY_SUPPORTED
        )
        missing = not cited and target is not None and len(words) >= MIN_WORDS
        if wrong or missing:
            mended = _recite(sentence, target)
            was = "".join(f"[{n}]" for n in cited) or "no citation"
            changes.append(f"{was} -> [{target}]")
            sentence = mended
        pieces.append(sentence)
    pieces.append(text[cursor:])
    return "".join(pieces), changes


def citation_note(changes: Sequence[str]) -> str:
    """The note an answer carries when its citations were mended."""
    return "Citations checked against the sources and mended: " + ", ".join(changes) + "."


__all__ = ["check_citations", "citation_note", "content_words", "split_sentences", "support"]
