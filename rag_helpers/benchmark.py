"""Ingestion benchmark: the original tutorial's one-at-a-time pipeline against batched `ingest.ingest`.

Both run in one process on the same folder, each into its own temporary collection, which is
deleted afterwards: the user's index is never touched. The original embeds and writes one chunk at
a time in fp32 (and builds no other index); ours is `ingest.ingest_folder` with its defaults, the
code `python -m rag_helpers ingest DIR` runs: chunks, then BM25 and the sentence index, each step
timed. The bound is measured in the same run: the model's matrix multiplies timed as plain GEMMs
(`gemm_rate`), so the FLOPs of the texts embedded give the seconds no implementation could beat
on this machine. Run it with `python bench/ingest.py` or `python -m rag_helpers bench [DIR]`.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .chunking import chunk_documents
from .config import Settings
from .documents import load_documents
from .embeddings import describe_model, embed, load_embedding_model
from .environment import describe_machine
from .evaluation import timed_queries
from .ingest import ingest_folder
from .store import delete_collection, get_client, get_collection, index_files_root, retrieve

# End to end against the original pipeline, on a corpus of the original data set's size (3611 chunks):
# on a CPU with native bf16 (`auto` picks bf16 there), and on an AVX2 CPU without it (fp32).
TARGET_SPEEDUP = {"bf16": 4.0, "fp32": 1.4}
TARGET_RERUN_FRACTION = 0.03  # an unchanged re-run, against the first run
TARGET_BOUND_SHARE = 0.60  # embedding throughput against the GEMM bound of its precision
TARGET_COSINE = 0.9999  # vectors at the precision used against fp32
TARGET_FIRST_QUERY = 1.5  # first re-ranking query against the second
GEMM_ROWS = 4096  # tokens per GEMM probe: the packed batches' default budget


# --- The bound ------------------------------------------------------------------------------------


def model_shapes(model: Any) -> dict[str, int]:
    """Layers, hidden size, feed-forward size and heads of the transformer inside `model`."""
    config = model[0].auto_model.config
    return {
        "layers": config.num_hidden_layers,
        "hidden": config.hidden_size,
        "intermediate": config.intermediate_size,
        "heads": config.num_attention_heads,
    }


def forward_flops(shapes: dict[str, int], tokens: Sequence[int] | np.ndarray) -> float:
    """Multiply-add FLOPs of the forward passes over texts of `tokens` tokens each: projections and
    feed-forward per token, attention over each text's own tokens (what any implementation must do)."""
    t = np.asarray(tokens, dtype=np.float64)
    h, i = shapes["hidden"], shapes["intermediate"]
    dense = 2 * t * (4 * h * h + 2 * h * i)
    attention = 2 * 2 * t * t * h  # Q.K^T and P.V over all heads
    return float(shapes["layers"] * (dense + attention).sum())


def gemm_rate(shapes: dict[str, int], rows: int, dtype: Any, repeats: int = 3) -> float:
    """GFLOP/s of one layer's six GEMMs at the model's shapes (`rows` tokens), best of `repeats`."""
    import torch
    import torch.nn.functional as F

    h, i = shapes["hidden"], shapes["intermediate"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, h, generator=g).to(dtype)
    mid = torch.randn(rows, i, generator=g).to(dtype)
    square = torch.randn(h, h, generator=g).to(dtype)
    up, down = torch.randn(i, h, generator=g).to(dtype), torch.randn(h, i, generator=g).to(dtype)
    flops = 2 * rows * (4 * h * h + 2 * h * i)
    best = float("inf")
    with torch.inference_mode():
        for attempt in range(repeats + 1):
            start = time.perf_counter()
            for _ in range(4):
                F.linear(x, square)
            F.linear(x, up)
            F.linear(mid, down)
            if attempt:  # the first round warms up oneDNN's kernels
                best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def gemm_rates(model: Any, precisions: Sequence[str]) -> dict[str, float]:
    """GFLOP/s of the model's GEMMs in each precision (fp32, bf16, fp16)."""
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    shapes = model_shapes(model)
    return {p: round(gemm_rate(shapes, GEMM_ROWS, dtypes[p]), 1) for p in dict.fromkeys(precisions)}


