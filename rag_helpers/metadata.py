"""Extra metadata at ingestion, and Chroma filters built from a question.

`ingest` stores each document's `metadata` with every one of its chunks, so metadata added to a
`Document` before chunking becomes filterable in Chroma (`where={"year": 2024}`):

    documents = add_metadata(load_documents(folder), year_metadata)
    chunks = chunk_documents(documents)              # every chunk carries "year" and "dated"
    ingest(collection, chunks, model)
    retrieve(collection, question, where=year_filter_from_question(question))

The year comes from the document's id (its path), where the name holds one, as in
`policies/travel_expense_policy_2024.md` or `meetings/2024_01_16_engineering_q1_planning.md`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

from .documents import Document

# A four-digit year from 1900 to 2099 that is not part of a longer number ("2024", "pm_2024_004",
# "2024-11-25" all match; "12024" and "20245" do not). Letters and "_" may touch it: ids use "_" as a space.
YEAR_PATTERN = re.compile(r"(?<!\d)(19\d{2}|20\d{2})(?!\d)")

MetadataValue = str | int | float | bool


def years_in(text: str) -> list[int]:
    """The distinct years (1900-2099) written in `text`, in ascending order."""
    return sorted({int(match) for match in YEAR_PATTERN.findall(text)})


def year_from_id(document_id: str) -> int | None:
    """The year in a document's id (path), or None when it names no year or more than one."""
    years = years_in(document_id)
    return years[0] if len(years) == 1 else None


def year_metadata(document: Document) -> dict[str, MetadataValue]:
    """`{"year": 2024, "dated": True}` for a document whose id names one year, else `{"dated": False}`."""
    year = year_from_id(document.id)
    return {"dated": False} if year is None else {"year": year, "dated": True}


def add_metadata(
    documents: Iterable[Document], fn: Callable[[Document], Mapping[str, Any]]
) -> list[Document]:
    """Copies of `documents` with `fn(document)`'s keys added to (or replacing) their metadata.

    Values must be str, int, float or bool (what Chroma can filter on); None values are left out,
    as Chroma cannot store them.
    """
    enriched = []
    for document in documents:
        extra = dict(fn(document))
        for key, value in extra.items():
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise TypeError(
                    f"metadata {key!r} of {document.id} is a {type(value).__name__}; Chroma stores only "
                    "str, int, float and bool values. Convert it first, e.g. str(value)."
                )
        metadata = {**document.metadata, **{k: v for k, v in extra.items() if v is not None}}
        enriched.append(replace(document, metadata=metadata))
    return enriched


def year_filter_from_question(question: str, include_undated: bool = False) -> dict[str, Any] | None:
    """A Chroma `where` filter for the years a question names, or None when it names none.

    One year gives `{"year": 2024}`, several `{"year": {"$in": [2023, 2024]}}`. With
    `include_undated=True` documents without a year are kept too (`{"dated": False}`), so a
    question that names a year can still be answered from a document that has none.
    """
    years = years_in(question)
    if not years:
        return None
    by_year: dict[str, Any] = {"year": years[0]} if len(years) == 1 else {"year": {"$in": years}}
    if include_undated:
        return {"$or": [by_year, {"dated": False}]}
    return by_year


__all__ = [
    "YEAR_PATTERN",
    "add_metadata",
    "year_filter_from_question",
    "year_from_id",
    "year_metadata",
    "years_in",
]
