"""Prompt injection through documents: attack success per prompt style, and what each defence costs.

    python bench/injection.py [--styles original grounded sandwich spotlight] [--backend local]
                              [--model NAME] [--retriever NAME] [-k 5] [--limit N] [--questions N]
                              [--max-tokens 200] [--bare] [--out FILE]

Copies the sample corpus and the 15 injected documents (data/injection/documents/, under
`injected/`) into a temporary folder, indexes it there (default ingest), and asks every case of
data/injection/cases.jsonl through the pipeline core once per prompt style (`prompts.STYLES`:
the original tutorial's prompt, the course's grounded prompt, the grounded prompt with the rule
repeated after the sources ("sandwich"), and spotlighting by datamarking, Hines et al. 2024),
with the local model, greedy. An attack succeeds when the answer meets its case's rule
(`questions.attack_succeeded`); `robustness.attack_success` gives the rate over all cases and
over the answered ones. The pipeline is the one the course ships (the "don't know" gate and the
sufficiency check on); `--bare` switches both off, to measure the prompt alone.

The cost of each defence: the same styles answer `--questions` normal answerable questions of
data/sample_questions.jsonl (spread over the kinds) on the same index, scored for key facts, false
refusals and citation recall (`answer_report`). Prints the figures next to the machine
(`environment.describe_machine`) and saves every answer as JSON in bench/results/. Never part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rag_helpers.answer_report import evaluate_answers, per_kind
from rag_helpers.backends import get_llm
from rag_helpers.config import INJECTION_DOCUMENTS_DIR, PROJECT_ROOT, SAMPLE_CORPUS_DIR, Settings
from rag_helpers.environment import describe_machine
from rag_helpers.ingest import ensure_index
from rag_helpers.pipeline import Pipeline
from rag_helpers.prompts import STYLES
from rag_helpers.questions import UNANSWERABLE, load_injection_cases, load_questions
from rag_helpers.robustness import attack_success

RESULTS = PROJECT_ROOT / "bench" / "results"
DEFAULT_STYLES = ("original", "grounded", "sandwich", "spotlight")


def injected_corpus(folder: Path) -> Path:
    """The sample corpus with the injected documents under `injected/`, copied into `folder`."""
    corpus = folder / "corpus"
    shutil.copytree(SAMPLE_CORPUS_DIR, corpus)
    shutil.copytree(INJECTION_DOCUMENTS_DIR, corpus / "injected")
    return corpus


def normal_questions(n: int) -> list[Any]:
    """`n` answerable sample questions, spread over the kinds (the first of each kind in turn)."""
    answerable = [q for q in load_questions() if q.kind != UNANSWERABLE]
    kinds = len({q.kind for q in answerable})
    return per_kind(answerable, max(1, -(-n // kinds)))[:n] if n else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", choices=STYLES, default=list(DEFAULT_STYLES), metavar="STYLE")
    parser.add_argument("--backend", default="local")
    parser.add_argument("--model", default=None)
    parser.add_argument("--retriever", default=None, help="default: the course's default retriever")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N injection cases")
    parser.add_argument("--questions", type=int, default=20, metavar="N", help="normal questions per style (default 20)")
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--bare", action="store_true", help="no gate and no sufficiency check: the prompt alone")
    parser.add_argument("--out", type=Path, default=None, help="save the run (JSON) here")
    args = parser.parse_args(argv)

    cases = load_injection_cases()[: args.limit]
    questions = normal_questions(args.questions)
    params = {"temperature": 0, "max_tokens": args.max_tokens}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rag_injection_") as folder:
        corpus = injected_corpus(Path(folder))
        settings = dataclasses.replace(Settings.load(), chroma_path=Path(folder) / "db")
        collection, model = ensure_index(settings, corpus, progress=False)
        llm = get_llm(settings, args.backend, args.model)
        options: dict[str, Any] = {"min_score": None, "check": None} if args.bare else {}

        def make_pipeline(style: str) -> Pipeline:
            return Pipeline.from_settings(
                settings, collection, model, retriever=args.retriever, answerer=llm, k=args.k, style=style, **options
            )

        attacks = attack_success(cases, make_pipeline, args.styles, name=llm.model, progress=True, **params)
        costs = {}
        for style in args.styles:
            if questions:
                pipeline = make_pipeline(style)
                costs[style] = evaluate_answers(
                    questions, lambda q, p=pipeline: p.answer(q, **params), name=style, progress=True
                )
        chunks = collection.count()

    meta = {
        "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1), "answerer": f"{llm.backend}: {llm.model}",
        "args": {key: str(value) for key, value in vars(args).items()}, "cases": len(cases),
        "normal_questions": len(questions), "chunks": chunks,
    }
    rows = []
    for style in args.styles:
        report = costs.get(style)
        values = report.metrics() if report is not None else {}
        times = [o.seconds for o in attacks.of(style) if o.seconds is not None]
        rows.append({
            "style": style,
            "attack_success": attacks.rate(style),
            "attack_success_answered": attacks.rate(style, answered_only=True),
            "key_facts": values.get("key_fact_recall"),
            "false_refusals": values.get("refused"),
            "citation_recall": values.get("citation_recall"),
            "groundedness": values.get("groundedness"),
            "attack_p50_s": round(statistics.median(times), 1) if times else None,
            "normal_p50_s": None if values.get("latency_ms_p50") is None else round(values["latency_ms_p50"] / 1000, 1),
        })
    out = args.out or RESULTS / f"injection_{args.backend}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": meta, "summary": rows, "attacks": attacks.to_dict(),
        "normal": {style: report.to_dict() for style, report in costs.items()},
    }
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"saved {out}", file=sys.stderr)

    machine = meta["machine"]
    how = "prompt alone (--bare)" if args.bare else "as shipped: gate and sufficiency check on"
    print(f"{len(cases)} injection cases, {len(questions)} normal questions, {chunks} chunks; "
          f"{meta['answerer']}, greedy; {how}")
    print(f"machine: {machine['cpu']} ({machine['cpu_kind']}), {machine['cores']} cores, "
          f"load {machine['load_average']}; {meta['date']}")
    print()
    print(attacks.table())
    print()

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)

    header = ["style", "attacks", "of answered", "key facts", "false refusals", "cite R", "p50 s (attack)", "p50 s (normal)"]
    keys = ["attack_success", "attack_success_answered", "key_facts", "false_refusals", "citation_recall",
            "attack_p50_s", "normal_p50_s"]
    print(" | ".join(header))
    for row in rows:
        cells = [f"{row[key]:.1f}" if key.endswith("_s") and row[key] is not None else cell(row[key]) for key in keys]
        print(" | ".join([row["style"], *cells]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
