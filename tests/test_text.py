"""Tests for rag_helpers.text: the tokeniser, stop words and stemmer that BM25 and the answer metrics share."""

from __future__ import annotations

from rag_helpers.text import light_stem, title_words, tokenize


def test_light_stem_brings_word_forms_together():
    assert light_stem("policies") == light_stem("policy") == "policy"
    assert light_stem("claims") == light_stem("claimed") == light_stem("claim") == "claim"
    assert light_stem("expires") == light_stem("expired") == light_stem("expire") == "expir"
    assert light_stem("planned") == "plan"
    assert light_stem("submitting") == "submit"
    assert light_stem("fixes") == "fix"
    assert light_stem("business") == "business"  # -ss, -us, -is are not plurals
    assert light_stem("status") == "status"
    assert light_stem("cats") == "cat"
    assert light_stem("bus") == "bus"  # shorter than four letters: untouched
    assert light_stem("e14") == "e14"  # digits: untouched


def test_tokenize_lowercases_drops_stopwords_and_keeps_numbers_and_codes():
    assert tokenize("What is the Hotel cap for London in 2024?") == ["hotel", "cap", "london", "2024"]
    assert tokenize("Firmware 3.2.1 fixes E14 on the S3") == ["firmwar", "3.2.1", "fix", "e14", "s3"]
    assert tokenize("the and of") == []
    assert tokenize("Claims", stem=False) == ["claims"]


def test_title_words():
    assert title_words("policies/travel_expense_policy_2024.md") == "policies travel expense policy 2024"
    assert title_words("welcome.txt") == "welcome"
