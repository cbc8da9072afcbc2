"""Ingestion benchmark: the original tutorial's one-at-a-time pipeline against batched `ingest.ingest`.

Both run in one process on the same chunks, each into its own temporary collection, which is
deleted afterwards: the user's index is never touched. Run it with `make bench`,
`python bench/ingest.py` or `python -m rag_helpers bench [DIR]`.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .chunking import chunk_documents
from .config import Settings
from .documents import load_documents
from .embeddings import describe_model, embed, load_embedding_model
from .evaluation import timed_queries
from .environment import describe_machine
from .ingest import ingest
from .store import delete_collection, get_client, get_collection, retrieve

TARGET_SPEEDUP = 4.0  # end to end, against the original pipeline, on CPU
TARGET_RERUN_FRACTION = 0.02  # a re-run over an unchanged corpus, against the first run


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def _sample_queries(chunks: list[Any], count: int) -> list[str]:
    """Short questions-like probes: the first dozen words of chunks spread over the corpus."""
    step = max(1, len(chunks) // max(count, 1))
    picked = chunks[::step][:count]
    queries = [" ".join(c.text.split()[:12]) for c in picked]
    queries = [q for q in queries if q]
    while queries and len(queries) < count:
        queries += queries[: count - len(queries)]
    return queries


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
    }


def run_ours(collection: Any, chunks: list[Any], model: Any, progress: bool = True) -> dict[str, Any]:
    """`ingest.ingest` with default settings, then a second run over the unchanged chunks."""
    first = ingest(collection, chunks, model, progress=progress)
    second = ingest(collection, chunks, model, progress=False)
    return {
        "precision": getattr(model, "rag_precision", "fp32"),
        "batch_size": first.batch_size,
        "embed_seconds": round(first.embed_seconds, 3),
        "embed_chunks_per_s": _rate(first.embedded, first.embed_seconds),
        "write_seconds": round(first.write_seconds, 3),
        "write_chunks_per_s": _rate(first.embedded, first.write_seconds),
        "total_seconds": round(first.total_seconds, 3),
        "rerun_seconds": round(second.total_seconds, 4),
        "rerun_fraction": round(second.total_seconds / first.total_seconds, 5)
        if first.total_seconds
        else 0.0,
        "rerun_embedded": second.embedded,
        "count": first.count,
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


def run_ingest_benchmark(
    corpus_dir: str | Path,
    settings: Settings,
    client: Any = None,
    queries: int = 50,
    progress: bool = True,
) -> dict[str, Any]:
    """Time the original pipeline and ours on the same corpus; returns a JSON-ready dict.

    `client` defaults to a fresh embedded index in a temporary folder. Whatever the client, the
    benchmark writes only to two collections with random names and deletes them at the end.
    """
    machine = describe_machine()
    start = time.perf_counter()
    documents = load_documents(corpus_dir, progress=False)
    chunks = chunk_documents(documents)
    prepare_seconds = time.perf_counter() - start

    original_model = load_embedding_model(settings.embedding_model, device=settings.device, precision="fp32")
    our_model = load_embedding_model(
        settings.embedding_model, device=settings.device, precision=settings.precision
    )
    for model in (original_model, our_model):  # load weights and kernels before timing anything
        embed(["warm-up"], model, progress=False)
        model.encode("warm-up")

    with tempfile.TemporaryDirectory(prefix="rag_bench_") as folder:
        if client is None:
            client = get_client(Settings.from_mapping({"CHROMA_PATH": folder}))
        tag = uuid.uuid4().hex[:8]
        names = {"original": f"bench_{tag}_original", "ours": f"bench_{tag}_ours"}
        try:
            original = run_original(
                get_collection(client, names["original"], original_model), chunks, original_model, progress
            )
            ours_collection = get_collection(client, names["ours"], our_model)
            ours = run_ours(ours_collection, chunks, our_model, progress)
            latency = query_latency(ours_collection, _sample_queries(chunks, queries))
        finally:
            for name in names.values():
                delete_collection(client, name)

    speedup = original["total_seconds"] / ours["total_seconds"] if ours["total_seconds"] else float("inf")
    machine["load_average_end"] = describe_machine()["load_average"]
    return {
        "machine": machine,
        "model": describe_model(our_model),
        "corpus": {
            "folder": str(corpus_dir),
            "documents": len(documents),
            "chunks": len(chunks),
            "characters": sum(len(d.text) for d in documents),
            "load_and_chunk_seconds": round(prepare_seconds, 3),
        },
        "original": original,
        "ours": ours,
        "speedup_end_to_end": round(speedup, 2),
        "query": latency,
        "targets": {
            f"speedup >= {TARGET_SPEEDUP:g}x": speedup >= TARGET_SPEEDUP,
            f"re-run <= {TARGET_RERUN_FRACTION:.0%} of first run": ours["rerun_fraction"]
            <= TARGET_RERUN_FRACTION,
        },
    }


def format_benchmark(result: dict[str, Any]) -> str:
    """A short table of the benchmark's figures for people."""
    machine, corpus = result["machine"], result["corpus"]
    original, ours, query = result["original"], result["ours"], result["query"]
    device = result["model"]["device"]
    lines = [
        f"Machine: {machine['cpu']} ({machine['cpu_kind']}), {machine['cores']} cores"
        + (f", GPU {', '.join(machine['gpus'])}" if machine["gpus"] else "")
        + f"; model on {device}; load average {machine['load_average']} at start, "
        f"{machine['load_average_end']} at end",
        f"Corpus: {corpus['documents']} documents, {corpus['chunks']} chunks ({corpus['folder']})",
        "",
        f"{'pipeline':<34}{'embed chunks/s':>16}{'write chunks/s':>16}{'total s':>10}",
        f"{'original (one by one, ' + original['precision'] + ')':<34}{original['embed_chunks_per_s']:>16}"
        f"{original['write_chunks_per_s']:>16}{original['total_seconds']:>10.1f}",
        f"{'ours (ingest, batch ' + str(ours['batch_size']) + ', ' + ours['precision'] + ')':<34}"
        f"{ours['embed_chunks_per_s']:>16}{ours['write_chunks_per_s']:>16}{ours['total_seconds']:>10.1f}",
        "",
        f"End to end: ours is {result['speedup_end_to_end']:.1f}x faster than the original pipeline.",
        f"Re-run over the unchanged corpus: {ours['rerun_seconds']:.3f}s "
        f"({ours['rerun_fraction']:.2%} of the first run, {ours['rerun_embedded']} chunks embedded).",
        f"Query latency (embed + search, k={query['k']}): p50 {query['p50_ms']:.1f} ms, "
        f"p95 {query['p95_ms']:.1f} ms over {query['queries']} queries.",
        "Targets: "
        + ", ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in result["targets"].items()),
    ]
    return "\n".join(lines)
