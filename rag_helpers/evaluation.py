"""Measure retrieval against a labelled question set: hit@k, MRR, nDCG, latency, "don't know" distances.

Any *retriever* works (`base.Retriever`): a callable `retriever(query, k)` returning
`base.RetrievedChunk` hits, best first, whose metadata holds `document_id`, `start` and `end` (as
`store.ingest` stores them). Tables, HTML, plots and the leaderboard live in `reporting`.

Definitions used throughout (k is the number of top chunks looked at):

* **doc-hit@k**: a chunk of the question's document is among the top k.
* **evidence-hit@k**: one of the top k chunks is an *evidence hit*: its text contains the evidence
  quote, or it comes from the question's document and its `[start, end)` span overlaps the
  evidence's span by at least half the evidence's length. The half rule exists because an
  evidence quote that straddles a chunk boundary is whole in no chunk (with 1000/20 chunks the
  neighbours share only 20 characters); one of the two pieces then always holds at least half of
  it and counts, while a chunk that only grazes the quote (a few characters of the shared overlap)
  does not. Chunks shorter than half the quote can never hit that way, which is fine: they are too
  small to answer anything.
* **relevance** for MRR and nDCG is binary: a chunk is relevant when it is an evidence hit.
  MRR@n is 1/rank of the first relevant chunk (0 if none in the top n); nDCG@n uses gains 1/0 with
  the ideal ranking placing all relevant chunks that were retrieved first (at least one), so it
  lies in [0, 1]. n is the largest k asked for (10 by default).
* **ranking** is the retriever's order, exactly as returned; equal scores are never re-sorted.
  When fewer than k chunks come back, the metrics use what was returned.
* **unanswerable** questions (no document answers them) are left out of every hit/MRR/nDCG
  figure. For them, and for the answerable ones, the report keeps the best (top) distance and
  score, so a "don't know" threshold can be chosen: see `suggest_threshold`.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .base import Chunk, Retriever, RetrievedChunk, Span
from .config import SAMPLE_CORPUS_DIR
from .documents import Document, load_documents
from .questions import KINDS, UNANSWERABLE, Question, find_evidence, load_questions
from .reporting import Table, format_value, short_name

DEFAULT_K_VALUES: tuple[int, ...] = (1, 3, 5, 10)
# Show a progress bar on its own when the question set is big enough for the wait to be noticeable.
AUTO_PROGRESS_MIN_QUESTIONS = 50


# --- Metric functions: a ranking is a list of booleans (relevant or not), best first ---------------


def hit_at_k(relevant: Sequence[bool], k: int) -> float:
    """1.0 when any of the first k items is relevant, else 0.0."""
    _check_k(k)
    return 1.0 if any(relevant[:k]) else 0.0


def reciprocal_rank(relevant: Sequence[bool], k: int | None = None) -> float:
    """1 / (1-based rank of the first relevant item within the first k), or 0.0 when there is none."""
    if k is not None:
        _check_k(k)
    for rank, is_relevant in enumerate(relevant[:k], start=1):
        if is_relevant:
            return 1.0 / rank
    return 0.0


def dcg_at_k(relevant: Sequence[bool], k: int) -> float:
    """Discounted cumulative gain of binary gains: sum of 1 / log2(rank + 1) over relevant ranks <= k."""
    _check_k(k)
    return sum(1.0 / math.log2(rank + 1) for rank, hit in enumerate(relevant[:k], start=1) if hit)


def ndcg_at_k(relevant: Sequence[bool], k: int, n_relevant: int | None = None) -> float:
    """DCG@k divided by the DCG of the ideal ranking of `n_relevant` relevant items.

    `n_relevant` defaults to the number of relevant items in `relevant` (at least one), i.e. the
    ideal is the same results with the relevant ones moved to the top.
    """
    _check_k(k)
    if n_relevant is None:
        n_relevant = max(1, sum(bool(hit) for hit in relevant))
    if n_relevant < 1:
        raise ValueError(f"n_relevant must be at least 1, got {n_relevant}")
    ideal = dcg_at_k([True] * n_relevant, k)
    return dcg_at_k(relevant, k) / ideal


def overlap(a: Span, b: Span) -> int:
    """Number of characters two half-open spans [start, end) share."""
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a whole number of at least 1, got {k!r}")


# --- Evidence hits ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Where a question's evidence quote lies: its document and every span where it occurs."""

    document_id: str
    text: str
    spans: tuple[Span, ...]

    @classmethod
    def locate(cls, question: Question, document: Document) -> Evidence:
        """Find the question's evidence in its document; ValueError when it is not there."""
        if question.evidence is None:
            raise ValueError(f"question {question.q!r} names a document but no evidence quote")
        starts = find_evidence(document.text, question.evidence)
        if not starts:
            raise ValueError(f"the evidence of {question.q!r} is not in {document.id}")
        return cls(document.id, question.evidence, tuple((s, s + len(question.evidence)) for s in starts))


