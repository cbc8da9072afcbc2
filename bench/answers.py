"""Answer quality and the "don't know" trade-off of the course's default path, on the sample questions.

    python bench/answers.py [--backend local] [--model NAME] [--retriever rerank] [-k 5]
                            [--per-kind N] [--max-tokens 200] [--out FILE] [--from FILE]

For every question it runs the pipeline core (`pipeline.Pipeline`) the way `ask` does, but records
each step apart so one run gives the whole curve: the similarity gate's best score, the
sufficiency check's probability that the sources state the answer (`sufficiency`), the answer the
model writes (always generated, even where the check would refuse), whether the model itself said
"I don't know", and the time of each step. It then scores the answers (`answer_report`) at the
default thresholds and prints the trade-off of the check's threshold: unanswerable questions
refused against answerable ones falsely refused, with key facts and citation recall of the answered
ones, and the p50/p95 time per question of the path as it runs (an answer the check refuses is not
generated). `--from FILE` re-scores a saved run without the model. Never part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rag_helpers.answer_report import AnswerRecord, per_kind, score_answers
from rag_helpers.backends import get_answerer
from rag_helpers.config import PROJECT_ROOT, SAMPLE_CORPUS_DIR, Settings
from rag_helpers.environment import describe_machine
from rag_helpers.ingest import ensure_index
from rag_helpers.pipeline import Pipeline, retrieval_confidence
from rag_helpers.questions import load_questions
from rag_helpers.sufficiency import SufficiencyCheck

RESULTS = PROJECT_ROOT / "bench" / "results"
THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TARGETS = {"unanswerable_refused": 0.70, "answerable_refused": 0.15, "key_facts": 0.70, "citation_recall": 0.80}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Answer every question, recording each step of the path (see the module docstring)."""
    settings = dataclasses.replace(Settings.load(), chroma_path=RESULTS / "answers_db")
    collection, model = ensure_index(settings, SAMPLE_CORPUS_DIR, progress=False)
    answerer = get_answerer(settings, args.backend, args.model, embedding_model=model)
    pipeline = Pipeline.from_settings(
        settings, collection, model, retriever=args.retriever, answerer=answerer, k=args.k, min_score=None,
        check=None,
    )
    check = SufficiencyCheck(answerer) if answerer.backend != "offline" else None
    questions = load_questions()
    if args.per_kind:
        questions = per_kind(questions, args.per_kind)
    rows = []
    for number, question in enumerate(questions, start=1):
        started = time.perf_counter()
        prompt = pipeline.prepare(question.q)
        retrieved = time.perf_counter()
        gate_score = retrieval_confidence(prompt.question_vector, collection)
        check_score = check.score(prompt) if check is not None else None
        checked = time.perf_counter()
        answer = answerer.answer(prompt, temperature=0, max_tokens=args.max_tokens)
        done = time.perf_counter()
        rows.append({
            "q": question.q, "kind": question.kind, "answer": answer.text,
            "contexts": [chunk.text for chunk in prompt.chunks], "gate": gate_score, "check": check_score,
            "model_refused": answer.refused is not None, "retrieve_s": retrieved - started,
            "check_s": checked - retrieved, "answer_s": done - checked,
            "completion_tokens": answer.usage.completion_tokens if answer.usage else None,
        })
        print(f"{number}/{len(questions)} {question.kind}: check {check_score} "
              f"{done - started:.1f} s  {answer.text[:70]!r}", file=sys.stderr, flush=True)
    return rows


def scored(rows: list[dict[str, Any]], min_score: float | None, threshold: float | None) -> dict[str, Any]:
    """The answer metrics and time per question when the path refuses at these thresholds."""
    questions = {q.q: q for q in load_questions()}
    records, seconds = [], []
    for row in rows:
        gated = min_score is not None and row["gate"] < min_score
        checked = not gated and threshold is not None and row["check"] is not None and row["check"] < threshold
        refused = gated or checked or row["model_refused"]
        text = "I don't know: the sources do not contain the answer." if gated or checked else row["answer"]
        took = row["retrieve_s"] + (0 if gated else row["check_s"]) + (0 if gated or checked else row["answer_s"])
        seconds.append(took)
        records.append(AnswerRecord(row["q"], text, tuple(row["contexts"]), took * 1000, refused))
    report = score_answers([questions[row["q"]] for row in rows], records).to_dict()
    summary = report["summary"]
    answerable = [s for s in report["per_question"] if s["kind"] != "unanswerable"]
    answered = [s for s in answerable if not s["refused"]]

    def mean(key: str, items: list[dict[str, Any]]) -> float | None:
        values = [s["correctness"][key] if key in s.get("correctness", {}) else s.get(key) for s in items]
        values = [v for v in values if v is not None]
        return round(statistics.fmean(values), 3) if values else None

    return {
        "min_score": min_score,
        "check_threshold": threshold,
        "unanswerable_refused": summary.get("refused_unanswerable"),
        "answerable_refused": round(sum(s["refused"] for s in answerable) / max(1, len(answerable)), 3),
        "key_facts": mean("key_fact_recall", answerable),
        "key_facts_answered": mean("key_fact_recall", answered),
        "citation_recall": mean("citation_recall", answerable),
        "token_f1": mean("token_f1", answerable),
        "groundedness": mean("groundedness", answered),
        "p50_s": round(statistics.median(seconds), 2),
        "p95_s": round(sorted(seconds)[max(0, round(0.95 * len(seconds)) - 1)], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="local")
    parser.add_argument("--model", default=None)
    parser.add_argument("--retriever", default=None, help="default: the course's default retriever")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--per-kind", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--out", type=Path, default=None, help="save the run (JSON) here")
    parser.add_argument("--from", dest="source", type=Path, default=None, help="re-score a saved run")
    args = parser.parse_args()

    if args.source is not None:
        saved = json.loads(args.source.read_text())
        rows, meta = saved["rows"], saved["meta"]
    else:
        started = time.perf_counter()
        rows = run(args)
        meta = {"machine": describe_machine(), "args": {k: str(v) for k, v in vars(args).items()},
                "seconds": round(time.perf_counter() - started, 1), "date": time.strftime("%Y-%m-%d")}
        out = args.out or RESULTS / f"answers_{args.backend}_{time.strftime('%Y%m%d_%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, ensure_ascii=False))
        print(f"saved {out}", file=sys.stderr)

    settings = Settings.load()
    print(f"{len(rows)} questions; machine: {meta['machine']['cpu']} ({meta['machine']['cpu_kind']}); {meta['date']}")
    print(f"targets: {TARGETS}")
    header = ["min_score", "check", "unans. refused", "ans. refused", "key facts", "cite R", "F1", "p50 s", "p95 s"]
    print(" | ".join(header))
    for threshold in (None, *THRESHOLDS):
        for gate in (None, settings.min_score):
            r = scored(rows, gate, threshold)
            print(" | ".join(str(x) for x in (
                gate, threshold, r["unanswerable_refused"], r["answerable_refused"], r["key_facts"],
                r["citation_recall"], r["token_f1"], r["p50_s"], r["p95_s"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
