"""Load a folder of text documents into `Document` objects, reporting every file left out and why."""

from __future__ import annotations

import codecs
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .base import Document

DEFAULT_PATTERNS: tuple[str, ...] = ("*.txt", "*.md")

# Fallback order for files that are not valid UTF-8. cp1252 covers most "Windows" text; latin-1
# accepts every byte, so decoding never fails; binary content is caught by the checks below.
FALLBACK_ENCODINGS: tuple[str, ...] = ("cp1252", "latin-1")

# Byte-order marks, longest first: the UTF-32-LE mark starts with the UTF-16-LE one.
BYTE_ORDER_MARKS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Text has almost no C0 control characters besides whitespace; random bytes have about 11%.
MAX_CONTROL_RATIO = 0.05
_TEXT_CONTROLS = frozenset("\t\n\r\f\v")

# Show a progress bar on its own only when a folder is big enough for the wait to be noticeable.
AUTO_PROGRESS_MIN_FILES = 200


class DocumentLoadWarning(UserWarning):
    """A file was skipped or decoded with a fallback encoding."""


class BinaryContentError(ValueError):
    """The bytes are not text (NUL bytes, many control characters, or a broken byte-order mark)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file that matched the patterns but was not loaded, and why.

    `keep_indexed` is True when the file may be fine but could not be read this time: an index
    keeps its chunks. Otherwise (empty, binary, a link leaving the folder) its old chunks are removed.
    """

    id: str
    reason: str
    keep_indexed: bool = False

    def __str__(self) -> str:
        return f"{self.id}: {self.reason}"


@dataclass
class DocumentFolder:
    """What `scan_folder` found: the loaded documents, the skipped files, and the folder's absolute path."""

    root: Path
    documents: list[Document]
    skipped: list[SkippedFile] = field(default_factory=list)


def load_documents(
    directory: str | Path,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    recursive: bool = True,
    progress: bool | None = None,
    follow_links: bool = False,
) -> list[Document]:
    """Load every file matching `patterns` under `directory`, sorted by id (see `scan_folder`)."""
    return scan_folder(directory, patterns, recursive, progress, follow_links).documents


def scan_folder(
    directory: str | Path,
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    recursive: bool = True,
    progress: bool | None = None,
    follow_links: bool = False,
) -> DocumentFolder:
    """Load every file matching `patterns` (case-insensitively) under `directory`, sorted by id.

    Hidden files and folders (names starting with ".") are ignored. Files that cannot be used are
    skipped with a `DocumentLoadWarning` and listed in `.skipped`: empty files, binary content
    (NUL bytes, more than `MAX_CONTROL_RATIO` control characters), unreadable files, names that are
    not valid UTF-8, and links that lead outside the folder unless `follow_links`. Text with a
    UTF-8/16/32 byte-order mark is decoded accordingly; other text that is not valid UTF-8 is
    decoded with cp1252, then latin-1, with a warning, and recorded in `metadata["encoding"]`.
    Line endings are normalised to "\\n", as Python's text mode does.
    """
    root = Path(directory).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"Document folder not found: {root}. Check the path, or use "
            "rag_helpers.config.SAMPLE_CORPUS_DIR for the bundled sample corpus."
        )
    if not root.is_dir():
        raise NotADirectoryError(
            f"Expected a folder of documents but got a file: {root}. Pass its parent folder."
        )
    if isinstance(patterns, str):
        patterns = (patterns,)

    paths, skipped = _find_files(root, patterns, recursive, follow_links)
    if not paths and not skipped:
        where = "under" if recursive else "directly in"
        raise FileNotFoundError(
            f"No files matching {', '.join(patterns)} {where} {root}. "
            "Add documents there or pass other patterns, e.g. patterns=('*.txt', '*.md', '*.rst')."
        )

    show = len(paths) >= AUTO_PROGRESS_MIN_FILES if progress is None else progress
    documents = []
    for path in tqdm(paths, desc="Loading documents", unit="file", disable=not show):
        loaded = _load_one(root, path)
        if isinstance(loaded, Document):
            documents.append(loaded)
        else:
            skipped.append(loaded)
    for item in skipped:
        warnings.warn(f"Skipped {item}", DocumentLoadWarning, stacklevel=3)
    skipped.sort(key=lambda s: s.id)
    return DocumentFolder(root=root.resolve(), documents=documents, skipped=skipped)