Hit = RetrievedChunk | Chunk  # a search hit, or a chunk straight from `chunking` (no distance or score)


def chunk_location(chunk: Hit) -> tuple[str | None, Span | None]:
    """(document id, (start, end)) of a hit, from the metadata `ingest` stores; None where it is missing."""
    if isinstance(chunk, Chunk):
        return chunk.document_id, (chunk.start, chunk.end)
    metadata = chunk.metadata
    start, end = metadata.get("start"), metadata.get("end")
    span = (int(start), int(end)) if start is not None and end is not None else None
    document_id = metadata.get("document_id")
    return (None if document_id is None else str(document_id)), span


def is_doc_hit(chunk: Hit, document_id: str) -> bool:
    """True when the chunk comes from the given document."""
    return chunk_location(chunk)[0] == document_id


def is_evidence_hit(chunk: Hit, evidence: Evidence) -> bool:
    """True when the chunk contains the quote, or its span overlaps the quote's by >= half its length."""
    if evidence.text in chunk.text:
        return True
    document_id, span = chunk_location(chunk)
    if document_id != evidence.document_id or span is None:
        return False
    needed = len(evidence.text) / 2
    return any(overlap(span, evidence_span) >= needed for evidence_span in evidence.spans)


# --- Choosing a "don't know" threshold -------------------------------------------------------


@dataclass(frozen=True)
class Threshold:
    """A cut on the top chunk's distance (answer when <= value) or score (answer when >= value)."""

    value: float
    by: str  # "distance" or "score"
    answerable_kept: float  # fraction of answerable questions that would still be answered
    unanswerable_rejected: float  # fraction of unanswerable questions that would get "don't know"

    @property
    def balanced_accuracy(self) -> float:
        """Mean of the two fractions: 1.0 separates the groups perfectly, 0.5 is no better than chance."""
        return (self.answerable_kept + self.unanswerable_rejected) / 2

    def answers(self, best: float) -> bool:
        """True when a question whose top chunk has this distance (or score) should be answered."""
        return best <= self.value if self.by == "distance" else best >= self.value

    def describe(self) -> str:
        """One line: the rule and what it does to both groups."""
        rule = f"distance > {self.value:.4g}" if self.by == "distance" else f"score < {self.value:.4g}"
        return (
            f'say "don\'t know" when the top {rule}: keeps {self.answerable_kept:.0%} of answerable, '
            f"rejects {self.unanswerable_rejected:.0%} of unanswerable questions"
        )

    def to_dict(self) -> dict[str, Any]:
        """The threshold as plain JSON-ready values."""
        return {
            "value": round(self.value, 6),
            "by": self.by,
            "answer_when": "distance <= value" if self.by == "distance" else "score >= value",
            "answerable_kept": round(self.answerable_kept, 4),
            "unanswerable_rejected": round(self.unanswerable_rejected, 4),
            "balanced_accuracy": round(self.balanced_accuracy, 4),
        }


