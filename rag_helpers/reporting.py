"""Show evaluation results: one table helper (text, HTML, Markdown), the leaderboard, and the plots.

Nothing here measures anything: the reports (`evaluation.EvalReport`, `answer_report.AnswerReport`)
hold the numbers, and these functions only lay them out. Plots are matplotlib `Figure`s, built
without pyplot's global state; their y-axis names the metric shown.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .questions import KINDS, UNANSWERABLE

# --- One table helper ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A titled table with notes below it: aligned text (`str`), HTML in Jupyter, or Markdown."""

    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    notes: Sequence[str] = ()

    def text(self) -> str:
        """Aligned plain text: the first column left-aligned, the others right-aligned."""
        widths = [max(len(row[i]) for row in [self.header, *self.rows]) for i in range(len(self.header))]
        lines = [self.title] if self.title else []
        lines += [_align(self.header, widths), "  ".join("-" * w for w in widths)]
        lines += [_align(row, widths) for row in self.rows]
        return "\n".join([*lines, *self.notes])

    def html(self) -> str:
        """The same table as HTML, every cell escaped (no pandas needed)."""
        head = "".join(f"<th>{html.escape(cell)}</th>" for cell in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self.rows
        )
        items = "".join(f"<li>{html.escape(note)}</li>" for note in self.notes)
        return (
            f"<div><p><b>{html.escape(self.title)}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table><ul>{items}</ul></div>"
        )

    def markdown(self) -> str:
        """The header and rows as a Markdown table (title and notes left out)."""
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in self.rows])

    def __str__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        return self.html()


class TableReport:
    """A report shown as its `to_table()`: aligned text (`str`, `table()`), HTML in Jupyter (`to_html()`)."""

    def to_table(self) -> Table:
        raise NotImplementedError

    def table(self) -> str:
        """The report as aligned plain text."""
        return self.to_table().text()

    def to_html(self) -> str:
        """The report as HTML."""
        return self.to_table().html()

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        return self.table()


def _align(cells: Sequence[str], widths: Sequence[int]) -> str:
    padded = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(cells, widths))]
    return "  ".join(padded).rstrip()


def format_value(value: float | int | None, signed: bool = False) -> str:
    """A metric for a table cell: three decimals ("+0.125" when `signed`), "-" when missing."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return str(value)


def format_ms(value: float | None, digits: int = 1) -> str:
    """Milliseconds for a table cell, "-" when missing."""
    return "-" if value is None else f"{value:.{digits}f}"


def short_name(metric: str) -> str:
    """A metric's column name: "evidence_hit@5" -> "ev@5", "mrr@10" -> "MRR@10"."""
    for long, short in (("evidence_hit", "ev"), ("doc_hit", "doc"), ("mrr", "MRR"), ("ndcg", "nDCG")):
        metric = metric.replace(long, short)
    return metric


# --- The leaderboard -------------------------------------------------------------------------------


def median_ms(times: Sequence[float]) -> float | None:
    """The median of per-query times in milliseconds, or None when there are none."""
    return float(np.percentile(times, 50)) if len(times) else None


def latency_p50(report: Any) -> float | None:
    """Median wall-clock time per query of an `EvalReport`, in milliseconds."""
    return median_ms([r.latency_ms for r in report.results])


def cpu_p50(report: Any) -> float | None:
    """Median CPU time per query of an `EvalReport`, in milliseconds, or None when not measured."""
    return median_ms([r.cpu_ms for r in report.results if r.cpu_ms is not None])


