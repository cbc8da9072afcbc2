"""The extractive answerer (the offline backend): sentences with offsets, answers from hand-made chunks."""

from __future__ import annotations

import pytest

from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.documents import Document
from rag_helpers.extractive import (
    EXTRACTED_LABEL,
    ExtractiveAnswerer,
    NO_SOURCES_NOTE,
    NOT_FOUND_NOTE,
    chunk_sentences,
    split_blocks,
    table_row_text,
)
from rag_helpers.answers import DONT_KNOW, REFUSED_ANSWERER, REFUSED_NO_SOURCES
from rag_helpers.pipeline import answer_question, stream_answer
from rag_helpers.prompts import build_prompt, messages_length
from rag_helpers.base import RetrievedChunk

POLICY_2024 = """# Travel Policy 2024

## 3. Transport

Rail is preferred where it is practical. **Rail is mandatory for trips under 5 hours door to door**;
flights on such routes need the CFO's approval (e.g. for medical reasons). Economy class is the standard.

## 4. Accommodation

Book mid-range hotels close to where you work. The **nightly cap** for a standard room is:

| Location | Cap per night |
|---|---|
| Standard (all locations unless listed) | €165 |
| London | £185 |

## 5. Meals

1. While travelling overnight you receive a per diem for meals of €52 per full day.
2. On the day of departure you receive half the per diem.

## 8. Claims

- Submit each expense claim in Ledgerly **within 21 days** of the end of the trip.
- Your manager approves claims in Ledgerly.
"""

POLICY_2023 = (
    POLICY_2024.replace("2024", "2023")
    .replace("€165", "€140")
    .replace("£185", "£150")
    .replace("€52", "€45")
    .replace("21 days", "30 days")
)

HANDBOOK = """# Employee Handbook

## Laptops

Every new starter gets a laptop on their first day. Lost laptops must be reported to IT within 24 hours.
The office coffee machine is cleaned every Friday.
"""


def retrieved(documents: list[Document], chunk_size: int = 1000) -> list[RetrievedChunk]:
    """Every chunk of `documents` as a search hit, in order, with the metadata `ingest` stores."""
    chunks = chunk_documents(documents, CharacterSplitter(chunk_size, 20))
    return [
        RetrievedChunk(
            id=chunk.id,
            text=chunk.text,
            distance=0.5,
            score=0.75,
            metadata={
                "document_id": chunk.document_id,
                "chunk_index": chunk.index,
                "start": chunk.start,
                "end": chunk.end,
            },
        )
        for chunk in chunks
    ]


DOC_2024 = Document("policies/travel_policy_2024.md", POLICY_2024, "policies/travel_policy_2024.md")
DOC_2023 = Document("policies/travel_policy_2023.md", POLICY_2023, "policies/travel_policy_2023.md")
DOC_HANDBOOK = Document("people/handbook.md", HANDBOOK, "people/handbook.md")
TEXTS = {d.id: d.text for d in (DOC_2024, DOC_2023, DOC_HANDBOOK)}


# --- Sentences and their offsets ------------------------------------------------------------------


def test_sentences_keep_exact_offsets_and_structure():
    sentences = chunk_sentences(POLICY_2024, starts_document=True)
    for sentence in sentences:
        assert POLICY_2024[sentence.start : sentence.end] == sentence.text
    texts = [s.text for s in sentences]
    # A wrapped line stays in its sentence; "e.g." does not end one.
    assert "flights on such routes need the CFO's approval (e.g. for medical reasons)." in " ".join(
        texts
    ).replace("\n", " ")
    assert any(
        t.startswith("**Rail is mandatory") and t.endswith("(e.g. for medical reasons).") for t in texts
    )
    # List markers are not part of the quoted sentence; "1." is not a sentence of its own.
    assert "While travelling overnight you receive a per diem for meals of €52 per full day." in texts
    assert "Submit each expense claim in Ledgerly **within 21 days** of the end of the trip." in texts
    assert "1." not in texts and not any(t.startswith(("- ", "1. ")) for t in texts)
    kinds = {s.text: s.kind for s in sentences}
    assert kinds["## 4. Accommodation"] == "heading"
    assert kinds["| Location | Cap per night |"] == "table_header"
    assert kinds["| London | £185 |"] == "table"
    assert "|---|---|" not in kinds