def best_separating_threshold(
    answerable: Sequence[float], unanswerable: Sequence[float], by: str = "distance"
) -> Threshold | None:
    """The cut that best separates the two groups' best distances (or scores), or None if a group is empty.

    Candidates are the midpoints between neighbouring observed values, plus "keep everything";
    the winner maximises balanced accuracy (the groups are usually very different in size), and
    among equals the one that keeps more answerable questions.
    """
    if by not in ("distance", "score"):
        raise ValueError(f"by must be 'distance' or 'score', got {by!r}")
    if not answerable or not unanswerable:
        return None
    sign = 1.0 if by == "distance" else -1.0  # work in "lower is closer" terms
    good = [sign * value for value in answerable]
    bad = [sign * value for value in unanswerable]
    values = sorted(set(good) | set(bad))
    candidates = [(low + high) / 2 for low, high in zip(values, values[1:], strict=False)] + [values[-1]]
    best: tuple[float, float, float] | None = None  # (balanced accuracy, kept, cut)
    for cut in candidates:
        kept = sum(value <= cut for value in good) / len(good)
        rejected = sum(value > cut for value in bad) / len(bad)
        key = ((kept + rejected) / 2, kept, cut)
        if best is None or key[:2] > best[:2]:
            best = key
    assert best is not None
    _, kept, cut = best
    rejected = sum(value > cut for value in bad) / len(bad)
    return Threshold(value=sign * cut, by=by, answerable_kept=kept, unanswerable_rejected=rejected)


# --- Results and the report -------------------------------------------------------------------


