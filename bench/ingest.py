"""Ingestion benchmark: the original tutorial's one-by-one pipeline against `ingest`, with the bound.

    python bench/ingest.py [DIR ...] [--scaled DIR] [--precision P] [--queries N] [--json]

Runs `rag_helpers.benchmark.run_ingest_benchmark` on each folder (default: the sample corpus) and,
with --scaled DIR, on a corpus of the original data set's size (3611 chunks), which
`bench/scale_corpus.py` builds there first if DIR does not exist yet. For each folder, in one run:
the original pipeline (fp32, one encode and one upsert per chunk), `ingest.ingest_folder` with its
defaults (the chunk step and the sentence step timed apart), the matrix-multiply bound of the
machine measured in the same run, the vectors against fp32, an unchanged re-run, and the first
and second query of a fresh `rerank` retriever. It writes only to temporary collections and
deletes them. Never part of the tests: timings depend on the machine and its load (the load
average is printed at the start and end of each run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from rag_helpers.benchmark import format_benchmark, run_ingest_benchmark
from rag_helpers.config import SAMPLE_CORPUS_DIR, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="*", type=Path, metavar="DIR", help="default: the sample corpus")
    parser.add_argument("--scaled", type=Path, metavar="DIR", help="also a corpus of the original's size (built if missing)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--queries", type=int, default=50, help="queries timed for latency (default 50)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    folders = list(args.folders) or [SAMPLE_CORPUS_DIR]
    if args.scaled is not None:
        if not args.scaled.exists():
            script = Path(__file__).resolve().parent / "scale_corpus.py"
            subprocess.run([sys.executable, str(script), str(args.scaled)], check=True)
        folders.append(args.scaled)
    settings = Settings.from_mapping({"RAG_PRECISION": args.precision})
    results = []
    for folder in folders:
        result = run_ingest_benchmark(folder, settings, queries=args.queries, progress=not args.quiet)
        results.append(result)
        if not args.json:
            print(format_benchmark(result), end="\n\n", flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
