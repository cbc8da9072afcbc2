"""Load a folder of documents (text, Markdown, PDF, HTML) into `Document` objects, reporting every
file left out and why.

Text and Markdown are decoded here (UTF-8 with fallbacks). Two formats need a parser, imported only
when a folder holds such a file, so loading text files imports neither:

- PDF: **pypdf** (pure Python, no dependencies of its own, actively maintained) reads the text layer
  page by page; `metadata["page_starts"]` records where each page begins in the text, so a chunk
  can say which page it came from (see `chunking.chunk_documents`).
- HTML: **Beautiful Soup** (beautifulsoup4, already installed for the notebooks, with Python's own
  `html.parser`, so it copes with any markup) parses the page; the main text is then picked out
  here in a few plain rules: navigation, headers, footers, cookie banners, scripts and styles are
  dropped, and headings, lists and tables are written as Markdown so the splitters see the structure.

A file that cannot be used (an encrypted or image-only PDF, a page without main text, binary bytes)
is listed in `DocumentFolder.skipped` with the reason and what to do, never loaded as garbage.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import re
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from .base import Document
from .chunking import PAGE_STARTS  # a PDF's page offsets in its metadata; see chunk_documents

DEFAULT_PATTERNS: tuple[str, ...] = ("*.txt", "*.md", "*.pdf", "*.html", "*.htm")
PDF_SUFFIXES = frozenset({".pdf"})
HTML_SUFFIXES = frozenset({".html", ".htm"})

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

# A PDF page with fewer letters and digits than this has no real text layer (a scan, or only a stamp
# or page number); a PDF with no page above it is image-only and skipped.
MIN_PAGE_TEXT = 20
# Between the pages of a PDF in `Document.text`: a paragraph break, where structure-aware splitters cut.
PAGE_SEPARATOR = "\n\n"

SEE_REQUIREMENTS = "install it with `pip install -r requirements.txt` (or `pip install -e .`)"


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
    not valid UTF-8, and links that lead outside the folder unless `follow_links`; PDFs that are
    encrypted, image-only or damaged; HTML pages without main text. Text with a UTF-8/16/32
    byte-order mark is decoded accordingly; other text that is not valid UTF-8 is decoded with
    cp1252, then latin-1, with a warning, and recorded in `metadata["encoding"]`. Line endings are
    normalised to "\\n", as Python's text mode does.

    `.pdf` files become their text layer, pages separated by a blank line, with `metadata["pages"]`
    and `metadata["page_starts"]` (see `PAGE_STARTS`); `.html`/`.htm` files become their main text
    with headings, lists and tables as Markdown (see `html_main_text`). Both record the document's
    title in `metadata["title"]` when it has one.
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
    suffix = path.suffix.lower()
    if suffix in PDF_SUFFIXES:
        loaded = _read_pdf(doc_id, raw)
    elif suffix in HTML_SUFFIXES:
        loaded = _read_html(doc_id, raw)
    else:
        loaded = _read_text(doc_id, raw)
    if isinstance(loaded, SkippedFile):
        return loaded
    text, extra = loaded
    relative = Path(doc_id)
    metadata = {
        "category": relative.parts[0] if len(relative.parts) > 1 else "root",
        "file_name": relative.name,
        "extension": relative.suffix.lstrip(".").lower(),
        **{key: value for key, value in extra.items() if key != "title"},
        "size_bytes": len(raw),
    }
    if extra.get("title"):
        metadata["title"] = extra["title"]
    return Document(id=doc_id, text=text, source=str(path), metadata=metadata)


Loaded = tuple[str, dict[str, Any]]  # the text and the metadata a reader adds


def _read_text(doc_id: str, raw: bytes) -> Loaded | SkippedFile:
    try:
        text, encoding = decode_text(raw)
    except BinaryContentError as error:
        return SkippedFile(doc_id, str(error))
    if not text.strip():
        return SkippedFile(doc_id, "empty file")
    _warn_if_fallback(doc_id, encoding)
    return text, {"encoding": encoding}


def _warn_if_fallback(doc_id: str, encoding: str) -> None:
    if encoding in FALLBACK_ENCODINGS:
        warnings.warn(
            f"{doc_id} is not valid UTF-8; decoded it as {encoding}. "
            "Re-save it as UTF-8 if characters look wrong.",
            DocumentLoadWarning,
            stacklevel=6,
        )


def _letters_and_digits(text: str) -> int:
    return sum(1 for c in text if c.isalnum())


def _missing_package(doc_id: str, kind: str, package: str) -> SkippedFile:
    # The file may be fine: an index keeps what it had until the package is installed.
    return SkippedFile(doc_id, f"reading {kind} needs the {package} package; {SEE_REQUIREMENTS}", True)


# --- PDF -------------------------------------------------------------------------------------


@contextmanager
def _quiet_pypdf() -> Iterator[None]:
    """Silence pypdf's own log lines and warnings about repairable damage: the skip reason says it all."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"pypdf(\.|$)")
            yield
    finally:
        logger.setLevel(level)


