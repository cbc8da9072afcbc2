"""The ONNX export of the packaged embedding model: same vectors as torch, used for questions, no torch."""

from __future__ import annotations

import numpy as np
import pytest

from rag_helpers import embeddings
from rag_helpers.embeddings import QueryEncoder, embed
from rag_helpers.onnx_encoder import export_onnx, load_onnx_encoder, onnx_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def onnx_encoder(model):
    """The export `make setup` makes (made here if it is missing), loaded."""
    export_onnx()
    encoder = load_onnx_encoder()
    assert encoder is not None
    return encoder


def test_the_export_gives_sentence_transformers_vectors(onnx_encoder, model):
    texts = [
        "How many days of parental leave?",
        "Ünïcödé façade: €1,000 in Q3 2024.",
        "x",
        "A chunk long enough to be truncated. " * 120,  # past the 256-token window
    ]
    together = onnx_encoder.encode(texts)  # one padded batch
    alone = np.stack([onnx_encoder(text) for text in texts])
    expected = embed(texts, model, progress=False)
    assert together.dtype == np.float32 and together.shape == (4, 384)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert np.min(np.sum(together * expected, axis=1)) >= 0.9999
    assert np.min(np.sum(alone * expected, axis=1)) >= 0.9999


def test_an_existing_export_is_kept_and_other_models_have_none(onnx_encoder, tmp_path):
    path = onnx_path()
    before = path.stat().st_mtime_ns
    assert export_onnx() == path and path.stat().st_mtime_ns == before
    assert load_onnx_encoder("some/other-model") is None
    assert load_onnx_encoder(cache_dir=tmp_path) is None  # no export there
    with pytest.raises(ValueError, match="Only the packaged"):
        export_onnx("some/other-model", cache_dir=tmp_path)


def test_a_broken_export_falls_back_to_torch_with_a_warning(tmp_path):
    onnx_path(cache_dir=tmp_path).write_bytes(b"not an onnx graph")
    with pytest.warns(UserWarning, match="cannot be loaded"):
        assert load_onnx_encoder(cache_dir=tmp_path) is None


def test_questions_take_the_fast_encoder_and_the_model_loads_on_demand(onnx_encoder, model, monkeypatch):
    loads = []

    def load():
        loads.append(1)
        return model

    encoder = QueryEncoder(load=load, fast=lambda: onnx_encoder)
    vector = encoder("Where is the office?")
    assert loads == [] and vector.shape == (384,)
    assert encoder.model is model and loads == [1]

    without = QueryEncoder(load=load, fast=lambda: None)  # no export: the model embeds
    assert float(without("Where is the office?") @ vector) >= 0.9999

    def refuse(*args, **kwargs):
        raise AssertionError("the model embedded a question that the ONNX export could")

    given = QueryEncoder(model, fast=lambda: onnx_encoder)  # a given model: questions still go through ONNX
    monkeypatch.setattr(embeddings, "embed", refuse)
    assert np.array_equal(given("Where is the office?"), vector)


def test_an_export_that_disagrees_with_torch_is_not_kept(model, tmp_path, monkeypatch):
    from rag_helpers import onnx_encoder

    # A bar no graph can pass: the real export runs, its check fails, and nothing is left behind.
    monkeypatch.setattr(onnx_encoder, "MIN_CHECK_COSINE", 1.01)
    with pytest.raises(RuntimeError, match="disagrees with sentence-transformers"):
        export_onnx(cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert load_onnx_encoder(cache_dir=tmp_path) is None


def test_a_model_loaded_for_another_precision_embeds_questions_itself(onnx_encoder, model, monkeypatch):
    from types import SimpleNamespace

    from rag_helpers.store import query_encoder

    calls = []
    monkeypatch.setattr(embeddings, "embed_one", lambda text, m: calls.append(m) or np.zeros(384, np.float32))
    bf16 = SimpleNamespace(rag_name=model.rag_name, rag_precision="bf16")
    query_encoder(None, bf16)("Where is the office?")
    assert calls == [bf16]  # asked for bf16: not the fp32 graph
    query_encoder(None, model)("Where is the office?")
    assert calls == [bf16]  # fp32: the ONNX export
