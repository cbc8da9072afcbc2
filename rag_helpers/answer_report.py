"""Run and report an answer evaluation: answers (generated here or read from a file) -> scores -> table.

    report = evaluate_answers(questions, lambda q: answer_question(q, collection, model, llm))
    print(report)                    # a table by question kind
    report.to_dict()                 # per-question scores and aggregates, JSON-ready
    reporting.plot_answer_reports({"extractive": report})  # a chart (in `reporting`)

An answers file (bring your own RAG system) has one JSON object per line:
`{"q": ..., "answer": ..., "contexts": [the source texts the model was given, in order]}`, with an
optional `"latency_ms"` and `"refused"` (true/false; when absent, read from the answer's text);
each line is matched to the question with the same `q`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .answer_metrics import SUPPORT_THRESHOLD, AnswerScores, score_answer
from .reporting import Table, TableReport, format_value
from .questions import KINDS, UNANSWERABLE, Question, normalise_question

METRICS: tuple[str, ...] = (
    "token_f1", "key_fact_recall", "groundedness", "citation_precision", "citation_recall"
)
SHORT_NAMES = {
    "token_f1": "F1", "key_fact_recall": "facts", "groundedness": "grounded",
    "citation_precision": "cite P", "citation_recall": "cite R", "refused": "refused",
}


class AnswerFileError(ValueError):
    """A line of an answers file is not a valid answer object."""


@dataclass(frozen=True)
class AnswerRecord:
    """One produced answer: the question text, the answer, the source texts it was given, its time."""

    q: str
    answer: str
    contexts: tuple[str, ...] = ()
    latency_ms: float | None = None
    refused: bool | None = None  # None: not known, read from the answer's text when scoring
    line: int | None = field(default=None, compare=False)  # where it was read from, for errors

    def to_dict(self) -> dict[str, Any]:
        """The record as one line of an answers file."""
        data: dict[str, Any] = {"q": self.q, "answer": self.answer, "contexts": list(self.contexts)}
        if self.latency_ms is not None:
            data["latency_ms"] = round(self.latency_ms, 1)
        if self.refused is not None:
            data["refused"] = self.refused
        return data


def parse_answer(line: str, where: str = "answer", line_number: int | None = None) -> AnswerRecord:
    """One record from a JSON line; `where` ("answers.jsonl, line 3") names it in errors."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as error:
        raise AnswerFileError(f"{where}: not valid JSON ({error.msg} at column {error.colno}).") from None
    if not isinstance(obj, dict):
        raise AnswerFileError(f'{where}: expected an object {{"q": ..., "answer": ..., "contexts": [...]}}.')
    for key in ("q", "answer"):
        if not isinstance(obj.get(key), str):
            raise AnswerFileError(f'{where}: "{key}" is missing or not a string.')
    contexts = obj.get("contexts", [])
    if not isinstance(contexts, list) or not all(isinstance(text, str) for text in contexts):
        raise AnswerFileError(f'{where}: "contexts" must be a list of the source texts given to the model.')
    latency = obj.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float))):
        raise AnswerFileError(f'{where}: "latency_ms" must be a number of milliseconds.')
    refused = obj.get("refused")
    if refused is not None and not isinstance(refused, bool):
        raise AnswerFileError(f'{where}: "refused" must be true or false.')
    return AnswerRecord(obj["q"], obj["answer"], tuple(contexts), latency, refused, line_number)