def _read_pdf(doc_id: str, raw: bytes) -> Loaded | SkippedFile:
    """The text layer of a PDF, page by page, or why it cannot be used."""
    try:
        import pypdf  # noqa: F401  (imported here, so loading text files never needs it)
    except ImportError:
        return _missing_package(doc_id, "PDFs", "pypdf")
    if b"%PDF-" not in raw[:1024]:
        return SkippedFile(
            doc_id, "not a PDF (no %PDF- header): another kind of file named .pdf; export it as PDF again"
        )
    with _quiet_pypdf():
        opened = _open_pdf(doc_id, raw)
        if isinstance(opened, SkippedFile):
            return opened
        pages, title = opened
        texts, failed = [], []
        for number, page in enumerate(pages, start=1):
            try:
                texts.append(_clean_page(page.extract_text() or ""))
            except Exception:  # one damaged page should not cost the others
                texts.append("")
                failed.append(number)
        image_pages = [
            number
            for number, (page, text) in enumerate(zip(pages, texts), start=1)
            if number not in failed and _letters_and_digits(text) < MIN_PAGE_TEXT and _has_images(page)
        ]
    problem = _pdf_text_problem(texts, failed, image_pages)
    if problem:
        return SkippedFile(doc_id, *problem)
    if failed:
        _warn_pages(doc_id, "could not read", failed, len(pages), "(damaged?); that text is not indexed")
    if image_pages:
        _warn_pages(
            doc_id, "no text layer on", image_pages, len(pages),
            "(images only: scanned?); that text is not indexed. Run OCR (e.g. "
            "`ocrmypdf --skip-text in.pdf out.pdf`) and add the result to include it",
        )
    text, starts = _join_pages(texts)
    return text, {"pages": len(pages), PAGE_STARTS: starts, "title": title}


def _open_pdf(doc_id: str, raw: bytes) -> tuple[list[Any], str] | SkippedFile:
    """The pages and title of a PDF, decrypted if it opens without a password, or why it cannot be opened."""
    from pypdf import PdfReader
    from pypdf.errors import DependencyError

    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # many PDFs are locked only against editing
            except DependencyError:
                return SkippedFile(
                    doc_id,
                    "encrypted PDF (AES): reading it needs the cryptography package "
                    "(`pip install cryptography`), or save an unprotected copy and add that",
                    True,
                )
            if not opened:
                return SkippedFile(
                    doc_id,
                    "encrypted PDF: it needs a password; save an unprotected copy (e.g. "
                    "`qpdf --decrypt --password=PASSWORD in.pdf out.pdf`) and add that instead",
                    True,
                )
        return list(reader.pages), _pdf_title(reader)
    except Exception as error:  # pypdf raises many kinds of errors on damaged files
        return SkippedFile(
            doc_id,
            f"not a readable PDF ({_describe(error)}); the file may be damaged or incomplete: "
            "open it in a PDF viewer, then export or download it again",
            True,
        )


def _pdf_text_problem(texts: list[str], failed: list[int], image_pages: list[int]) -> tuple[str, bool] | None:
    """(reason, keep_indexed) when the pages' text is no use: none, none readable, only images, or garbled."""
    if not texts:
        return "empty PDF (no pages)", False
    if len(failed) == len(texts):
        return (
            "not a readable PDF (no page could be read); the file may be damaged: open it in a PDF "
            "viewer, then export or download it again",
            True,
        )
    if all(_letters_and_digits(text) < MIN_PAGE_TEXT for text in texts):
        found = f"{_letters_and_digits(''.join(texts))} letters or digits in {_count(len(texts), 'page')}"
        what = (
            f"image-only PDF: no text layer ({found})" if image_pages
            else f"no text in the PDF ({found}): blank pages, or text drawn as shapes"
        )
        return f"{what}; run OCR first (e.g. `ocrmypdf in.pdf out.pdf`) and add the result", False
    garbled = _garbled_fraction("".join(texts))
    if garbled > MAX_CONTROL_RATIO:
        return (
            f"the PDF's text layer is unreadable ({garbled:.0%} of its characters are not text: its fonts "
            "have no Unicode mapping); run OCR first (e.g. `ocrmypdf --force-ocr in.pdf out.pdf`) and "
            "add the result",
            False,
        )
    return None


