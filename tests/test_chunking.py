"""Splitters: exact equality with the original tutorial, offsets, ids, and the better splitters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag_helpers.chunking import (
    CharacterSplitter,
    Chunk,
    SentenceSplitter,
    StructureSplitter,
    TokenSplitter,
    chunk_documents,
    split_text,
    split_text_spans,
    sentence_spans,
    split_sentences,
)
from rag_helpers.documents import Document


def original_split_text(text, chunk_size=1000, chunk_overlap=20):
    """The original tutorial's algorithm, as it behaves (only called with valid arguments)."""
    chunks = []
    start = 0
    while start < len(text):
        end = start + chunk_size
        chunks.append(text[start:end])
        start = end - chunk_overlap
    return chunks


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(min_size=0, max_size=3000),
    chunk_size=st.integers(min_value=1, max_value=1200),
    overlap_fraction=st.floats(min_value=0, max_value=0.99),
)
def test_split_text_equals_the_original_algorithm(text, chunk_size, overlap_fraction):
    chunk_overlap = min(int(chunk_size * overlap_fraction), chunk_size - 1)
    assert split_text(text, chunk_size, chunk_overlap) == original_split_text(text, chunk_size, chunk_overlap)


def test_defaults_are_the_tutorials_1000_and_20():
    text = "".join(chr(ord("a") + i % 26) for i in range(2500))
    chunks = split_text(text)
    assert [len(c) for c in chunks] == [1000, 1000, 540]
    assert chunks[1][:20] == chunks[0][-20:]


def test_a_text_of_exactly_chunk_size_gets_the_originals_short_tail_chunk():
    # The original keeps stepping while start < len(text), so 1000 chars give a 20-char tail.
    assert [len(c) for c in split_text("x" * 1000)] == [1000, 20]


@pytest.mark.parametrize(
    ("size", "overlap", "message"),
    [
        (1000, 1000, r"chunk_overlap \(1000\) must be smaller than chunk_size \(1000\)"),
        (100, 150, r"chunk_overlap \(150\) must be smaller than chunk_size \(100\)"),
        (0, 0, "chunk_size must be positive"),
        (-5, 0, "chunk_size must be positive"),
        (100, -1, "chunk_overlap must be zero or positive"),
    ],
)
def test_invalid_sizes_raise_instead_of_looping_forever(size, overlap, message):
    with pytest.raises(ValueError, match=message):
        split_text("some text", size, overlap)
    with pytest.raises(ValueError, match=message):
        CharacterSplitter(size, overlap)
    with pytest.raises(ValueError, match=message):
        StructureSplitter(size, overlap)


def test_non_integer_sizes_are_rejected():
    with pytest.raises(TypeError, match="chunk_size"):
        split_text("text", 10.5, 2)


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=1, max_size=2000), size=st.integers(20, 400), overlap=st.integers(0, 19))
def test_spans_map_back_to_the_text(text, size, overlap):
    for start, end in split_text_spans(text, size, overlap):
        assert 0 <= start < end <= len(text)
    assert [text[s:e] for s, e in split_text_spans(text, size, overlap)] == split_text(text, size, overlap)


def make_docs():
    return [
        Document("a.txt", "alpha " * 400, "/tmp/a.txt", {"category": "root"}),
        Document("sub/b.md", "beta " * 10, "/tmp/sub/b.md", {"category": "sub"}),
    ]


def test_chunk_documents_ids_offsets_and_metadata():
    docs = make_docs()
    chunks = chunk_documents(docs)
    assert [c.id for c in chunks] == ["a.txt_0", "a.txt_1", "a.txt_2", "sub/b.md_0"]
    assert len({c.id for c in chunks}) == len(chunks)
    by_doc = {d.id: d for d in docs}
    for chunk in chunks:
        assert isinstance(chunk, Chunk)
        assert by_doc[chunk.document_id].text[chunk.start : chunk.end] == chunk.text
        assert chunk.metadata["category"] == by_doc[chunk.document_id].metadata["category"]
    assert [c.index for c in chunks] == [0, 1, 2, 0]
    assert chunks[0].content_hash != chunks[1].content_hash
    assert chunks[0].content_hash == chunk_documents(docs)[0].content_hash


def test_chunk_documents_matches_the_tutorials_loop():
    docs = make_docs()
    expected = [(f"{d.id}_{i}", t) for d in docs for i, t in enumerate(original_split_text(d.text))]
    assert [(c.id, c.text) for c in chunk_documents(docs)] == expected


def test_chunk_documents_accepts_any_splitter():
    chunks = chunk_documents(make_docs(), splitter=CharacterSplitter(500, 50))
    assert max(len(c.text) for c in chunks) == 500


PROSE = (
    "# Travel policy\n\nBook rail for short trips. Flights need approval from your manager.\n"
    "Hotels are capped per night.\n\n## Meals\n\nThe per-diem covers breakfast, lunch and dinner. "
    "Alcohol is never reimbursed! Keep receipts for everything over ten euros.\n\n"
) * 6


