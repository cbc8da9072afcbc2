"""Multi-query rewordings and HyDE passages written by the course's local model, saved for notebook 12.

    python bench/query_transformations.py [--per-kind N] [--model NAME] [--out FILE]

For each answerable sample question (the first N of each kind with --per-kind; taken in turns, one
of each kind, so a run stopped early still covers every kind alike) it
asks the local model (`local_llm.LocalLLM`, Qwen2.5-Coder-1.5B-Instruct by default) for three
search-query rewordings (`query_expansion.multi_query`) and for a hypothetical answer passage
(`query_expansion.hypothetical_document`, HyDE), greedily (temperature 0), and saves the model's raw
replies with the time each took. Notebook 12 replays the saved replies through the real
`MultiQueryRetriever` and `HyDERetriever` and evaluates retrieval live (retrieval is fast; writing
is not: several seconds per reply on a 2-core CPU). The file is written after every question, and
a run that is started again skips the questions already saved. Never part of the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rag_helpers.answer_report import per_kind
from rag_helpers.config import DATA_DIR, DEFAULT_LOCAL_MODEL
from rag_helpers.environment import describe_machine
from rag_helpers.local_llm import LocalLLM
from rag_helpers.query_expansion import hypothetical_document, multi_query
from rag_helpers.questions import load_questions

OUT = DATA_DIR / "answer_runs" / "query_transformations.json"
PARAMS = {
    "multi_query": {"n": 3, "temperature": 0, "max_tokens": 80},
    "hyde": {"temperature": 0, "max_tokens": 120},
}


class Recorder:
    """Wraps an answerer and keeps its last raw reply, so the saved file holds what the model wrote."""

    def __init__(self, llm: Any):
        self.llm, self.backend, self.last = llm, llm.backend, ""

    def answer(self, prompt: Any, **params: Any) -> Any:
        answer = self.llm.answer(prompt, **params)
        self.last = answer.text
        return answer


def in_turns(questions: list[Any]) -> list[Any]:
    """The questions one of each kind at a time (first of each kind, then second, ...), file order within a kind."""
    by_kind: dict[str, list[Any]] = {}
    for question in questions:
        by_kind.setdefault(question.kind, []).append(question)
    rounds = max((len(group) for group in by_kind.values()), default=0)
    return [group[i] for i in range(rounds) for group in by_kind.values() if i < len(group)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=None, help="the first N answerable questions of each kind")
    parser.add_argument("--model", default=DEFAULT_LOCAL_MODEL)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--threads", type=int, default=None,
                        help="llama.cpp threads (default: every usable core; 1 is faster on a CPU busy with other work)")
    args = parser.parse_args()

    questions = [q for q in load_questions() if q.answerable]
    questions = in_turns(per_kind(questions, args.per_kind) if args.per_kind else questions)
    saved: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    rows: list[dict[str, Any]] = saved.get("rows", [])
    done = {row["q"] for row in rows}
    llm = Recorder(LocalLLM(args.model, n_threads=args.threads))
    started = time.perf_counter()
    for number, question in enumerate(questions, start=1):
        if question.q in done:
            continue
        t0 = time.perf_counter()
        queries = multi_query(question.q, llm, **PARAMS["multi_query"])
        multi_raw, t1 = llm.last, time.perf_counter()
        passage = hypothetical_document(question.q, llm, **PARAMS["hyde"])
        t2 = time.perf_counter()
        rows.append({
            "q": question.q, "kind": question.kind,
            "multi_query_reply": multi_raw, "queries": queries, "multi_query_s": round(t1 - t0, 2),
            "hyde_reply": llm.last, "passage": passage, "hyde_s": round(t2 - t1, 2),
        })
        meta = {
            "model": llm.llm.model, "params": PARAMS, "per_kind": args.per_kind,
            "command": "python bench/query_transformations.py"
            + (f" --per-kind {args.per_kind}" if args.per_kind else ""),
            "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, ensure_ascii=False) + "\n")
        print(f"{number}/{len(questions)} {question.kind}: {t1 - t0:.1f} s + {t2 - t1:.1f} s  {queries[1:]!r}",
              file=sys.stderr, flush=True)
    print(f"{len(rows)} questions saved in {args.out} ({time.perf_counter() - started:.0f} s this run)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
