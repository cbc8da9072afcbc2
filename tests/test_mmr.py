"""Maximal marginal relevance on hand-made vectors (the retriever runs in test_registry.py)."""

from __future__ import annotations

import numpy as np
import pytest

from rag_helpers.mmr import mmr_select


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_mmr_by_hand():
    query = unit(1, 0)
    a = unit(1, 0.1)  # most relevant
    b = unit(1, 0.12)  # almost the same as a
    c = unit(0.6, -0.8)  # less relevant, different
    vectors = np.stack([a, b, c])
    # lambda 1: plain relevance order.
    assert [i for i, _ in mmr_select(query, vectors, 3, lambda_=1.0)] == [0, 1, 2]
    # lambda 0.5: after a, c's penalty (similarity to a) is far lower than b's.
    picked = mmr_select(query, vectors, 3, lambda_=0.5)
    assert [i for i, _ in picked] == [0, 2, 1]
    rel = vectors @ query
    assert picked[0][1] == pytest.approx(0.5 * rel[0])
    assert picked[1][1] == pytest.approx(0.5 * rel[2] - 0.5 * float(c @ a))
    assert picked[2][1] == pytest.approx(0.5 * rel[1] - 0.5 * max(float(b @ a), float(b @ c)))


def test_mmr_edge_cases():
    assert mmr_select(unit(1, 0), np.zeros((0, 2)), 3) == []
    assert len(mmr_select(unit(1, 0), np.stack([unit(1, 0)]), 5)) == 1
    with pytest.raises(ValueError, match="between 0 and 1"):
        mmr_select(unit(1, 0), np.stack([unit(1, 0)]), 1, lambda_=1.5)