@dataclass(frozen=True)
class QuestionResult:
    """What the retriever returned for one question, and which chunks hit."""

    question: Question
    chunk_ids: tuple[str, ...]
    doc_hits: tuple[bool, ...]
    evidence_hits: tuple[bool, ...]
    best_distance: float | None
    best_score: float | None
    latency_ms: float
    cpu_ms: float | None = None  # CPU time of the call (this process, all threads), when measured

    @property
    def first_doc_rank(self) -> int | None:
        """1-based rank of the first chunk from the right document, or None."""
        return next((rank for rank, hit in enumerate(self.doc_hits, start=1) if hit), None)

    @property
    def first_evidence_rank(self) -> int | None:
        """1-based rank of the first evidence hit, or None."""
        return next((rank for rank, hit in enumerate(self.evidence_hits, start=1) if hit), None)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready values."""
        return {
            "q": self.question.q,
            "kind": self.question.kind,
            "doc": self.question.doc,
            "first_doc_rank": self.first_doc_rank,
            "first_evidence_rank": self.first_evidence_rank,
            "best_distance": _round(self.best_distance, 6),
            "best_score": _round(self.best_score, 6),
            "latency_ms": _round(self.latency_ms, 3),
            "cpu_ms": _round(self.cpu_ms, 3),
            "top_ids": list(self.chunk_ids[:3]),
        }


@dataclass
class EvalReport:
    """Per-question results plus the summary metrics, by question kind; prints as a table."""

    results: list[QuestionResult]
    k_values: tuple[int, ...] = DEFAULT_K_VALUES
    name: str = ""

    @property
    def cutoff(self) -> int:
        """The rank cut-off for MRR and nDCG: the largest k."""
        return max(self.k_values)

    @property
    def answerable(self) -> list[QuestionResult]:
        """Results of the questions some document answers."""
        return [r for r in self.results if r.question.answerable]

    @property
    def unanswerable(self) -> list[QuestionResult]:
        """Results of the questions no document answers."""
        return [r for r in self.results if not r.question.answerable]

    def kinds(self) -> list[str]:
        """The kinds of answerable questions present, in the order of `questions.KINDS`."""
        present = {r.question.kind for r in self.answerable}
        order = {kind: i for i, kind in enumerate(KINDS)}
        return sorted(present, key=lambda kind: (order.get(kind, len(order)), kind))

    def metric_names(self) -> list[str]:
        """Names of the metrics `metrics()` returns, e.g. "doc_hit@5", "evidence_hit@5", "mrr@10"."""
        names = [f"doc_hit@{k}" for k in self.k_values] + [f"evidence_hit@{k}" for k in self.k_values]
        return names + [f"mrr@{self.cutoff}", f"ndcg@{self.cutoff}"]

    def metrics(self, kind: str | None = None) -> dict[str, float | int | None]:
        """Mean of each metric over the answerable questions (of one kind, or all); "n" counts them."""
        results = [r for r in self.answerable if kind is None or r.question.kind == kind]
        values: dict[str, float | int | None] = {"n": len(results)}
        for k in self.k_values:
            values[f"doc_hit@{k}"] = _mean(hit_at_k(r.doc_hits, k) for r in results)
        for k in self.k_values:
            values[f"evidence_hit@{k}"] = _mean(hit_at_k(r.evidence_hits, k) for r in results)
        values[f"mrr@{self.cutoff}"] = _mean(reciprocal_rank(r.evidence_hits, self.cutoff) for r in results)
        values[f"ndcg@{self.cutoff}"] = _mean(ndcg_at_k(r.evidence_hits, self.cutoff) for r in results)
        return values

    def latency_ms(self) -> dict[str, float | None]:
        """Mean and 95th percentile of the retriever's time per query, in milliseconds."""
        times = [r.latency_ms for r in self.results]
        if not times:
            return {"mean": None, "p95": None}
        return {"mean": statistics.fmean(times), "p95": float(np.percentile(times, 95))}

    def best_values(self, by: str = "distance") -> dict[str, list[float]]:
        """The top chunk's distance (or score) per question, split into answerable and unanswerable."""
        attribute = "best_distance" if by == "distance" else "best_score"
        groups: dict[str, list[float]] = {"answerable": [], "unanswerable": []}
        for result in self.results:
            value = getattr(result, attribute)
            if value is not None:
                groups["answerable" if result.question.answerable else "unanswerable"].append(value)
        return groups

    def threshold(self) -> Threshold | None:
        """The suggested "don't know" threshold (see `suggest_threshold`)."""
        return suggest_threshold(self)

    # --- rendering ---

    def to_table(self, k: int | None = None) -> Table:
        """The report as a `reporting.Table`: one row per question kind; only k's columns when k is given."""
        header, rows = self._rows(k)
        return Table(self.title(), header, rows, self._notes())

    def _rows(self, k: int | None) -> tuple[list[str], list[list[str]]]:
        ks = self.k_values if k is None else (k,)
        if k is not None and k not in self.k_values:
            raise ValueError(f"k={k} was not evaluated; choose one of {', '.join(map(str, self.k_values))}")
        columns = [f"doc_hit@{x}" for x in ks] + [f"evidence_hit@{x}" for x in ks]
        columns += [f"mrr@{self.cutoff}", f"ndcg@{self.cutoff}"]
        header = ["kind", "n", *(short_name(c) for c in columns)]
        rows = []
        for kind in [None, *self.kinds()]:
            values = self.metrics(kind)
            rows.append([kind or "all", str(values["n"]), *(format_value(values[c]) for c in columns)])
        return header, rows

    def _notes(self) -> list[str]:
        latency = self.latency_ms()
        notes = []
        if latency["mean"] is not None:
            notes.append(f"latency per query: mean {latency['mean']:.1f} ms, p95 {latency['p95']:.1f} ms")
        for by in ("distance", "score"):
            groups = self.best_values(by)
            if groups["answerable"] or groups["unanswerable"]:
                parts = [f"{name} {_describe_values(values)}" for name, values in groups.items() if values]
                notes.append(f"top-chunk {by}: " + "; ".join(parts))
                break
        threshold = self.threshold()
        if threshold is not None:
            notes.append(threshold.describe())
        return notes

    def title(self) -> str:
        """One line: the report's name and how many questions of each group it covers."""
        name = f"{self.name}: " if self.name else ""
        return (
            f"{name}{len(self.results)} questions "
            f"({len(self.answerable)} answerable, {len(self.unanswerable)} unanswerable)"
        )

    def summary(self, k: int = 5) -> str:
        """One line with the headline figures at k."""
        if k not in self.k_values:
            raise ValueError(f"k={k} was not evaluated; choose one of {', '.join(map(str, self.k_values))}")
        values = self.metrics()
        latency = self.latency_ms()
        parts = [
            f"evidence-hit@{k} {format_value(values[f'evidence_hit@{k}'])}",
            f"doc-hit@{k} {format_value(values[f'doc_hit@{k}'])}",
            f"MRR@{self.cutoff} {format_value(values[f'mrr@{self.cutoff}'])}",
            f"nDCG@{self.cutoff} {format_value(values[f'ndcg@{self.cutoff}'])}",
        ]
        if latency["p95"] is not None:
            parts.append(f"p95 {latency['p95']:.1f} ms")
        return f"{', '.join(parts)} on {len(self.answerable)} answerable questions"

    def table(self, k: int | None = None) -> str:
        """A plain-text table: one row per question kind; only k's columns when k is given."""
        return self.to_table(k).text()

    def to_html(self, k: int | None = None) -> str:
        """The same table as HTML (no pandas needed)."""
        return self.to_table(k).html()

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        return self.table()

    def to_dict(self, per_question: bool = True) -> dict[str, Any]:
        """Everything in the report as JSON-ready values (floats rounded to 4 decimals)."""
        metrics = {kind or "all": _round_all(self.metrics(kind)) for kind in [None, *self.kinds()]}
        threshold = self.threshold()
        data: dict[str, Any] = {
            "name": self.name,
            "k_values": list(self.k_values),
            "questions": len(self.results),
            "answerable": len(self.answerable),
            "unanswerable": len(self.unanswerable),
            "metrics": metrics,
            "latency_ms": _round_all(self.latency_ms(), 3),
            "best_distance": {name: _stats(values) for name, values in self.best_values("distance").items()},
            "best_score": {name: _stats(values) for name, values in self.best_values("score").items()},
            "threshold": None if threshold is None else threshold.to_dict(),
            "unanswerable_questions": [
                {key: r.to_dict()[key] for key in ("q", "best_distance", "best_score")}
                for r in self.unanswerable
            ],
        }
        if per_question:
            data["per_question"] = [r.to_dict() for r in self.results]
        return data