def token_counts(model: Any, texts: Sequence[str]) -> np.ndarray:
    """Tokens per text as the model reads it (special tokens included, cut at its window)."""
    encoded = model.tokenizer(list(texts), truncation=True, max_length=model.max_seq_length)
    return np.array([len(ids) for ids in encoded["input_ids"]])


# --- The two pipelines ----------------------------------------------------------------------------


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def run_original(collection: Any, chunks: list[Any], model: Any, progress: bool = True) -> dict[str, Any]:
    """The original tutorial's pipeline: one `encode` per chunk, then one `upsert` per chunk."""
    start = time.perf_counter()
    vectors = [
        model.encode(c.text)
        for c in tqdm(chunks, desc="Original: encode", unit="chunk", disable=not progress)
    ]
    embed_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for chunk, vector in tqdm(
        list(zip(chunks, vectors)), desc="Original: upsert", unit="chunk", disable=not progress
    ):
        collection.upsert(ids=[chunk.id], documents=[chunk.text], embeddings=[vector])
    write_seconds = time.perf_counter() - start
    return {
        "precision": getattr(model, "rag_precision", "fp32"),
        "embed_seconds": round(embed_seconds, 3),
        "embed_chunks_per_s": _rate(len(chunks), embed_seconds),
        "write_seconds": round(write_seconds, 3),
        "write_chunks_per_s": _rate(len(chunks), write_seconds),
        "total_seconds": round(embed_seconds + write_seconds, 3),
        "count": collection.count(),
        "vectors": np.asarray(vectors, dtype=np.float32),
    }


def run_ours(settings: Settings, corpus_dir: str | Path, model: Any, progress: bool = True) -> dict[str, Any]:
    """`ingest.ingest_folder` with its defaults (chunks, BM25, sentences), then again, unchanged."""
    start = time.perf_counter()
    collection, _, first = ingest_folder(settings, corpus_dir, model=model, progress=progress)
    total = time.perf_counter() - start
    start = time.perf_counter()
    _, _, second = ingest_folder(settings, corpus_dir, model=model, progress=False)
    rerun = time.perf_counter() - start
    chunks, sentences = first.chunks, first.indexes.sentences
    assert sentences is not None
    return {
        "collection": collection,
        "precision": getattr(model, "rag_precision", "fp32"),
        "batch_tokens": {kind: b.best for kind, b in getattr(model, "rag_batch_tokens", {}).items()},
        "chunks": {
            "embedded": chunks.embedded,
            "embed_seconds": round(chunks.embed_seconds, 3),
            "embed_per_s": _rate(chunks.embedded, chunks.embed_seconds),
            "write_seconds": round(chunks.write_seconds, 3),
            "seconds": round(chunks.total_seconds, 3),
        },
        "sentences": {
            "embedded": sentences.embedded,
            "count": sentences.count,
            "split_seconds": round(sentences.scan_seconds, 3),
            "embed_seconds": round(sentences.embed_seconds, 3),
            "embed_per_s": _rate(sentences.embedded, sentences.embed_seconds),
            "write_seconds": round(sentences.write_seconds, 3),
            "seconds": round(sentences.total_seconds, 3),
        },
        "other_seconds": round(total - chunks.total_seconds - sentences.total_seconds, 3),
        "count": chunks.count,
        "total_seconds": round(total, 3),
        "rerun_seconds": round(rerun, 4),
        "rerun_fraction": round(rerun / total, 5) if total else 0.0,
        "rerun_embedded": second.chunks.embedded
        + (second.indexes.sentences.embedded if second.indexes.sentences else 0),
    }


# --- Checks on the result ------------------------------------------------------------------------


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.min(np.sum(a * b, axis=1))) if len(a) else 1.0