@pytest.mark.parametrize(("size", "overlap"), [(120, 20), (200, 0), (300, 60), (50, 10)])
def test_structure_splitter_respects_size_and_tiles_the_text(size, overlap):
    spans = StructureSplitter(size, overlap)(PROSE)
    assert all(0 < e - s <= size for s, e in spans)
    starts = [s for s, _ in spans]
    assert starts == sorted(starts)
    # Every non-space character is covered by some chunk.
    covered = set()
    for s, e in spans:
        covered.update(range(s, e))
    assert all(i in covered for i, ch in enumerate(PROSE) if not ch.isspace())


def test_structure_splitter_prefers_paragraph_and_sentence_boundaries():
    spans = StructureSplitter(200, 0)(PROSE)
    for s, e in spans:
        chunk = PROSE[s:e]
        assert chunk[-1] in ".!\n" or chunk.endswith(("policy", "Meals")), chunk[-30:]


def test_structure_splitter_overlap_repeats_the_previous_sentence():
    spans = StructureSplitter(150, 80)(PROSE)
    overlapping = sum(1 for (s1, e1), (s2, _) in zip(spans, spans[1:]) if s2 < e1)
    assert overlapping >= len(spans) // 2


def test_structure_splitter_cuts_words_only_when_a_word_is_too_long():
    text = "short words here " + "x" * 250 + " tail"
    spans = StructureSplitter(100, 0)(text)
    assert all(e - s <= 100 for s, e in spans)
    assert "".join(text[s:e] for s, e in spans).replace(" ", "") == text.replace(" ", "")


def test_token_splitter_never_exceeds_the_models_window(model):
    tokenizer = model.tokenizer
    text = (PROSE + "Supercalifragilisticexpialidocious antidisestablishmentarianism. ") * 10
    splitter = TokenSplitter(tokenizer)
    spans = splitter(text)
    assert len(spans) > 1
    for s, e in spans:
        n = len(tokenizer(text[s:e], add_special_tokens=False)["input_ids"])
        assert n <= 254
        # Cuts fall between words, never inside one.
        assert s == 0 or not text[s - 1].isalnum() or not text[s].isalnum()
        assert e == len(text) or not text[e - 1].isalnum() or not text[e].isalnum()
    assert spans[-1][1] == len(text.rstrip())


def test_token_splitter_overlaps_and_validates(model):
    spans = TokenSplitter(model.tokenizer, max_tokens=50, overlap_tokens=10)(PROSE)
    assert all(s2 < e1 for (_, e1), (s2, _) in zip(spans, spans[1:]))
    with pytest.raises(ValueError, match="must be smaller"):
        TokenSplitter(model.tokenizer, max_tokens=10, overlap_tokens=10)


def test_token_splitter_finds_what_the_character_splitter_truncates(model):
    """Dense text of 1000 characters can exceed 256 word-pieces; the token splitter never does."""
    dense = " ".join(f"SKU-{i:05d}/Q{i % 7}" for i in range(400))
    tokenizer = model.tokenizer
    over = [c for c in split_text(dense) if len(tokenizer(c)["input_ids"]) > 256]
    assert over, "expected some 1000-character chunks of dense text to exceed the window"
    for s, e in TokenSplitter(tokenizer)(dense):
        assert len(tokenizer(dense[s:e])["input_ids"]) <= 256


# --- The sentence splitter -------------------------------------------------------------------


def test_sentence_spans_cover_sentences_items_rows_and_headings():
    text = (
        "# Meals\n\nYou get a per diem of €52. Half on travel days.\n"
        "- Breakfast: reduce by 15%\n| City | Cap |\n|---|---|\n| London | £185 |\nOk."
    )
    pieces = [text[s:e] for s, e in sentence_spans(text)]
    assert pieces == [
        "# Meals\n\nYou get a per diem of €52.",  # a heading shorter than min_chars joins the next piece
        "Half on travel days.",
        "- Breakfast: reduce by 15%",
        "| City | Cap |",  # the |---| separator row is no sentence
        "| London | £185 |\nOk.",  # "Ok." is shorter than min_chars, so it joins its neighbour
    ]
    assert sentence_spans("") == []
    assert SentenceSplitter()(text) == sentence_spans(text)


def test_sentences_keep_abbreviations_and_initials_together():
    text = "Claims need receipts, e.g. hotel bills. Ask J. Smith in approx. 5 days. Then wait."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "Claims need receipts, e.g. hotel bills.",
        "Ask J. Smith in approx. 5 days.",
        "Then wait.",
    ]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab .!?\n-|#1", max_size=200))
def test_sentence_spans_are_ordered_non_empty_slices(text):
    spans = sentence_spans(text)
    assert all(0 <= s < e <= len(text) for s, e in spans)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))


def test_a_long_block_of_lines_is_cut_into_its_lines():
    items = "\n".join(f"[ ] Task number {n} of the first week, with a few more words" for n in range(8))
    text = f"FIRST WEEK\n{items}\n    (all within 14 days)"
    pieces = [text[s:e] for s, e in sentence_spans(text)]
    assert pieces[0] == "FIRST WEEK\n[ ] Task number 0 of the first week, with a few more words"
    assert pieces[-1] == "[ ] Task number 7 of the first week, with a few more words\n    (all within 14 days)"
    assert len(pieces) == 8  # the heading, shorter than min_chars, joined the first item
    assert len(sentence_spans(text, max_block_chars=10_000)) == 1  # one block when long blocks are allowed
