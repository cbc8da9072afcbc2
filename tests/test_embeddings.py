"""Embedding model loading (offline, device/precision choice, cache) and batched encoding."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rag_helpers import embeddings
from rag_helpers.embeddings import (
    describe_model,
    embed,
    embed_one,
    load_embedding_model,
    packaged_model_dir,
    resolve_device,
    resolve_precision,
)

SENTENCES = [
    "How do I reset the gateway to factory settings?",
    "Hold the button for ten seconds to restore factory settings.",
    "The cafeteria serves lunch from noon.",
    "x",
    "A much longer passage about cold storage temperatures. " * 20,
]


def test_default_model_loads_with_no_network_access():
    """Load in a fresh process where any socket connection raises: the packaged copy needs none."""
    script = textwrap.dedent(
        """
        import socket
        def refuse(*args, **kwargs):
            raise RuntimeError("network access attempted")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        from rag_helpers.embeddings import load_embedding_model, embed
        model = load_embedding_model(precision="fp32", device="cpu")
        print(embed(["Hello, how are you?"], model, progress=False).shape)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("(1, 384)")


def test_packaged_model_dir_only_for_the_default_model():
    path = packaged_model_dir()
    assert path is not None and (path / "config.json").is_file()
    assert packaged_model_dir("some/other-model") is None


def test_embed_shape_dtype_and_unit_length(model):
    vectors = embed(SENTENCES, model, progress=False)
    assert vectors.shape == (len(SENTENCES), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embed_keeps_input_order_despite_length_sorting(model):
    batched = embed(SENTENCES, model, batch_size=2, progress=False)
    one_by_one = np.stack([embed_one(s, model) for s in SENTENCES])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_embed_matches_plain_sentence_transformers_encode(model):
    """Our batching must not change the vectors the original tutorial's `encode` call gives."""
    reference = model.encode(SENTENCES[0])
    np.testing.assert_allclose(embed_one(SENTENCES[0], model), reference, atol=1e-6)


def test_related_sentences_are_closer_than_unrelated(model):
    a, b, c = embed(SENTENCES[:3], model, progress=False)
    assert float(a @ b) > float(a @ c) + 0.2


def test_empty_input_gives_an_empty_matrix(model):
    out = embed([], model)
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_bad_arguments_are_clear(model):
    with pytest.raises(TypeError, match="list of texts"):
        embed("a single string", model)
    with pytest.raises(ValueError, match="batch_size"):
        embed(["a"], model, batch_size=-1)


def test_progress_bar_counts_chunks(model, capsys):
    embed(SENTENCES, model, batch_size=2, progress=True, desc="Embedding test")
    err = capsys.readouterr().err
    assert "Embedding test" in err and "5/5" in err


def test_models_are_cached_per_name_device_and_precision(model):
    assert load_embedding_model(precision="fp32", device="cpu") is model
    assert describe_model(model) == {
        "name": "sentence-transformers/all-MiniLM-L6-v2",
        "device": "cpu",
        "precision": "fp32",
        "dimension": 384,
        "max_seq_length": 256,
    }


def test_bf16_stays_within_cosine_0999_of_fp32(model):
    bf16 = load_embedding_model(precision="bf16", device="cpu")
    assert describe_model(bf16)["precision"] == "bf16"
    texts = [SENTENCES[4], " ".join(SENTENCES[:3]) * 5, "Lantern S3 battery backup lasts 14 hours."]
    cosine = np.sum(embed(texts, bf16, progress=False) * embed(texts, model, progress=False), axis=1)
    assert cosine.min() >= 0.999


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


def test_unavailable_or_unknown_device_is_a_clear_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        resolve_device("tpu")


def test_auto_precision_rules(monkeypatch):
    assert resolve_precision("auto", "cuda") == "fp16"
    assert resolve_precision("auto", "mps") == "fp32"
    monkeypatch.setattr(embeddings, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(embeddings, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("FP16", "cpu") == "fp16"
    with pytest.raises(ValueError, match="Unknown precision 'int4'"):
        resolve_precision("int4", "cpu")


def test_default_batch_size_follows_the_device():
    from types import SimpleNamespace

    import torch

    def fake(device: str, precision: str) -> SimpleNamespace:
        return SimpleNamespace(device=torch.device(device), rag_precision=precision)

    assert embeddings.default_batch_size(fake("cpu", "fp32")) == 16
    assert embeddings.default_batch_size(fake("cpu", "bf16")) == 16
    assert embeddings.default_batch_size(fake("cuda", "fp16")) == 256
    assert embeddings.default_batch_size(fake("mps", "fp32")) == 64
