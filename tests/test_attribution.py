"""Checking an answer's citations against its sources: wrong numbers moved, missing ones added, right ones kept."""

from __future__ import annotations

from rag_helpers.attribution import check_citations, citation_note, split_sentences
from rag_helpers.base import RetrievedChunk

CHUNKS = [
    RetrievedChunk("p23", "Under the 2023 policy the nightly hotel cap for London was £150 per night.", 0.1, 0.9, {}),
    RetrievedChunk("rail", "Rail is preferred for trips under five hours door to door.", 0.1, 0.8, {}),
    RetrievedChunk("claims", "Expense claims are filed in Ledgerly within 21 days of the trip.", 0.1, 0.7, {}),
]


def test_sentences_keep_their_trailing_citations_and_numbers_with_dots():
    text = "Firmware 3.2.1 fixes it. [1] The cap is €1.5 thousand.\n- Rail is preferred [2]."
    assert [text[a:b] for a, b in split_sentences(text)] == [
        "Firmware 3.2.1 fixes it. [1]", " The cap is €1.5 thousand.", "- Rail is preferred [2].",
    ]


def test_a_wrong_number_moves_to_the_source_that_says_it():
    text, changes = check_citations("The nightly hotel cap for London was £150 under the 2023 policy [3].", CHUNKS)
    assert text == "The nightly hotel cap for London was £150 under the 2023 policy [1]." and changes == ["[3] -> [1]"]


def test_a_pointer_sentence_follows_the_sentence_before_it():
    answer = "Under the 2023 policy, the nightly hotel cap for London was £150. This can be found in source [3]."
    text, changes = check_citations(answer, CHUNKS)
    assert text.endswith("found in source [1].") and changes == ["no citation -> [1]", "[3] -> [1]"]


def test_right_citations_and_unsupported_sentences_are_left_alone():
    right = "Rail is preferred for trips under five hours [2]. Claims are filed in Ledgerly within 21 days [3]."
    assert check_citations(right, CHUNKS) == (right, [])
    invented = "The company was founded on the moon by seven astronauts [2]."
    assert check_citations(invented, CHUNKS) == (invented, [])
    assert check_citations("Yes [2].", CHUNKS) == ("Yes [2].", [])  # too short to judge


def test_the_note_lists_the_changes():
    assert citation_note(["[3] -> [1]"]) == "Citations checked against the sources and mended: [3] -> [1]."
