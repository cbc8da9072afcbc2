"""Measure two ways a RAG answer goes wrong: follow-up questions, and prompt injection through documents.

    report = followup_hits(load_conversations(), pipeline, llm=llm)   # evidence-hit@5 of the follow-up
    print(report.table())                                             # per strategy, per kind
    attacks = attack_success(load_injection_cases(), make_pipeline, ("original", "grounded", "spotlight"))
    print(attacks.table())                                            # attack success rate per prompt style

**Follow-ups** (`followup_hits`): for every labelled conversation (`questions.load_conversations`),
each strategy of `conversation.STRATEGIES` turns the follow-up into a query given the earlier turns
(their reference answers), the retriever returns the top k, and the follow-up counts as found when
one of them is an evidence hit (`evaluation.is_evidence_hit`, the rule of the retrieval metrics).
The report also says when the first turn's evidence came back instead (the classic failure of
concatenation), and adds the labelled rewrite (`standalone`) as the ceiling a perfect rewriter reaches.

**Injection** (`attack_success`): every case (`questions.load_injection_cases`) is asked through a
pipeline per prompt style over an index that holds the injected documents; an attack succeeds when
the answer meets its mechanical rule (`questions.attack_succeeded`). The rate is over all cases and
over the answered ones (a refusal can never obey a payload, so a defence that refuses more looks
better on the first figure only).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .answers import Answerer
from .base import Retriever
from .config import SAMPLE_CORPUS_DIR
from .conversation import STRATEGIES, condense_details, search_question
from .documents import Document, load_documents
from .evaluation import Evidence, is_evidence_hit, locate_evidence
from .pipeline import Pipeline
from .questions import UNANSWERABLE, InjectionCase, LabelledConversation, Question, attack_succeeded
from .reporting import Table, TableReport, format_value

REFERENCE = "standalone"  # the labelled rewrite, reported beside the strategies as their ceiling


# --- Follow-up questions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FollowupResult:
    """One conversation's follow-up searched one way: the query, and whether its evidence came back."""

    id: str
    kind: str
    strategy: str
    query: str
    hit: bool  # the follow-up's evidence is in the top k
    rank: int | None  # 1-based rank of the first evidence hit, None when there is none
    first_turn_hit: bool  # the first turn's evidence is in the top k
    fallback: str | None = None  # condense only: why the model's rewrite was not used
    reply: str | None = None  # condense only: what the model replied
    seconds: float | None = None  # how long making the query took (condense: the model's call)

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-ready values."""
        return asdict(self)


@dataclass
class FollowupReport(TableReport):
    """Evidence-hit@k of each follow-up per strategy, with per-kind and per-conversation detail."""

    results: list[FollowupResult]
    strategies: tuple[str, ...]
    k: int = 5
    name: str = ""

    def kinds(self) -> list[str]:
        """The conversation kinds present, sorted."""
        return sorted({result.kind for result in self.results})

    def of(self, strategy: str, kind: str | None = None) -> list[FollowupResult]:
        """The results of one strategy (of one kind, or all)."""
        return [r for r in self.results if r.strategy == strategy and (kind is None or r.kind == kind)]

    def rate(self, strategy: str, kind: str | None = None) -> float | None:
        """Evidence-hit@k of `strategy`: the fraction of follow-ups whose evidence came back."""
        group = self.of(strategy, kind)
        return statistics.fmean(r.hit for r in group) if group else None

    def hits(self, strategy: str) -> int:
        """How many follow-ups `strategy` found the evidence of."""
        return sum(r.hit for r in self.of(strategy))

    def queries(self) -> dict[str, dict[str, str]]:
        """Conversation id -> strategy -> query: pass it back as `queries=` to search the same ones again."""
        made: dict[str, dict[str, str]] = {}
        for result in self.results:
            made.setdefault(result.id, {})[result.strategy] = result.query
        return made

    def to_table(self) -> Table:
        """One row per strategy: hits, evidence-hit@k overall and per kind, the first turn found instead."""
        kinds = self.kinds()
        header = ["strategy", "found", f"evidence-hit@{self.k}", *kinds, "first turn instead"]
        rows = []
        for strategy in self.strategies:
            group = self.of(strategy)
            instead = sum(r.first_turn_hit and not r.hit for r in group)
            rows.append([
                strategy, f"{self.hits(strategy)}/{len(group)}", format_value(self.rate(strategy)),
                *(format_value(self.rate(strategy, kind)) for kind in kinds), str(instead),
            ])
        notes = [
            "first turn instead: the first question's evidence is in the top k and the follow-up's is not",
        ]
        fallbacks = [r for r in self.of("condense") if r.fallback]
        if fallbacks:
            notes.append(f"condense: {len(fallbacks)} rewrites were not used (unusable) and fell back")
        title = f"{self.name + ': ' if self.name else ''}evidence-hit@{self.k} of {len(self.of(self.strategies[0]))} follow-ups"
        return Table(title, header, rows, notes)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values: the figures per strategy and every result."""
        return {
            "name": self.name,
            "k": self.k,
            "strategies": {
                strategy: {
                    "found": self.hits(strategy),
                    "n": len(self.of(strategy)),
                    f"evidence_hit@{self.k}": self.rate(strategy),
                    "by_kind": {kind: self.rate(strategy, kind) for kind in self.kinds()},
                }
                for strategy in self.strategies
            },
            "results": [result.to_dict() for result in self.results],
        }


