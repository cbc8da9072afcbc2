"""Command-line interface: `python -m rag_helpers ingest | query | eval | ask | bench`.

Every command takes the same connection options (`--db PATH | --host H --port P`,
`--collection NAME`), defaulting to `Settings`, so any command can point at any index.
Each command is a `_cmd_<name>(args) -> int` function registered in `build_parser`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from .config import Settings


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """The options every command shares to choose the Chroma index."""
    group = parser.add_argument_group("index (defaults come from .env / environment)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, metavar="PATH", help="folder of an embedded (persistent) Chroma index")
    where.add_argument("--host", metavar="H", help="host of a Chroma server started with `chroma run`")
    group.add_argument("--port", type=int, metavar="P", help="port of the Chroma server (default 8000)")
    group.add_argument("--collection", metavar="NAME", help="collection name (default document_qa_collection)")


def settings_from_args(args: argparse.Namespace, settings: Settings | None = None) -> Settings:
    """Settings from .env/environment, overridden by whatever the command line gave."""
    settings = settings or Settings.load()
    changes: dict[str, object] = {}
    if getattr(args, "db", None) is not None:
        changes.update(chroma_path=args.db, chroma_host=None)
    if getattr(args, "host", None):
        changes["chroma_host"] = args.host
    if getattr(args, "port", None) is not None:
        changes["chroma_port"] = args.port
    if getattr(args, "collection", None):
        changes["collection"] = args.collection
    if getattr(args, "precision", None):
        changes["precision"] = args.precision
    return dataclasses.replace(settings, **changes)


def add_retriever_arg(parser: argparse.ArgumentParser, default: str) -> None:
    """`--retriever NAME`, one of `rag_helpers.retrievers.RETRIEVERS`."""
    from .retrievers import RETRIEVERS

    parser.add_argument(
        "--retriever", choices=list(RETRIEVERS), default=default, metavar="NAME",
        help=f"how to search: {', '.join(RETRIEVERS)} (default {default})",
    )


def make_cli_retriever(name: str, collection: object, model: object = None, progress: bool = True) -> object:
    """The retriever `name` over `collection`; indexes it needs (BM25, sentences) are built on first use."""
    from .retrievers import make_retriever

    return make_retriever(name, collection, model, progress=progress)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per pipeline stage."""
    parser = argparse.ArgumentParser(prog="python -m rag_helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each stage registers its sub-command here with an `_add_<name>(commands)` function.
    _add_ingest(commands)
    _add_query(commands)
    _add_bench(commands)
    _add_eval(commands)
    _add_ask(commands)
    _ = commands
    return parser


def _add_eval(commands: argparse._SubParsersAction) -> None:
    from .config import SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH

    parser = commands.add_parser(
        "eval",
        help="measure retrieval (hit@k, MRR, nDCG, latency) on a labelled question set",
        description="Ask the collection every question of a labelled set and report doc-hit@k, "
        "evidence-hit@k, MRR, nDCG and latency, by question kind, plus the top distances of "
        "unanswerable questions and a suggested \"don't know\" threshold.",
    )
    add_connection_args(parser)
    parser.add_argument(
        "--questions", type=Path, default=SAMPLE_QUESTIONS_PATH, metavar="FILE",
        help="JSON Lines question file (default: data/sample_questions.jsonl)",
    )
    parser.add_argument(
        "--corpus", type=Path, default=SAMPLE_CORPUS_DIR, metavar="DIR",
        help="the folder the index was built from, to locate the evidence (default: data/sample_corpus)",
    )
    parser.add_argument("--k", type=int, default=5, help="the k shown in the table and summary (default 5)")
    add_retriever_arg(parser, "dense")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.set_defaults(handler=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    import json

    from .evaluation import DEFAULT_K_VALUES, evaluate
    from .questions import load_questions
    from .store import collection_distance, get_client, open_collection

    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}")
    settings = settings_from_args(args)
    questions = load_questions(args.questions)
    collection = open_collection(get_client(settings), settings.collection)
    retriever = make_cli_retriever(args.retriever, collection, progress=not args.json)
    report = evaluate(
        retriever,
        questions,
        k_values=sorted({*DEFAULT_K_VALUES, args.k}),
        corpus_dir=args.corpus,
        name=collection.name if args.retriever == "dense" else f"{collection.name} ({args.retriever})",
    )
    if args.json:
        data = report.to_dict()
        data["index"] = {
            "collection": collection.name,
            "retriever": args.retriever,
            "chunks": collection.count(),
            "distance": collection_distance(collection),
            "embedding_function": (collection.configuration_json or {}).get("embedding_function"),
            "questions_file": str(args.questions),
            "corpus": str(args.corpus),
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(report.table(k=args.k))
        print()
        print(report.summary(k=args.k))
    return 0


def _add_ingest(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ingest",
        help="chunk, embed and store a folder of documents (idempotent: re-runs embed only what changed)",
        description="Load every .txt/.md file under DIR, split it into chunks, embed them and upsert them "
        "into the collection in batches. Unchanged chunks are skipped; a changed document's chunks are "
        "replaced; --prune also removes documents that are no longer in DIR.",
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="folder of documents to ingest")
    add_connection_args(parser)
    parser.add_argument(
        "--chunk-size", type=int, default=1000, metavar="N", help="characters per chunk (default 1000)"
    )
    parser.add_argument(
        "--chunk-overlap",
        type=int,
        default=20,
        metavar="N",
        help="characters shared by neighbours (default 20)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="embedding precision (default: settings, auto)",
    )
    parser.add_argument(
        "--distance",
        choices=("l2", "cosine", "ip"),
        default="l2",
        help="distance of a new collection (default l2, as in the original tutorial)",
    )
    parser.add_argument(
        "--batch-size", type=int, metavar="N", help="chunks per embed-and-write batch (default 256)"
    )
    parser.add_argument("--prune", action="store_true", help="remove chunks of documents no longer in DIR")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_cmd_ingest)


def _index_location(settings: Settings) -> str:
    if settings.chroma_host:
        return f"http://{settings.chroma_host}:{settings.chroma_port}"
    return str(settings.chroma_path)


def _cmd_ingest(args: argparse.Namespace) -> int:
    import json

    from .chunking import CharacterSplitter, chunk_documents
    from .documents import load_documents
    from .embeddings import describe_model, load_embedding_model
    from .store import get_client, get_collection, ingest

    settings = settings_from_args(args)
    splitter = CharacterSplitter(args.chunk_size, args.chunk_overlap)
    documents = load_documents(args.directory, progress=None if not args.quiet else False)
    chunks = chunk_documents(documents, splitter)
    model = load_embedding_model(
        settings.embedding_model, device=settings.device, precision=settings.precision
    )
    collection = get_collection(get_client(settings), settings.collection, model, distance=args.distance)
    report = ingest(
        collection,
        chunks,
        model,
        batch_size=args.batch_size,
        progress=not args.quiet,
        prune=args.prune,
        documents=documents,
    )
    if args.json:
        data = {
            **report.to_dict(),
            "documents": len(documents),
            "index": _index_location(settings),
            "model": describe_model(model),
            "chunk_size": args.chunk_size,
            "chunk_overlap": args.chunk_overlap,
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(
            f"{len(documents)} documents from {args.directory} into {_index_location(settings)}, "
            f"collection {report.summary()}"
        )
    return 0


def _add_query(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "query",
        help="show the chunks closest to a question",
        description="Embed the question with the model the collection was built with and print the k "
        "closest chunks, best first, as `Rank i: <chunk id>, distance: <d>` (other retrievers print "
        "their score, and the distance where they have one).",
    )
    parser.add_argument("question", metavar="QUESTION", help="the question to search for")
    add_connection_args(parser)
    parser.add_argument("-k", "--k", type=int, default=5, help="how many chunks to return (default 5)")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="embed the question at this precision (default: the precision the index was built with)",
    )
    add_retriever_arg(parser, "dense")
    parser.add_argument(
        "--json",
        action="store_true",
        help='print [{"id", "distance", "document", "text"}, ...], plus "score" for retrievers other '
        "than dense",
    )
    parser.set_defaults(handler=_cmd_query)


def _cmd_query(args: argparse.Namespace) -> int:
    import json

    from .store import get_client, open_collection

    settings = settings_from_args(args)
    model = None
    if args.precision:
        from .embeddings import load_embedding_model

        model = load_embedding_model(
            settings.embedding_model, device=settings.device, precision=args.precision
        )
    collection = open_collection(get_client(settings), settings.collection, model=model)
    retriever = make_cli_retriever(args.retriever, collection, model, progress=not args.json)
    hits = retriever(args.question, args.k)
    if args.json:
        rows = [{"id": h.id, "distance": h.distance, "document": h.document_id, "text": h.text} for h in hits]
        if args.retriever != "dense":  # dense keeps the original fields; the others rank by score
            rows = [{**row, "score": h.score} for row, h in zip(rows, hits)]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        for rank, hit in enumerate(hits, start=1):
            if args.retriever == "dense":  # the original tutorial's lines
                print(f"Rank {rank}: {hit.id}, distance: {hit.distance:.4f}")
            else:
                distance = "" if hit.distance is None else f", distance: {hit.distance:.4f}"
                print(f"Rank {rank}: {hit.id}, score: {hit.score:.4f}{distance}")
    return 0


def _add_bench(commands: argparse._SubParsersAction) -> None:
    from .config import SAMPLE_CORPUS_DIR

    parser = commands.add_parser(
        "bench",
        help="time the original one-by-one ingestion against batched ingest (temporary collections)",
        description="Embed and store DIR twice in one process: the original tutorial's way (one encode and "
        "one upsert per chunk) and with `ingest`; then re-run `ingest` on the unchanged corpus and time 50 "
        "queries. Uses a temporary index unless --db or a server (--host / CHROMA_HOST) is given; even then "
        "it writes only to two temporary collections and deletes them.",
    )
    parser.add_argument(
        "directory",
        type=Path,
        nargs="?",
        default=SAMPLE_CORPUS_DIR,
        metavar="DIR",
        help="folder of documents (default: data/sample_corpus)",
    )
    add_connection_args(parser)
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        help="precision of our pipeline (default: settings, auto); the original always runs fp32",
    )
    parser.add_argument(
        "--queries", type=int, default=50, metavar="N", help="queries timed for latency (default 50)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from .benchmark import format_benchmark, run_ingest_benchmark
    from .store import get_client

    if args.queries < 1:
        raise ValueError(f"--queries must be at least 1, got {args.queries}")
    settings = settings_from_args(args)
    # Only an index named explicitly (--db, or a server) is used; otherwise a throw-away folder.
    client = get_client(settings) if (settings.chroma_host or args.db is not None) else None
    result = run_ingest_benchmark(
        args.directory, settings, client=client, queries=args.queries, progress=not args.quiet
    )
    print(json.dumps(result, indent=2) if args.json else format_benchmark(result))
    return 0


def _add_ask(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ask",
        help="answer a question from the index, citing the chunks it used",
        description="Retrieve the k closest chunks, put them in a prompt as numbered sources and answer "
        "with the configured language model (Hugging Face with HF_TOKEN, an OpenAI-compatible server "
        "with LLM_BASE_URL), or, with neither, by extracting the most relevant sentences offline. "
        "Prints the answer, then the cited sources with their chunk ids.",
    )
    parser.add_argument("question", metavar="QUESTION", help="the question to answer")
    add_connection_args(parser)
    parser.add_argument("-k", "--k", type=int, default=5, help="how many chunks to retrieve (default 5)")
    from .retrievers import DEFAULT_RETRIEVER

    add_retriever_arg(parser, DEFAULT_RETRIEVER)
    parser.add_argument(
        "--backend",
        choices=("auto", "hf", "openai", "offline"),
        help="who answers (default: LLM_BACKEND from settings; auto: openai with LLM_BASE_URL, else hf with "
        "HF_TOKEN, else offline)",
    )
    parser.add_argument("--model", metavar="NAME", help="language model (default: LLM_MODEL from settings)")
    parser.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    parser.add_argument(
        "--style",
        choices=("grounded", "original"),
        default="grounded",
        help="prompt: numbered sources with rules (default), or the original tutorial's prompt",
    )
    parser.add_argument("--temperature", type=float, help="sampling temperature (default 0.5)")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="longest answer in tokens (default 1024)")
    parser.add_argument("--top-p", type=float, help="nucleus sampling (default 0.7)")
    parser.add_argument("--json", action="store_true", help="print the answer, sources and usage as JSON")
    parser.set_defaults(handler=_cmd_ask)