def leaderboard_rows(reports: Mapping[str, Any], k: int = 5, baseline: str | None = "dense") -> list[dict]:
    """One dict per report, best evidence-hit@k first: headline metrics, per-kind evidence-hit@k, latency."""
    rows = []
    base = reports.get(baseline) if baseline else None
    base_hit = base.metrics()[f"evidence_hit@{k}"] if base else None
    for name, report in reports.items():
        overall = report.metrics()
        row: dict[str, Any] = {
            "retriever": name,
            "n": overall["n"],
            "evidence_hit@1": overall.get("evidence_hit@1"),
            f"evidence_hit@{k}": overall[f"evidence_hit@{k}"],
            f"doc_hit@{k}": overall[f"doc_hit@{k}"],
            f"mrr@{report.cutoff}": overall[f"mrr@{report.cutoff}"],
            f"ndcg@{report.cutoff}": overall[f"ndcg@{report.cutoff}"],
            "p50_ms": latency_p50(report),
            "mean_ms": report.latency_ms()["mean"],
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


def leaderboard(reports: Mapping[str, Any], k: int = 5, baseline: str | None = "dense") -> Table:
    """The leaderboard as a `Table`: metrics, change against `baseline`, per-kind evidence-hit@k, latency."""
    rows = leaderboard_rows(reports, k, baseline)
    if not rows:
        raise ValueError("no reports to rank; pass e.g. compare_retrievers(...)")
    cutoff = next(iter(reports.values())).cutoff
    kinds = [kind for kind in KINDS if kind != UNANSWERABLE and f"{kind}@{k}" in rows[0]]
    columns = ["retriever", "evidence_hit@1", f"evidence_hit@{k}", f"doc_hit@{k}"]
    columns += [f"mrr@{cutoff}", f"ndcg@{cutoff}"]
    headers = ["retriever", "ev@1", f"ev@{k}", f"doc@{k}", f"MRR@{cutoff}", f"nDCG@{cutoff}"]
    if baseline and f"vs_{baseline}" in rows[0]:
        columns.append(f"vs_{baseline}")
        headers.append(f"Δev@{k}")
    columns += [f"{kind}@{k}" for kind in kinds] + ["p50_ms", "mean_ms"]
    headers += [f"{kind} ev@{k}" for kind in kinds] + ["p50 ms", "mean ms"]
    if rows[0].get("cpu_p50_ms") is not None:
        columns.append("cpu_p50_ms")
        headers.append("CPU p50 ms")
    cells = [
        [
            format_ms(row.get(column))
            if column.endswith("_ms")
            else format_value(row.get(column), signed=column.startswith("vs_"))
            for column in columns
        ]
        for row in rows
    ]
    title = f"{rows[0]['n']} answerable questions; ev = evidence-hit, doc = doc-hit; latency per query"
    return Table(title + ", embedding included", headers, cells)


def leaderboard_table(
    reports: Mapping[str, Any], k: int = 5, baseline: str | None = "dense", markdown: bool = False
) -> str:
    """The leaderboard as aligned text (or a Markdown table); "(no reports)" when there are none."""
    if not reports:
        return "(no reports)"
    table = leaderboard(reports, k, baseline)
    return table.markdown() if markdown else table.text()


# --- Plots -------------------------------------------------------------------------------------------


def activate_notebook_backend() -> None:
    """Load matplotlib's configured backend now: in Jupyter that registers the PNG display of
    figures, which a detached Figure (never shown twice by pyplot) otherwise lacks in a fresh kernel."""
    import matplotlib
    import matplotlib.pyplot as plt

    plt.switch_backend(matplotlib.get_backend())


def grouped_bars(
    values: Mapping[str, Sequence[float]],
    labels: Sequence[str],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    legend: str,
) -> Any:
    """A grouped bar chart (matplotlib Figure): one group per label, one bar per series in `values`."""
    from matplotlib.figure import Figure

    activate_notebook_backend()
    figure = Figure(figsize=(max(6.5, 2.8 + len(labels) * (0.55 + 0.35 * len(values))), 4.2))
    axes = figure.add_subplot()
    width = 0.8 / len(values)
    for i, (name, heights) in enumerate(values.items()):
        positions = [m + (i - (len(values) - 1) / 2) * width for m in range(len(labels))]
        bars = axes.bar(positions, heights, width, label=name)
        axes.bar_label(bars, fmt="%.2f", fontsize=8, padding=2)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylim(0, 1.1)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(title=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def metric_axis_label(metrics: Sequence[str]) -> str:
    """The y-axis label for retrieval metrics: what the bars measure (hit rates are not MRR or nDCG)."""
    hits = all("hit@" in metric for metric in metrics)
    if hits:
        return "hit rate (fraction of questions, 0-1)"
    if len(metrics) == 1:
        return f"{short_name(metrics[0])} (mean over questions, 0-1)"
    return "hit rate / MRR / nDCG (mean over questions, 0-1)"


def _default_metrics(reports: Mapping[str, Any]) -> list[str]:
    common = set.intersection(*(set(r.k_values) for r in reports.values()))
    k = 5 if 5 in common else max(common, default=None)
    cutoffs = {r.cutoff for r in reports.values()}
    if k is None or len(cutoffs) != 1:
        raise ValueError("the reports were run with different k values; pass the metrics to compare")
    cutoff = cutoffs.pop()
    return [f"doc_hit@{k}", f"evidence_hit@{k}", f"mrr@{cutoff}", f"ndcg@{cutoff}"]


def plot_reports(
    reports: Mapping[str, Any],
    metrics: Sequence[str] | None = None,
    kind: str | None = None,
    title: str | None = None,
) -> Any:
    """A grouped bar chart comparing several `EvalReport`s' metrics side by side.

    `metrics` defaults to doc-hit@5, evidence-hit@5, MRR and nDCG (k=5, or the largest k when a
    report lacks 5); `kind` restricts every bar to one question kind.
    """
    if not reports:
        raise ValueError("no reports to plot; pass e.g. {'baseline': report}")
    metrics = list(metrics) if metrics is not None else _default_metrics(reports)
    values: dict[str, list[float]] = {}
    for label, report in reports.items():
        row = report.metrics(kind)
        missing = [m for m in metrics if m not in row]
        if missing:
            raise ValueError(
                f"report {label!r} has no metric {', '.join(missing)}; "
                f"it has {', '.join(report.metric_names())}"
            )
        values[label] = [_as_float(row[m]) for m in metrics]
    n = next(iter(reports.values())).metrics(kind)["n"]
    scope = f"{kind} questions" if kind else "answerable questions"
    return grouped_bars(
        values,
        [short_name(m) for m in metrics],
        title=title or f"Retrieval quality on {n} {scope}",
        xlabel="metric (@k: top k chunks; doc = right document, ev = evidence retrieved)",
        ylabel=metric_axis_label(metrics) + "; higher is better",
        legend="report",
    )


def plot_answer_reports(reports: Mapping[str, Any], kind: str | None = None, title: str | None = None) -> Any:
    """A grouped bar chart of each `AnswerReport`'s correctness, groundedness and refusals."""
    if not reports:
        raise ValueError("no reports to plot; pass e.g. {'extractive': report}")
    labels = ["F1", "facts", "grounded", "cite R", "refused\nunanswerable", "false\nrefusals"]
    values = {}
    for name, report in reports.items():
        row, unanswerable = report.metrics(kind), report.metrics(UNANSWERABLE)
        picked = [
            row["token_f1"],
            row["key_fact_recall"],
            row["groundedness"],
            row["citation_recall"],
            unanswerable["refused"],
            row["refused"],
        ]
        values[name] = [_as_float(value) for value in picked]
    scope = f"{kind} questions" if kind else "the question set"
    return grouped_bars(
        values,
        labels,
        title=title or f"Answer quality on {scope}",
        xlabel="metric (false refusals: lower is better; all others: higher is better)",
        ylabel="score or share of answers (mean over questions, 0-1)",
        legend="answerer",
    )


def _as_float(value: float | int | None) -> float:
    return float("nan") if value is None else float(value)


__all__ = [
    "Table",
    "TableReport",
    "activate_notebook_backend",
    "cpu_p50",
    "format_ms",
    "format_value",
    "grouped_bars",
    "latency_p50",
    "leaderboard",
    "leaderboard_rows",
    "leaderboard_table",
    "median_ms",
    "metric_axis_label",
    "plot_answer_reports",
    "plot_reports",
    "short_name",
]