def load_answers(path: str | Path) -> list[AnswerRecord]:
    """Read an answers file (JSON Lines, blank lines skipped); AnswerFileError names a bad line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"No answers file at {path}. Pass a .jsonl file with one "
            '{"q": ..., "answer": ..., "contexts": [...]} object per line.'
        )
    with path.open(encoding="utf-8") as lines:
        records = [
            parse_answer(line, f"{path.name}, line {number}", number)
            for number, line in enumerate(lines, start=1)
            if line.strip()
        ]
    if not records:
        raise AnswerFileError(f"{path.name} holds no answers; write one JSON object per line.")
    return records


def save_answers(records: Sequence[AnswerRecord], path: str | Path) -> Path:
    """Write records as an answers file that `load_answers` (and `eval-answers --answers`) reads."""
    path = Path(path)
    path.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


# --- Running -------------------------------------------------------------------------------------


def per_kind(questions: Sequence[Question], n: int) -> list[Question]:
    """The first `n` questions of each kind, in file order: a small subset that still covers every kind."""
    if n < 1:
        raise ValueError(f"take at least one question per kind, got {n}")
    counts: dict[str, int] = {}
    picked = []
    for question in questions:
        counts[question.kind] = counts.get(question.kind, 0) + 1
        if counts[question.kind] <= n:
            picked.append(question)
    return picked


def generate_answers(
    questions: Sequence[Question], answer_fn: Callable[[str], Any], progress: bool | None = None
) -> list[AnswerRecord]:
    """Ask `answer_fn` (question text -> `answers.Answer`) every question, timing each answer."""
    records = []
    show = len(questions) >= 20 if progress is None else progress
    for question in tqdm(questions, desc="Answering", unit="question", disable=not show):
        started = time.perf_counter()
        answer = answer_fn(question.q)
        latency_ms = (time.perf_counter() - started) * 1000
        contexts = tuple(source.text for source in answer.context)
        records.append(AnswerRecord(question.q, answer.text, contexts, latency_ms, answer.refused is not None))
    return records


def score_answers(
    questions: Sequence[Question],
    records: Sequence[AnswerRecord],
    threshold: float = SUPPORT_THRESHOLD,
    name: str = "",
) -> AnswerReport:
    """Score each record against the question with the same `q`; an unknown or repeated `q` is an error."""
    by_text = {normalise_question(question.q): question for question in questions}
    seen: set[str] = set()
    results = []
    for number, record in enumerate(records, start=1):
        where = f"line {record.line if record.line is not None else number}"
        key = normalise_question(record.q)
        question = by_text.get(key)
        if question is None:
            raise AnswerFileError(f"{where}: question {record.q!r} is not in the question file.")
        if key in seen:
            raise AnswerFileError(f"{where}: question {record.q!r} is answered twice.")
        seen.add(key)
        results.append(score_answer(
            question, record.answer, record.contexts, record.latency_ms, threshold, refused=record.refused
        ))
    return AnswerReport(results, name=name, unanswered=len(questions) - len(results))


def evaluate_answers(
    questions: Sequence[Question],
    answer_fn: Callable[[str], Any],
    name: str = "",
    progress: bool | None = None,
) -> AnswerReport:
    """Generate an answer to every question with `answer_fn` and score them."""
    return score_answers(questions, generate_answers(questions, answer_fn, progress), name=name)


# --- The report ------------------------------------------------------------------------------------


def _mean(values: Any) -> float | None:
    values = [value for value in values if value is not None]
    return statistics.fmean(values) if values else None


@dataclass
class AnswerReport(TableReport):
    """Per-answer scores with aggregates overall and by question kind; prints as a table."""

    results: list[AnswerScores]
    name: str = ""
    unanswered: int = 0  # questions of the question file that had no answer to score

    def kinds(self) -> list[str]:
        """The question kinds present, in the order of `questions.KINDS`."""
        order = {kind: i for i, kind in enumerate(KINDS)}
        return sorted({r.kind for r in self.results}, key=lambda kind: (order.get(kind, len(order)), kind))

    def metrics(self, kind: str | None = None) -> dict[str, float | int | None]:
        """Means over the answerable questions (of one kind, or all): correctness, groundedness, citations,
        false refusals, latency and length. For kind "unanswerable": how often the answer refused."""
        if kind == UNANSWERABLE:
            group = [r for r in self.results if not r.answerable]
            return {"n": len(group), "refused": _mean(float(r.refused) for r in group), **self._cost(group)}
        group = [r for r in self.results if r.answerable and (kind is None or r.kind == kind)]
        values: dict[str, float | int | None] = {"n": len(group)}
        for metric in METRICS:
            values[metric] = _mean(getattr(r, metric) for r in group)
        values["refused"] = _mean(float(r.refused) for r in group)  # false refusals
        return {**values, **self._cost(group)}

    @staticmethod
    def _cost(group: Sequence[AnswerScores]) -> dict[str, float | None]:
        times = [r.latency_ms for r in group if r.latency_ms is not None]
        return {
            "latency_ms_p50": float(np.percentile(times, 50)) if times else None,
            "latency_ms_p95": float(np.percentile(times, 95)) if times else None,
            "words": _mean(r.words for r in group),
        }

    def summary(self) -> dict[str, float | None]:
        """The headline figures: correctness, groundedness, refusals on unanswerable, false refusals."""
        answerable, unanswerable = self.metrics(), self.metrics(UNANSWERABLE)
        return {
            "token_f1": answerable["token_f1"],
            "key_fact_recall": answerable["key_fact_recall"],
            "groundedness": answerable["groundedness"],
            "refused_unanswerable": unanswerable["refused"],
            "false_refusals": answerable["refused"],
        }

    def title(self) -> str:
        """One line: the report's name and what it covers."""
        name = f"{self.name}: " if self.name else ""
        answerable = sum(r.answerable for r in self.results)
        missing = f"; {self.unanswered} questions had no answer" if self.unanswered else ""
        return (
            f"{name}{len(self.results)} answers ({answerable} answerable, "
            f"{len(self.results) - answerable} unanswerable){missing}"
        )

    def _rows(self) -> tuple[list[str], list[list[str]]]:
        columns = [*METRICS, "refused"]
        header = ["kind", "n", *(SHORT_NAMES[c] for c in columns), "p50 ms", "words"]
        rows = []
        for kind in [None, *self.kinds()]:
            values = self.metrics(kind)
            cells = [format_value(values.get(c)) for c in columns]
            latency = values["latency_ms_p50"]
            words = values["words"]
            rows.append([
                kind or "all answerable", str(values["n"]), *cells,
                "-" if latency is None else f"{latency:.0f}", "-" if words is None else f"{words:.0f}",
            ])
        return header, rows

    def notes(self) -> list[str]:
        """What the columns mean, in one line each."""
        return [
            "F1: token-F1 with the reference answer; facts: key-fact recall; grounded: share of answer "
            "sentences the sources support; cite P/R: citation precision/recall against the evidence",
            "refused: on answerable rows, false refusals (lower is better); on unanswerable, refusals "
            "(higher is better)",
        ]

    def to_table(self) -> Table:
        """The report as a `reporting.Table`: all answerable questions, then one row per kind."""
        header, rows = self._rows()
        return Table(self.title(), header, rows, self.notes())

    def to_dict(self, per_question: bool = True) -> dict[str, Any]:
        """Aggregates (overall and by kind) and, with `per_question`, every answer's scores."""
        data: dict[str, Any] = {
            "name": self.name,
            "answers": len(self.results),
            "unanswered": self.unanswered,
            "summary": _rounded(self.summary()),
            "by_kind": {kind or "all": _rounded(self.metrics(kind)) for kind in [None, *self.kinds()]},
        }
        if per_question:
            data["per_question"] = [r.to_dict() for r in self.results]
        return data


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if v is None or isinstance(v, int) else round(float(v), 4) for k, v in values.items()}


__all__ = [
    "METRICS",
    "AnswerFileError",
    "AnswerRecord",
    "AnswerReport",
    "evaluate_answers",
    "generate_answers",
    "load_answers",
    "parse_answer",
    "per_kind",
    "save_answers",
    "score_answers",
]
