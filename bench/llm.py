"""The course's local models on llama.cpp: prefill, decode, time to first token and to a whole answer.

Usage: python bench/llm.py [--chunks 5] [--tokens 100] [--models qwen2.5-coder-1.5b-instruct smollm2-135m-instruct]
                           [--skip-server] [--json]

For a grounded prompt over the `--chunks` sample-corpus chunks that share the most words with the
question (what a retriever would pass), each bundled model is measured in this process
(`local_llm.LocalLLM`): load time, prefill tokens/s (the prompt alone, the cache emptied first),
time to the first streamed piece, decode tokens/s and the time to a `--tokens`-token answer (greedy;
projected from the decode rate when the model stops earlier, and marked so). The default model is
then measured through its OpenAI-compatible server (`local_llm.start_server`, streamed over HTTP).
Decode speed is compared with the memory-bandwidth bound measured in the same run: generating one
token reads every weight once, so tokens/s can be at most (read bandwidth) / (model file size).
Prints the machine next to the figures. Never part of the tests; about 3 minutes on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from rag_helpers.base import Prompt
from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.config import SAMPLE_CORPUS_DIR
from rag_helpers.documents import load_documents
from rag_helpers.environment import describe_machine
from rag_helpers.local_llm import LocalLLM, default_threads, start_server
from rag_helpers.local_models import DEFAULT_LOCAL_MODEL, LOCAL_MODELS, get_local_model, model_file
from rag_helpers.prompts import build_prompt

QUESTION = "What total annual savings does Maple Ridge Pharmacy Distribution estimate?"


def prompt_chunks(n: int) -> list[Any]:
    """The `n` sample-corpus chunks sharing the most words with the question (a stand-in retriever)."""
    words = lambda text: set(re.findall(r"[a-z0-9]{3,}", text.lower()))  # noqa: E731 - a one-line helper
    chunks = chunk_documents(load_documents(SAMPLE_CORPUS_DIR, progress=False), CharacterSplitter(1000, 20))
    asked = words(QUESTION)
    return sorted(chunks, key=lambda chunk: (-len(asked & words(chunk.text)), chunk.id))[:n]


def read_bandwidth(size: int = 1 << 30, repeats: int = 5) -> float:
    """Bytes per second the cores read from memory together (best of `repeats`, one slice per thread)."""
    data = np.ones(size, dtype=np.uint8)
    threads = default_threads()
    part = size // threads
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            started = time.perf_counter()
            list(pool.map(lambda i: data[i * part : (i + 1) * part].max(), range(threads)))
            best = min(best, time.perf_counter() - started)
    return size / best


def answer_times(first: float, total: float, tokens: int, wanted: int) -> dict[str, Any]:
    """Decode rate and the time to a `wanted`-token answer (projected when fewer tokens came)."""
    decode = (tokens - 1) / (total - first) if tokens > 1 and total > first else None
    if tokens >= wanted or decode is None:
        return {"decode_tok_s": decode, "answer_s": total, "answer_tokens": tokens, "projected": False}
    return {"decode_tok_s": decode, "answer_s": first + (wanted - 1) / decode, "answer_tokens": tokens,
            "projected": True}


def bench_in_process(name: str, prompt: Prompt, wanted: int) -> dict[str, Any]:
    """Load, prefill alone, then a streamed greedy answer with the `local` backend."""
    llm = LocalLLM(name, progress=None)
    started = time.perf_counter()
    llama = llm.load()
    load_s = time.perf_counter() - started
    llm.answer(Prompt([{"role": "user", "content": "Warm-up."}]), temperature=0, max_tokens=2)
    llama.reset()  # no prompt cache: the prefill below reads every token
    started = time.perf_counter()
    prefill = llm.answer(prompt, temperature=0, max_tokens=1)
    prefill_s = time.perf_counter() - started
    prompt_tokens = prefill.usage.prompt_tokens or 0
    llama.reset()
    started = time.perf_counter()
    stream = llm.stream(prompt, temperature=0, max_tokens=wanted)
    first = None
    for _ in stream:
        first = first if first is not None else time.perf_counter() - started
    total = time.perf_counter() - started
    return {
        "load_s": load_s, "prompt_tokens": prompt_tokens, "prefill_tok_s": prompt_tokens / prefill_s,
        "first_piece_s": first, **answer_times(first or total, total, stream.answer.usage.completion_tokens, wanted),
    }


def bench_server(prompt: Prompt, wanted: int) -> dict[str, Any]:
    """Start the default model's server, then one streamed greedy answer over HTTP."""
    from huggingface_hub import InferenceClient, constants

    constants.HF_HUB_OFFLINE = False  # a loopback server is not the Hub
    started = time.perf_counter()
    with start_server(progress=None) as server:
        start_s = time.perf_counter() - started
        client = InferenceClient(base_url=server.base_url, api_key="no-key", timeout=600)
        started = time.perf_counter()
        first, pieces = None, 0
        for event in client.chat_completion(
            prompt.messages, model=server.model, temperature=0, max_tokens=wanted, stream=True
        ):
            if event.choices and event.choices[0].delta.content:
                pieces += 1  # llama.cpp's server streams one token per event
                first = first if first is not None else time.perf_counter() - started
        total = time.perf_counter() - started
    return {"start_s": start_s, "first_piece_s": first, **answer_times(first or total, total, pieces, wanted)}


