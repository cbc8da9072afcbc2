"""Settings: environment and .env precedence, defaults, and that tokens never show."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag_helpers.config import (
    DEFAULT_CHROMA_PATH,
    DEFAULT_COLLECTION,
    DEFAULT_EMBEDDING_MODEL,
    DEFAULT_LLM_MODEL,
    LEGACY_TOKEN_VARIABLE,
    Secret,
    Settings,
)

FAKE_TOKEN = "hf_" + "x" * 30


def test_defaults_match_the_original_tutorial():
    settings = Settings.from_mapping({})
    assert settings.hf_token is None
    assert settings.llm_model == DEFAULT_LLM_MODEL == "Qwen/Qwen2.5-72B-Instruct"
    assert settings.embedding_model == DEFAULT_EMBEDDING_MODEL == "sentence-transformers/all-MiniLM-L6-v2"
    assert settings.collection == DEFAULT_COLLECTION == "document_qa_collection"
    assert settings.chroma_path == DEFAULT_CHROMA_PATH
    assert (settings.chroma_host, settings.chroma_port) == (None, 8000)
    assert (settings.device, settings.precision, settings.llm_backend) == ("auto", "auto", "auto")


def test_reads_hf_token_and_the_tutorials_variable_name():
    assert Settings.from_mapping({"HF_TOKEN": FAKE_TOKEN}).hf_token.get() == FAKE_TOKEN
    assert Settings.from_mapping({LEGACY_TOKEN_VARIABLE: FAKE_TOKEN}).hf_token.get() == FAKE_TOKEN
    both = Settings.from_mapping({"HF_TOKEN": FAKE_TOKEN, LEGACY_TOKEN_VARIABLE: "hf_other"})
    assert both.hf_token.get() == FAKE_TOKEN


def test_blank_values_count_as_unset():
    settings = Settings.from_mapping({"HF_TOKEN": "  ", "LLM_BASE_URL": "", "CHROMA_HOST": ""})
    assert settings.hf_token is None and settings.llm_base_url is None and settings.chroma_host is None


def test_token_never_appears_in_repr_str_or_describe():
    settings = Settings.from_mapping({"HF_TOKEN": FAKE_TOKEN, "LLM_API_KEY": "sk-secret-value-123"})
    for text in (repr(settings), str(settings), repr(settings.hf_token), str(settings.hf_token), str(settings.describe())):
        assert FAKE_TOKEN not in text
        assert "sk-secret-value-123" not in text
    assert settings.describe()["hf_token"] == "set (hidden)"
    assert Settings.from_mapping({}).describe()["hf_token"] == "not set"


def test_secret_behaves_like_a_value_without_showing_it():
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert not Secret("") and Secret("a")
    assert f"{Secret('abc')}" == "Secret('********')"


def test_env_file_is_read_and_environment_wins(tmp_path: Path):
    env_file = tmp_path / ".env"
    env_file.write_text(f'HF_TOKEN="{FAKE_TOKEN}"\nLLM_MODEL=from-file\nCHROMA_PORT=9000\n')
    settings = Settings.load(env_file=env_file, environ={"LLM_MODEL": "from-environment"})
    assert settings.hf_token.get() == FAKE_TOKEN
    assert settings.llm_model == "from-environment"
    assert settings.chroma_port == 9000
    assert settings.env_file == env_file


def test_missing_env_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"\.env\.example"):
        Settings.load(env_file=tmp_path / "nope.env", environ={})


@pytest.mark.parametrize(
    ("variables", "message"),
    [({"CHROMA_PORT": "eighty"}, "CHROMA_PORT"), ({"LLM_BACKEND": "gpt"}, "LLM_BACKEND")],
)
def test_bad_values_are_named_in_the_error(variables, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_mapping(variables)


def test_env_example_documents_every_variable_read():
    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    for name in ("HF_TOKEN", "LLM_BACKEND", "LLM_MODEL", "LLM_BASE_URL", "LLM_API_KEY", "EMBEDDING_MODEL",
                 "RAG_DEVICE", "RAG_PRECISION", "CHROMA_PATH", "CHROMA_HOST", "CHROMA_PORT", "CHROMA_COLLECTION"):
        assert f"\n{name}=" in example, name