def test_table_rows_and_list_items_know_their_lead_in_and_heading():
    sentences = chunk_sentences(POLICY_2024, starts_document=True)
    by_text = {s.text: s for s in sentences}
    london = by_text["| London | £185 |"]
    assert sentences[london.lead].text.endswith("The **nightly cap** for a standard room is:")
    assert london.context == "4. Accommodation: Location | Cap per night"
    assert by_text["Economy class is the standard."].lead is None


def test_chunk_edges_are_marked_partial():
    text = "ing the cap. The London cap is £185. Claims are filed within 21"
    sentences = chunk_sentences(text)
    assert sentences[0].partial_start and not sentences[0].partial_end
    assert sentences[-1].partial_end and not sentences[-1].partial_start
    assert not chunk_sentences(text.capitalize(), starts_document=True)[0].partial_start


def test_blocks_split_on_blank_lines_lists_tables_and_key_value_lines():
    text = (
        "Owner: Finance\nVersion: 2\n\nA paragraph that wraps\nonto a second line.\n"
        "- item one\n- item two\n| a | b |"
    )
    blocks = [text[s:e] for s, e in split_blocks(text)]
    assert blocks == [
        "Owner: Finance",
        "Version: 2",
        "A paragraph that wraps\nonto a second line.",
        "- item one",
        "- item two",
        "| a | b |",
    ]


# --- Answers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def answerer(model):
    return ExtractiveAnswerer(model)


def test_answer_quotes_the_right_sentence_with_its_citation_and_span(answerer):
    chunks = retrieved([DOC_2024, DOC_HANDBOOK])
    result = answerer.extract("How much is the per diem for meals per full day?", chunks)
    assert result.found and result.text.startswith(EXTRACTED_LABEL)
    line = next(line for line in result.text.splitlines() if "€52" in line)
    number = int(line.rsplit("[", 1)[1].rstrip("]"))
    chunk = chunks[number - 1]
    assert chunk.document_id == "policies/travel_policy_2024.md"
    # The highlighted span is exactly the quoted sentence, in document coordinates.
    spans = result.highlights[number]
    assert "While travelling overnight you receive a per diem for meals of €52 per full day." in [
        TEXTS[chunk.document_id][start:end] for start, end in spans
    ]
    assert len(result.extracts) <= 3


def test_a_table_row_is_quoted_with_its_lead_in(answerer):
    chunks = retrieved([DOC_2024])
    result = answerer.extract("What is the nightly hotel cap in London?", chunks)
    assert "London: £185" in result.text and "|" not in result.text  # a row reads as text, not markdown
    # The lead-in that says what the table is comes first, once, and is highlighted too.
    assert result.text.count("The **nightly cap** for a standard room is:") == 1
    spans = [POLICY_2024[a:b] for a, b in result.highlights[1]]
    assert "The **nightly cap** for a standard room is:" in spans and "| London | £185 |" in spans


REFERENCES = """## Reference customers

| Customer | Country | Products | Live since |
|---|---|---|---|
| Nordhavn Cold Storage | Denmark | Lantern S3, Driftwood 5.1 | 2020 |
| Maple Ridge Pharmacy | Canada | Lantern S3, Tidewatch | March 2024 |
| Vistula Freight | Poland | Driftwood 5.1 Enterprise | August 2024 |
"""


def test_table_rows_read_as_text_with_their_column_names():
    assert table_row_text(("London", "£185")) == "London: £185"
    header = ("Customer", "Country", "Live since")
    named = "Vistula — Country: Poland; Live since: 2024"
    assert table_row_text(("Vistula", "Poland", "2024"), header) == named
    assert table_row_text(("Vistula", "", "2024"), header) == "Vistula — Live since: 2024"  # empty cell left out
    assert table_row_text(("Vistula", "Poland", "2024")) == "Vistula: Poland; 2024"  # header unknown
    rows = [s for s in chunk_sentences(REFERENCES, starts_document=True) if s.kind == "table"]
    assert rows[1].header == ("Customer", "Country", "Products", "Live since")