def format_results(result: dict[str, Any]) -> str:
    """The figures as a small table."""
    machine = result["machine"]
    lines = [
        f"{result['chunks']}-chunk grounded prompt, greedy, answers of {result['tokens']} tokens; "
        f"{machine['cpu']} ({machine['cpu_kind']}), {machine['cores']} cores, load {machine['load_average']}",
        f"memory read bandwidth {result['bandwidth_gb_s']:.1f} GB/s (both cores, this run)",
        "",
        f"{'':<36}{'load s':>8}{'prompt':>8}{'prefill/s':>10}{'1st piece s':>12}{'decode/s':>10}"
        f"{'bound/s':>9}{'answer s':>10}",
    ]
    for label, row in result["rows"]:
        answer = f"{row['answer_s']:.1f}" + ("*" if row["projected"] else "")
        lines.append(
            f"{label:<36}{row.get('load_s', row.get('start_s', 0)):>8.1f}{row.get('prompt_tokens') or 0:>8}"
            f"{row.get('prefill_tok_s') or 0:>10.1f}{row['first_piece_s'] or 0:>12.2f}"
            f"{row['decode_tok_s'] or 0:>10.1f}{row['bound_tok_s']:>9.1f}{answer:>10}"
        )
    lines.append("server: 'load s' is the time to start and answer /v1/models; decode counts one token per event")
    if any(row["projected"] for _, row in result["rows"]):
        lines.append(f"* stopped early; the time to {result['tokens']} tokens is projected from the decode rate")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=5, help="sources in the prompt (default 5)")
    parser.add_argument("--tokens", type=int, default=100, help="answer length to time (default 100)")
    parser.add_argument("--models", nargs="+", default=list(LOCAL_MODELS), choices=list(LOCAL_MODELS))
    parser.add_argument("--skip-server", action="store_true", help="only the in-process backend")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    prompt = build_prompt(QUESTION, prompt_chunks(args.chunks))
    bandwidth = read_bandwidth()
    rows = []
    for name in args.models:
        row = bench_in_process(name, prompt, args.tokens)
        row["bound_tok_s"] = bandwidth / model_file(name, progress=None).stat().st_size
        rows.append((f"{get_local_model(name).display_name}, in process", row))
    if not args.skip_server:
        row = bench_server(prompt, args.tokens)
        row["bound_tok_s"] = bandwidth / model_file(DEFAULT_LOCAL_MODEL, progress=None).stat().st_size
        rows.append((f"{get_local_model().display_name}, server", row))
    result = {"chunks": args.chunks, "tokens": args.tokens, "machine": describe_machine(),
              "bandwidth_gb_s": bandwidth / 1e9, "rows": rows}
    print(json.dumps(result, indent=2) if args.json else format_results(result))


if __name__ == "__main__":
    main()
