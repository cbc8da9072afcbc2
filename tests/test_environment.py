"""Tests for the environment report: secrets stay hidden, paths stay relative, backends are explained."""

from __future__ import annotations

from pathlib import Path

from rag_helpers.config import PROJECT_ROOT, SAMPLE_CORPUS_DIR, Settings
from rag_helpers.environment import (
    REPORTED_PACKAGES,
    corpus_row,
    display_path,
    environment_report,
    format_report,
    package_version,
    safe_url,
)

FAKE_TOKEN = "hf_" + "x" * 34


def _report(env: dict[str, str]) -> dict[str, str]:
    return dict(environment_report(Settings.from_mapping(env)))


def test_report_lists_versions_device_precision_and_backend():
    report = _report({"RAG_DEVICE": "cpu", "RAG_PRECISION": "fp32"})
    for name in ("Python", "rag_helpers", *REPORTED_PACKAGES, "Device", "Precision", "LLM backend"):
        assert name in report
    assert report["Device"] == "cpu (set by RAG_DEVICE)"
    assert report["Precision"] == "fp32 (set by RAG_PRECISION)"
    assert report["torch"][0].isdigit()


def test_token_is_reported_as_set_but_never_shown():
    rows = environment_report(Settings.from_mapping({"HF_TOKEN": FAKE_TOKEN, "RAG_DEVICE": "cpu"}))
    text = format_report(rows)
    assert dict(rows)["Hugging Face token"] == "set (hidden)"
    assert FAKE_TOKEN not in text and "xxxxxxxx" not in text
    assert dict(rows)["LLM backend"].startswith("hf: Qwen/Qwen2.5-72B-Instruct")


def test_offline_when_nothing_is_configured():
    report = _report({"RAG_DEVICE": "cpu"})
    assert report["Hugging Face token"] == "not set"
    assert report["LLM backend"].startswith("offline")
    assert report["Settings file"].startswith("none")


def test_openai_backend_shows_url_without_credentials():
    env = {"LLM_BASE_URL": "http://user:s3cret@localhost:11434/v1?key=abc", "LLM_MODEL": "llama3.2", "RAG_DEVICE": "cpu"}
    backend = _report(env)["LLM backend"]
    assert backend == "openai: llama3.2 at http://localhost:11434/v1"
    assert "s3cret" not in backend and "abc" not in backend


def test_unavailable_device_is_reported_not_raised():
    import torch

    if torch.cuda.is_available():
        return  # the situation cannot be produced on a machine with a GPU
    report = _report({"RAG_DEVICE": "cuda"})
    assert report["Device"].startswith("problem: ") and "CUDA" in report["Device"]
    assert report["Precision"].startswith("problem: ")


def test_paths_inside_the_project_are_relative(tmp_path):
    assert display_path(PROJECT_ROOT / "data" / "sample_corpus") == "data/sample_corpus"
    assert display_path(PROJECT_ROOT) == "."
    if Path.home() != Path(Path.home().anchor):
        assert display_path(Path.home() / "somewhere" / "db") == "~/somewhere/db"
    report = _report({"RAG_DEVICE": "cpu"})
    assert str(PROJECT_ROOT) not in format_report(list(report.items()))


def test_temporary_folders_are_shown_without_their_random_name(tmp_path):
    assert display_path(tmp_path / "chroma_db") == "<temporary folder>/chroma_db"
    report = _report({"RAG_DEVICE": "cpu", "CHROMA_PATH": str(tmp_path / "chroma_db")})
    assert str(tmp_path) not in format_report(list(report.items()))


def test_chroma_server_is_described_by_host_and_port():
    report = _report({"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": "8123", "RAG_DEVICE": "cpu"})
    assert report["Vector index"] == "Chroma server at 127.0.0.1:8123"


def test_corpus_row_counts_documents(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("two")
    (tmp_path / "sub" / "c.csv").write_text("not a document")
    (tmp_path / ".hidden.txt").write_text("skipped")
    name, value = corpus_row(tmp_path)
    assert name == "Sample corpus" and value.startswith("2 files in ")
    assert corpus_row(tmp_path / "missing")[1].startswith("missing: ")
    assert corpus_row(SAMPLE_CORPUS_DIR)[1].endswith("files in data/sample_corpus")


def test_package_version_of_a_missing_package():
    assert package_version("surely-not-an-installed-package-xyz").startswith("not installed")


def test_safe_url_keeps_scheme_host_port_and_path():
    assert safe_url("https://api.example.com/v1") == "https://api.example.com/v1"
    assert safe_url("http://k:v@h:8080/x?token=t#f") == "http://h:8080/x"


def test_format_report_aligns_values_in_one_column():
    text = format_report([("A", "1"), ("Longer name", "two")], title="Status")
    lines = text.splitlines()
    assert lines[0] == "Status"
    assert lines[1] == lines[-1] == "-" * len("Longer name  two")
    assert lines[2] == "A            1"
    assert lines[3] == "Longer name  two"
    assert format_report([], title="Empty") == "Empty\n(nothing to report)"