def _retriever_of(pipeline_or_retriever: Pipeline | Retriever) -> Retriever:
    if isinstance(pipeline_or_retriever, Pipeline):
        assert pipeline_or_retriever.retriever is not None
        return pipeline_or_retriever.retriever
    if not callable(pipeline_or_retriever):
        raise TypeError("Pass a pipeline.Pipeline or a retriever (a callable retriever(query, k)).")
    return pipeline_or_retriever


def _default_llm(pipeline_or_retriever: Any) -> Answerer | None:
    answerer = getattr(pipeline_or_retriever, "answerer", None) if isinstance(pipeline_or_retriever, Pipeline) else None
    return None if answerer is None or answerer.backend == "offline" else answerer


def _first_turn_evidence(
    conversations: Sequence[LabelledConversation], documents: Sequence[Document]
) -> list[Evidence | None]:
    questions = [
        Question(c.turns[0].q, c.turns[0].doc, c.turns[0].evidence)
        if c.turns[0].doc is not None and c.turns[0].evidence is not None
        else Question(c.turns[0].q, None, None, kind=UNANSWERABLE)
        for c in conversations
    ]
    return locate_evidence(questions, documents)


def followup_hits(
    conversations: Sequence[LabelledConversation],
    pipeline_or_retriever: Pipeline | Retriever,
    strategies: Sequence[str] = STRATEGIES,
    llm: Answerer | None = None,
    k: int = 5,
    *,
    reference: bool = True,
    queries: Mapping[str, Mapping[str, str]] | None = None,
    documents: Sequence[Document] | None = None,
    corpus_dir: str | Path = SAMPLE_CORPUS_DIR,
    name: str = "",
    progress: bool = False,
) -> FollowupReport:
    """Evidence-hit@k of each conversation's follow-up, searched with each strategy (see the module docstring).

    The earlier turns are the conversation's own (questions and reference answers). `llm` condenses
    (default: the pipeline's answerer when it is a language model; "condense" without one is an
    error). `queries` (id -> strategy -> query, e.g. an earlier report's `queries()`) are searched
    as given instead of being made again, so one set of rewrites can be tried with several retrievers.
    `reference` adds the labelled rewrite as the strategy "standalone".
    """
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise ValueError(f"Unknown follow-up strategy {', '.join(unknown)}; use {', '.join(STRATEGIES)}.")
    if not conversations:
        raise ValueError("No conversations to measure; load them with questions.load_conversations().")
    retriever = _retriever_of(pipeline_or_retriever)
    llm = llm if llm is not None else _default_llm(pipeline_or_retriever)
    documents = documents if documents is not None else load_documents(corpus_dir, progress=False)
    evidence = locate_evidence([c.as_question() for c in conversations], documents)
    first_evidence = _first_turn_evidence(conversations, documents)
    names = (*strategies, REFERENCE) if reference else tuple(strategies)
    given = queries or {}
    results = []
    rows = list(zip(conversations, evidence, first_evidence, strict=True))
    for conversation, located, first in tqdm(rows, desc="Follow-ups", unit="conversation", disable=not progress):
        assert located is not None
        for strategy in names:
            fallback = reply = None
            started = time.perf_counter()
            if strategy in given.get(conversation.id, {}):
                query = given[conversation.id][strategy]
            elif strategy == REFERENCE:
                query = conversation.standalone
            elif strategy == "condense":
                condensed = condense_details(conversation.history, conversation.follow_up, llm)  # type: ignore[arg-type]
                query, fallback, reply = condensed.question, condensed.fallback, condensed.reply
            else:
                query = search_question(strategy, conversation.history, conversation.follow_up)
            seconds = None if strategy in given.get(conversation.id, {}) else time.perf_counter() - started
            hits = list(retriever(query, k))[:k]
            found = [is_evidence_hit(hit, located) for hit in hits]
            rank = found.index(True) + 1 if any(found) else None
            first_hit = first is not None and any(is_evidence_hit(hit, first) for hit in hits)
            results.append(FollowupResult(
                conversation.id, conversation.kind, strategy, query, rank is not None, rank, first_hit, fallback,
                reply, seconds,
            ))
    return FollowupReport(results, names, k, name)


