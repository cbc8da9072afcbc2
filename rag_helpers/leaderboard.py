"""Compare retrievers on a labelled question set: one `EvalReport` each, and a leaderboard table.

    reports = compare_retrievers(["dense", "bm25", "hybrid"], collection, model, questions)
    print(leaderboard_table(reports))

Each retriever is built with `registry.make_retriever`, asked one warm-up question (so one-off
costs such as loading an index are not counted as query latency), then evaluated with
`evaluation.evaluate`. Latency is the wall-clock time of each retriever call, query embedding
included.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from .evaluation import EvalReport, evaluate, percentile
from .questions import KINDS, UNANSWERABLE, Question
from .registry import make_retriever

WARM_UP_QUERY = "How do I get started?"


def compare_retrievers(
    names: Sequence[str],
    collection: Any,
    model: Any,
    questions: Sequence[Question],
    *,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    documents: Any = None,
    corpus_dir: Any = None,
    progress: bool = False,
) -> dict[str, EvalReport]:
    """Evaluate each named retriever (with `options[name]` passed to its factory) on `questions`."""
    reports = {}
    extra = {} if corpus_dir is None else {"corpus_dir": corpus_dir}
    for name in names:
        retriever = CPUTimed(make_retriever(name, collection, model, **dict((options or {}).get(name, {}))))
        retriever(WARM_UP_QUERY, 5)
        retriever.cpu_ms.clear()
        report = evaluate(retriever, questions, documents=documents, name=name, progress=progress, **extra)
        # The last calls are the timed ones (evaluate may run an untimed warm-up query first).
        report.cpu_ms = retriever.cpu_ms[-len(report.results) :]  # type: ignore[attr-defined]
        reports[name] = report
    return reports


class CPUTimed:
    """Wraps a retriever and records the CPU time of each call (this process, all threads), in ms.

    Wall-clock latency on a busy machine mostly measures the other programs; CPU time is what the
    retriever itself costs. With one torch thread (`torch.set_num_threads(1)`) it is also about the
    wall-clock time the call takes on an idle core.
    """

    def __init__(self, retriever: Any) -> None:
        self.retriever = retriever
        self.cpu_ms: list[float] = []

    def __call__(self, query: str, k: int = 5) -> Any:
        started = time.process_time()
        try:
            return self.retriever(query, k)
        finally:
            self.cpu_ms.append((time.process_time() - started) * 1000)

    def __repr__(self) -> str:
        return f"CPUTimed({self.retriever!r})"


def latency_p50(report: EvalReport) -> float | None:
    """Median time per query of a report, in milliseconds."""
    times = [r.latency_ms for r in report.results]
    return percentile(times, 50) if times else None


def cpu_p50(report: EvalReport) -> float | None:
    """Median CPU time per query (recorded by `compare_retrievers`) in milliseconds, or None."""
    times = getattr(report, "cpu_ms", None)
    return percentile(times, 50) if times else None


def leaderboard_rows(
    reports: Mapping[str, EvalReport], k: int = 5, baseline: str | None = "dense"
) -> list[dict]:
    """One dict per report, best evidence-hit@k first: headline metrics, per-kind evidence-hit@k, latency."""
    rows = []
    base = reports.get(baseline) if baseline else None
    base_hit = base.metrics()[f"evidence_hit@{k}"] if base else None
    for name, report in reports.items():
        overall = report.metrics()
        latency = report.latency_ms()
        row: dict[str, Any] = {
            "retriever": name,
            "n": overall["n"],
            "evidence_hit@1": overall.get("evidence_hit@1"),
            f"evidence_hit@{k}": overall[f"evidence_hit@{k}"],
            f"doc_hit@{k}": overall[f"doc_hit@{k}"],
            f"mrr@{report.cutoff}": overall[f"mrr@{report.cutoff}"],
            f"ndcg@{report.cutoff}": overall[f"ndcg@{report.cutoff}"],
            "p50_ms": latency_p50(report),
            "mean_ms": latency["mean"],
            "cpu_p50_ms": cpu_p50(report),
        }
        if base_hit is not None and row[f"evidence_hit@{k}"] is not None:
            row[f"vs_{baseline}"] = row[f"evidence_hit@{k}"] - base_hit
        for kind in report.kinds():
            row[f"{kind}@{k}"] = report.metrics(kind)[f"evidence_hit@{k}"]
        rows.append(row)

    def rank(row: dict) -> tuple:
        mrr = next((v for key, v in row.items() if key.startswith("mrr@")), None)
        return (-(row[f"evidence_hit@{k}"] or 0), -(mrr or 0), row["retriever"])

    return sorted(rows, key=rank)


def _cell(value: Any, signed: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return str(value)


def leaderboard_table(
    reports: Mapping[str, EvalReport], k: int = 5, baseline: str | None = "dense", markdown: bool = False
) -> str:
    """The leaderboard as aligned text (or a Markdown table): metrics, per-kind evidence-hit@k, p50 ms."""
    rows = leaderboard_rows(reports, k, baseline)
    if not rows:
        return "(no reports)"
    first = next(iter(reports.values()))
    cutoff = first.cutoff
    kinds = [kind for kind in KINDS if kind != UNANSWERABLE and f"{kind}@{k}" in rows[0]]
    columns = [
        "retriever",
        "evidence_hit@1",
        f"evidence_hit@{k}",
        f"doc_hit@{k}",
        f"mrr@{cutoff}",
        f"ndcg@{cutoff}",
    ]
    headers = ["retriever", "ev@1", f"ev@{k}", f"doc@{k}", f"MRR@{cutoff}", f"nDCG@{cutoff}"]
    if baseline and f"vs_{baseline}" in rows[0]:
        columns.append(f"vs_{baseline}")
        headers.append(f"Δev@{k}")
    columns += [f"{kind}@{k}" for kind in kinds] + ["p50_ms", "mean_ms"]
    headers += [f"{kind} ev@{k}" for kind in kinds] + ["p50 ms", "mean ms"]
    if rows[0].get("cpu_p50_ms") is not None:
        columns.append("cpu_p50_ms")
        headers.append("CPU p50 ms")
    table = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if column.endswith("_ms"):
                cells.append("-" if value is None else f"{value:.1f}")
            else:
                cells.append(_cell(value, signed=column.startswith("vs_")))
        table.append(cells)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(cells) + " |" for cells in table]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *table)]
    title = f"{rows[0]['n']} answerable questions; ev = evidence-hit, doc = doc-hit; latency per query"
    out = [
        title + ", embedding included",
        _line(headers, widths),
        "  ".join("-" * w for w in widths),
    ]
    out += [_line(cells, widths) for cells in table]
    return "\n".join(out)


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


__all__ = [
    "CPUTimed",
    "compare_retrievers",
    "cpu_p50",
    "latency_p50",
    "leaderboard_rows",
    "leaderboard_table",
]
