"""Embedding throughput: the original one-chunk-at-a-time loop vs our batched `embed`, in one run.

    python bench/embedding.py [--corpus DIR] [--limit 256] [--device auto] [--json]

Rows: the original loop (fp32, one `encode` call per chunk), batched fp32, and batched at every
reduced precision the device supports (bf16 on CPU, fp16/bf16 on CUDA). Each row reports
chunks/s, the speed-up over the original loop, and the cosine similarity to the fp32 vectors.
Never part of the tests: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from rag_helpers.chunking import chunk_documents
from rag_helpers.config import SAMPLE_CORPUS_DIR
from rag_helpers.documents import load_documents
from rag_helpers.embeddings import cpu_has_native_bf16, embed, load_embedding_model, resolve_device


def original_loop(texts: list[str], model) -> tuple[np.ndarray, float]:
    """The tutorial's `get_embeddings` called once per chunk."""
    start = time.perf_counter()
    vectors = np.stack([model.encode(text, device=str(model.device)) for text in texts])
    return vectors, time.perf_counter() - start


def batched(texts: list[str], model) -> tuple[np.ndarray, float]:
    embed(texts[:8], model, progress=False)  # warm-up, so one-off kernel set-up is not timed
    start = time.perf_counter()
    vectors = embed(texts, model, progress=False)
    return vectors, time.perf_counter() - start


def reduced_precisions(device: str) -> list[str]:
    if device.startswith("cuda"):
        return ["fp16", "bf16"] if torch.cuda.is_bf16_supported() else ["fp16"]
    if device == "cpu":
        return ["bf16"] if cpu_has_native_bf16() else []
    return []


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {torch.get_num_threads()} torch threads{gpu}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=SAMPLE_CORPUS_DIR)
    parser.add_argument("--limit", type=int, default=256, help="number of chunks to embed (default 256)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    device = resolve_device(args.device)
    chunks = chunk_documents(load_documents(args.corpus))[: args.limit]
    texts = [c.text for c in chunks]
    mean_chars = sum(map(len, texts)) / len(texts)

    fp32 = load_embedding_model(device=device, precision="fp32")
    reference, seconds = original_loop(texts, fp32)
    rows = [{"pipeline": "original loop (fp32, 1 chunk/call)", "seconds": seconds, "cosine_min": 1.0}]
    for precision in ["fp32", *reduced_precisions(device)]:
        model = load_embedding_model(device=device, precision=precision)
        vectors, seconds = batched(texts, model)
        cosine = np.sum(vectors * reference, axis=1)
        rows.append({"pipeline": f"batched {precision}", "seconds": seconds, "cosine_min": float(cosine.min())})

    base = rows[0]["seconds"]
    for row in rows:
        row["chunks_per_s"] = len(texts) / row["seconds"]
        row["speedup"] = base / row["seconds"]

    result = {"machine": machine(), "device": device, "chunks": len(texts), "mean_chars": mean_chars, "rows": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"Embedding benchmark on {device} ({result['machine']})")
    print(f"{len(texts)} chunks, {mean_chars:.0f} characters on average\n")
    print(f"{'pipeline':<38}{'chunks/s':>10}{'speed-up':>10}{'min cosine to fp32':>20}")
    for row in rows:
        print(f"{row['pipeline']:<38}{row['chunks_per_s']:>10.1f}{row['speedup']:>9.2f}x{row['cosine_min']:>20.5f}")


if __name__ == "__main__":
    main()
