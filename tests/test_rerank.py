"""The offline sentence re-ranker and the cross-encoder's offline error (the retriever runs in test_registry.py)."""

from __future__ import annotations

import pytest

from rag_helpers.embeddings import embed
from rag_helpers.rerank import CrossEncoderReranker, RerankerUnavailableError, SentenceReranker
from rag_helpers.base import RetrievedChunk


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
