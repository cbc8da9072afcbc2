"""Choosing who answers: the backend list, `auto`, and the answerer each backend name builds."""

from __future__ import annotations

import pytest

from rag_helpers.backends import choose_backend, get_answerer, get_llm
from rag_helpers.config import Settings
from rag_helpers.extractive import ExtractiveAnswerer
from rag_helpers.generation import HuggingFaceLLM, LLMAuthError, OpenAICompatibleLLM

TOKEN = "hf_" + "TESTtokenThatMustNeverBePrinted123"  # built at run time: no token-like literal in the repo


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "offline"),
        ({"HF_TOKEN": TOKEN}, "hf"),
        ({"LLM_BASE_URL": "http://127.0.0.1:11434/v1"}, "openai"),
        ({"HF_TOKEN": TOKEN, "LLM_BASE_URL": "http://127.0.0.1:11434/v1"}, "openai"),
        ({"HF_TOKEN": TOKEN, "LLM_BACKEND": "offline"}, "offline"),
        ({"HF_TOKEN": TOKEN, "LLM_BACKEND": "openai", "LLM_BASE_URL": "http://x/v1"}, "openai"),
        ({"LLM_BACKEND": "local"}, "local"),
    ],
)
def test_choose_backend(env, expected):
    assert choose_backend(Settings.from_mapping(env)) == expected


def test_backend_argument_wins_over_settings():
    assert choose_backend(Settings.from_mapping({"HF_TOKEN": TOKEN}), "offline") == "offline"
    with pytest.raises(ValueError, match="Unknown LLM backend"):
        choose_backend(Settings.from_mapping({}), "gpt")


def test_get_llm_builds_the_chosen_backend_without_showing_the_token():
    llm = get_llm(Settings.from_mapping({"HF_TOKEN": TOKEN}))
    assert isinstance(llm, HuggingFaceLLM) and llm.model == "Qwen/Qwen2.5-72B-Instruct"
    assert TOKEN not in repr(llm)
    custom = get_llm(Settings.from_mapping({"LLM_BASE_URL": "http://127.0.0.1:8080/v1", "LLM_MODEL": "llama3"}))
    assert isinstance(custom, OpenAICompatibleLLM) and custom.model == "llama3"
    assert custom.base_url == "http://127.0.0.1:8080/v1"
    assert get_llm(Settings.from_mapping({"HF_TOKEN": TOKEN}), model="other/model").model == "other/model"


def test_get_llm_explains_missing_configuration():
    with pytest.raises(LLMAuthError, match="HF_TOKEN"):
        get_llm(Settings.from_mapping({}), "hf")
    with pytest.raises(ValueError, match="LLM_BASE_URL"):
        get_llm(Settings.from_mapping({}), "openai")
    with pytest.raises(ValueError, match="get_answerer"):
        get_llm(Settings.from_mapping({}))  # no token, no server: offline, which is no language model


def test_get_answerer_gives_the_extractive_answerer_offline_with_the_given_model(model):
    answerer = get_answerer(Settings.from_mapping({}), embedding_model=model)
    assert isinstance(answerer, ExtractiveAnswerer) and answerer.embedding_model is model
    assert answerer.backend == "offline" and "extractive" in answerer.model
    assert isinstance(get_answerer(Settings.from_mapping({"HF_TOKEN": TOKEN})), HuggingFaceLLM)
