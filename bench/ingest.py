"""Ingestion benchmark: the original tutorial's one-by-one pipeline against batched `ingest`.

Usage: python bench/ingest.py [DIR] [--json] [--db PATH | --host H --port P] [--precision P]
(DIR defaults to data/sample_corpus). The logic lives in `rag_helpers.benchmark`; this script is
`python -m rag_helpers bench`. It writes only to temporary collections and deletes them.
"""

import sys

from rag_helpers.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["bench", *sys.argv[1:]]))