def vector_agreement(
    collection: Any, chunks: list[Any], original_vectors: np.ndarray, fp32_model: Any, sample: int = 1000
) -> dict[str, float]:
    """Lowest cosine between our vectors and fp32 ones: every chunk (against the original's), and
    `sample` sentences spread over the index (against `embed` of each sentence alone in fp32)."""
    from .sentence_index import documents_from_collection, open_sentence_index

    stored = collection.get(ids=[c.id for c in chunks], include=["embeddings"])
    row = {chunk_id: n for n, chunk_id in enumerate(stored["ids"])}
    ours = np.asarray([stored["embeddings"][row[c.id]] for c in chunks], dtype=np.float32)
    index = open_sentence_index(collection)
    texts = {d.id: d.text for d in documents_from_collection(collection)}
    rows = np.linspace(0, index.count() - 1, min(sample, index.count())).astype(int)
    pieces = [texts[str(index.document_ids[r])][index.starts[r] : index.ends[r]] for r in rows]
    alone = embed(pieces, fp32_model, progress=False)
    return {
        "chunks_min_cosine": round(_min_cosine(ours, original_vectors), 7),
        "sentences_min_cosine": round(_min_cosine(index.vectors[rows], alone), 7),
        "sentences_compared": len(rows),
    }


def rerank_first_queries(collection: Any, model: Any, queries: list[str]) -> dict[str, Any]:
    """Wall time of the first and second query of a freshly built `rerank` retriever (the query
    encoder warmed up first, so only the re-ranker's own first-use costs count), and p50 of the rest."""
    from .registry import make_retriever
    from .store import query_encoder

    encoder = query_encoder(collection, model)
    encoder("warm up the query encoder")
    start = time.perf_counter()
    retriever = make_retriever("rerank", collection, encoder)
    build = time.perf_counter() - start
    calls = timed_queries(retriever, queries, 5, warmup=False)
    times = [call.wall_ms for call in calls]
    return {
        "build_ms": round(build * 1000, 1),
        "first_ms": round(times[0], 2),
        "second_ms": round(times[1], 2),
        "first_over_second": round(times[0] / times[1], 2) if times[1] else float("inf"),
        "p50_ms": round(float(np.percentile(times[2:] or times, 50)), 2),
    }


def query_latency(collection: Any, queries: list[str], k: int = 5) -> dict[str, Any]:
    """Median and 95th percentile of `retrieve` (embed the query + search), in milliseconds."""
    calls = timed_queries(lambda query, top: retrieve(collection, query, top), queries, k)
    times = [call.wall_ms for call in calls]
    return {
        "queries": len(times),
        "k": k,
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
    }


