"""bench/scale_corpus.py: the sample corpus plus package documentation, up to a chunk count."""

from __future__ import annotations

import subprocess
import sys

from rag_helpers.chunking import chunk_documents
from rag_helpers.config import PROJECT_ROOT, SAMPLE_CORPUS_DIR
from rag_helpers.documents import load_documents

SCRIPT = PROJECT_ROOT / "bench" / "scale_corpus.py"


def run(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True, text=True)


def test_keeps_the_sample_corpus_and_adds_distractors_up_to_the_chunk_count(tmp_path):
    sample = load_documents(SAMPLE_CORPUS_DIR, progress=False)
    target = len(chunk_documents(sample)) + 60
    result = run(tmp_path / "scaled", "--chunks", target)
    assert result.returncode == 0, result.stderr
    documents = load_documents(tmp_path / "scaled", progress=False)
    kept = {d.id: d.text for d in documents if not d.id.startswith("distractors/")}
    assert kept == {d.id: d.text for d in sample}  # the questions' evidence is untouched
    chunks = len(chunk_documents(documents))
    assert chunks >= target
    assert f"= {chunks} chunks (target {target})" in result.stdout  # what it says is what it wrote


def test_refuses_to_write_into_an_existing_folder(tmp_path):
    (tmp_path / "keep.md").write_text("mine", encoding="utf-8")
    result = run(tmp_path)
    assert result.returncode == 2 and "exists" in result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["keep.md"]
