"""A corpus the size of the original tutorial's (3611 chunks): the sample corpus plus distractors.

    python bench/scale_corpus.py OUT [--chunks 3611]

The original data set (347 AWS case studies, 3611 chunks) cannot be downloaded here, and latency
targets are set at its size. This writes the sample corpus to OUT, then adds real prose that answers
none of the sample questions: the long descriptions of the Python packages installed in this
environment (their METADATA, i.e. their READMEs), then their Markdown, reStructuredText and text
files (documentation, templates, a few data lists), in name order, until the default splitter makes
at least `--chunks` chunks. The sample questions stay answerable, so `bench/retrievers.py --corpus
OUT` measures latency at that size and shows what the distractors do to retrieval quality. The files
differ between environments: the script prints what it wrote.
"""

from __future__ import annotations

import argparse
import shutil
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from rag_helpers.chunking import CharacterSplitter
from rag_helpers.config import SAMPLE_CORPUS_DIR
from rag_helpers.documents import load_documents

ORIGINAL_CHUNKS = 3611
MIN_CHARS = 3000  # shorter texts are mostly headers and badges
SKIP_NAMES = ("licen", "copying", "notice", "authors", "vocab", "requirements", "changelog")


def package_texts(site_packages: Path) -> Iterator[tuple[str, str]]:
    """(file name, text) of the installed packages' descriptions, then of their documentation files."""
    for metadata in sorted(site_packages.glob("*.dist-info/METADATA")):
        _, _, description = metadata.read_text(encoding="utf-8", errors="replace").partition("\n\n")
        if len(description) >= MIN_CHARS:
            yield f"{metadata.parent.name.split('-')[0]}.md", description
    for pattern in ("*.md", "*.rst", "*.txt"):
        for path in sorted(site_packages.rglob(pattern)):
            if any(word in path.name.lower() for word in SKIP_NAMES) or ".dist-info" in str(path):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if len(text) >= MIN_CHARS:
                yield f"{path.parent.name}_{path.name}".rsplit(".", 1)[0] + ".md", text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (must not exist)")
    parser.add_argument("--chunks", type=int, default=ORIGINAL_CHUNKS, help=f"default {ORIGINAL_CHUNKS}")
    args = parser.parse_args()
    if args.out.exists():
        parser.error(f"{args.out} exists; give a new folder")

    shutil.copytree(SAMPLE_CORPUS_DIR, args.out)
    split = CharacterSplitter()
    chunks = sum(len(split(d.text)) for d in load_documents(args.out, progress=False))
    sample_chunks, distractors = chunks, args.out / "distractors"
    distractors.mkdir()
    written = 0
    for name, text in package_texts(Path(sysconfig.get_paths()["purelib"])):
        if chunks >= args.chunks:
            break
        target = distractors / name
        if target.exists():
            continue
        target.write_text(text, encoding="utf-8")
        chunks += len(split(text))
        written += 1
    print(
        f"{args.out}: {sample_chunks} sample chunks + {chunks - sample_chunks} distractor chunks "
        f"from {written} package documents = {chunks} chunks (target {args.chunks})"
    )
    if chunks < args.chunks:
        raise SystemExit(f"only {chunks} chunks: this environment has too little package documentation")


if __name__ == "__main__":
    main()