def _sample_queries(chunks: list[Any], count: int) -> list[str]:
    """Short question-like probes: the first dozen words of chunks spread over the corpus."""
    step = max(1, len(chunks) // max(count, 1))
    queries = [q for q in (" ".join(c.text.split()[:12]) for c in chunks[::step][:count]) if q]
    while queries and len(queries) < count:
        queries += queries[: count - len(queries)]
    return queries


# --- The whole benchmark -------------------------------------------------------------------------


def run_ingest_benchmark(
    corpus_dir: str | Path,
    settings: Settings,
    client: Any = None,
    queries: int = 50,
    progress: bool = True,
) -> dict[str, Any]:
    """Time the original pipeline and ours on the same folder, against the bound; a JSON-ready dict.

    `client` (a server, or an index named with --db) is used for both; by default a fresh embedded
    index in a temporary folder. Either way only two collections with random names are written, and
    deleted at the end (ours with its BM25 and sentence index files in a temporary folder).
    """
    machine = describe_machine()
    start = time.perf_counter()
    documents = load_documents(corpus_dir, progress=False)
    chunks = chunk_documents(documents)
    prepare_seconds = time.perf_counter() - start

    original_model = load_embedding_model(settings.embedding_model, device=settings.device, precision="fp32")
    our_model = load_embedding_model(settings.embedding_model, device=settings.device, precision=settings.precision)
    for model in (original_model, our_model):  # load weights and kernels before timing anything
        embed(["warm-up", "a second text"], model, progress=False, packed=True)
        model.encode("warm-up")
    precisions = ["fp32", our_model.rag_precision]
    rates = gemm_rates(our_model, precisions)

    tag = uuid.uuid4().hex[:8]
    names = {"original": f"bench_{tag}_original", "ours": f"bench_{tag}_ours"}
    with tempfile.TemporaryDirectory(prefix="rag_bench_") as folder:
        if client is None:
            ours_settings = Settings.from_mapping(
                {"CHROMA_PATH": folder, "CHROMA_COLLECTION": names["ours"], "RAG_PRECISION": settings.precision}
            )
            client = get_client(ours_settings)
        else:
            ours_settings = dataclasses.replace(settings, collection=names["ours"])
        original_collection = get_collection(client, names["original"], original_model)
        try:
            original = run_original(original_collection, chunks, original_model, progress)
            original["total_seconds"] = round(original["total_seconds"] + prepare_seconds, 3)
            ours = run_ours(ours_settings, corpus_dir, our_model, progress)
            collection = ours.pop("collection")
            agreement = vector_agreement(collection, chunks, original.pop("vectors"), original_model)
            probes = _sample_queries(chunks, max(queries, 3))
            first_queries = rerank_first_queries(collection, our_model, probes)
            latency = query_latency(collection, probes)
            sentence_tokens = _sentence_tokens(collection, our_model)
        finally:
            # Ours's BM25 folder and sentence index file, then both collections.
            for path in index_files_root(original_collection).glob(f"{names['ours']}[@_]*"):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            for name in names.values():
                delete_collection(client, name)
    for precision, rate in gemm_rates(our_model, precisions).items():  # again: keep the faster probe
        rates[precision] = max(rates[precision], rate)

    shapes = model_shapes(our_model)
    chunk_flops = forward_flops(shapes, token_counts(our_model, [c.text for c in chunks]))
    sentence_flops = forward_flops(shapes, sentence_tokens)
    bound = _bound(rates, our_model.rag_precision, chunk_flops, sentence_flops, ours)
    bound["original_share"] = round(chunk_flops / (rates["fp32"] * 1e9) / original["embed_seconds"], 3)
    speedup = original["total_seconds"] / ours["total_seconds"] if ours["total_seconds"] else float("inf")
    chunk_speedup = (original["embed_seconds"] + original["write_seconds"]) / ours["chunks"]["seconds"]
    machine["load_average_end"] = describe_machine()["load_average"]
    target_speedup = TARGET_SPEEDUP.get(our_model.rag_precision)
    return {
        "machine": machine,
        "model": describe_model(our_model),
        "corpus": {
            "folder": str(corpus_dir),
            "documents": len(documents),
            "chunks": len(chunks),
            "sentences": ours["sentences"]["count"],
            "characters": sum(len(d.text) for d in documents),
            "load_and_chunk_seconds": round(prepare_seconds, 3),
        },
        "gemm_gflops": rates,
        "bound": bound,
        "original": original,
        "ours": ours,
        "speedup_end_to_end": round(speedup, 2),
        "speedup_chunk_step": round(chunk_speedup, 2),
        "vectors": agreement,
        "rerank": first_queries,
        "query": latency,
        "targets": {
            **(
                {f"speedup >= {target_speedup:g}x ({our_model.rag_precision})": speedup >= target_speedup}
                if target_speedup
                else {}
            ),
            f"embedding >= {TARGET_BOUND_SHARE:.0%} of the bound": bound["share"] >= TARGET_BOUND_SHARE,
            f"cosine to fp32 >= {TARGET_COSINE}": min(
                agreement["chunks_min_cosine"], agreement["sentences_min_cosine"]
            ) >= TARGET_COSINE,
            f"re-run <= {TARGET_RERUN_FRACTION:.0%} of the first run": ours["rerun_fraction"]
            <= TARGET_RERUN_FRACTION,
            f"first rerank query <= {TARGET_FIRST_QUERY}x the second": first_queries["first_over_second"]
            <= TARGET_FIRST_QUERY,
        },
    }


def _sentence_tokens(collection: Any, model: Any) -> np.ndarray:
    from .sentence_index import documents_from_collection, open_sentence_index

    index = open_sentence_index(collection)
    texts = {d.id: d.text for d in documents_from_collection(collection)}
    pieces = [texts[str(d)][s:e] for d, s, e in zip(index.document_ids, index.starts, index.ends)]
    return token_counts(model, pieces)


def _bound(
    rates: dict[str, float], precision: str, chunk_flops: float, sentence_flops: float, ours: dict[str, Any]
) -> dict[str, Any]:
    """Seconds the GEMM rate of `precision` allows for the chunks and the sentences, and our share."""
    rate = rates[precision] * 1e9
    chunk, sentence = chunk_flops / rate, sentence_flops / rate
    spent_chunks, spent_sentences = ours["chunks"]["embed_seconds"], ours["sentences"]["embed_seconds"]
    return {
        "precision": precision,
        "chunk_gflop": round(chunk_flops / 1e9, 1),
        "sentence_gflop": round(sentence_flops / 1e9, 1),
        "chunk_seconds": round(chunk, 3),
        "sentence_seconds": round(sentence, 3),
        "chunk_share": round(chunk / spent_chunks, 3) if spent_chunks else None,
        "sentence_share": round(sentence / spent_sentences, 3) if spent_sentences else None,
        "share": round((chunk + sentence) / (spent_chunks + spent_sentences), 3)
        if spent_chunks + spent_sentences
        else 0.0,
    }


def format_benchmark(result: dict[str, Any]) -> str:
    """A short table of the benchmark's figures for people."""
    machine, corpus = result["machine"], result["corpus"]
    original, ours, bound = result["original"], result["ours"], result["bound"]
    rates = ", ".join(f"{p} {r:.0f}" for p, r in result["gemm_gflops"].items())
    c, s = ours["chunks"], ours["sentences"]
    lines = [
        f"Machine: {machine['cpu']} ({machine['cpu_kind']}), {machine['cores']} cores"
        + (f", GPU {', '.join(machine['gpus'])}" if machine["gpus"] else "")
        + f"; model on {result['model']['device']}; load average {machine['load_average']} at start, "
        f"{machine['load_average_end']} at end",
        f"Corpus: {corpus['documents']} documents, {corpus['chunks']} chunks, {corpus['sentences']} sentences "
        f"({corpus['folder']}; loading and chunking {corpus['load_and_chunk_seconds']:.1f}s)",
        f"Bound: the model's GEMMs at {rates} GFLOP/s; in {bound['precision']}: chunks "
        f"{bound['chunk_seconds']:.1f}s ({bound['chunk_gflop']:.0f} GFLOP), sentences "
        f"{bound['sentence_seconds']:.1f}s ({bound['sentence_gflop']:.0f} GFLOP)",
        "",
        f"original (one by one, {original['precision']}): embed {original['embed_seconds']:.1f}s "
        f"({original['embed_chunks_per_s']} chunks/s, {bound['original_share']:.0%} of the fp32 bound), "
        f"write {original['write_seconds']:.1f}s; total {original['total_seconds']:.1f}s with loading",
        f"ingest ({ours['precision']}, batches of {ours['batch_tokens']} tokens, measured here):",
        f"  chunks    embed {c['embed_seconds']:.1f}s ({c['embed_per_s']}/s, {bound['chunk_share']:.0%} of the "
        f"bound), write {c['write_seconds']:.1f}s; step {c['seconds']:.1f}s",
        f"  sentences split {s['split_seconds']:.1f}s, embed {s['embed_seconds']:.1f}s ({s['embed_per_s']}/s, "
        f"{bound['sentence_share']:.0%} of the bound), write {s['write_seconds']:.1f}s; step {s['seconds']:.1f}s",
        f"  the rest (reading files, chunking, BM25, fingerprints) {ours['other_seconds']:.1f}s; "
        f"total {ours['total_seconds']:.1f}s",
        "",
        f"End to end: ingest is {result['speedup_end_to_end']:.2f}x faster than the original pipeline "
        f"({result['speedup_chunk_step']:.2f}x for the chunk step alone); embedding at "
        f"{bound['share']:.0%} of the bound.",
        f"Vectors against fp32: lowest cosine {result['vectors']['chunks_min_cosine']:.6f} (chunks), "
        f"{result['vectors']['sentences_min_cosine']:.6f} ({result['vectors']['sentences_compared']} sentences).",
        f"Re-run over the unchanged folder: {ours['rerun_seconds']:.3f}s "
        f"({ours['rerun_fraction']:.2%} of the first run, {ours['rerun_embedded']} texts embedded).",
        f"rerank: first query {result['rerank']['first_ms']:.1f} ms, second {result['rerank']['second_ms']:.1f} ms "
        f"({result['rerank']['first_over_second']:.2f}x), p50 {result['rerank']['p50_ms']:.1f} ms; "
        f"dense p50 {result['query']['p50_ms']:.1f} ms, p95 {result['query']['p95_ms']:.1f} ms.",
        "Targets: "
        + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in result["targets"].items()),
    ]
    return "\n".join(lines)