def _collection_model(collection: object, settings: Settings) -> object:
    """The embedding model a collection was built with (the cached instance its queries use)."""
    from .embeddings import load_embedding_model

    function = (getattr(collection, "configuration_json", None) or {}).get("embedding_function") or {}
    config = function.get("config") or {}
    return load_embedding_model(
        config.get("model_name") or settings.embedding_model,
        device=settings.device,
        precision=config.get("precision") or settings.precision,
    )


def _cmd_ask(args: argparse.Namespace) -> int:
    import json

    from .generation import choose_backend, get_llm
    from .pipeline import answer_question, stream_answer
    from .store import get_client, open_collection

    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    settings = settings_from_args(args)
    backend = choose_backend(settings, args.backend)
    if backend == "offline" and (args.backend or settings.llm_backend) == "auto" and not args.json:
        print(
            "No HF_TOKEN or LLM_BASE_URL is set: answering offline, by extracting sentences "
            "from the sources.",
            file=sys.stderr,
        )
    collection = open_collection(get_client(settings), settings.collection)
    # The offline backend scores sentences with the model (and precision) the index was built with.
    model = _collection_model(collection, settings) if backend == "offline" else None
    llm = get_llm(settings, backend, args.model, embedding_model=model)
    retriever = make_cli_retriever(args.retriever, collection, model, progress=not args.json)
    params = {"temperature": args.temperature, "max_tokens": args.max_tokens, "top_p": args.top_p}
    params = {name: value for name, value in params.items() if value is not None}
    if args.stream and not args.json:
        stream = stream_answer(
            args.question, collection, model, llm, k=args.k, retriever=retriever, style=args.style, **params
        )
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        answer = stream.answer
        print(answer.format(show_text=False))
    else:
        answer = answer_question(
            args.question, collection, model, llm, k=args.k, retriever=retriever, style=args.style, **params
        )
        if args.json:
            print(json.dumps({"question": args.question, **answer.to_dict()}, indent=2, ensure_ascii=False))
            return 0
        print(answer.format())
    usage = f", {answer.usage.total_tokens} tokens" if answer.usage and answer.usage.total_tokens else ""
    print(f"({answer.backend}: {answer.model}{usage})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, ConnectionError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