def suggest_threshold(report: EvalReport) -> Threshold | None:
    """The top-chunk distance that best separates answerable from unanswerable questions.

    Uses distances when every question has one (dense retrieval), else scores (higher is
    better); None when a group is empty. See `best_separating_threshold` for the rule.
    """
    for by in ("distance", "score"):
        groups = report.best_values(by)
        if len(groups["answerable"]) + len(groups["unanswerable"]) == len(report.results):
            return best_separating_threshold(groups["answerable"], groups["unanswerable"], by=by)
    return None


# --- Running an evaluation --------------------------------------------------------------------


def evaluate(
    retriever: Retriever,
    questions: Sequence[Question] | str | Path,
    k_values: Sequence[int] = DEFAULT_K_VALUES,
    *,
    documents: Sequence[Document] | None = None,
    corpus_dir: str | Path = SAMPLE_CORPUS_DIR,
    name: str = "",
    progress: bool | None = None,
    warmup: bool = True,
) -> EvalReport:
    """Ask the retriever every question for the top max(k_values) chunks and score what comes back.

    `questions` may be a list of `Question` or the path of a question file. The evidence spans are
    located in `documents` (default: loaded from `corpus_dir`, the sample corpus), which must be
    the documents the index was built from. Each retriever call is timed with `time.perf_counter`;
    with `warmup` one untimed query runs first, so one-off costs (loading the embedding model on the
    first query, opening the index) do not count as query latency.
    """
    if isinstance(questions, (str, Path)):
        questions = load_questions(questions)
    k_values = tuple(sorted(set(k_values)))
    if not k_values:
        raise ValueError("k_values is empty; pass at least one k, e.g. (1, 3, 5, 10)")
    for k in k_values:
        _check_k(k)
    if not questions:
        raise ValueError("no questions to evaluate; load some with rag_helpers.questions.load_questions()")
    evidence = locate_evidence(questions, documents if documents is not None else load_documents(corpus_dir))
    depth = max(k_values)
    show = len(questions) >= AUTO_PROGRESS_MIN_QUESTIONS if progress is None else progress
    calls = timed_queries(retriever, [q.q for q in questions], depth, warmup=warmup, progress=show)
    results = [
        _score(question, list(call.result)[:depth], located, call.wall_ms, call.cpu_ms)
        for question, located, call in zip(questions, evidence, calls, strict=True)
    ]
    return EvalReport(results=results, k_values=k_values, name=name)


@dataclass(frozen=True)
class TimedCall:
    """What one retriever call returned, with its wall-clock and CPU time in milliseconds."""

    result: Sequence[Hit]
    wall_ms: float
    cpu_ms: float  # this process, all threads: what the call itself cost on a busy machine


