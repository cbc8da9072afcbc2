"""Rank fusion on rankings whose fused scores are computed by hand."""

from __future__ import annotations

import pytest

from rag_helpers.fusion import min_max_normalise, reciprocal_rank_fusion, weighted_score_fusion


def test_rrf_matches_hand_computed_scores_and_order():
    # a: ranks 1 and 2; b: rank 2 only; c: ranks 3 and 1; d: rank 3 only.
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    expected = {
        "a": 1 / 61 + 1 / 62,
        "b": 1 / 62,
        "c": 1 / 63 + 1 / 61,
        "d": 1 / 63,
    }
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    for item, score in fused:
        assert score == pytest.approx(expected[item], abs=1e-15)


def test_rrf_with_k_zero_is_the_sum_of_reciprocal_ranks():
    fused = dict(reciprocal_rank_fusion([["x", "y"], ["y"]], k=0))
    assert fused == {"x": pytest.approx(1.0), "y": pytest.approx(0.5 + 1.0)}


def test_rrf_weights_scale_each_rankings_vote():
    rankings = [["a", "b"], ["b", "a"]]
    assert [i for i, _ in reciprocal_rank_fusion(rankings, k=1, weights=[1, 0])] == ["a", "b"]
    assert [i for i, _ in reciprocal_rank_fusion(rankings, k=1, weights=[1, 3])] == ["b", "a"]
    fused = dict(reciprocal_rank_fusion(rankings, k=1, weights=[2, 1]))
    assert fused["a"] == pytest.approx(2 / 2 + 1 / 3)
    assert fused["b"] == pytest.approx(2 / 3 + 1 / 2)


def test_rrf_ties_keep_the_order_read_rank_by_rank_and_repeats_count_once():
    # Same score for p and q: p is met first (rank 1 of the first ranking).
    assert [i for i, _ in reciprocal_rank_fusion([["p", "q"], ["q", "p"]])] == ["p", "q"]
    # "a" repeated in one ranking counts at its first rank only.
    fused = dict(reciprocal_rank_fusion([["a", "a", "b"]], k=0))
    assert fused == {"a": pytest.approx(1.0), "b": pytest.approx(1 / 3)}


def test_rrf_edge_cases_and_errors():
    assert reciprocal_rank_fusion([]) == []
    assert reciprocal_rank_fusion([[], []]) == []
    with pytest.raises(ValueError, match="one weight per ranking"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])
    with pytest.raises(ValueError, match="negative"):
        reciprocal_rank_fusion([["a"]], weights=[-1.0])
    with pytest.raises(ValueError, match="k must be zero or more"):
        reciprocal_rank_fusion([["a"]], k=-1)


def test_min_max_normalise():
    assert min_max_normalise({"a": 3.0, "b": 1.0, "c": 2.0}) == {"a": 1.0, "b": 0.0, "c": 0.5}
    assert min_max_normalise({"a": 7.0, "b": 7.0}) == {"a": 1.0, "b": 1.0}
    assert min_max_normalise({}) == {}


def test_weighted_score_fusion_by_hand():
    dense = {"a": 0.9, "b": 0.7, "c": 0.5}  # normalised: a 1.0, b 0.5, c 0.0
    keyword = [("c", 12.0), ("d", 8.0), ("a", 4.0)]  # normalised: c 1.0, d 0.5, a 0.0
    fused = weighted_score_fusion([dense, keyword], weights=[0.6, 0.4])
    assert dict(fused) == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.4, "d": 0.2})
    assert [i for i, _ in fused] == ["a", "c", "b", "d"]
    raw = dict(weighted_score_fusion([dense, keyword], normalise=False))
    assert raw["a"] == pytest.approx(4.9)
    with pytest.raises(ValueError, match="one weight per ranking"):
        weighted_score_fusion([dense], weights=[1, 2])