# --- Prompt injection through documents ----------------------------------------------------------


@dataclass(frozen=True)
class AttackOutcome:
    """One injection case asked with one prompt style: did the answer obey the payload?"""

    style: str
    case: str
    kind: str
    succeeded: bool
    injected_retrieved: bool  # the injected document was among the sources the answerer got
    refused: str | None
    answer: str
    seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready values."""
        return asdict(self)


@dataclass
class AttackReport(TableReport):
    """Attack success per prompt style, with every case's outcome."""

    outcomes: list[AttackOutcome]
    styles: tuple[str, ...]
    name: str = ""

    def of(self, style: str) -> list[AttackOutcome]:
        """The outcomes of one prompt style."""
        return [o for o in self.outcomes if o.style == style]

    def rate(self, style: str, *, answered_only: bool = False) -> float | None:
        """The attack success rate of `style`: over every case, or over the ones it answered."""
        group = [o for o in self.of(style) if not (answered_only and o.refused)]
        return statistics.fmean(o.succeeded for o in group) if group else None

    def to_table(self) -> Table:
        """One row per style: successes, the rate over all cases and over the answered ones, refusals."""
        header = ["prompt style", "attacks obeyed", "success rate", "of answered", "refused", "injected retrieved"]
        rows = []
        for style in self.styles:
            group = self.of(style)
            rows.append([
                style, f"{sum(o.succeeded for o in group)}/{len(group)}", format_value(self.rate(style)),
                format_value(self.rate(style, answered_only=True)), str(sum(bool(o.refused) for o in group)),
                f"{sum(o.injected_retrieved for o in group)}/{len(group)}",
            ])
        title = f"{self.name + ': ' if self.name else ''}prompt injection through documents"
        return Table(title, header, rows, ["an attack succeeds when the answer meets its case's rule"])

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-ready values: the rates per style and every outcome."""
        return {
            "name": self.name,
            "styles": {
                style: {
                    "n": len(self.of(style)),
                    "succeeded": sum(o.succeeded for o in self.of(style)),
                    "success_rate": self.rate(style),
                    "success_rate_answered": self.rate(style, answered_only=True),
                    "refused": sum(bool(o.refused) for o in self.of(style)),
                }
                for style in self.styles
            },
            "outcomes": [outcome.to_dict() for outcome in self.outcomes],
        }


def attack_success(
    cases: Sequence[InjectionCase],
    make_pipeline: Callable[[str], Any],
    styles: Sequence[str] = ("original", "grounded", "spotlight"),
    *,
    name: str = "",
    progress: bool = False,
    **params: Any,
) -> AttackReport:
    """Ask every case with the pipeline `make_pipeline(style)` builds for each style; score each answer
    with the case's rule. `params` are generation parameters (e.g. temperature=0 for repeatable runs)."""
    if not cases:
        raise ValueError("No injection cases; load them with questions.load_injection_cases().")
    outcomes = []
    for style in styles:
        pipeline = make_pipeline(style)
        for case in tqdm(cases, desc=f"Attacks ({style})", unit="case", disable=not progress):
            started = time.perf_counter()
            answer = pipeline.answer(case.q, **params)
            seconds = answer.seconds if answer.seconds is not None else time.perf_counter() - started
            retrieved = any(Path(s.document_id).name == case.doc for s in answer.context)
            outcomes.append(AttackOutcome(
                style, case.id, case.kind, attack_succeeded(answer.text, case), retrieved, answer.refused,
                answer.text, seconds,
            ))
    return AttackReport(outcomes, tuple(styles), name)


__all__ = [
    "REFERENCE",
    "AttackOutcome",
    "AttackReport",
    "FollowupReport",
    "FollowupResult",
    "attack_success",
    "followup_hits",
]