def timed_queries(
    retriever: Retriever, queries: Sequence[str], k: int, *, warmup: bool = True, progress: bool = False
) -> list[TimedCall]:
    """Ask `retriever` each query for `k` hits, timing every call.

    With `warmup` one untimed query runs first, so one-off costs (loading the embedding model on the
    first query, opening the index) do not count as query latency.
    """
    if warmup and queries:
        retriever(queries[0], k)
    calls = []
    for query in tqdm(queries, desc="Evaluating", unit="question", disable=not progress):
        wall, cpu = time.perf_counter(), time.process_time()
        result = retriever(query, k)
        calls.append(
            TimedCall(result, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000)
        )
    return calls


def compare_retrievers(
    names: Sequence[str],
    collection: Any,
    model: Any,
    questions: Sequence[Question],
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    documents: Sequence[Document] | None = None,
    corpus_dir: str | Path = SAMPLE_CORPUS_DIR,
    progress: bool = False,
) -> dict[str, EvalReport]:
    """Evaluate each named retriever (with `options[name]` passed to its factory) on `questions`."""
    from .registry import make_retriever

    reports = {}
    for name in names:
        retriever = make_retriever(name, collection, model, **dict((options or {}).get(name, {})))
        reports[name] = evaluate(
            retriever, questions, documents=documents, corpus_dir=corpus_dir, name=name, progress=progress
        )
    return reports


def locate_evidence(questions: Sequence[Question], documents: Sequence[Document]) -> list[Evidence | None]:
    by_id = {document.id: document for document in documents}
    located: list[Evidence | None] = []
    problems = []
    for question in questions:
        located.append(None)
        if not question.answerable:
            continue
        document = by_id.get(question.doc or "")
        if document is None:
            problems.append(f"{question.q!r}: document {question.doc!r} is not in the corpus")
            continue
        try:
            located[-1] = Evidence.locate(question, document)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ValueError(
            f"{len(problems)} question(s) do not match the documents: {shown}. Evaluate against the folder "
            "the index was built from, and check the file with rag_helpers.questions.validate_questions()."
        )
    return located


def _score(
    question: Question,
    chunks: list[Hit],
    evidence: Evidence | None,
    latency_ms: float,
    cpu_ms: float | None = None,
) -> QuestionResult:
    hits = [c for c in chunks if isinstance(c, RetrievedChunk)]
    distances = [c.distance for c in hits if c.distance is not None]
    scores = [c.score for c in hits]
    if question.answerable and evidence is not None:
        doc_hits = tuple(is_doc_hit(c, evidence.document_id) for c in chunks)
        evidence_hits = tuple(is_evidence_hit(c, evidence) for c in chunks)
    else:
        doc_hits = evidence_hits = tuple(False for _ in chunks)
    return QuestionResult(
        question=question,
        chunk_ids=tuple(c.id for c in chunks),
        doc_hits=doc_hits,
        evidence_hits=evidence_hits,
        best_distance=float(min(distances)) if distances else None,
        best_score=float(max(scores)) if scores else None,
        latency_ms=latency_ms,
        cpu_ms=cpu_ms,
    )


# --- small formatting helpers -----------------------------------------------------------------


def _mean(values: Any) -> float | None:
    values = list(values)
    return statistics.fmean(values) if values else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _round_all(values: Mapping[str, Any], digits: int = 4) -> dict[str, Any]:
    return {
        key: value if isinstance(value, int) or value is None else round(value, digits)
        for key, value in values.items()
    }


def _stats(values: Sequence[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "min": None, "median": None, "max": None}
    return {
        "n": len(values),
        "min": round(min(values), 6),
        "median": round(statistics.median(values), 6),
        "max": round(max(values), 6),
    }


def _describe_values(values: Sequence[float]) -> str:
    low, middle, high = min(values), statistics.median(values), max(values)
    return f"median {middle:.3f} (min {low:.3f}, max {high:.3f}, n={len(values)})"


__all__ = [
    "DEFAULT_K_VALUES",
    "UNANSWERABLE",
    "EvalReport",
    "Evidence",
    "QuestionResult",
    "Threshold",
    "best_separating_threshold",
    "chunk_location",
    "compare_retrievers",
    "dcg_at_k",
    "evaluate",
    "hit_at_k",
    "is_doc_hit",
    "is_evidence_hit",
    "ndcg_at_k",
    "overlap",
    "reciprocal_rank",
    "suggest_threshold",
    "timed_queries",
]
