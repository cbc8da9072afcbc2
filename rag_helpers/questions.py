"""A labelled question set: load it from JSON Lines and check it against a corpus.

Each line is one JSON object:

    {"q": "...", "doc": "policies/travel_expense_policy_2024.md",
     "evidence": "an exact, unique substring of that document (20-120 characters)",
     "answer": "a short reference answer", "kind": "fact"}

`q`, `doc` and `evidence` are required; `kind` defaults to "fact" and `answer` to "".
Unanswerable questions (the answer is in no document) have `"doc": null, "evidence": null`
and kind "unanswerable".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH
from .documents import Document, load_documents

KINDS: tuple[str, ...] = ("fact", "how", "paraphrase", "multi_doc", "unanswerable")
UNANSWERABLE = "unanswerable"
EVIDENCE_MIN_CHARS = 20
EVIDENCE_MAX_CHARS = 120
REQUIRED_KEYS: tuple[str, ...] = ("q", "doc", "evidence")


class QuestionFileError(ValueError):
    """A line of a question file is not a valid question object."""


@dataclass(frozen=True)
class Question:
    """One labelled question; `doc` and `evidence` are None when the corpus cannot answer it."""

    q: str
    doc: str | None
    evidence: str | None
    answer: str = ""
    kind: str = "fact"

    @property
    def answerable(self) -> bool:
        """True when the question names a document that answers it."""
        return self.doc is not None

    def to_dict(self) -> dict[str, Any]:
        """The question as the JSON object of its line."""
        return asdict(self)


def load_questions(path: str | Path = SAMPLE_QUESTIONS_PATH) -> list[Question]:
    """Read a JSON Lines question file (blank lines are skipped); raise QuestionFileError on a bad line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"No question file at {path}. Pass the path of a .jsonl file with one "
            '{"q": ..., "doc": ..., "evidence": ...} object per line.'
        )
    questions = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                questions.append(parse_question(line, where=f"{path.name}, line {number}"))
    return questions


def parse_question(line: str | Mapping[str, Any], where: str = "question") -> Question:
    """One question from a JSON line (or an already parsed object); `where` names it in errors."""
    if isinstance(line, str):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            detail = f"{error.msg} at column {error.colno}"
            raise QuestionFileError(f"{where}: not valid JSON ({detail}).") from None
    else:
        obj = line
    if not isinstance(obj, Mapping):
        raise QuestionFileError(f"{where}: expected a JSON object, got {type(obj).__name__}.")
    missing = [key for key in REQUIRED_KEYS if key not in obj]
    if missing:
        raise QuestionFileError(
            f"{where}: missing key(s) {', '.join(missing)}. Every line needs q, doc and evidence "
            "(use null for doc and evidence when no document answers the question)."
        )
    q, doc, evidence = obj["q"], obj["doc"], obj["evidence"]
    answer, kind = obj.get("answer", ""), obj.get("kind", "fact")
    if not isinstance(q, str) or not q.strip():
        raise QuestionFileError(f"{where}: 'q' must be a non-empty string, got {q!r}.")
    for key, value in (("doc", doc), ("evidence", evidence)):
        if value is not None and not isinstance(value, str):
            raise QuestionFileError(f"{where}: '{key}' must be a string or null, got {type(value).__name__}.")
    for key, value in (("answer", answer), ("kind", kind)):
        if not isinstance(value, str):
            raise QuestionFileError(f"{where}: '{key}' must be a string, got {type(value).__name__}.")
    return Question(q=q, doc=doc, evidence=evidence, answer=answer or "", kind=kind or "fact")


def normalise_question(text: str) -> str:
    """The form used to spot duplicates: case-folded, single spaces, no trailing punctuation."""
    return re.sub(r"\s+", " ", text).strip().rstrip("?.! ").casefold()


