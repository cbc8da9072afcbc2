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


# --- packed encoding -------------------------------------------------------------------------------


def test_packed_vectors_equal_each_text_embedded_alone(model):
    """Several texts share a model input, yet each gets the vector it gets alone (cut at the window too)."""
    texts = [*SENTENCES, "Cold storage. " * 200, "Short.", SENTENCES[0]]  # one beyond 256 tokens, a repeat
    alone = np.stack([embed_one(text, model) for text in texts])
    packed = embeddings.embed_packed(texts, model, batch_tokens=300, progress=False)
    np.testing.assert_allclose(packed, alone, atol=1e-5)
    assert packed.dtype == np.float32 and packed.shape == (len(texts), 384)
    np.testing.assert_allclose(embed(texts, model, packed=True, progress=False), packed, atol=1e-6)
    assert embeddings.embed_packed([], model).shape == (0, 384)


def test_bf16_packed_stays_within_cosine_09999_of_fp32(model):
    bf16 = load_embedding_model(precision="bf16", device="cpu")
    packed = embeddings.embed_packed(SENTENCES, bf16, progress=False)
    assert np.sum(packed * embed(SENTENCES, model, progress=False), axis=1).min() >= 0.9999


def test_pack_rows_fills_rows_without_splitting_a_text():
    lengths = [200, 60, 60, 50, 40, 300, 10, 10, 5]
    rows = embeddings.pack_rows(lengths, 256)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert [5] in rows  # longer than a row: a row of its own
    assert all(sum(lengths[i] for i in row) <= 256 for row in rows if row != [5])
    assert len(rows) == 3  # 435 tokens need two rows of 256, and the text of 300 its own


def test_only_models_that_can_be_packed_exactly_are(model):
    from types import SimpleNamespace

    assert embeddings.can_pack(model)
    assert not embeddings.can_pack(SimpleNamespace(device=model.device))  # not a sentence-transformers model
    with pytest.raises(ValueError, match="cannot be packed"):
        embeddings.embed_packed(["a", "b"], SimpleNamespace(device=model.device))


def test_the_token_budget_is_measured_on_real_batches_and_then_kept():
    budget = embeddings.TokenBudget("cpu")
    candidates = embeddings.BATCH_TOKEN_CANDIDATES["cpu"]
    speed = {1024: 900.0, 2048: 1000.0, 4096: 1200.0, 8192: 1100.0}  # tokens/s of a made-up CPU
    budget.record(budget.next(), 10, 1.0)  # a batch less than half full is no trial
    for _ in range(embeddings.TRIAL_ROUNDS * len(candidates)):
        size = budget.next()
        budget.record(size, size, size / speed[size])
    assert budget.measured and budget.next() == 4096 and "measured" in repr(budget)
    assert embeddings.TokenBudget("cuda").next() == embeddings.BATCH_TOKENS["cuda"]


def test_a_model_keeps_its_measured_budget_between_calls():
    from types import SimpleNamespace

    import torch

    fake = SimpleNamespace(device=torch.device("cpu"))
    assert embeddings.budget_of(fake, "rows") is embeddings.budget_of(fake, "rows")
    assert embeddings.budget_of(fake, "long") is not embeddings.budget_of(fake, "rows")