def _describe(error: Exception) -> str:
    message = " ".join(str(error).split())
    if len(message) > 120:
        message = message[:117] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _warn_pages(doc_id: str, problem: str, numbers: list[int], total: int, consequence: str) -> None:
    """Warn about some pages of a PDF that is loaded all the same, e.g. "a.pdf: no text layer on page 3 of 4 ..."."""
    which = ("page " if len(numbers) == 1 else "pages ") + ", ".join(map(str, numbers))
    warnings.warn(f"{doc_id}: {problem} {which} of {total} {consequence}", DocumentLoadWarning, stacklevel=6)


def _pdf_title(reader: Any) -> str:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # a damaged info dictionary is no reason to skip the text
        return ""
    return " ".join(str(title).split()) if title else ""


# Typographic ligatures (U+FB00-FB06) as their letters: "oﬃce" must match "office" in search.
_LIGATURES = {code: unicodedata.normalize("NFKC", chr(code)) for code in range(0xFB00, 0xFB07)}


def _clean_page(text: str) -> str:
    """One page's text: ligatures spelled out, "\\n" line ends, no trailing spaces, no NUL bytes
    or soft hyphens, no blank lines around it."""
    text = text.translate(_LIGATURES).replace("\u00ad", "").replace("\x00", "")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _join_pages(texts: Sequence[str]) -> tuple[str, tuple[int, ...]]:
    """The pages joined by `PAGE_SEPARATOR`, and the offset where each page starts."""
    starts, position = [], 0
    for text in texts:
        starts.append(position)
        position += len(text) + len(PAGE_SEPARATOR)
    return PAGE_SEPARATOR.join(texts), tuple(starts)


def _garbled_fraction(text: str) -> float:
    """The share of characters that are no text: controls, private-use glyphs, U+FFFD."""
    visible = [c for c in text if not c.isspace()]
    if not visible:
        return 0.0
    bad = sum(1 for c in visible if c == "\ufffd" or unicodedata.category(c) in ("Cc", "Co", "Cs", "Cn"))
    return bad / len(visible)


def _has_images(page: Any) -> bool:
    """Whether a PDF page draws an image (checked in its resources, without decoding any)."""
    try:
        resources = page.get("/Resources")
        xobjects = resources.get_object().get("/XObject") if resources is not None else None
        if xobjects is None:
            return False
        return any(x.get_object().get("/Subtype") == "/Image" for x in xobjects.get_object().values())
    except Exception:
        return False


# --- HTML ------------------------------------------------------------------------------------


# Elements that never hold main text; removed wherever they are.
_NEVER_TEXT = (
    "script", "style", "noscript", "template", "head", "svg", "math", "canvas", "iframe", "object",
    "embed", "button", "input", "select", "textarea", "dialog", "nav",
)
# Page-level boilerplate: removed unless inside <main> or <article> (where a <header> holds the
# title and an <aside> a note that belongs to the text).
_PAGE_FRAME = ("header", "footer", "aside")
_BOILERPLATE_ROLES = frozenset(
    {"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alertdialog", "menu",
     "menubar", "toolbar"}
)
# Words in a class or id that mark boilerplate blocks (cookie banners, breadcrumbs, share buttons).
_BOILERPLATE_NAMES = re.compile(
    r"(?:^|[-_\s])(?:cookies?|consent|gdpr|breadcrumbs?|skip|skiplink|sidebar|newsletter|share|social|"
    r"advert|ads|promo|popup|modal)(?:$|[-_\s])",
    re.IGNORECASE,
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_BLOCKS = frozenset(
    {"address", "article", "blockquote", "body", "caption", "center", "dd", "details", "div", "dl", "dt",
     "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "hr", "html", "li", "main",
     "ol", "p", "pre", "section", "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul"}
    | set(_HEADINGS)
)
_LINE_BREAK = "\x00"  # stands for <br> while whitespace is collapsed; NULs of the page are dropped
# WHATWG: pages declaring Latin-1 or ASCII are decoded as windows-1252, as browsers do.
_CHARSET_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "ascii": "cp1252",
                    "us-ascii": "cp1252", "iso8859-1": "cp1252"}
_DECLARED_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([-\w.:]+)", re.IGNORECASE)


