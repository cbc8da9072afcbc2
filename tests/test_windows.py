"""Sentence windows: widening a sentence to its window (the retrievers run in test_registry.py)."""

from __future__ import annotations

import pytest

from rag_helpers.windows import widen



@pytest.mark.parametrize(
    ("index", "limit", "expected"),
    [
        (2, 5, (2, 2)),  # the sentence alone is already wider than the limit
        (2, 25, (2, 3)),  # room for the next sentence only
        (2, 36, (1, 3)),  # then the one before
        (0, 100, (0, 4)),  # everything fits
        (4, 12, (4, 4)),  # the one before would make it 19 characters
        (4, 20, (3, 4)),  # at the end, it grows backwards
    ],
)
def test_widen_adds_neighbours_after_then_before(index, limit, expected):
    spans = [(0, 10), (11, 20), (21, 30), (31, 40), (41, 50)]
    assert widen(spans, index, limit) == expected
