"""The embedding cache: unchanged texts are never encoded twice, and the cache survives a restart."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from rag_helpers.embeddings import EmbeddingCache, embed, embed_cached

TEXTS = [
    "Hotel stays are reimbursed up to a nightly cap.",
    "The gateway keeps running on its backup battery.",
    "Submit expense claims within 21 days of the trip.",
]


def test_second_call_encodes_nothing_and_returns_the_same_vectors(model):
    cache = EmbeddingCache()
    first = embed_cached(TEXTS, model, cache, progress=False)
    assert (cache.misses, cache.hits, len(cache)) == (3, 0, 3)
    second = embed_cached(TEXTS, model, cache, progress=False)
    assert (cache.misses, cache.hits) == (3, 3)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, embed(TEXTS, model, progress=False), atol=1e-6)


def test_only_new_or_changed_texts_are_encoded(model):
    cache = EmbeddingCache()
    embed_cached(TEXTS[:2], model, cache, progress=False)
    changed = TEXTS[1] + " It lasts 14 hours."
    vectors = embed_cached([TEXTS[0], changed, TEXTS[2]], model, cache, progress=False)
    assert cache.misses == 2 + 2  # the changed text and the new one
    assert vectors.shape == (3, 384)
    assert not np.allclose(vectors[1], embed([TEXTS[1]], model, progress=False)[0])


def test_duplicates_in_one_call_are_encoded_once(model):
    cache = EmbeddingCache()
    vectors = embed_cached([TEXTS[0], TEXTS[0], TEXTS[1]], model, cache, progress=False)
    assert cache.misses == 2 and cache.hits == 1 and len(cache) == 2
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_cache_file_survives_a_restart(model, tmp_path):
    path = tmp_path / "cache" / "vectors.npz"
    first = embed_cached(TEXTS, model, EmbeddingCache(path), progress=False)
    assert path.is_file() and not path.with_name("vectors.npz.partial").exists()
    reopened = EmbeddingCache(path)
    assert len(reopened) == 3
    again = embed_cached(TEXTS, model, reopened, progress=False)
    assert reopened.misses == 0 and reopened.hits == 3
    np.testing.assert_array_equal(first, again)


def test_key_depends_on_model_name_precision_and_text():
    fp32 = SimpleNamespace(rag_name="m", rag_precision="fp32")
    bf16 = SimpleNamespace(rag_name="m", rag_precision="bf16")
    other = SimpleNamespace(rag_name="other", rag_precision="fp32")
    keys = {EmbeddingCache.key("text", m) for m in (fp32, bf16, other)} | {EmbeddingCache.key("text ", fp32)}
    assert len(keys) == 4
    assert EmbeddingCache.key("text", fp32) == EmbeddingCache.key("text", SimpleNamespace(**vars(fp32)))


def test_empty_input_and_a_bare_string(model):
    cache = EmbeddingCache()
    assert embed_cached([], model, cache, progress=False).shape == (0, 384)
    with pytest.raises(TypeError, match="wrap a single text"):
        embed_cached("just one text", model, cache)


def test_saving_needs_a_path():
    with pytest.raises(ValueError, match="no file"):
        EmbeddingCache().save()


def test_a_damaged_cache_file_is_reported(tmp_path):
    path = tmp_path / "vectors.npz"
    path.write_bytes(b"not a numpy archive")
    with pytest.raises(ValueError, match="delete it"):
        EmbeddingCache(path)