def printable_id(relative: Path) -> str:
    """A relative path as a document id; bytes that are not UTF-8 are shown as \\xNN escapes."""
    return os.fsencode(relative.as_posix()).decode("utf-8", "backslashreplace")


def _find_files(
    root: Path, patterns: Sequence[str], recursive: bool, follow_links: bool
) -> tuple[list[Path], list[SkippedFile]]:
    lowered = [p.lower() for p in patterns]
    real_root = root.resolve()
    found: list[Path] = []
    skipped: list[SkippedFile] = []
    seen_dirs: set[Path] = set()
    for folder, dirs, files in os.walk(root, followlinks=follow_links):
        here = Path(folder)
        if follow_links:  # a link back to a parent would loop forever
            real = here.resolve()
            if real in seen_dirs:
                dirs[:] = []
                continue
            seen_dirs.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in dirs:
            path = here / name
            if not follow_links and path.is_symlink():
                reason = "a link to a folder, not followed (pass --follow-links / follow_links=True to include it)"
                skipped.append(SkippedFile(printable_id(path.relative_to(root)) + "/", reason))
        for name in files:
            if name.startswith(".") or not any(fnmatchcase(name.lower(), p) for p in lowered):
                continue
            path = here / name
            problem = _path_problem(path, real_root, follow_links)
            if problem is None:
                found.append(path)
            else:
                skipped.append(SkippedFile(printable_id(path.relative_to(root)), *problem))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix()), skipped


def _path_problem(path: Path, real_root: Path, follow_links: bool) -> tuple[str, bool] | None:
    """(reason, keep_indexed) when `path` must not be loaded, else None."""
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return "the file name is not valid UTF-8; rename the file", True
    if path.is_symlink():
        if not path.exists():
            return "a broken link", False
        if not follow_links and not path.resolve().is_relative_to(real_root):
            return (
                "a link to a file outside the folder, not followed "
                "(pass --follow-links / follow_links=True to include it)",
                False,
            )
    if not path.is_file():
        return "not a regular file", False
    return None


def _load_one(root: Path, path: Path) -> Document | SkippedFile:
    doc_id = path.relative_to(root).as_posix()
    try:
        raw = path.read_bytes()
    except OSError as error:
        return SkippedFile(doc_id, f"cannot be read ({error.strerror or error}); check its permissions", True)
    if not raw.strip():
        return SkippedFile(doc_id, "empty file")
    try:
        text, encoding = decode_text(raw)
    except BinaryContentError as error:
        return SkippedFile(doc_id, str(error))
    if not text.strip():
        return SkippedFile(doc_id, "empty file")
    if encoding in FALLBACK_ENCODINGS:
        warnings.warn(
            f"{doc_id} is not valid UTF-8; decoded it as {encoding}. "
            "Re-save it as UTF-8 if characters look wrong.",
            DocumentLoadWarning,
            stacklevel=4,
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
    """Decode bytes as text; return (text, encoding used) or raise `BinaryContentError`.

    A byte-order mark picks UTF-8, UTF-16 or UTF-32. Without one, NUL bytes mean binary content
    (or UTF-16/32 saved without a mark); otherwise UTF-8, else the first of `FALLBACK_ENCODINGS`
    that works. Newlines are normalised ("\\r\\n" and "\\r" become "\\n") so offsets match what
    `open(path).read()` gives, which is what the original tutorial chunked.
    """
    text, encoding = _decode(raw)
    controls = sum(1 for c in text if (c < " " or c == "\x7f") and c not in _TEXT_CONTROLS)
    if text and controls / len(text) > MAX_CONTROL_RATIO:
        raise BinaryContentError(
            f"binary content ({controls / len(text):.0%} control characters); only text files are indexed"
        )
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding


def _decode(raw: bytes) -> tuple[str, str]:
    for mark, encoding in BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            try:
                return raw[len(mark):].decode(encoding), encoding
            except UnicodeDecodeError:
                raise BinaryContentError(
                    f"starts with a {encoding} byte-order mark but is not valid {encoding}; "
                    "re-save it as UTF-8"
                ) from None
    if b"\x00" in raw:
        raise BinaryContentError(
            "binary content (NUL bytes): not text, or UTF-16/UTF-32 saved without a byte-order mark; "
            "re-save text as UTF-8"
        )
    for encoding in ("utf-8", *FALLBACK_ENCODINGS):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte sequence")  # pragma: no cover