def test_a_row_the_chunk_boundary_cut_is_still_a_table_row():
    """Issue 15: a chunk that starts inside a row used to quote it as "Ridge Pharmacy | Canada | ... |"."""
    start = REFERENCES.index("Ridge Pharmacy |")
    sentences = chunk_sentences(REFERENCES[start:])
    assert [s.kind for s in sentences] == ["table", "table"]
    assert "|" not in "".join(s.text for s in sentences if s.kind != "table")


def test_a_quoted_table_row_never_shows_markdown_pipes(answerer):
    start = REFERENCES.index("Ridge Pharmacy |")
    end = len(REFERENCES)
    metadata = {"document_id": "customers/references.md", "chunk_index": 1, "start": start, "end": end}
    cut = RetrievedChunk("customers/references.md_1", REFERENCES[start:], 0.4, 0.8, metadata)
    whole = RetrievedChunk("customers/references.md_0", REFERENCES, 0.4, 0.8, {**metadata, "start": 0})
    cut_answer = answerer.extract("Which products does Maple Ridge Pharmacy use?", [cut])
    assert "Ridge Pharmacy: Canada; Lantern S3, Tidewatch; March 2024" in cut_answer.text
    assert "|" not in cut_answer.text
    whole_answer = answerer.extract("When did Vistula Freight go live?", [whole])
    assert "Live since: August 2024" in whole_answer.text and "|" not in whole_answer.text


def test_the_higher_ranked_of_two_near_identical_policies_wins(answerer):
    chunks_2024, chunks_2023 = retrieved([DOC_2024]), retrieved([DOC_2023])
    # The 2024 policy ranks first, as retrieval would put it for a question about 2024.
    ranked = [*chunks_2024, *[RetrievedChunk(c.id, c.text, 0.9, 0.55, c.metadata) for c in chunks_2023]]
    result = answerer.extract(
        "Within how many days must expense claims be submitted under the 2024 policy?", ranked
    )
    best = result.extracts[0] if len(result.extracts) == 1 else max(result.extracts, key=lambda e: e.score)
    assert "21 days" in best.sentence.text


def test_unrelated_question_says_the_sources_do_not_contain_it(model):
    strict = ExtractiveAnswerer(model, min_similarity=0.6)
    result = strict.extract("Which football team won the 1998 World Cup?", retrieved([DOC_HANDBOOK]))
    assert not result.found and result.text == f"{EXTRACTED_LABEL}\n{DONT_KNOW}"
    assert (result.refused, result.note) == (REFUSED_ANSWERER, NOT_FOUND_NOTE)
    assert result.highlights == {}


def test_no_chunks_means_nothing_to_extract(answerer):
    result = answerer.extract("Anything?", [])
    assert not result.found and DONT_KNOW in result.text
    assert (result.refused, result.note) == (REFUSED_NO_SOURCES, NO_SOURCES_NOTE)


def test_answers_are_deterministic(answerer):
    chunks = retrieved([DOC_2024, DOC_2023, DOC_HANDBOOK])
    question = "Is rail mandatory for short trips?"
    assert answerer.extract(question, chunks) == answerer.extract(question, chunks)


def test_bad_settings_are_rejected(model):
    with pytest.raises(ValueError, match="max_sentences"):
        ExtractiveAnswerer(model, max_sentences=0)
    with pytest.raises(ValueError, match="chunk_weight"):
        ExtractiveAnswerer(model, chunk_weight=2)


# --- The offline backend and the pipeline -----------------------------------------------------------


def test_answer_is_a_labelled_answer_with_resolved_sources(model):
    chunks = retrieved([DOC_2024, DOC_HANDBOOK])
    answer = ExtractiveAnswerer(model).answer(build_prompt("How soon must lost laptops be reported?", chunks))
    assert answer.refused is None
    assert answer.backend == "offline" and answer.extractive
    assert answer.text.startswith(EXTRACTED_LABEL) and "24 hours" in answer.text
    assert answer.sources and all(source.highlights for source in answer.sources)
    laptop = next(s for s in answer.sources if s.document_id == "people/handbook.md")
    assert any("24 hours" in HANDBOOK[a:b] for a, b in laptop.highlights)
    assert "extractive" in answer.model


