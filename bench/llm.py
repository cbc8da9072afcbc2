"""Local LLM benchmark: SmolLM2-135M-Instruct in this process and through `transformers serve`.

Usage: python bench/llm.py [--chunks 5] [--tokens 100] [--skip-server] [--json]

For a grounded prompt over the `--chunks` sample-corpus chunks that share the most words with the
question (the 5 chunks a retriever would pass), measures: model load time, prefill tokens/s (one
forward pass over the prompt), decode tokens/s, time to first token and time to a `--tokens`-token
answer (greedy; when the model stops earlier, the time is projected from its decode rate and marked
"projected"). Then the same through the OpenAI-compatible server: start time, time to first token,
decode rate and answer time, over HTTP with streaming. Prints the machine next to the figures.
Never part of the tests; about 2-3 minutes on an idle 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from typing import Any

from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.config import SAMPLE_CORPUS_DIR
from rag_helpers.documents import load_documents
from rag_helpers.local_llm import LOCAL_MODEL_NAME, LocalLLM, prepare_model, start_server
from rag_helpers.prompts import build_prompt

QUESTION = "What total annual savings does Maple Ridge Pharmacy Distribution estimate?"


def words(text: str) -> set[str]:
    """Lower-case words of three letters or more."""
    return set(re.findall(r"[a-z0-9]{3,}", text.lower()))


def prompt_chunks(n: int) -> list[Any]:
    """The `n` sample-corpus chunks sharing the most words with the question (a stand-in retriever)."""
    chunks = chunk_documents(load_documents(SAMPLE_CORPUS_DIR, progress=False), CharacterSplitter(1000, 20))
    asked = words(QUESTION)
    return sorted(chunks, key=lambda chunk: (-len(asked & words(chunk.text)), chunk.id))[:n]


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else None,
    }


def answer_times(ttft: float, total: float, tokens: int, wanted: int) -> dict[str, Any]:
    """Decode rate and the time to a `wanted`-token answer (projected when fewer tokens came)."""
    decode = (tokens - 1) / (total - ttft) if tokens > 1 and total > ttft else None
    if tokens >= wanted or decode is None:
        return {"decode_tok_s": decode, "answer_s": total, "answer_tokens": tokens, "projected": False}
    return {
        "decode_tok_s": decode,
        "answer_s": ttft + (wanted - 1) / decode,
        "answer_tokens": tokens,
        "projected": True,
    }


def bench_in_process(messages: list[dict], wanted: int) -> dict[str, Any]:
    """Load, prefill, and a streamed greedy answer with the `local` backend."""
    import torch

    llm = LocalLLM(device="cpu", progress=None)
    started = time.perf_counter()
    model, tokenizer = llm.load()
    load_s = time.perf_counter() - started
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    prompt_tokens = int(inputs["input_ids"].shape[1])
    with torch.inference_mode():
        model(**tokenizer("Warm-up.", return_tensors="pt"))  # first-call overheads out of the prefill time
        started = time.perf_counter()
        model(**inputs)
        prefill_s = time.perf_counter() - started
    started = time.perf_counter()
    stream = llm.stream(messages, temperature=0, max_tokens=wanted)
    ttft = None
    for _ in stream:
        ttft = ttft if ttft is not None else time.perf_counter() - started
    total = time.perf_counter() - started
    tokens = stream.answer.usage.completion_tokens if stream.answer.usage else 0
    return {
        "load_s": load_s,
        "prompt_tokens": prompt_tokens,
        "prefill_tok_s": prompt_tokens / prefill_s,
        "ttft_s": ttft,
        **answer_times(ttft or total, total, tokens, wanted),
    }


def bench_server(messages: list[dict], wanted: int) -> dict[str, Any]:
    """Start the server, then one prefill-only request and one streamed greedy answer over HTTP."""
    from huggingface_hub import InferenceClient, constants

    constants.HF_HUB_OFFLINE = False  # a loopback server is not the Hub
    started = time.perf_counter()
    with start_server(progress=None) as server:
        start_s = time.perf_counter() - started
        client = InferenceClient(base_url=server.base_url, timeout=600)
        started = time.perf_counter()
        one = client.chat.completions.create(
            model=server.model, messages=messages, temperature=0, max_tokens=1
        )
        prefill_s = time.perf_counter() - started
        prompt_tokens = one.usage.prompt_tokens if one.usage else None
        started = time.perf_counter()
        ttft, pieces, usage = None, 0, None
        events = client.chat.completions.create(
            model=server.model, messages=messages, temperature=0, max_tokens=wanted, stream=True
        )
        for event in events:
            usage = getattr(event, "usage", None) or usage  # the server sends it with the last event
            if event.choices and event.choices[0].delta.content:
                pieces += 1
                ttft = ttft if ttft is not None else time.perf_counter() - started
        total = time.perf_counter() - started
        tokens = usage.completion_tokens if usage else pieces
    return {
        "start_s": start_s,
        "prompt_tokens": prompt_tokens,
        "prefill_tok_s": prompt_tokens / prefill_s if prompt_tokens else None,
        "ttft_s": ttft,
        **answer_times(ttft or total, total, tokens, wanted),
    }


def format_results(result: dict[str, Any]) -> str:
    """The figures as a small table."""
    lines = [
        f"{LOCAL_MODEL_NAME}, {result['chunks']}-chunk grounded prompt, greedy, "
        f"answer of {result['tokens']} tokens",
        "machine: " + ", ".join(f"{key} {value}" for key, value in result["machine"].items()),
        "",
        f"{'':<14}{'load/start s':>13}{'prompt tok':>11}{'prefill tok/s':>14}{'TTFT s':>8}"
        f"{'decode tok/s':>13}{'answer s':>10}",
    ]
    for name, label in (("in_process", "in-process"), ("server", "server")):
        row = result.get(name)
        if not row:
            continue
        answer = f"{row['answer_s']:.1f}" + ("*" if row["projected"] else "")
        lines.append(
            f"{label:<14}{row.get('load_s', row.get('start_s')):>13.1f}{row['prompt_tokens'] or 0:>11}"
            f"{row['prefill_tok_s'] or 0:>14.1f}{row['ttft_s'] or 0:>8.2f}{row['decode_tok_s'] or 0:>13.1f}"
            f"{answer:>10}"
        )
    if any((result.get(name) or {}).get("projected") for name in ("in_process", "server")):
        lines.append(f"* stopped early; time to {result['tokens']} tokens projected from the decode rate")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=5, help="sources in the prompt (default 5)")
    parser.add_argument("--tokens", type=int, default=100, help="answer length to time (default 100)")
    parser.add_argument("--skip-server", action="store_true", help="only the in-process backend")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    prepare_model()  # converted once, outside the timings
    messages = build_prompt(QUESTION, prompt_chunks(args.chunks)).messages
    result: dict[str, Any] = {"chunks": args.chunks, "tokens": args.tokens, "machine": machine()}
    result["in_process"] = bench_in_process(messages, args.tokens)
    if not args.skip_server:
        result["server"] = bench_server(messages, args.tokens)
    print(json.dumps(result, indent=2) if args.json else format_results(result))


if __name__ == "__main__":
    main()
