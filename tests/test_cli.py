"""Tests for the command line (`python -m rag_helpers ...`), end to end on small generated folders."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from rag_helpers.cli import build_parser, main
from rag_helpers.config import DEFAULT_COLLECTION, Settings

DOCS = {
    "travel.txt": "Travel policy. Economy class for flights under six hours. "
    "Hotels are booked through the portal. "
    "Meals abroad are reimbursed up to fifty euros a day with receipts. Taxis need a receipt too.",
    "security.txt": "Security handbook. Passwords have at least fourteen characters. Laptops lock after five "
    "minutes. Report phishing to the security desk.",
    "kitchen.txt": "Kitchen rules. Label your food with your name. "
    "The fridge is cleaned every Friday afternoon.",
}


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def index_args(tmp_path, model):  # `model` loads the fp32 model once for the whole session
    return ["--db", str(tmp_path / "db"), "--collection", "cli_test"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ingest(capsys, corpus, index_args, *extra):
    return run(
        capsys,
        "ingest",
        corpus,
        *index_args,
        "--chunk-size",
        100,
        "--chunk-overlap",
        10,
        "--precision",
        "fp32",
        "--quiet",
        *extra,
    )


def test_defaults_match_the_original_tutorial():
    parser = build_parser()
    args = parser.parse_args(["ingest", "somewhere"])
    assert (args.chunk_size, args.chunk_overlap, args.distance, args.prune) == (1000, 20, "l2", False)
    assert parser.parse_args(["query", "q"]).k == 5
    settings = Settings()
    assert settings.collection == DEFAULT_COLLECTION == "document_qa_collection"
    assert settings.embedding_model == "sentence-transformers/all-MiniLM-L6-v2"


def test_every_store_command_takes_the_connection_options():
    parser = build_parser()
    for argv in (["ingest", "d"], ["query", "q"], ["bench"]):
        args = parser.parse_args([*argv, "--host", "h", "--port", "9", "--collection", "c"])
        assert (args.host, args.port, args.collection) == ("h", 9, "c")
        assert parser.parse_args([*argv, "--db", "x"]).db is not None
        with pytest.raises(SystemExit):
            parser.parse_args([*argv, "--db", "x", "--host", "h"])


def test_ingest_then_reingest_then_query(capsys, corpus, index_args):
    code, out, _ = ingest(capsys, corpus, index_args)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2  # the chunks, then the indexes built from them
    assert "3 documents" in lines[0] and "added" in lines[0] and "cli_test" in lines[0]
    assert lines[1].startswith("Indexes of cli_test: BM25 rebuilt") and "sentences" in lines[1]

    code, out, _ = ingest(capsys, corpus, index_args, "--json")
    report = json.loads(out)
    assert code == 0 and report["added"] == 0 and report["embedded"] == 0
    assert report["skipped"] == report["chunks"] == report["count"] > 3
    assert report["documents"] == 3 and report["model"]["precision"] == "fp32"
    assert report["indexes"]["bm25_rebuilt"] is False and report["indexes"]["sentences"]["embedded"] == 0

    code, out, _ = run(capsys, "query", "How long must passwords be?", *index_args, "-k", 3)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 3
    pattern = re.compile(r"^Rank (\d): (\S+\.txt_\d+), distance: (\d+\.\d{4})$")
    matches = [pattern.match(line) for line in lines]
    assert all(matches), lines
    assert [int(m.group(1)) for m in matches] == [1, 2, 3]
    assert matches[0].group(2).startswith("security.txt_")
    distances = [float(m.group(3)) for m in matches]
    assert distances == sorted(distances)

    code, out, _ = run(capsys, "query", "How long must passwords be?", *index_args, "-k", 100, "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == report["count"]  # k above the collection size returns what exists
    assert all(set(row) == {"id", "distance", "document", "text"} for row in rows)
    assert rows[0]["document"] == "security.txt" and rows[0]["id"].startswith("security.txt_")
    assert "fourteen" in rows[0]["text"] or "Passwords" in rows[0]["text"]
    assert [r["distance"] for r in rows] == sorted(r["distance"] for r in rows)
    assert rows[0]["distance"] == pytest.approx(distances[0], abs=1e-4)


def test_prune_through_the_cli(capsys, corpus, index_args):
    assert ingest(capsys, corpus, index_args)[0] == 0
    (corpus / "kitchen.txt").unlink()
    code, out, _ = ingest(capsys, corpus, index_args, "--json")
    assert json.loads(out)["removed"] == 0  # without --prune the deleted file's chunks stay
    code, out, _ = ingest(capsys, corpus, index_args, "--prune", "--json")
    report = json.loads(out)
    assert code == 0 and report["removed"] > 0 and report["skipped"] == report["count"]
    code, out, _ = run(capsys, "query", "When is the fridge cleaned?", *index_args, "-k", 50, "--json")
    assert "kitchen.txt" not in {row["document"] for row in json.loads(out)}


def test_query_runs_as_a_module_in_a_fresh_process(capsys, corpus, index_args):
    assert ingest(capsys, corpus, index_args)[0] == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run(
        [sys.executable, "-m", "rag_helpers", "query", "Which meals are reimbursed?", *index_args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == 5 and rows[0]["document"] == "travel.txt"


def test_errors_are_one_clear_line(capsys, corpus, index_args, tmp_path):
    code, _, err = run(capsys, "query", "anything", *index_args)
    assert code == 2 and "No index at" in err and "ingest" in err
    assert ingest(capsys, corpus, index_args)[0] == 0
    code, _, err = run(capsys, "query", "anything", *index_args[:2], "--collection", "other")
    assert code == 2 and "No collection named 'other'" in err and "ingest" in err
    code, _, err = run(capsys, "query", "   ", *index_args)
    assert code == 2 and "query is empty" in err
    code, _, err = run(capsys, "ingest", corpus, *index_args, "--chunk-size", 10, "--chunk-overlap", 10)
    assert code == 2 and "chunk_overlap" in err
    code, _, err = run(capsys, "ingest", tmp_path / "nowhere", *index_args)
    assert code == 2 and "not found" in err
    code, _, err = run(capsys, "query", "anything", "--host", "127.0.0.1", "--port", 1, "--collection", "x")
    assert code == 2 and "chroma run" in err


def test_bench_smoke_on_a_tiny_folder(capsys, corpus, tmp_path):
    """Only checks the bench command works and cleans up; timings are never asserted."""
    db = tmp_path / "bench_db"
    code, out, _ = run(
        capsys, "bench", corpus, "--db", db, "--precision", "fp32", "--queries", 3, "--quiet", "--json"
    )
    result = json.loads(out)
    assert code == 0
    assert result["original"]["count"] == result["ours"]["count"] == result["corpus"]["chunks"] == 3
    assert result["ours"]["rerun_embedded"] == 0 and result["query"]["queries"] == 3
    assert {"cpu", "cores"} <= result["machine"].keys()
    from rag_helpers.store import get_client

    client = get_client(Settings.from_mapping({"CHROMA_PATH": str(db)}))
    assert [c.name for c in client.list_collections()] == []  # temporary collections were deleted


def test_cli_defaults_reproduce_the_original_pipeline(capsys, tmp_path, model):
    """Default ingest + query give the original tutorial's chunk ids, order and L2 distances."""
    import chromadb
    import numpy as np

    rng = np.random.default_rng(0)
    words = "cloud cost spot instance cluster scale karpenter node budget latency search index team".split()
    folder = tmp_path / "dataset"
    folder.mkdir()
    for n in range(3):
        text = " ".join(rng.choice(words, size=450)) + f". Case study number {n}."
        (folder / f"Case Study {n} _ AWS.txt").write_text(text, encoding="utf-8")

    # The original, step by step: split_text, ids "<file>_<i>", one encode and one upsert per chunk.
    def split_text(text, chunk_size=1000, chunk_overlap=20):
        chunks, start = [], 0
        while start < len(text):
            chunks.append(text[start : start + chunk_size])
            start = start + chunk_size - chunk_overlap
        return chunks

    original = chromadb.EphemeralClient().get_or_create_collection(
        "original_pipeline", embedding_function=None
    )
    for path in sorted(folder.iterdir()):
        for i, chunk in enumerate(split_text(path.read_text())):
            original.upsert(ids=[f"{path.name}_{i}"], documents=[chunk], embeddings=[model.encode(chunk)])
    question = "How did the team use spot instances to cut cluster cost?"
    expected = original.query(query_embeddings=[model.encode(question)], n_results=5)

    index = ["--db", tmp_path / "db"]
    assert run(capsys, "ingest", folder, *index, "--precision", "fp32", "--quiet")[0] == 0
    code, out, _ = run(capsys, "query", question, *index, "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["id"] for r in rows] == expected["ids"][0]
    np.testing.assert_allclose([r["distance"] for r in rows], expected["distances"][0], atol=1e-4)
    assert (
        original.count() == json.loads(run(capsys, "ingest", folder, *index, "--json", "--quiet")[1])["count"]
    )


def test_a_collection_without_its_keyword_or_sentence_index_is_one_clear_line(capsys, corpus, index_args, model):
    # A collection filled by `store.ingest` alone (as an older version did) has no BM25 or sentence index.
    from rag_helpers.chunking import chunk_documents
    from rag_helpers.documents import load_documents
    from rag_helpers.store import get_client, get_collection
    from rag_helpers.ingest import ingest as store_ingest

    settings = Settings.from_mapping({"CHROMA_PATH": index_args[1], "CHROMA_COLLECTION": index_args[3]})
    collection = get_collection(get_client(settings), index_args[3], model)
    documents = load_documents(corpus)
    store_ingest(collection, chunk_documents(documents), model, progress=False, documents=documents)
    for retriever in ("bm25", "rerank"):
        code, _, err = run(capsys, "query", "Who cleans the fridge?", *index_args, "--retriever", retriever)
        assert code == 2 and err.count("\n") == 1 and "python -m rag_helpers ingest" in err, (retriever, err)
