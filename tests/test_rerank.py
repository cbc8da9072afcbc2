"""MMR on hand-made vectors, sentence spans, and the offline sentence re-ranker."""

from __future__ import annotations

import numpy as np
import pytest

from rag_helpers.embeddings import embed
from rag_helpers.rerank import (
    CrossEncoderReranker,
    RerankerUnavailableError,
    SentenceReranker,
    mmr_select,
)
from rag_helpers.store import RetrievedChunk


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


def chunk(chunk_id: str, text: str) -> RetrievedChunk:
    return RetrievedChunk(chunk_id, text, None, 0.0, {"document_id": chunk_id, "start": 0, "end": len(text)})


def test_sentence_reranker_lifts_the_chunk_whose_sentence_answers(model):
    buried = chunk(
        "buried",
        "Our office has a quiet room on the second floor. The coffee machine is cleaned on Mondays. "
        "Error code E14 means the probe cable is unplugged. Visitors sign in at reception.",
    )
    vague = chunk("vague", "Lantern devices show codes on their display when something needs attention.")
    question = "What does error code E14 mean?"
    reranker = SentenceReranker(model, weight=1.0)
    scores = reranker.scores(question, [vague, buried])
    q = embed([question], model, progress=False)[0]
    sentences = embed(["Error code E14 means the probe cable is unplugged."], model, progress=False)
    assert scores[1] == pytest.approx(float(sentences[0] @ q), abs=1e-5)
    assert [c.id for c in reranker.rerank(question, [vague, buried])] == ["buried", "vague"]
    # weight 0: only the original order counts (1.0 for the first candidate, 0.0 for the last).
    keep = SentenceReranker(model, weight=0.0).rerank(question, [vague, buried])
    assert [(c.id, c.score) for c in keep] == [("vague", 1.0), ("buried", 0.0)]
    assert reranker.rerank(question, []) == []
    assert len(reranker.rerank(question, [vague, buried], k=1)) == 1
    with pytest.raises(ValueError, match="between 0 and 1"):
        SentenceReranker(model, weight=2)


def test_cross_encoder_is_a_clear_error_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RerankerUnavailableError, match="SentenceReranker"):
        CrossEncoderReranker("cross-encoder/ms-marco-MiniLM-L6-v2")
