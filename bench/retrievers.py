"""Retriever leaderboard: every registered retriever on the sample question set, with p50 latency.

Usage: python bench/retrievers.py [--db PATH] [--precision fp32] [--questions FILE] [--corpus DIR]
                                  [--only NAME ...] [--grid] [--threads N] [--markdown] [--json]

Builds (or refreshes) the index of the corpus in --db (default: a folder under bench/results/,
kept between runs so the sentence index is built only once), in fp32 like the README's baseline,
then evaluates each retriever of `rag_helpers.registry.RETRIEVERS`. --grid adds the fusion
settings tried when choosing the defaults (RRF k and candidates). Never part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

from rag_helpers.config import PROJECT_ROOT, SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH, Settings
from rag_helpers.embeddings import load_embedding_model
from rag_helpers.evaluation import compare_retrievers, evaluate
from rag_helpers.reporting import latency_p50, leaderboard_rows, leaderboard_table
from rag_helpers.questions import load_questions
from rag_helpers.registry import DEFAULT_RETRIEVER, RETRIEVERS, make_retriever
from rag_helpers.ingest import ensure_index

TARGET_P50_MS, TARGET_P95_MS = 30, 60  # the default retriever, per query, on 3611 chunks

GRID = [
    ("hybrid", {"rrf_k": 60, "candidates": 20}),
    ("hybrid", {"rrf_k": 60, "candidates": 30}),
    ("hybrid", {"rrf_k": 10, "candidates": 30}),
    ("hybrid_sentence", {"rrf_k": 60, "candidates": 20}),
    ("hybrid_sentence", {"rrf_k": 60, "candidates": 30}),
    ("hybrid_sentence", {"rrf_k": 10, "candidates": 30}),
    ("rerank", {"weight": 0.3}),
    ("rerank", {"weight": 0.7}),
    ("rerank", {"candidates": 20}),
    ("rerank", {"candidates": 40}),
    ("expanded", {"beta": 0.5, "term_weight": 0.5}),
    ("mmr", {"lambda_": 0.5}),
    ("mmr", {"lambda_": 0.9}),
    ("sentence_window", {"window_chars": 1500}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=PROJECT_ROOT / "bench" / "results" / "retrievers_db")
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--questions", type=Path, default=SAMPLE_QUESTIONS_PATH)
    parser.add_argument("--corpus", type=Path, default=SAMPLE_CORPUS_DIR)
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=list(RETRIEVERS), help="retrievers to run"
    )
    parser.add_argument("--grid", action="store_true", help="also run the fusion settings grid")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads (default: torch's choice); 1 gives steadier timings on a busy machine",
    )
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    settings = Settings.from_mapping({"CHROMA_PATH": str(args.db), "RAG_PRECISION": args.precision})
    model = load_embedding_model(settings.embedding_model, device="cpu", precision=args.precision)
    collection, model = ensure_index(settings, args.corpus, model=model, progress=not args.json)
    questions = load_questions(args.questions)
    names = args.only or list(RETRIEVERS)
    reports = compare_retrievers(names, collection, model, questions, corpus_dir=args.corpus)
    rows = leaderboard_rows(reports)

    grid_rows = []
    if args.grid:
        for name, options in GRID:
            retriever = make_retriever(name, collection, model, **options)
            report = evaluate(retriever, questions, corpus_dir=args.corpus, name=name, progress=False)
            metrics = report.metrics()
            grid_rows.append(
                {
                    "retriever": name,
                    "options": options,
                    "evidence_hit@5": metrics["evidence_hit@5"],
                    "mrr@10": metrics["mrr@10"],
                    "kinds": {kind: report.metrics(kind)["evidence_hit@5"] for kind in report.kinds()},
                    "p50_ms": latency_p50(report),
                }
            )

    environment = {
        "machine": platform.machine(),
        "torch_threads": __import__("torch").get_num_threads(),
        "cpus": os.cpu_count(),
        "precision": args.precision,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "chunks": collection.count(),
        "questions": len(questions),
        "default_retriever": DEFAULT_RETRIEVER,
    }
    if args.json:
        print(json.dumps({"environment": environment, "leaderboard": rows, "grid": grid_rows}, indent=2))
        return 0
    print(leaderboard_table(reports, markdown=args.markdown))
    if DEFAULT_RETRIEVER in reports:
        latencies = [r.latency_ms for r in reports[DEFAULT_RETRIEVER].results]
        p50, p95 = latency_p50(reports[DEFAULT_RETRIEVER]), reports[DEFAULT_RETRIEVER].latency_ms()["p95"]
        print(
            f"\nDefault retriever ({DEFAULT_RETRIEVER}): p50 {p50:.1f} ms, p95 {p95:.1f} ms per query over "
            f"{len(latencies)} questions on {environment['chunks']} chunks (targets on the original data "
            f"set's 3611 chunks: p50 <= {TARGET_P50_MS} ms, p95 <= {TARGET_P95_MS} ms)"
        )
    for row in grid_rows:
        kinds = " ".join(f"{kind}={value:.3f}" for kind, value in row["kinds"].items())
        print(
            f"grid {row['retriever']:16s} {json.dumps(row['options']):36s} ev@5={row['evidence_hit@5']:.3f} "
            f"MRR@10={row['mrr@10']:.3f} {kinds} p50={row['p50_ms']:.1f} ms"
        )
    print(
        f"\n{environment['chunks']} chunks, {environment['questions']} questions, "
        f"{environment['precision']}, {environment['cpus']} CPUs, "
        f"load average {environment['load_average']}; "
        f"default: {DEFAULT_RETRIEVER}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
