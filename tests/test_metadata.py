"""Metadata at ingestion (years from document ids) and `where` filters built from questions."""

from __future__ import annotations

import pytest

from rag_helpers.chunking import chunk_documents
from rag_helpers.documents import Document
from rag_helpers.metadata import (
    add_metadata,
    year_filter_from_question,
    year_from_id,
    year_metadata,
    years_in,
)


def doc(doc_id: str, text: str = "Some text about the policy.", **metadata) -> Document:
    return Document(doc_id, text, f"/corpus/{doc_id}", {"category": doc_id.split("/")[0], **metadata})


@pytest.mark.parametrize(
    ("text", "years"),
    [
        ("What is the hotel cap under the 2024 policy?", [2024]),
        ("Compare the 2024 and the 2023 versions (2024 first)", [2023, 2024]),
        ("pm_2024_004_driftwood_eu_database_outage.md", [2024]),
        ("Planned for 2024-11-25, moved from 2023.", [2023, 2024]),
        ("The 2023–24 season", [2023]),
        ("Order 12024, code 20245", []),
        ("Who won the 1998 World Cup?", [1998]),
        ("No year here, only 24 and 202.", []),
    ],
)
def test_years_in(text, years):
    assert years_in(text) == years


@pytest.mark.parametrize(
    ("document_id", "year"),
    [
        ("policies/travel_expense_policy_2024.md", 2024),
        ("meetings/2024_01_16_engineering_q1_planning.md", 2024),
        ("engineering/postmortems/pm_2023_019_ingest_certificate_expiry.txt", 2023),
        ("people/employee_handbook.md", None),
        ("archive/2023/summary_2024.md", None),  # two different years: ambiguous, so none
    ],
)
def test_year_from_id(document_id, year):
    assert year_from_id(document_id) == year


def test_year_metadata_marks_documents_without_a_year():
    assert year_metadata(doc("policies/remote_work_policy_2023.md")) == {"year": 2023, "dated": True}
    assert year_metadata(doc("people/employee_handbook.md", "Updated in 2024.")) == {"dated": False}


def test_add_metadata_returns_enriched_copies_and_chunks_inherit_them():
    originals = [doc("policies/travel_2024.md", "A" * 30), doc("faq/parking.txt", "B" * 30)]
    enriched = add_metadata(originals, year_metadata)

    assert [d.metadata for d in enriched] == [
        {"category": "policies", "year": 2024, "dated": True},
        {"category": "faq", "dated": False},
    ]
    assert [d.metadata for d in originals] == [{"category": "policies"}, {"category": "faq"}]
    assert [(d.id, d.text, d.source) for d in enriched] == [(d.id, d.text, d.source) for d in originals]
    chunks = chunk_documents(enriched)
    assert [c.metadata.get("year") for c in chunks] == [2024, None]


def test_add_metadata_overrides_keys_and_drops_none_values():
    enriched = add_metadata([doc("faq/a.md")], lambda d: {"category": "help", "owner": None, "pages": 3})
    assert enriched[0].metadata == {"category": "help", "pages": 3}


def test_add_metadata_rejects_values_chroma_cannot_store():
    with pytest.raises(TypeError, match=r"'tags' of faq/a\.md is a list"):
        add_metadata([doc("faq/a.md")], lambda d: {"tags": ["x", "y"]})


@pytest.mark.parametrize(
    ("question", "include_undated", "expected"),
    [
        ("What is the per diem under the 2024 policy?", False, {"year": 2024}),
        ("How did the stipend change from 2023 to 2024?", False, {"year": {"$in": [2023, 2024]}}),
        ("What is the per diem?", False, None),
        ("What is the per diem?", True, None),
        (
            "What is the per diem under the 2024 policy?",
            True,
            {"$or": [{"year": 2024}, {"dated": False}]},
        ),
    ],
)
def test_year_filter_from_question(question, include_undated, expected):
    assert year_filter_from_question(question, include_undated=include_undated) == expected


def test_year_filters_select_the_right_chunks_in_chroma():
    chromadb = pytest.importorskip("chromadb")
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    if "test_year_filters" in [c.name for c in client.list_collections()]:
        client.delete_collection("test_year_filters")
    collection = client.create_collection("test_year_filters", embedding_function=None)
    documents = add_metadata(
        [doc("p/policy_2023.md"), doc("p/policy_2024.md"), doc("p/handbook.md")], year_metadata
    )
    collection.add(
        ids=[d.id for d in documents],
        embeddings=[[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]],
        metadatas=[d.metadata for d in documents],
        documents=[d.text for d in documents],
    )

    def ids(question, include_undated=False):
        where = year_filter_from_question(question, include_undated=include_undated)
        return sorted(collection.get(where=where)["ids"])

    assert ids("the 2024 policy") == ["p/policy_2024.md"]
    assert ids("the 2024 policy", include_undated=True) == ["p/handbook.md", "p/policy_2024.md"]
    assert ids("from 2023 to 2024") == ["p/policy_2023.md", "p/policy_2024.md"]
    assert ids("no year") == ["p/handbook.md", "p/policy_2023.md", "p/policy_2024.md"]