def _read_html(doc_id: str, raw: bytes) -> Loaded | SkippedFile:
    """The main text of an HTML page, or why there is none."""
    try:
        from bs4 import BeautifulSoup
    except ImportError:
        return _missing_package(doc_id, "HTML", "beautifulsoup4")
    try:
        markup, encoding, declared = _decode_html(raw)
    except BinaryContentError as error:
        return SkippedFile(doc_id, str(error))
    if not declared:
        _warn_if_fallback(doc_id, encoding)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bs4's "looks like a file name / URL" hints
            soup = BeautifulSoup(markup, "html.parser")
        title = " ".join(soup.title.get_text(" ").split()) if soup.title else ""
        body = html_main_text(soup)
    except Exception as error:  # html.parser is lenient; this is for the truly unexpected
        return SkippedFile(doc_id, f"the HTML could not be parsed ({_describe(error)}); check the file", True)
    if not any(c.isalnum() for c in body):
        return SkippedFile(
            doc_id,
            "no main text in the HTML page (only navigation, scripts or other page furniture); if a "
            "browser shows text, the page builds it with JavaScript: save it from the browser "
            "(File > Save Page As) or export it as PDF, and add that",
        )
    if title and not re.search(r"^# ", body, re.MULTILINE):
        body = f"# {title}\n\n{body}"
    return body + "\n", {"encoding": encoding, "title": title}


def _decode_html(raw: bytes) -> tuple[str, str, bool]:
    """Decode an HTML page: (text, encoding, whether the page declared it).

    A byte-order mark wins, then the charset a `<meta>` tag declares, then the guesses of `decode_text`.
    """
    declared = _DECLARED_CHARSET.search(raw[:4096])
    if declared and not any(raw.startswith(mark) for mark, _ in BYTE_ORDER_MARKS):
        name = declared.group(1).decode("ascii", "replace").lower()
        try:
            encoding = codecs.lookup(_CHARSET_ALIASES.get(name, name)).name
            if not encoding.startswith(("utf-16", "utf-32")):  # a declaration cannot be read in those
                text = raw.decode(encoding)
                _check_controls(text)
                return text.replace("\r\n", "\n").replace("\r", "\n"), encoding, True
        except (LookupError, UnicodeDecodeError):
            pass  # a wrong declaration: guess as for text files
    text, encoding = decode_text(raw)
    return text, encoding, False


def html_main_text(soup: Any) -> str:
    """The main text of a parsed page, with headings as `#` lines, list items as `-` lines and tables
    as `| a | b |` rows; navigation, page header and footer, cookie banners, scripts and styles are dropped.

    The main part is `<main>` (or `role="main"`), else the page's only `<article>`, else `<body>`.
    """
    _drop_boilerplate(soup)
    root = soup.find("main") or soup.find(attrs={"role": "main"})
    if root is None:
        articles = soup.find_all("article")
        root = articles[0] if len(articles) == 1 else (soup.body or soup)
    return "\n\n".join(_blocks(root.children))


def _drop_boilerplate(soup: Any) -> None:
    for tag in soup.find_all(_NEVER_TEXT):
        _remove(tag)
    for tag in soup.find_all(True):
        if getattr(tag, "decomposed", False) or tag.attrs is None:
            continue
        if _is_boilerplate(tag):
            _remove(tag)


def _remove(tag: Any) -> None:
    if not getattr(tag, "decomposed", False):
        tag.decompose()


def _is_boilerplate(tag: Any) -> bool:
    if tag.name in ("html", "body", "main", "article"):
        return False
    if tag.has_attr("hidden") or tag.get("aria-hidden") == "true" or _HIDDEN_STYLE.search(tag.get("style", "")):
        return True
    inside_content = tag.find_parent(("main", "article")) is not None
    if tag.name in _PAGE_FRAME and not inside_content:
        return True
    if str(tag.get("role", "")).lower() in _BOILERPLATE_ROLES:
        return True
    names = " ".join([*tag.get("class", []), str(tag.get("id", ""))])
    if names.strip() and _BOILERPLATE_NAMES.search(names):
        # Never a wrapper around the content itself (`<div class="page with-sidebar"><main>`).
        return tag.find(("main", "article", "h1")) is None and tag.find(attrs={"role": "main"}) is None
    return False


