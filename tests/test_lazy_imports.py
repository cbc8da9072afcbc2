"""Commands that need no model never import torch: checked in fresh processes with `-X importtime`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from rag_helpers.cli import main

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


def test_help_imports_no_torch():
    code, out, heavy = run_cli("--help")
    assert code == 0 and "ingest" in out and "query" in out
    assert heavy == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["query", "Where is the office?", "-k", "0"], "-k must be at least 1"),
        (["query", "   "], "The question is empty"),
        (["ingest", "{corpus}", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["ingest", "{corpus}", "--chunk-size", "0"], "chunk"),
        (["ingest", "{corpus}/missing"], "missing"),
    ],
)
def test_argument_errors_come_before_any_model_load(tmp_path, argv, message):
    corpus = tmp_path / "docs"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The office is in Leeds.", encoding="utf-8")
    argv = [a.format(corpus=corpus) for a in argv]
    code, out, heavy = run_cli(*argv, "--db", tmp_path / "db")
    assert code == 2 and "Traceback" not in out
    assert message in out
    assert heavy == []


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
    code, out, heavy = run_cli("ingest", corpus, "--db", db, "--precision", "fp32", "--quiet", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["embedded"] == 1 and report["updated"] == 1
    assert "torch" in heavy
