"""Commands that need no model never import torch or load the model: checked in fresh processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from rag_helpers.cli import main
from rag_helpers.config import SAMPLE_QUESTIONS_PATH

HEAVY = re.compile(r"^import time:.*\|\s+(torch|sentence_transformers|transformers)$", re.MULTILINE)


def run_cli(*argv: object) -> tuple[int, str, list[str]]:
    """Run `python -m rag_helpers ARGV` in a new process: (exit code, stdout, heavy modules imported)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rag_helpers", *map(str, argv)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    heavy = sorted(set(HEAVY.findall(done.stderr)))
    errors = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    return done.returncode, done.stdout + "\n".join(errors), heavy


# Each command fails on its arguments (exit 2, one line), prints help or scores an answers file.
NO_MODEL_COMMANDS = [
    (["--help"], 0, "ingest"),
    (["query", "Where is the office?", "-k", "0", "--db", "{db}"], 2, "argument -k/--k: must be at least 1, got 0"),
    (["query", "   ", "--db", "{db}"], 2, "The query is empty"),
    (["ingest", "{corpus}", "--batch-size", "0", "--db", "{db}"], 2, "argument --batch-size: must be at least 1, got 0"),
    (["ingest", "{corpus}", "--chunk-size", "0", "--db", "{db}"], 2, "chunk"),
    (["ingest", "{corpus}/missing", "--db", "{db}"], 2, "missing"),
    (["eval-answers", "--answers", "{answers}"], 0, "1 answers"),
    (["eval-answers", "--answers", "{broken}"], 2, "line 2: not valid JSON"),
]

# Runs each command through the CLI's `main` in one process, then reports what got imported.
WRAPPER = """
import contextlib, io, json, sys
from rag_helpers.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit:
            code = exit.code
    results.append([code, out.getvalue() + err.getvalue()])
heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
print(json.dumps({"results": results, "heavy": heavy}))
"""


def test_help_argument_errors_and_scoring_answers_import_no_torch(tmp_path):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The office is in Leeds.", encoding="utf-8")
    question = json.loads(SAMPLE_QUESTIONS_PATH.read_text(encoding="utf-8").splitlines()[0])
    record = json.dumps(
        {"q": question["q"], "answer": question["answer"], "contexts": [question["evidence"]]}
    )
    answers, broken = tmp_path / "answers.jsonl", tmp_path / "broken.jsonl"
    answers.write_text(record + "\n", encoding="utf-8")
    broken.write_text(record + "\n{not json\n", encoding="utf-8")
    paths = {"corpus": corpus, "db": tmp_path / "db", "answers": answers, "broken": broken}
    commands = [[a.format(**paths) for a in argv] for argv, _, _ in NO_MODEL_COMMANDS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    for (argv, code, message), (got_code, output) in zip(NO_MODEL_COMMANDS, report["results"], strict=True):
        assert got_code == code and message in output and "Traceback" not in output, (argv, output)
    assert report["heavy"] == []


@pytest.mark.slow
def test_an_unchanged_ingest_loads_no_model(tmp_path, model, capsys):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The office is in Leeds. " * 80, encoding="utf-8")
    (corpus / "b.md").write_text("# Holidays\n\nWe get 25 days of leave a year.", encoding="utf-8")
    db = tmp_path / "db"
    # The first ingest runs in this process, where the session's fp32 model is already loaded.
    assert main(["ingest", str(corpus), "--db", str(db), "--precision", "fp32", "--quiet"]) == 0
    capsys.readouterr()

    code, out, heavy = run_cli("ingest", corpus, "--db", db, "--precision", "fp32", "--quiet", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["embedded"] == 0 and report["skipped"] == report["count"] == report["chunks"] > 2
    assert report["model"]["loaded"] is False and report["model"]["precision"] == "fp32"
    assert heavy == []

    # A changed document needs the model again, and gets exactly its chunks re-embedded.
    (corpus / "b.md").write_text("# Holidays\n\nWe get 27 days of leave a year.", encoding="utf-8")
    assert main(["ingest", str(corpus), "--db", str(db), "--precision", "fp32", "--quiet", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["embedded"] == 1 and report["updated"] == 1 and report["model"]["dimension"] == 384


@pytest.mark.slow
def test_needs_model_only_when_text_is_new_or_changed(tmp_path, model):
    from rag_helpers.chunking import CharacterSplitter, chunk_documents
    from rag_helpers.config import Settings
    from rag_helpers.documents import Document
    from rag_helpers.ingest import ingest, needs_model
    from rag_helpers.store import get_client, get_collection

    client = get_client(Settings.from_mapping({"CHROMA_PATH": str(tmp_path / "db")}))
    name, splitter = "needs_model_test", CharacterSplitter(60, 0)
    docs = [Document("a.txt", "Leave is 25 days a year. Carry over up to five days.", "a.txt")]
    chunks = chunk_documents(docs, splitter)
    assert needs_model(client, name, chunks, model.rag_name)  # no collection yet
    ingest(get_collection(client, name, model), chunks, model, progress=False)
    assert not needs_model(client, name, chunks, model.rag_name)
    assert needs_model(client, name, chunks, model.rag_name, distance="cosine")  # get_collection says why
    assert needs_model(client, name, chunks, "some/other-model")

    relabelled = chunk_documents([Document("a.txt", docs[0].text, "a.txt", {"year": 2024})], splitter)
    assert not needs_model(client, name, relabelled, model.rag_name)  # metadata alone: no embedding
    report = ingest(client.get_collection(name), relabelled, None, progress=False)
    assert report.updated == len(chunks) and report.embedded == 0

    changed = chunk_documents([Document("a.txt", docs[0].text.replace("25", "27"), "a.txt")], splitter)
    assert needs_model(client, name, changed, model.rag_name)
    with pytest.raises(ValueError, match="no embedding model was given"):
        ingest(client.get_collection(name), changed, None, progress=False)


@pytest.mark.slow
def test_query_embeds_the_question_with_the_onnx_export_without_torch(tmp_path, model, capsys):
    from rag_helpers.onnx_encoder import export_onnx

    export_onnx()  # `make setup` made it; made here if it is missing
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "office.txt").write_text("The office is in Leeds, next to the station.", encoding="utf-8")
    (corpus / "leave.md").write_text("# Holidays\n\nWe get 25 days of leave a year.", encoding="utf-8")
    db = tmp_path / "db"
    assert main(["ingest", str(corpus), "--db", str(db), "--precision", "fp32", "--quiet"]) == 0
    capsys.readouterr()

    for retriever in ("rerank", "dense"):
        code, out, heavy = run_cli("query", "How many holidays do we get?", "--db", db, "-k", "1",
                                   "--retriever", retriever, "--json")
        assert code == 0, out
        assert json.loads(out)[0]["document"] == "leave.md"
        assert heavy == [], retriever