def test_offline_stream_gives_the_same_text_line_by_line(model):
    chunks = retrieved([DOC_2024])
    stream = ExtractiveAnswerer(model).stream(build_prompt("What is the London hotel cap?", chunks))
    pieces = list(stream)
    assert len(pieces) >= 2 and "".join(pieces) == stream.answer.text


def test_answer_question_with_a_retriever_and_the_offline_backend(model):
    chunks = retrieved([DOC_2024, DOC_HANDBOOK])
    seen = []

    def retriever(query: str, k: int) -> list[RetrievedChunk]:
        seen.append((query, k))
        return chunks[:k]

    answer = answer_question(
        "What is the per diem for meals?",
        model=model,
        answerer=ExtractiveAnswerer(model),
        k=2,
        retriever=retriever,
    )
    assert seen == [("What is the per diem for meals?", 2)]
    assert "€52" in answer.text and answer.notes == ()
    assert [source.chunk_id for source in answer.context] == [c.id for c in chunks]


def small_budget(question: str, chunks: list[RetrievedChunk], keep: int) -> int:
    """A budget with room for the first `keep` chunks and the note that says the rest were left out."""
    return messages_length(build_prompt(question, chunks[:keep]).messages) + 120


def test_answer_question_reports_chunks_left_out_for_the_budget(model):
    chunks = retrieved([DOC_2024, DOC_HANDBOOK], chunk_size=200)
    assert len(chunks) >= 6
    question = "What is the per diem for meals?"
    answer = answer_question(
        question,
        answerer=ExtractiveAnswerer(model),
        k=6,
        retriever=lambda q, k: chunks[:k],
        budget=small_budget(question, chunks, 3),
    )
    assert answer.notes == (
        "Note: 3 lower-ranked sources were left out to keep this prompt within its length budget.",
    )
    assert [source.chunk_id for source in answer.context] == [c.id for c in chunks[:3]]
    assert all(source.number <= 3 for source in answer.sources)


def test_stream_answer_carries_the_budget_note(model):
    chunks = retrieved([DOC_2024, DOC_HANDBOOK], chunk_size=200)
    question = "What is the per diem for meals?"
    stream = stream_answer(
        question,
        answerer=ExtractiveAnswerer(model),
        k=6,
        retriever=lambda q, k: chunks[:k],
        budget=small_budget(question, chunks, 3),
    )
    text = "".join(stream)
    assert text == stream.answer.text and "left out" in stream.answer.notes[0]


def test_a_chunk_boundary_never_leaves_half_a_word_in_a_quote():
    # A character splitter cut "will" at the start and "with a" at the end of this chunk.
    text = "l be working. The battery lasts 14 hours. It ships with a"
    sentences = chunk_sentences(text, starts_document=False)
    first, last = sentences[0], sentences[-1]
    assert (first.text, first.partial_start) == ("be working.", True)
    assert (last.text, last.partial_end) == ("It ships with", True)
    assert all(text[s.start : s.end] == s.text for s in sentences)  # offsets still point at the text
    # White space between a word and the chunk's edge shows the word is whole: it stays.
    spaced = chunk_sentences(" annual savings. It ships with \n", starts_document=False)
    assert (spaced[0].text, spaced[-1].text) == ("annual savings.", "It ships with")
    # Nothing is trimmed at the start of a document, or when nothing would be left.
    assert chunk_sentences("l be working.", starts_document=True)[0].text == "l be working."
    assert chunk_sentences("word", starts_document=False)[0].text == "word"


def test_highlights_of_a_cut_sentence_start_and_end_on_word_boundaries(answerer):
    document = "The gateway keeps readings. The battery lasts 14 hours without mains power when charged."
    start = document.index("ttery")  # the chunk starts mid-word and ends mid-word
    metadata = {"document_id": "gateway.md", "start": start}
    chunk = RetrievedChunk("gateway.md_1", document[start:-12], 0.3, 0.85, metadata)
    result = answerer.extract("How long does the battery last?", [chunk])
    assert result.found
    for a, b in result.highlights[1]:
        assert not (document[a - 1].isalnum() and document[a].isalnum()), document[a - 5 : b]
        assert not (document[b - 1].isalnum() and document[b].isalnum()), document[a : b + 5]
