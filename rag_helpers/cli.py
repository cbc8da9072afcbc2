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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-command per pipeline stage."""
    parser = argparse.ArgumentParser(prog="python -m rag_helpers", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each stage registers its sub-command here with an `_add_<name>(commands)` function.
    _ = commands
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, ConnectionError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
