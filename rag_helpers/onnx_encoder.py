"""The packaged embedding model as one ONNX graph, so a question is embedded without importing torch.

Embedding one question takes milliseconds, but importing torch, transformers and
sentence-transformers takes seconds: most of a `query` command's time (docs/performance.md).
`export_onnx` converts the packaged all-MiniLM-L6-v2 once (`make setup` does it) into
`.cache/onnx/`: the transformer, mean pooling and normalisation in a single graph, checked against
sentence-transformers before it is kept. `OnnxEncoder` runs it with onnxruntime and the model's own
`tokenizer.json` (the `tokenizers` library), both already installed with chromadb.

The graph computes in fp32; a collection embedded in bf16 or fp16 still matches it to a cosine of
0.9999 or more, the same tolerance as between those precisions themselves.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEFAULT_EMBEDDING_MODEL, PROJECT_ROOT
from .embeddings import load_embedding_model, packaged_model_dir

ONNX_CACHE_DIR = PROJECT_ROOT / ".cache" / "onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Texts the export is checked on: short, accented, numeric, and one past the token window.
CHECK_TEXTS = (
    "How many days of parental leave do employees get?",
    "Façade repairs cost €1,000 in Q3 2024.",
    "word " * 400,
)
MIN_CHECK_COSINE = 0.9999


def onnx_path(name: str = DEFAULT_EMBEDDING_MODEL, cache_dir: Path | None = None) -> Path:
    """Where the ONNX export of model `name` is kept."""
    return (cache_dir or ONNX_CACHE_DIR) / f"{name.rsplit('/', 1)[-1]}.onnx"


class OnnxEncoder:
    """Embed texts with the ONNX export of a packaged model: unit-length float32 vectors."""

    rag_precision = "fp32"

    def __init__(self, graph: Path, model_dir: Path, name: str = DEFAULT_EMBEDDING_MODEL) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.rag_name = name
        config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.max_seq_length = int(config["max_seq_length"])
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json pads and truncates to 128 tokens; sentence-transformers truncates at the
        # model's max_seq_length (256) and pads a batch to its longest text.
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of `texts`, shape (len(texts), dim), in the input order."""
        encodings = self.tokenizer.encode_batch(list(texts))
        feed = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return self.session.run(None, feed)[0].astype(np.float32, copy=False)

    def __call__(self, text: str) -> np.ndarray:
        """The unit vector of one text, shape (dim,)."""
        return self.encode([text])[0]

    def __repr__(self) -> str:
        return f"OnnxEncoder({self.rag_name!r})"


@functools.lru_cache(maxsize=4)
def load_onnx_encoder(
    name: str = DEFAULT_EMBEDDING_MODEL, cache_dir: Path | None = None
) -> OnnxEncoder | None:
    """The ONNX encoder of model `name`, or None when there is no export of it (then use torch)."""
    graph, model_dir = onnx_path(name, cache_dir), packaged_model_dir(name)
    if model_dir is None or not graph.exists() or importlib.util.find_spec("onnxruntime") is None:
        return None
    try:
        return OnnxEncoder(graph, model_dir, name)
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own, unexported, error types
        warnings.warn(
            f"The ONNX export {graph} cannot be loaded ({type(error).__name__}); questions are embedded "
            "with torch instead. Delete the file and run `make setup` to export it again.",
            stacklevel=2,
        )
        return None


def export_onnx(name: str = DEFAULT_EMBEDDING_MODEL, cache_dir: Path | None = None) -> Path:
    """Export the packaged model `name` to ONNX (once; an existing export is kept) and return its path.

    The graph is checked against sentence-transformers on `CHECK_TEXTS` before it is saved: a
    cosine below 0.9999 raises `RuntimeError` and keeps nothing.
    """
    path = onnx_path(name, cache_dir)
    if path.exists():
        return path
    model_dir = packaged_model_dir(name)
    if model_dir is None:
        raise ValueError(
            f"Only the packaged {DEFAULT_EMBEDDING_MODEL} can be exported to ONNX, not {name!r}."
        )
    import torch

    model = load_embedding_model(name, device="cpu", precision="fp32")
    graph = _pooled_encoder(model[0].auto_model)
    example = torch.ones(1, 8, dtype=torch.long)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # renamed into place once checked
    try:
        with warnings.catch_warnings():
            # The tracer's notes on Python branches in the model; the check below is what counts.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                graph,
                (example, example, torch.zeros_like(example)),
                staging,
                dynamo=False,  # the TorchScript exporter needs only the `onnx` package, not onnxscript
                input_names=list(INPUTS),
                output_names=["embedding"],
                dynamic_axes={
                    **{key: {0: "batch", 1: "tokens"} for key in INPUTS},
                    "embedding": {0: "batch"},
                },
                opset_version=17,
            )
        got = OnnxEncoder(staging, model_dir, name).encode(CHECK_TEXTS)
        expected = model.encode(list(CHECK_TEXTS), normalize_embeddings=True, convert_to_numpy=True)
        worst = float(np.min(np.sum(got * expected, axis=1)))
        if worst < MIN_CHECK_COSINE:
            raise RuntimeError(
                f"The ONNX export of {name} disagrees with sentence-transformers (cosine {worst:.6f}); "
                "queries will use torch."
            )
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    load_onnx_encoder.cache_clear()
    return path


def _pooled_encoder(transformer: Any) -> Any:
    """A torch module: the transformer, then sentence-transformers' mean pooling and normalisation."""
    import torch

    class PooledEncoder(torch.nn.Module):  # defined here so that importing this module needs no torch
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN201
            tokens = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    return PooledEncoder().eval()


__all__ = ["OnnxEncoder", "export_onnx", "load_onnx_encoder", "onnx_path"]