def _blocks(nodes: Iterable[Any]) -> list[str]:
    """The text blocks (paragraphs, headings, lists, tables) of a run of sibling nodes."""
    from bs4 import NavigableString, Tag

    blocks: list[str] = []
    inline: list[str] = []

    def flush() -> None:
        text = _squash("".join(inline))
        inline.clear()
        if text:
            blocks.append(text)

    for node in nodes:
        if isinstance(node, NavigableString):
            if type(node) is NavigableString:  # not a comment, doctype or processing instruction
                inline.append(str(node).replace(_LINE_BREAK, ""))
            continue
        if not isinstance(node, Tag):
            continue
        if node.name == "br":
            inline.append(_LINE_BREAK)
            continue
        if node.name not in _BLOCKS:
            inline.append(_inline_text(node))
            continue
        flush()
        if node.name in _HEADINGS:
            text = " ".join(_inline_text(node).replace(_LINE_BREAK, " ").split())
            if text:
                blocks.append("#" * _HEADINGS[node.name] + " " + text)
        elif node.name in ("ul", "ol"):
            lines = _list_lines(node, 0)
            if lines:
                blocks.append("\n".join(lines))
        elif node.name == "table":
            table = _table(node)
            if table:
                blocks.append(table)
        elif node.name == "pre":
            text = node.get_text().strip("\n")
            if text.strip():
                blocks.append(text)
        elif node.name == "blockquote":
            inner = "\n\n".join(_blocks(node.children))
            if inner:
                blocks.append("\n".join(f"> {line}" if line else ">" for line in inner.split("\n")))
        elif node.name != "hr":
            blocks.extend(_blocks(node.children))
    flush()
    return blocks


def _inline_text(tag: Any) -> str:
    """The text of an element, with `<br>` kept as a line break."""
    from bs4 import NavigableString, Tag

    parts = []
    for node in tag.descendants:
        if isinstance(node, Tag) and node.name == "br":
            parts.append(_LINE_BREAK)
        elif isinstance(node, Tag) and node.name in _BLOCKS:
            parts.append(" ")  # a paragraph inside a table cell or a link is not glued to the next
        elif type(node) is NavigableString:
            parts.append(str(node).replace(_LINE_BREAK, ""))
    return "".join(parts)


def _squash(text: str) -> str:
    """Collapse whitespace as a browser does; `<br>` line breaks stay."""
    lines = (" ".join(line.split()) for line in text.split(_LINE_BREAK))
    return "\n".join(line for line in lines if line)


def _list_lines(tag: Any, depth: int) -> list[str]:
    from bs4 import Tag

    ordered = tag.name == "ol"
    try:
        number = int(tag.get("start", 1))
    except ValueError:
        number = 1
    lines = []
    for item in tag.find_all("li", recursive=False):
        nested = [child for child in item.children if isinstance(child, Tag) and child.name in ("ul", "ol")]
        own = [child for child in item.children if child not in nested]
        text = " ".join(" ".join(_blocks(own)).split(_LINE_BREAK))
        text = " ".join(text.split())
        marker = f"{number}." if ordered else "-"
        if text:
            lines.append(f"{'  ' * depth}{marker} {text}")
            number += 1
        for sub in nested:
            lines.extend(_list_lines(sub, depth + 1))
    return lines


def _table(table: Any) -> str:
    """A table as Markdown rows; a separator row follows a header row of `<th>` cells."""
    rows, header = [], False
    for row in table.find_all("tr"):
        if row.find_parent("table") is not table:
            continue  # a row of a nested table
        cells = row.find_all(("td", "th"), recursive=False)
        texts = [" ".join(_inline_text(c).replace(_LINE_BREAK, " ").split()).replace("|", "\\|") for c in cells]
        if any(texts):
            if not rows:
                header = all(c.name == "th" for c in cells) or row.find_parent("thead") is not None
            rows.append(texts)
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    lines = ["| " + " | ".join(r + [""] * (width - len(r))) + " |" for r in rows]
    if header and len(lines) > 1:
        lines.insert(1, "|" + "---|" * width)
    caption = table.find("caption")
    title = " ".join(caption.get_text(" ").split()) if caption else ""
    return "\n".join(([title] if title else []) + lines)


def decode_text(raw: bytes) -> tuple[str, str]:
    """Decode bytes as text; return (text, encoding used) or raise `BinaryContentError`.

    A byte-order mark picks UTF-8, UTF-16 or UTF-32. Without one, NUL bytes mean binary content
    (or UTF-16/32 saved without a mark); otherwise UTF-8, else the first of `FALLBACK_ENCODINGS`
    that works. Newlines are normalised ("\\r\\n" and "\\r" become "\\n") so offsets match what
    `open(path).read()` gives, which is what the original tutorial chunked.
    """
    text, encoding = _decode(raw)
    _check_controls(text)
    return text.replace("\r\n", "\n").replace("\r", "\n"), encoding


def _check_controls(text: str) -> None:
    controls = sum(1 for c in text if (c < " " or c == "\x7f") and c not in _TEXT_CONTROLS)
    if text and controls / len(text) > MAX_CONTROL_RATIO:
        raise BinaryContentError(
            f"binary content ({controls / len(text):.0%} control characters); only text files are indexed"
        )


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