def find_evidence(text: str, evidence: str) -> list[int]:
    """Every start offset of `evidence` in `text`, overlapping occurrences included."""
    starts = []
    position = text.find(evidence)
    while position != -1:
        starts.append(position)
        position = text.find(evidence, position + 1)
    return starts


def validate_questions(
    questions: Iterable[Question],
    corpus_dir: str | Path | Sequence[Document] = SAMPLE_CORPUS_DIR,
) -> list[str]:
    """Every problem in a question set, as readable lines (an empty list means it is valid).

    Checks each question's kind, that answerable ones name an existing document and quote
    evidence of 20-120 characters found exactly once in it, that unanswerable ones have neither,
    and that no question is asked twice. `corpus_dir` may also be already loaded documents.
    """
    documents = _documents_by_id(corpus_dir)
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, question in enumerate(questions, start=1):
        label = f"question {number} ({_shorten(question.q)})"
        key = normalise_question(question.q)
        if key in seen:
            problems.append(f"{label}: duplicate of question {seen[key]}")
        else:
            seen[key] = number
        problems.extend(f"{label}: {problem}" for problem in _question_problems(question, documents))
    return problems


def _question_problems(question: Question, documents: Mapping[str, Document]) -> list[str]:
    if question.kind not in KINDS:
        return [f"kind {question.kind!r} is not one of {', '.join(KINDS)}"]
    if question.kind == UNANSWERABLE or question.doc is None:
        if question.kind != UNANSWERABLE:
            return [f"doc is null, so kind must be {UNANSWERABLE!r}, not {question.kind!r}"]
        if question.doc is not None or question.evidence is not None:
            return ["an unanswerable question must have null doc and evidence"]
        return []
    if question.doc not in documents:
        return [f"document {question.doc!r} is not in the corpus"]
    evidence = question.evidence
    if evidence is None:
        return ["an answerable question needs evidence (an exact quote from its document)"]
    problems = []
    if not EVIDENCE_MIN_CHARS <= len(evidence) <= EVIDENCE_MAX_CHARS:
        problems.append(
            f"evidence is {len(evidence)} characters; it must be {EVIDENCE_MIN_CHARS}-{EVIDENCE_MAX_CHARS}"
        )
    count = len(find_evidence(documents[question.doc].text, evidence))
    if count != 1:
        where = "not found" if count == 0 else f"found {count} times"
        quote = _shorten(evidence)
        problems.append(f"evidence {quote!r} {where} in {question.doc}; it must occur exactly once")
    return problems


def question_set_stats(
    questions: Sequence[Question],
    corpus_dir: str | Path | Sequence[Document] = SAMPLE_CORPUS_DIR,
    deep_offset: int = 1000,
) -> dict[str, Any]:
    """How a question set spreads: counts per kind, documents covered, evidence deeper than `deep_offset`."""
    documents = _documents_by_id(corpus_dir)
    answerable = [q for q in questions if q.answerable and q.evidence is not None]
    deep = 0
    for question in answerable:
        document = documents.get(question.doc or "")
        starts = find_evidence(document.text, question.evidence or "") if document else []
        deep += bool(starts) and starts[0] >= deep_offset
    covered = sorted({q.doc for q in answerable if q.doc in documents})
    kinds: dict[str, int] = {}
    for question in questions:
        kinds[question.kind] = kinds.get(question.kind, 0) + 1
    return {
        "questions": len(questions),
        "answerable": len(answerable),
        "kinds": dict(sorted(kinds.items())),
        "documents": len(documents),
        "documents_covered": len(covered),
        "uncovered_documents": sorted(set(documents) - set(covered)),
        "deep_evidence": deep,
        "deep_evidence_fraction": deep / len(answerable) if answerable else 0.0,
    }


def _documents_by_id(corpus: str | Path | Sequence[Document]) -> dict[str, Document]:
    if isinstance(corpus, (str, Path)):
        corpus = load_documents(corpus)
    return {document.id: document for document in corpus}


def _shorten(text: str, limit: int = 50) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
