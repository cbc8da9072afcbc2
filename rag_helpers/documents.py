"""Load a folder of text documents into `Document` objects."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

DEFAULT_PATTERNS: tuple[str, ...] = ("*.txt", "*.md")

# Fallback order for files that are not valid UTF-8. cp1252 covers most "Windows" text; latin-1
# accepts every byte, so loading never fails, at worst a few characters come out wrong.
FALLBACK_ENCODINGS: tuple[str, ...] = ("cp1252", "latin-1")

# Show a progress bar on its own only when a folder is big enough for the wait to be noticeable.
AUTO_PROGRESS_MIN_FILES = 200


class DocumentLoadWarning(UserWarning):
    """A file was skipped or decoded with a fallback encoding."""


@dataclass(frozen=True)
class Document:
    """One source file: `id` is its path relative to the loaded folder (forward slashes)."""

    id: str
    text: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict)


def load_documents(
    directory: str | Path,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    recursive: bool = True,
    progress: bool | None = None,
) -> list[Document]:
    """Load every file matching `patterns` under `directory`, sorted by id.

    Empty files are skipped with a warning. Files that are not valid UTF-8 are decoded with
    cp1252, then latin-1 (see `FALLBACK_ENCODINGS`), reported with a warning and recorded in
    `metadata["encoding"]`. Line endings are normalised to "\\n", as Python's text mode does.
    """
    root = Path(directory).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"Document folder not found: {root}. Check the path, or use "
            "rag_helpers.config.SAMPLE_CORPUS_DIR for the bundled sample corpus."
        )
    if not root.is_dir():
        raise NotADirectoryError(f"Expected a folder of documents but got a file: {root}. Pass its parent folder.")
    if isinstance(patterns, str):
        patterns = (patterns,)

    paths = _find_files(root, patterns, recursive)
    if not paths:
        where = "under" if recursive else "directly in"
        raise FileNotFoundError(
            f"No files matching {', '.join(patterns)} {where} {root}. "
            "Add documents there or pass other patterns, e.g. patterns=('*.txt', '*.md', '*.rst')."
        )

    show = len(paths) >= AUTO_PROGRESS_MIN_FILES if progress is None else progress
    documents = []
    for path in tqdm(paths, desc="Loading documents", unit="file", disable=not show):
        document = _load_one(root, path)
        if document is not None:
            documents.append(document)
    return documents


def _find_files(root: Path, patterns: Sequence[str], recursive: bool) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        matches = root.rglob(pattern) if recursive else root.glob(pattern)
        found.update(p for p in matches if p.is_file() and not _is_hidden(p.relative_to(root)))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _load_one(root: Path, path: Path) -> Document | None:
    doc_id = path.relative_to(root).as_posix()
    raw = path.read_bytes()
    if not raw.strip():
        warnings.warn(f"Skipped empty file: {doc_id}", DocumentLoadWarning, stacklevel=3)
        return None
    text, encoding = decode_text(raw)
    if encoding != "utf-8":
        warnings.warn(
            f"{doc_id} is not valid UTF-8; decoded it as {encoding}. Re-save it as UTF-8 if characters look wrong.",
            DocumentLoadWarning,
            stacklevel=3,
        )
    relative = Path(doc_id)
    metadata = {
        "category": relative.parts[0] if len(relative.parts) > 1 else "root",
        "file_name": relative.name,
        "extension": relative.suffix.lstrip(".").lower(),
        "encoding": encoding,
        "size_bytes": len(raw),
    }
    return Document(id=doc_id, text=text, source=str(path), metadata=metadata)


def decode_text(raw: bytes) -> tuple[str, str]:
    """Decode bytes as UTF-8, else the first fallback that works; return (text, encoding used).

    Newlines are normalised ("\\r\\n" and "\\r" become "\\n") so offsets match what
    `open(path).read()` gives, which is what the original tutorial chunked.
    """
    for encoding in ("utf-8", *FALLBACK_ENCODINGS):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text.replace("\r\n", "\n").replace("\r", "\n"), encoding
    raise AssertionError("latin-1 decodes every byte sequence")  # pragma: no cover
