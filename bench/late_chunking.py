"""Late chunking: sentence vectors pooled from the chunk pass, against today's separate sentence pass.

    python bench/late_chunking.py [--corpus DIR] [--scaled DIR] [--parts timing quality batch]
                                  [--quality-precisions fp32 auto] [--repeats 2] [--batch-sizes 8 16 32 64]

Today `ingest` reads the corpus twice: every chunk through all-MiniLM-L6-v2 (the chunk vectors),
then every sentence of every document again (`ingest.update_sentence_index`: the sentence index
that the default retriever `rerank` scores candidates with). The model mean-pools its token
vectors, and the chunk pass already computes a contextual vector for every token it reads, so a
sentence's vector can be pooled from the tokens inside its character span ("late chunking",
Günther et al. 2024, arXiv:2409.04701) at almost no extra cost. This prototype does that with the
package's public functions and measures, side by side in one run:

1. **vectors:** the chunk vectors of the pooled pass against `embeddings.embed` (target cosine
   >= 0.9999), at fp32 and at the precision `auto` picks here; the counts of the edge cases.
2. **timing:** `embed` on the chunks (today's chunk pass), the chunk pass with pooling (everything
   included: tokenising with offsets, planning, pooling, embedding the fall-back sentences), and
   `embed` on the sentences (today's sentence pass); best of `--repeats` interleaved rounds.
3. **quality:** `rerank` (and the sentence-index retrievers) with today's sentence vectors and
   with the pooled ones, evidence-hit@5 and MRR@10 overall and per question kind (target: within
   1 point of today's), for each pooling variant.
4. **batch size:** chunks/s of `embed` at each batch size, at `auto`'s precision and fp32, against
   a matrix-multiply bound timed in the same run (target: >= 60% of the bound).

The rules (`plan_sentences`): a sentence takes its tokens from the first chunk whose token window
(the characters of the tokens the model reads; a chunk beyond 256 tokens is truncated) holds it
whole; a sentence no window holds whole but whose characters the windows of consecutive chunks
cover together is stitched from them, switching chunk at a word start inside their overlap; a
sentence with characters in no window (the tail of a truncated chunk) is embedded on its own
(`fallback`), as today. Never part of the tests: timings depend on the machine and its load.

Found (2026-12-05, Intel Xeon with AVX-512/AMX/native bf16, 2 cores, torch 2.13, the 442-chunk
sample corpus of commit 9cc3e6d and its 120 questions; quiet apart from the runs themselves):
the pooled pass gives the chunk vectors unchanged (cosine 1.000000 fp32, 0.99998 bf16) and the
sentence vectors for 5-8% of the sentence pass's time (ingest embedding 2.2x faster at fp32, 3.0x
at bf16; 1.9x on 3,657 chunks, where 24% of the sentences lie in truncated tails), but `rerank`
with them misses the bar: evidence-hit@5 0.840 against 0.858, MRR@10 0.610 against 0.657 (fp32),
and no variant (special tokens, context, partial pooling, centring) reaches it. Pooled vectors of
one chunk's sentences are alike (mean cosine 0.61 against 0.21 embedded alone): with a 256-token
model they carry mostly the chunk's context, and re-rank little better than the chunk vector
itself (0.830/0.577). The sample corpus has grown since (PDF and HTML documents): `README_BASELINE`
(docs/leaderboard.md) holds for the 442-chunk corpus; give that commit's folder and questions
(`git archive 9cc3e6d data`) as --corpus and --questions to compare with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rag_helpers.base import Chunk, Document
from rag_helpers.chunking import chunk_documents, sentence_spans
from rag_helpers.config import SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH, Settings
from rag_helpers.documents import load_documents
from rag_helpers.embeddings import (
    embed,
    embedding_dimension,
    load_embedding_model,
    precision_context,
    resolve_precision,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/embedding.py: the GEMM bound, shared
from embedding import FULL_CHUNK_CHARS, flops_per_chunk, gemm_rate, model_shapes, token_counts  # noqa: E402

TARGET_COSINE = 0.9999  # chunk vectors of the pooled pass against `embed`
TARGET_POINTS = 0.01  # pooled sentence vectors: ev@5 and MRR@10 within 1 point of today's
TARGET_FRACTION = 0.60  # embedding throughput against the GEMM bound
README_BASELINE = {"evidence_hit@5": 0.858, "mrr@10": 0.657}  # docs/leaderboard.md: rerank, fp32, 442 chunks
RULES = ("whole", "whole_in_two", "stitched", "partial", "beyond")


# --- The token windows of the chunks --------------------------------------------------------------


@dataclass(frozen=True)
class TokenWindow:
    """The tokens of one chunk that the model reads: their sequence positions and document offsets."""

    document_id: str
    positions: np.ndarray  # positions in the model's sequence ([CLS] is 0), content tokens only
    starts: np.ndarray  # document offsets of those tokens
    ends: np.ndarray
    length: int  # the whole sequence, [CLS] and [SEP] included

    @property
    def start(self) -> int:
        """The first character the model reads."""
        return int(self.starts[0]) if len(self.starts) else 0

    @property
    def end(self) -> int:
        """One past the last character the model reads (before the chunk's end if it was truncated)."""
        return int(self.ends[-1]) if len(self.ends) else 0

    def tokens_within(self, start: int, end: int) -> tuple[int, int]:
        """[lo, hi) of the content tokens lying inside the characters [start, end)."""
        lo = int(np.searchsorted(self.starts, start, side="left"))
        hi = int(np.searchsorted(self.ends, end, side="right"))
        return lo, max(lo, hi)


def tokenize_chunks(chunks: Sequence[Chunk], model: Any) -> tuple[dict[str, list], list[TokenWindow]]:
    """Tokenise every chunk as `embed` does (cut at the model's window), keeping character offsets."""
    encoded = model.tokenizer(
        [c.text for c in chunks],
        truncation=True,
        max_length=model.max_seq_length,
        return_offsets_mapping=True,
    )
    windows = []
    for chunk, offsets in zip(chunks, encoded.pop("offset_mapping")):
        positions = [i for i, (s, e) in enumerate(offsets) if e > s]  # special tokens have (0, 0)
        spans = np.array([offsets[i] for i in positions], dtype=np.int64).reshape(-1, 2) + chunk.start
        windows.append(
            TokenWindow(chunk.document_id, np.array(positions), spans[:, 0], spans[:, 1], len(offsets))
        )
    return dict(encoded), windows


# --- Which tokens make each sentence ---------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """Content tokens [lo, hi) of chunk number `chunk`."""

    chunk: int
    lo: int
    hi: int


@dataclass
class SentencePlan:
    """One sentence, the rule that placed it, and the token pieces its vector is pooled from."""

    document_id: str
    start: int
    end: int
    rule: str  # one of RULES
    pieces: list[Piece] = field(default_factory=list)
    covered: float = 1.0  # share of the sentence's non-space characters inside some token window


def _word_start_in(text: str, low: int, high: int) -> int | None:
    """The last position in [low, high] where a word starts after white space, or None."""
    for position in range(min(high, len(text) - 1), low - 1, -1):
        if position > 0 and text[position - 1].isspace() and not text[position].isspace():
            return position
    return None


def plan_sentence(
    document: Document,
    start: int,
    end: int,
    chunk_ids: Sequence[int],
    windows: Sequence[TokenWindow],
    choose: str = "first",
) -> SentencePlan:
    """Place one sentence [start, end) of `document` (whose chunks, in order, are `chunk_ids`).

    * `whole`: the first chunk whose token window holds it whole (`choose="context"`: the one that
      gives it the most context on its shorter side); `whole_in_two` counts those held whole by two
      windows (sentences inside the 20-character overlap);
    * `stitched`: held whole by none, but the windows of consecutive chunks cover it together: each
      chunk gives its part, switching at the last word start inside their overlap;
    * `partial` / `beyond`: some / all of its characters lie in no window (the truncated tail of a
      chunk beyond 256 tokens): embedded on its own (or, for `partial`, pooled from what is covered).
    """
    holders = [i for i in chunk_ids if windows[i].start <= start and end <= windows[i].end]
    if holders:
        if choose == "context":
            chosen = max(holders, key=lambda i: min(start - windows[i].start, windows[i].end - end))
        else:
            chosen = holders[0]
        lo, hi = windows[chosen].tokens_within(start, end)
        rule = "whole_in_two" if len(holders) > 1 else "whole"
        return SentencePlan(document.id, start, end, rule, [Piece(chosen, lo, hi)])

    touching = [i for i in chunk_ids if windows[i].start < end and start < windows[i].end]
    pieces: list[Piece] = []
    cursor = start
    for n, i in enumerate(touching):
        window = windows[i]
        stop = end
        if n + 1 < len(touching):  # hand over to the next chunk at a word start inside the overlap
            following = windows[touching[n + 1]]
            switch = _word_start_in(document.text, max(following.start + 1, cursor), min(window.end, end))
            stop = switch if switch is not None else window.end
        lo, hi = window.tokens_within(cursor, stop)
        if hi > lo:
            pieces.append(Piece(i, lo, hi))
            cursor = max(cursor, int(window.ends[hi - 1]))
    covered = _covered_share(document.text, start, end, [windows[i] for i in touching])
    if covered >= 1.0 and pieces:
        return SentencePlan(document.id, start, end, "stitched", pieces, covered)
    return SentencePlan(document.id, start, end, "partial" if pieces else "beyond", pieces, covered)


def _covered_share(text: str, start: int, end: int, windows: Sequence[TokenWindow]) -> float:
    """The share of the non-space characters of text[start:end] that lie inside one of `windows`."""
    inside = np.zeros(end - start, dtype=bool)
    for window in windows:
        inside[max(window.start, start) - start : max(min(window.end, end) - start, 0)] = True
    visible = np.array([not c.isspace() for c in text[start:end]], dtype=bool)
    return float(inside[visible].mean()) if visible.any() else 1.0


def plan_sentences(
    documents: Sequence[Document],
    chunks: Sequence[Chunk],
    windows: Sequence[TokenWindow],
    choose: str = "first",
) -> list[SentencePlan]:
    """Every sentence (`chunking.sentence_spans`) of every document, placed by `plan_sentence`."""
    by_document: dict[str, list[int]] = {}
    for i, chunk in enumerate(chunks):
        by_document.setdefault(chunk.document_id, []).append(i)
    plans = []
    for document in documents:
        ids = sorted(by_document.get(document.id, []), key=lambda i: chunks[i].start)
        for start, end in sentence_spans(document.text):
            plans.append(plan_sentence(document, start, end, ids, windows, choose))
    return plans


# --- Pooling ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PoolingRule:
    """How a sentence's tokens are pooled: its own tokens, plus these options."""

    name: str
    special: bool = False  # add the chunk's [CLS] and [SEP] vectors (the chunk's own mean includes them)
    context: int = 0  # add this many tokens either side of the sentence, within the chunk
    partial: str = (
        "fallback"  # "fallback": embed a partly covered sentence alone; "pool": pool what is covered
    )
    choose: str = "first"  # which window a sentence held whole by two takes its tokens from
    min_covered: float = 0.5  # with partial="pool": below this share, fall back all the same

    def pools(self, plan: SentencePlan) -> bool:
        """Whether this rule pools the sentence (else it is embedded on its own)."""
        if plan.rule in ("whole", "whole_in_two", "stitched"):
            return True
        return plan.rule == "partial" and self.partial == "pool" and plan.covered >= self.min_covered


class Pooler:
    """Accumulates each sentence's token vectors as the chunk pass visits the chunks."""

    def __init__(
        self, plans: Sequence[SentencePlan], windows: Sequence[TokenWindow], rule: PoolingRule, dim: int
    ):
        self.plans = plans
        self.rule = rule
        self.sums = np.zeros((len(plans), dim), dtype=np.float64)
        self.counts = np.zeros(len(plans), dtype=np.int64)
        self.by_chunk: dict[int, list[tuple[int, np.ndarray]]] = {}
        for n, plan in enumerate(plans):
            if not rule.pools(plan):
                continue
            for piece in plan.pieces:
                window = windows[piece.chunk]
                lo, hi = max(0, piece.lo - rule.context), min(len(window.positions), piece.hi + rule.context)
                rows = window.positions[lo:hi]
                if rule.special:
                    rows = np.concatenate([[0], rows, [window.length - 1]])
                self.by_chunk.setdefault(piece.chunk, []).append((n, rows))

    def visit(self, chunk: int, tokens: np.ndarray) -> None:
        """Add the token vectors of chunk number `chunk` (shape: sequence length x dim) to its sentences."""
        for n, rows in self.by_chunk.get(chunk, ()):
            self.sums[n] += tokens[rows].sum(axis=0)
            self.counts[n] += len(rows)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit-length pooled vectors, and a mask of the sentences with no tokens (to embed alone)."""
        missing = self.counts == 0
        vectors = (self.sums / np.maximum(self.counts, 1)[:, None]).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return vectors, missing


# --- The chunk pass ---------------------------------------------------------------------------------


def chunk_pass(
    encoded: dict[str, list],
    model: Any,
    batch_size: int = 16,
    visit: Callable[[int, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Unit-length chunk vectors exactly as `embed` makes them (length-sorted batches, the model's
    precision), handing each chunk's token vectors to `visit(chunk number, tokens)` on the way."""
    lengths = [len(ids) for ids in encoded["input_ids"]]
    order = np.argsort([-n for n in lengths], kind="stable")
    dim = embedding_dimension(model)
    out = np.empty((len(lengths), dim), dtype=np.float32)
    with torch.inference_mode(), precision_context(model):
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            features = model.tokenizer.pad(
                {k: [v[i] for i in rows] for k, v in encoded.items()}, return_tensors="pt"
            )
            result = model({k: v.to(model.device) for k, v in features.items()})
            out[rows] = result["sentence_embedding"].float().cpu().numpy()
            if visit is not None:
                tokens = result["token_embeddings"].float().cpu().numpy()
                for row, chunk in enumerate(rows):
                    visit(int(chunk), tokens[row, : lengths[chunk]])
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


@dataclass
class LateChunks:
    """What the late-chunking pass produced."""

    chunk_vectors: np.ndarray
    plans: list[SentencePlan]
    sentence_vectors: np.ndarray
    embedded_alone: np.ndarray  # mask: sentences that fell back to being embedded on their own
    windows: list[TokenWindow]
    tokens: dict[int, np.ndarray] | None = None  # every chunk's token vectors, when kept for variants
    seconds: dict[str, float] = field(default_factory=dict)  # where the time went


def sentence_texts(documents: Sequence[Document], plans: Sequence[SentencePlan]) -> list[str]:
    """The text of each planned sentence."""
    texts = {d.id: d.text for d in documents}
    return [texts[p.document_id][p.start : p.end] for p in plans]


def late_chunk(
    documents: Sequence[Document],
    chunks: Sequence[Chunk],
    model: Any,
    rule: PoolingRule,
    batch_size: int = 16,
    keep_tokens: bool = False,
) -> LateChunks:
    """Chunk vectors and every sentence's vector from one pass over the chunks (plus the fall-backs)."""
    seconds: dict[str, float] = {"pooling": 0.0}
    clock = time.perf_counter()
    encoded, windows = tokenize_chunks(chunks, model)
    plans = plan_sentences(documents, chunks, windows, rule.choose)
    pooler = Pooler(plans, windows, rule, embedding_dimension(model))
    seconds["tokenise and plan"] = time.perf_counter() - clock
    kept: dict[int, np.ndarray] = {}

    def visit(chunk: int, tokens: np.ndarray) -> None:
        began = time.perf_counter()
        pooler.visit(chunk, tokens)
        if keep_tokens:
            kept[chunk] = tokens.copy()
        seconds["pooling"] += time.perf_counter() - began

    clock = time.perf_counter()
    chunk_vectors = chunk_pass(encoded, model, batch_size, visit)
    seconds["model (chunks)"] = time.perf_counter() - clock - seconds["pooling"]
    clock = time.perf_counter()
    vectors, missing = pooler.vectors()
    if missing.any():
        alone = sentence_texts(documents, [plans[n] for n in np.flatnonzero(missing)])
        vectors[missing] = embed(alone, model, batch_size=batch_size, progress=False)
    seconds["fall-backs"] = time.perf_counter() - clock
    return LateChunks(chunk_vectors, plans, vectors, missing, windows, kept if keep_tokens else None, seconds)


def repool(
    late: LateChunks,
    documents: Sequence[Document],
    chunks: Sequence[Chunk],
    rule: PoolingRule,
    alone: np.ndarray,
) -> np.ndarray:
    """The sentence vectors under another pooling `rule`, from the token vectors `late` kept;
    `alone` holds every sentence embedded on its own, for the fall-backs."""
    if late.tokens is None:
        raise ValueError("repool needs late_chunk(..., keep_tokens=True)")
    plans = plan_sentences(documents, chunks, late.windows, rule.choose)
    pooler = Pooler(plans, late.windows, rule, late.sentence_vectors.shape[1])
    for chunk, tokens in late.tokens.items():
        pooler.visit(chunk, tokens)
    vectors, missing = pooler.vectors()
    vectors[missing] = alone[missing]
    return vectors


def rule_counts(plans: Sequence[SentencePlan], rule: PoolingRule) -> dict[str, int]:
    """How many sentences each placement rule took, and how many `rule` embeds on their own."""
    counts = Counter(p.rule for p in plans)
    result = {name: counts.get(name, 0) for name in RULES}
    result["embedded alone"] = sum(not rule.pools(p) for p in plans)
    return result


# --- What else runs on this machine ----------------------------------------------------------------


def machine_load() -> str:
    """Load averages and the busiest other processes now (timings on a shared machine need both)."""
    one, five, _ = os.getloadavg()
    try:  # two frames of top: the second one's %CPU is measured over the 0.3 s between them
        lines = subprocess.run(
            ["top", "-bn2", "-d0.3", "-o", "%CPU"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()
        frame = lines[max(i for i, line in enumerate(lines) if line.startswith("top -")) :]
        rows = [line.split() for line in frame if line.strip()[:1].isdigit()]
        others = [(r[-1], float(r[8])) for r in rows if len(r) >= 12 and int(r[0]) != os.getpid()]
    except (OSError, subprocess.SubprocessError, ValueError):
        others = []
    busy = [f"{name} {cpu:.0f}%" for name, cpu in others[:6] if cpu >= 10]
    return f"load average {one:.1f} (5 min {five:.1f}); others busy now: {', '.join(busy) or 'none above 10% CPU'}"


def _timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sum(a * b, axis=1).min())


# --- 1 and 2: edge cases and timing -----------------------------------------------------------------


def corpus(folder: Path) -> tuple[list[Document], list[Chunk]]:
    """The documents of `folder` and their chunks (the reference splitter: 1000 characters, overlap 20)."""
    documents = load_documents(folder, progress=False)
    return documents, chunk_documents(documents)


def print_rule_counts(late: LateChunks, rule: PoolingRule, label: str) -> None:
    """The edge-case counts of one corpus."""
    counts = Counter(p.rule for p in late.plans)
    total = len(late.plans)
    truncated = sum(w.length >= 256 for w in late.windows)  # noqa: PLR2004 - the model's window
    print(
        f"\nEdge cases on {label}: {total} sentences, {len(late.windows)} chunks "
        f"({truncated} of them cut at the 256-token window)"
    )
    notes = {
        "whole": "inside one chunk's token window",
        "whole_in_two": "of those, whole in two windows (inside the 20-character overlap): took the first",
        "stitched": "across two chunks, each window holding its part: pooled from both",
        "partial": "partly in the truncated tail of a chunk (no token vectors there)",
        "beyond": "wholly in a truncated tail",
    }
    for name in RULES:
        print(f"  {name:<14}{counts.get(name, 0):>7} ({counts.get(name, 0) / total:6.1%})  {notes[name]}")
    alone = int(late.embedded_alone.sum())
    print(
        f"  embedded on their own ({rule.name}): {alone} ({alone / total:.1%}) - the only sentences the "
        f"model reads a second time"
    )


def time_passes(folder: Path, precision: str, rule: PoolingRule, repeats: int, batch_size: int) -> None:
    """Today's chunk pass, the chunk pass with pooling, today's sentence pass: best of `repeats`, interleaved."""
    documents, chunks = corpus(folder)
    model = load_embedding_model(precision=precision)
    chunk_texts = [c.text for c in chunks]

    def sentence_pass() -> np.ndarray:
        texts = [d.text[s:e] for d in documents for s, e in sentence_spans(d.text)]
        return embed(texts, model, batch_size=batch_size, progress=False)

    embed(chunk_texts[:batch_size], model, batch_size=batch_size, progress=False)  # warm-up
    best = {"chunks": float("inf"), "late": float("inf"), "sentences": float("inf")}
    late, reference, stages = None, None, {}
    print(f"\nTiming on {folder} at {precision} (batch {batch_size}, best of {repeats}); {machine_load()}")
    for _ in range(repeats):
        reference, seconds = _timed(lambda: embed(chunk_texts, model, batch_size=batch_size, progress=False))
        best["chunks"] = min(best["chunks"], seconds)
        late, seconds = _timed(lambda: late_chunk(documents, chunks, model, rule, batch_size))
        if seconds < best["late"]:
            best["late"], stages = seconds, late.seconds
        sentences, seconds = _timed(sentence_pass)
        best["sentences"] = min(best["sentences"], seconds)
    assert late is not None and reference is not None
    print_rule_counts(late, rule, f"{folder.name} ({precision})")
    alone = late.embedded_alone
    pooled_vs_alone = np.sum(late.sentence_vectors[~alone] * sentences[~alone], axis=1)
    chunks_s, late_s, sentences_s = best["chunks"], best["late"], best["sentences"]
    today = chunks_s + sentences_s
    print(
        f"  chunk vectors of the pooled pass vs embed: min cosine {_min_cosine(late.chunk_vectors, reference):.6f} "
        f"(target >= {TARGET_COSINE})"
    )
    print(
        f"  pooled vs separately embedded sentence vectors: mean cosine {pooled_vs_alone.mean():.3f}, "
        f"min {pooled_vs_alone.min():.3f} (they are different vectors, not approximations)"
    )
    print(
        f"  today's chunk pass (embed, {len(chunks)} chunks):      {chunks_s:7.1f} s  = 1.00  "
        f"({len(chunks) / chunks_s:.1f} chunks/s)"
    )
    print(
        f"  chunk pass + pooling (all included):        {late_s:7.1f} s  = {late_s / chunks_s:.2f} x the chunk pass"
    )
    print("      of which " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    print(
        f"  today's sentence pass (embed, {len(late.plans)} sentences): {sentences_s:7.1f} s  = "
        f"{sentences_s / chunks_s:.2f} x the chunk pass ({len(late.plans) / sentences_s:.0f} sentences/s)"
    )
    sentence_tokens = int(token_counts(model, sentence_texts(documents, late.plans)).sum())
    chunk_tokens = sum(w.length for w in late.windows)
    print(
        f"  tokens the model reads: chunk pass {chunk_tokens}, sentence pass {sentence_tokens} "
        f"({sentence_tokens / chunk_tokens:.2f} x; [CLS]/[SEP] per sentence, and the truncated tails)"
    )
    extra = late_s - chunks_s
    cost = (
        f"{extra / sentences_s:.0%} of today's sentence pass"
        if extra > 0
        else "nothing measurable (within noise)"
    )
    print(
        f"  => embedding for ingest: today {today:.1f} s (chunks + sentences), pooled {late_s:.1f} s: "
        f"{today / late_s:.2f}x faster, {1 - late_s / today:.0%} less time; the sentence vectors cost {cost}"
    )
    print(f"  (after timing: {machine_load()})")


# --- 3: retrieval quality ----------------------------------------------------------------------------


VARIANTS: tuple[PoolingRule, ...] = (
    PoolingRule("pooled (sentence tokens)"),
    PoolingRule("pooled + [CLS]/[SEP]", special=True),
    PoolingRule("pooled + 8 tokens context", context=8),
    PoolingRule("pooled + 32 tokens context", context=32),
    PoolingRule("pooled, partial ones pooled too", partial="pool"),
)
MIXED = "mean of pooled and separately embedded (reads twice)"
CHUNK_ONLY = "no sentence vectors: each sentence takes its chunk's vector"
CENTRE_ALPHA = 0.3
KINDS = ("fact", "how", "paraphrase", "multi_doc")


def build_index(folder: Path, precision: str, chroma_path: Path) -> tuple[Any, Any]:
    """The full index of `folder` (chunks, BM25, sentences) in a temporary CHROMA_PATH, as ingest builds it."""
    from rag_helpers.ingest import ensure_index

    settings = dataclasses.replace(Settings.load(), chroma_path=chroma_path, precision=precision)
    model = load_embedding_model(settings.embedding_model, device="cpu", precision=precision)
    return ensure_index(settings, folder, model=model, progress=False)


def by_document(plans: Sequence[SentencePlan], vectors: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    """{document: (starts, ends, vectors)} sorted by start, the shape `rerank.SentenceVectors` preloads."""
    rows: dict[str, list[int]] = {}
    for n, plan in enumerate(plans):
        rows.setdefault(plan.document_id, []).append(n)
    out = {}
    for document_id, numbers in rows.items():
        numbers.sort(key=lambda n: plans[n].start)
        out[document_id] = (
            np.array([plans[n].start for n in numbers], dtype=np.int64),
            np.array([plans[n].end for n in numbers], dtype=np.int64),
            vectors[numbers],
        )
    return out


def rerank_retriever(scope: Any, preloaded: dict[str, tuple[np.ndarray, ...]]) -> Any:
    """The default retriever (`rerank`, as `RerankRetriever.from_scope` builds it) with these sentence vectors."""
    from rag_helpers.fusion import HybridRetriever
    from rag_helpers.rerank import RerankRetriever, SentenceReranker, SentenceVectors

    reranker = SentenceReranker(
        None,
        weight=0.5,
        sentence_vectors=SentenceVectors(None, preloaded=preloaded),
        query_vector=scope.encode,
    )
    return RerankRetriever(HybridRetriever.from_scope(scope), reranker, candidates=30)


def sentence_collection_copy(
    collection: Any, plans: Sequence[SentencePlan], vectors: np.ndarray, name: str
) -> Any:
    """A copy of the sentence collection (same ids, texts, metadata) holding `vectors` instead."""
    from rag_helpers.sentence_index import open_sentence_index
    from rag_helpers.store import client_of, collection_distance, max_batch_size, read_collection

    sentences = open_sentence_index(collection)
    data = read_collection(sentences, ("documents", "metadatas"))
    lookup = {(p.document_id, p.start, p.end): v for p, v in zip(plans, vectors)}
    embeddings = [lookup[(str(m["document_id"]), int(m["start"]), int(m["end"]))] for m in data["metadatas"]]
    client = client_of(collection)
    copy = client.create_collection(
        name, configuration={"hnsw": {"space": collection_distance(sentences)}}, embedding_function=None
    )
    size = max_batch_size(collection)
    for first in range(0, len(data["ids"]), size):
        part = slice(first, first + size)
        copy.add(
            ids=data["ids"][part],
            documents=data["documents"][part],
            metadatas=data["metadatas"][part],
            embeddings=np.asarray(embeddings[part], dtype=np.float32),
        )
    return copy


def window_retrievers(
    collection: Any, scope: Any, sentences: Any, documents: Sequence[Document]
) -> dict[str, Any]:
    """`sentence_window`, `sentence_chunks` and `hybrid_sentence` (as the registry builds them) over `sentences`."""
    from rag_helpers.dense import DenseRetriever
    from rag_helpers.fusion import HybridRetriever
    from rag_helpers.keyword import BM25Retriever
    from rag_helpers.windows import SentenceChunkRetriever, SentenceWindowRetriever

    chunks = SentenceChunkRetriever(collection, sentences, scope.encode)
    return {
        "sentence_window": SentenceWindowRetriever(sentences, documents, scope.encode),
        "sentence_chunks": chunks,
        "hybrid_sentence": HybridRetriever(
            [DenseRetriever.from_scope(scope), BM25Retriever.from_scope(scope), chunks]
        ),
    }


@dataclass
class Scores:
    """evidence-hit@5 and MRR@10, overall and per question kind, and the first evidence rank per question."""

    overall: tuple[float, float]
    kinds: dict[str, tuple[float, float]]
    ranks: list[int | None]


def score(retriever: Any, questions: Sequence[Any], documents: Sequence[Document]) -> Scores:
    """Evaluate `retriever` on the questions (`evaluation.evaluate`, k = 1, 5, 10)."""
    from rag_helpers.evaluation import evaluate

    report = evaluate(retriever, questions, k_values=(1, 5, 10), documents=documents, progress=False)

    def pair(kind: str | None) -> tuple[float, float]:
        metrics = report.metrics(kind)
        return float(metrics["evidence_hit@5"] or 0.0), float(metrics["mrr@10"] or 0.0)

    kinds = {kind: pair(kind) for kind in KINDS if kind in report.kinds()}
    return Scores(pair(None), kinds, [r.first_evidence_rank for r in report.answerable])


def _changes(today: Scores, other: Scores) -> str:
    better = sum((o or 99) < (t or 99) for t, o in zip(today.ranks, other.ranks))
    worse = sum((o or 99) > (t or 99) for t, o in zip(today.ranks, other.ranks))
    return f"first evidence rank better for {better}, worse for {worse} questions"


def print_scores(label: str, scores: Scores, today: Scores | None) -> None:
    """One row: ev@5 and MRR@10 overall and per kind, with the change against today's."""

    def cell(pair: tuple[float, float], base: tuple[float, float] | None) -> str:
        if base is None:
            return f"{pair[0]:.3f}/{pair[1]:.3f}"
        return (
            f"{pair[0]:.3f}/{pair[1]:.3f} ({(pair[0] - base[0]) * 100:+.1f}/{(pair[1] - base[1]) * 100:+.1f})"
        )

    overall = cell(scores.overall, today.overall if today else None)
    kinds = "  ".join(f"{k} {cell(v, today.kinds[k] if today else None)}" for k, v in scores.kinds.items())
    verdict = ""
    if today is not None:
        within = all(
            abs(a - b) <= TARGET_POINTS + 1e-9 or a > b for a, b in zip(scores.overall, today.overall)
        )
        verdict = f"  [{'within' if within else 'MISSES'} the 1-point bar; {_changes(today, scores)}]"
    print(f"  {label:<52} {overall}{verdict}")
    print(f"  {'':<52} {kinds}")


def centred(late: LateChunks, alpha: float) -> np.ndarray:
    """Pooled vectors minus `alpha` times their chunk's (unit) mean token vector: the context they share."""
    if late.tokens is None:
        raise ValueError("centred needs late_chunk(..., keep_tokens=True)")
    out = late.sentence_vectors.copy()
    for n, plan in enumerate(late.plans):
        if late.embedded_alone[n] or not plan.pieces:
            continue
        mean = late.tokens[plan.pieces[0].chunk].mean(axis=0)
        shifted = out[n] - alpha * mean / np.linalg.norm(mean)
        out[n] = shifted / np.linalg.norm(shifted)
    return out


def variant_sentence_vectors(
    late: LateChunks, documents: Sequence[Document], chunks: Sequence[Chunk], alone: np.ndarray
) -> dict[str, np.ndarray]:
    """Every pooling variant's sentence vectors (`alone`: today's, for the fall-backs and the mix)."""
    vectors = {VARIANTS[0].name: late.sentence_vectors}
    for rule in VARIANTS[1:]:
        vectors[rule.name] = repool(late, documents, chunks, rule, alone)
    vectors[f"pooled minus {CENTRE_ALPHA} x the chunk's mean token"] = centred(late, CENTRE_ALPHA)
    mixed = late.sentence_vectors + alone
    vectors[MIXED] = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    vectors[CHUNK_ONLY] = np.stack(
        [late.chunk_vectors[p.pieces[0].chunk] if p.pieces else alone[n] for n, p in enumerate(late.plans)]
    )
    return vectors


def print_diagnosis(late: LateChunks, alone: np.ndarray) -> None:
    """Why pooled vectors rank differently: how alike the sentences of one chunk are, pooled and alone."""
    pooled = ~late.embedded_alone
    by_chunk: dict[int, list[int]] = {}
    for n, plan in enumerate(late.plans):
        if pooled[n] and plan.pieces:
            by_chunk.setdefault(plan.pieces[0].chunk, []).append(n)

    def alike(vectors: np.ndarray) -> float:
        means = []
        for rows in by_chunk.values():
            if len(rows) > 1:
                gram = vectors[rows] @ vectors[rows].T
                means.append((gram.sum() - len(rows)) / (len(rows) * (len(rows) - 1)))
        return float(np.mean(means))

    same = np.sum(late.sentence_vectors[pooled] * alone[pooled], axis=1)
    print(
        f"  diagnosis: mean cosine between two sentences of the same chunk: pooled {alike(late.sentence_vectors):.2f}, "
        f"embedded alone {alike(alone):.2f}; pooled vs alone, same sentence: mean {same.mean():.2f}. "
        "The pooled vectors carry mostly their chunk's context."
    )


def measure_quality(folder: Path, precision: str, questions_path: Path, windows_too: bool) -> None:
    """`rerank` (and the sentence-index retrievers) with today's sentence vectors and with pooled ones."""
    from rag_helpers.sentence_index import (
        documents_from_collection,
        load_sentence_vectors,
        open_sentence_index,
    )
    from rag_helpers.questions import load_questions
    from rag_helpers.registry import make_retriever
    from rag_helpers.store import SearchScope

    questions = load_questions(questions_path)
    with tempfile.TemporaryDirectory(prefix="late_chunking_") as chroma_path:
        print(
            f"\nRetrieval quality on {folder} ({precision} index, {len(questions)} questions); building the "
            f"index with ensure_index in a temporary CHROMA_PATH ..."
        )
        collection, model = build_index(folder, precision, Path(chroma_path))
        documents = documents_from_collection(collection)
        chunks = chunk_documents(documents)
        if len(chunks) != collection.count():
            raise SystemExit(f"{len(chunks)} chunks rebuilt, the collection holds {collection.count()}")
        sentences = open_sentence_index(collection)
        snapshot = load_sentence_vectors(collection, sentences) or {}
        late = late_chunk(documents, chunks, model, VARIANTS[0], keep_tokens=True)
        today_rows = {
            (d, int(s), int(e)): v for d, (st, en, vs) in snapshot.items() for s, e, v in zip(st, en, vs)
        }
        missing = [p for p in late.plans if (p.document_id, p.start, p.end) not in today_rows]
        if missing or len(today_rows) != len(late.plans):
            raise SystemExit(
                f"the sentence index holds {len(today_rows)} sentences, the plan {len(late.plans)} "
                f"({len(missing)} not in the index)"
            )
        alone = np.stack([today_rows[(p.document_id, p.start, p.end)] for p in late.plans])
        scope = SearchScope.of(collection, model)
        print(f"  query encoder: {scope.encode!r}; {machine_load()}")
        print("  evidence-hit@5 / MRR@10 overall (change in points against today), then per kind")

        registry = score(make_retriever("rerank", collection, model), questions, documents)
        today = score(rerank_retriever(scope, snapshot), questions, documents)
        print_scores("rerank, registry (today's .npz snapshot)", registry, None)
        print_scores("rerank, today's sentence vectors, swapped in", today, None)
        print(
            f"  {'':<52} docs/leaderboard.md (442 chunks): {README_BASELINE['evidence_hit@5']:.3f}/{README_BASELINE['mrr@10']:.3f}"
        )
        for name, vectors in variant_sentence_vectors(late, documents, chunks, alone).items():
            retriever = rerank_retriever(scope, by_document(late.plans, vectors))
            print_scores(f"rerank, {name}", score(retriever, questions, documents), today)
        print(
            f"  ({int(late.embedded_alone.sum())} of {len(late.plans)} sentences fall back to being embedded "
            "on their own in the first variant; in the others as their rule says)"
        )
        print_diagnosis(late, alone)

        if not windows_too:
            return
        print(
            "\n  The retrievers that query the sentence collection in Chroma (a copy of it holding each set of vectors):"
        )
        copies = {
            "today's": sentence_collection_copy(collection, late.plans, alone, f"{collection.name}__today"),
            "pooled": sentence_collection_copy(
                collection, late.plans, late.sentence_vectors, f"{collection.name}__pooled"
            ),
        }
        built = {
            label: window_retrievers(collection, scope, copy, documents) for label, copy in copies.items()
        }
        for name in ("sentence_window", "sentence_chunks", "hybrid_sentence"):
            print_scores(
                f"{name}, registry (today's collection)",
                score(make_retriever(name, collection, model), questions, documents),
                None,
            )
            base = score(built["today's"][name], questions, documents)
            print_scores(f"{name}, today's vectors (copy)", base, None)
            print_scores(f"{name}, pooled vectors", score(built["pooled"][name], questions, documents), base)


# --- 4: batch size against the matrix-multiply bound ------------------------------------------------


def sentence_throughput(
    folder: Path, models: dict[str, Any], batch_sizes: Sequence[int], repeats: int, count: int = 1024
) -> None:
    """sentences/s of `embed` (today's sentence pass) per batch size: short texts fill a batch less."""
    documents, _ = corpus(folder)
    texts = [d.text[s:e] for d in documents for s, e in sentence_spans(d.text)]
    texts = texts[:: max(1, len(texts) // count)][:count]  # every n-th: the corpus's mix of lengths
    speed = {(p, b): 0.0 for p in models for b in batch_sizes}
    for _ in range(repeats):
        for size in batch_sizes:
            for precision, model in models.items():
                embed(texts[:size], model, batch_size=size, progress=False)
                _, seconds = _timed(lambda: embed(texts, model, batch_size=size, progress=False))
                speed[precision, size] = max(speed[precision, size], len(texts) / seconds)
    print(
        f"  sentence pass on {len(texts)} sentences (every n-th of {folder.name}), sentences/s: "
        + "; ".join(f"batch {b}: " + ", ".join(f"{p} {speed[p, b]:.0f}" for p in models) for b in batch_sizes)
    )


def batch_table(
    folder: Path,
    batch_sizes: Sequence[int],
    repeats: int,
    limit: int,
    sentence_batch_sizes: Sequence[int] = (16, 64, 256),
) -> None:
    """chunks/s of `embed` per batch size at `auto`'s precision and fp32, against the GEMM bound."""
    _, chunks = corpus(folder)
    texts = [c.text for c in chunks if len(c.text) >= FULL_CHUNK_CHARS][:limit]
    auto = resolve_precision("auto", "cpu")
    models = {p: load_embedding_model(precision=p) for p in dict.fromkeys((auto, "fp32"))}
    shapes = model_shapes(models["fp32"])
    tokens = float(token_counts(models["fp32"], texts).mean())
    flops = flops_per_chunk(shapes, tokens)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    rates = {(p, b): 0.0 for p in models for b in batch_sizes}
    speed = {(p, b): 0.0 for p in models for b in batch_sizes}
    print(
        f"\nBatch size on {len(texts)} chunks of >= {FULL_CHUNK_CHARS} characters ({tokens:.0f} tokens, "
        f"{flops / 1e9:.2f} GFLOP each), best of {repeats}; {machine_load()}"
    )
    for _ in range(repeats):
        for size in batch_sizes:
            for precision, model in models.items():
                rates[precision, size] = max(
                    rates[precision, size], gemm_rate(shapes, size * int(tokens), dtypes[precision])
                )
                embed(texts[:size], model, batch_size=size, progress=False)  # warm-up at this shape
                _, seconds = _timed(lambda: embed(texts, model, batch_size=size, progress=False))
                speed[precision, size] = max(speed[precision, size], len(texts) / seconds)
    machine_bound = max(rates.values()) * 1e9 / flops
    header = "".join(f"{p + ' chunks/s':>16}{'GEMM GFLOP/s':>14}{'bound':>8}{'of bound':>10}" for p in models)
    print(f"  {'batch':>5}{header}")
    for size in batch_sizes:
        row = ""
        for precision in models:
            bound = rates[precision, size] * 1e9 / flops
            row += f"{speed[precision, size]:>16.1f}{rates[precision, size]:>14.0f}{bound:>8.1f}{speed[precision, size] / bound:>10.0%}"
        print(f"  {size:>5}{row}")
    sentence_throughput(folder, models, sentence_batch_sizes, repeats)
    best = max(speed, key=speed.get)
    print(
        f"  fastest: {best[0]} at batch {best[1]}: {speed[best]:.1f} chunks/s = {speed[best] / machine_bound:.0%} "
        f"of this machine's bound {machine_bound:.1f} chunks/s (the faster GEMM precision; target >= {TARGET_FRACTION:.0%})"
    )


# --- Command line -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--corpus", type=Path, default=SAMPLE_CORPUS_DIR, help="default: the sample corpus")
    parser.add_argument("--questions", type=Path, default=SAMPLE_QUESTIONS_PATH, help="for --parts quality")
    parser.add_argument(
        "--scaled",
        type=Path,
        metavar="DIR",
        help="also time a corpus of the original data set's size (bench/scale_corpus.py DIR)",
    )
    parser.add_argument(
        "--parts", nargs="+", choices=("timing", "quality", "batch"), default=["timing", "quality", "batch"]
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["auto", "fp32"],
        metavar="P",
        help="precisions to time on --corpus (default: auto fp32)",
    )
    parser.add_argument(
        "--quality-precisions",
        nargs="+",
        default=["fp32"],
        metavar="P",
        help="index precisions for the quality part (default fp32, like docs/leaderboard.md)",
    )
    parser.add_argument(
        "--no-windows", action="store_true", help="quality: rerank only, not the window retrievers"
    )
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds, best kept (default 2)")
    parser.add_argument(
        "--batch-size", type=int, default=16, help="batch of the timing part (default 16, embed's)"
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32, 64], metavar="N")
    parser.add_argument(
        "--sentence-batch-sizes",
        type=int,
        nargs="+",
        default=[16, 64, 256],
        metavar="N",
        help="batch sizes of the sentence-pass throughput line (default 16 64 256)",
    )
    parser.add_argument(
        "--batch-limit", type=int, default=128, help="chunks timed per batch size (default 128)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1 or min(args.batch_sizes) < 1:
        parser.error("--repeats and batch sizes must be at least 1")

    print(
        f"Late chunking prototype: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"auto precision here: {resolve_precision('auto', 'cpu')}; {machine_load()}"
    )
    rule = VARIANTS[0]
    if "timing" in args.parts:
        for precision in args.precisions:
            time_passes(args.corpus, resolve_precision(precision, "cpu"), rule, args.repeats, args.batch_size)
        if args.scaled:
            time_passes(args.scaled, resolve_precision("auto", "cpu"), rule, 1, args.batch_size)
    if "quality" in args.parts:
        for precision in args.quality_precisions:
            measure_quality(
                args.corpus, resolve_precision(precision, "cpu"), args.questions, not args.no_windows
            )
    if "batch" in args.parts:
        batch_table(args.corpus, args.batch_sizes, args.repeats, args.batch_limit, args.sentence_batch_sizes)
    print(f"\nDone; {machine_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
