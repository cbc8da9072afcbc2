"""Follow-up questions: evidence-hit@5 of the second turn per strategy, on data/conversations.jsonl.

    python bench/followups.py [--retrievers rerank dense] [--backend local] [--model NAME] [-k 5]
                              [--limit N] [--db DIR] [--rewrites FILE] [--out FILE]

For every labelled conversation, each strategy of `conversation.STRATEGIES` (the follow-up alone;
the earlier question and the follow-up concatenated; the follow-up condensed by the language model)
and the labelled rewrite (`standalone`, the ceiling) make the query, and `robustness.followup_hits`
counts the follow-ups whose evidence is in the top k, with the course's default retriever and with
dense search. The earlier turn is the conversation's own question and reference answer. The model
condenses each follow-up once (greedy, so a run repeats); the other retrievers search the same
rewrites. `--rewrites FILE` takes the rewrites of an earlier run instead of asking the model.

Prints the figures next to the machine (`environment.describe_machine`) and the reference figures
of data/README.md, and saves everything, the condensed questions with the model's replies and the
reason any was not used included, as JSON in bench/results/. Never part of the tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from rag_helpers.backends import get_llm
from rag_helpers.config import PROJECT_ROOT, SAMPLE_CORPUS_DIR, Settings
from rag_helpers.conversation import STRATEGIES
from rag_helpers.environment import describe_machine
from rag_helpers.ingest import ensure_index
from rag_helpers.questions import load_conversations
from rag_helpers.registry import DEFAULT_RETRIEVER, RETRIEVERS, make_retriever
from rag_helpers.robustness import REFERENCE, followup_hits
from rag_helpers.store import query_encoder

RESULTS = PROJECT_ROOT / "bench" / "results"
# data/README.md, 2026-12-05, 38 conversations: what the naive queries and the reference rewrite found.
README_FIGURES = {
    "dense": {"alone": 5, "concatenate": 27, REFERENCE: 33},
    "rerank": {"alone": 8, "concatenate": 32, REFERENCE: 36},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrievers", nargs="+", choices=list(RETRIEVERS), default=[DEFAULT_RETRIEVER, "dense"],
                        metavar="NAME", help=f"retrievers to measure (default: {DEFAULT_RETRIEVER} dense)")
    parser.add_argument("--backend", default="local", help="who condenses (default: the course's own model)")
    parser.add_argument("--model", default=None, help="language model (default: the backend's)")
    parser.add_argument("-k", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N conversations")
    parser.add_argument("--db", type=Path, default=RESULTS / "answers_db",
                        help="index of the sample corpus, kept between runs (default: bench/results/answers_db)")
    parser.add_argument("--rewrites", type=Path, default=None, metavar="FILE",
                        help="a saved run: search its condensed questions again instead of asking the model")
    parser.add_argument("--out", type=Path, default=None, help="save the run (JSON) here")
    args = parser.parse_args(argv)

    conversations = load_conversations()[: args.limit]
    settings = dataclasses.replace(Settings.load(), chroma_path=args.db)
    collection, model = ensure_index(settings, SAMPLE_CORPUS_DIR, progress=False)
    encoder = query_encoder(collection, model)
    queries = None
    llm = None
    if args.rewrites is not None:
        saved = json.loads(args.rewrites.read_text(encoding="utf-8"))
        queries = {row["id"]: {"condense": row["condensed"]} for row in saved["condensed"]}
    else:
        llm = get_llm(settings, args.backend, args.model)
        if hasattr(llm, "load"):
            llm.load()  # the local model loads once, before any rewrite is timed

    started = time.perf_counter()
    reports = {}
    for name in args.retrievers:
        report = followup_hits(
            conversations, make_retriever(name, collection, encoder), STRATEGIES, llm, args.k,
            queries=queries, name=name, progress=True,
        )
        queries = report.queries()  # the next retriever searches the same rewrites
        reports[name] = report
    first = reports[args.retrievers[0]]
    condensed = [
        {"id": r.id, "kind": r.kind, "follow_up": c.follow_up, "condensed": r.query, "reply": r.reply,
         "fallback": r.fallback, "seconds": r.seconds, "standalone": c.standalone}
        for r, c in zip(first.of("condense"), conversations, strict=True)
    ]
    times = [row["seconds"] for row in condensed if row["seconds"] is not None]
    meta = {
        "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"),
        "seconds": round(time.perf_counter() - started, 1),
        "condenser": None if llm is None else f"{llm.backend}: {llm.model}",
        "args": {key: str(value) for key, value in vars(args).items()},
        "conversations": len(conversations), "chunks": collection.count(),
    }
    out = args.out or RESULTS / f"followups_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "reports": {n: r.to_dict() for n, r in reports.items()}, "condensed": condensed}
    out.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"saved {out}", file=sys.stderr)

    machine = meta["machine"]
    print(f"{len(conversations)} conversations, {meta['chunks']} chunks; condensed by {meta['condenser'] or args.rewrites}")
    print(f"machine: {machine['cpu']} ({machine['cpu_kind']}), {machine['cores']} cores, "
          f"load {machine['load_average']}; {meta['date']}")
    if times:
        print(f"condense: median {statistics.median(times):.1f} s per follow-up, max {max(times):.1f} s; "
              f"{sum(bool(row['fallback']) for row in condensed)} rewrites not used (fell back to concatenate)")
    for name, report in reports.items():
        print()
        print(report.table())
        reference = README_FIGURES.get(name)
        if reference and args.limit is None:
            print(f"data/README.md ({name}): " + ", ".join(f"{s} {n}/38" for s, n in reference.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
