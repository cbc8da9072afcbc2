"""Loading a folder of documents (text, Markdown, PDF, HTML): ids, order, pages, and every kind of bad input."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from rag_helpers.base import Document
from rag_helpers.chunking import CharacterSplitter, chunk_documents, is_heading, page_at
from rag_helpers.documents import (
    DEFAULT_PATTERNS,
    DocumentFolder,
    DocumentLoadWarning,
    decode_text,
    load_documents,
    scan_folder,
)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_ids_are_relative_paths_sorted_and_distinct_across_folders(tmp_path: Path):
    write(tmp_path / "b.txt", "bee")
    write(tmp_path / "a.md", "ay")
    write(tmp_path / "x" / "notes.txt", "first notes")
    write(tmp_path / "y" / "notes.txt", "second notes")
    docs = load_documents(tmp_path)
    assert [d.id for d in docs] == ["a.md", "b.txt", "x/notes.txt", "y/notes.txt"]
    assert docs[2].text == "first notes" and docs[3].text == "second notes"
    assert docs[0].metadata["category"] == "root" and docs[2].metadata["category"] == "x"
    assert docs[1].metadata["extension"] == "txt"
    assert Path(docs[2].source) == tmp_path / "x" / "notes.txt"


def test_top_level_files_get_their_bare_name_like_the_original(tmp_path: Path):
    write(tmp_path / "Neeva Case Study _ AWS.txt", "text")
    assert load_documents(tmp_path)[0].id == "Neeva Case Study _ AWS.txt"


def test_patterns_and_non_recursive(tmp_path: Path):
    write(tmp_path / "a.txt", "a")
    write(tmp_path / "b.rst", "b")
    write(tmp_path / "sub" / "c.txt", "c")
    assert [d.id for d in load_documents(tmp_path, recursive=False)] == ["a.txt"]
    assert [d.id for d in load_documents(tmp_path, patterns="*.rst")] == ["b.rst"]
    assert [d.id for d in load_documents(tmp_path, patterns=("*.txt", "*.rst"))] == ["a.txt", "b.rst", "sub/c.txt"]


def test_hidden_files_and_folders_are_ignored(tmp_path: Path):
    write(tmp_path / "a.txt", "a")
    write(tmp_path / ".ipynb_checkpoints" / "a-checkpoint.txt", "copy")
    write(tmp_path / ".hidden.txt", "secret")
    assert [d.id for d in load_documents(tmp_path)] == ["a.txt"]


def test_missing_folder_names_the_path(tmp_path: Path):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        load_documents(missing)


def test_file_instead_of_folder_names_the_path(tmp_path: Path):
    file = write(tmp_path / "single.txt", "text")
    with pytest.raises(NotADirectoryError, match="single.txt"):
        load_documents(file)


def test_no_matching_files_names_the_patterns(tmp_path: Path):
    write(tmp_path / "data.csv", "a,b")
    with pytest.raises(FileNotFoundError, match=r"\*\.txt, \*\.md"):
        load_documents(tmp_path)


def test_empty_files_are_skipped_with_a_warning(tmp_path: Path):
    write(tmp_path / "empty.txt", "")
    write(tmp_path / "blank.txt", "  \n\n ")
    write(tmp_path / "real.txt", "content")
    with pytest.warns(DocumentLoadWarning) as caught:
        docs = load_documents(tmp_path)
    assert sorted(str(w.message) for w in caught) == ["Skipped blank.txt: empty file", "Skipped empty.txt: empty file"]
    assert [d.id for d in docs] == ["real.txt"]


def test_non_utf8_is_decoded_with_fallback_and_reported(tmp_path: Path):
    write(tmp_path / "latin.txt", "Café costs 5 €".encode("cp1252"))
    write(tmp_path / "binaryish.txt", b"ok \x81\x8d\x8f\x90\x9d bytes")  # undefined in cp1252
    with pytest.warns(DocumentLoadWarning) as caught:
        docs = {d.id: d for d in load_documents(tmp_path)}
    messages = " ".join(str(w.message) for w in caught)
    assert "latin.txt is not valid UTF-8" in messages and "binaryish.txt is not valid UTF-8" in messages
    assert docs["latin.txt"].text == "Café costs 5 €"
    assert docs["latin.txt"].metadata["encoding"] == "cp1252"
    assert docs["binaryish.txt"].metadata["encoding"] == "latin-1"
    assert docs["binaryish.txt"].text.startswith("ok ")


def test_utf8_with_non_ascii_loads_without_warning(tmp_path: Path):
    write(tmp_path / "names.md", "Zoë Nørgaard paid 1 200 zł in Kraków\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (doc,) = load_documents(tmp_path)
    assert doc.text == "Zoë Nørgaard paid 1 200 zł in Kraków\n" and doc.metadata["encoding"] == "utf-8"


def test_newlines_are_normalised_like_text_mode(tmp_path: Path):
    path = write(tmp_path / "crlf.txt", b"one\r\ntwo\rthree\n")
    (doc,) = load_documents(tmp_path)
    with open(path) as handle:  # what the original tutorial read
        assert doc.text == handle.read() == "one\ntwo\nthree\n"


def test_decode_text_reports_encoding():
    assert decode_text("ü".encode()) == ("ü", "utf-8")
    assert decode_text("ü".encode("cp1252")) == ("ü", "cp1252")


def test_progress_bar_can_be_forced(tmp_path: Path, capsys):
    write(tmp_path / "a.txt", "a")
    load_documents(tmp_path, progress=True)
    assert "Loading documents" in capsys.readouterr().err
    load_documents(tmp_path)  # small folders stay quiet by default
    assert capsys.readouterr().err == ""


# --- PDF and HTML ------------------------------------------------------------------------------


def text_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A minimal PDF with one Helvetica text line per line of each page (written by hand: no library)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, text in enumerate(pages):
        lines = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in text.split("\n")]
        content = ("BT /F1 11 Tf 14 TL 72 720 Td " + " ".join(f"({line}) Tj T*" for line in lines) + " ET")
        data = content.encode("cp1252")
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
            f"/Contents {5 + 2 * i} 0 R >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream")
    info = ""
    if title:
        objects.append(f"<< /Title ({title}) >>".encode())
        info = f" /Info {len(objects)} 0 R"
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def image_pdf() -> bytes:
    """A one-page PDF holding only a picture of some text, as a scanner makes it."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (600, 200), "white")
    ImageDraw.Draw(image).text((20, 20), "Quarterly report, scanned: no text layer", fill="black")
    buffer = io.BytesIO()
    image.save(buffer, "PDF")
    return buffer.getvalue()


def encrypted(pdf: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password, owner_password, algorithm="RC4-128")  # RC4 needs no extra package
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def merged(*pdfs: bytes) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for pdf in pdfs:
        writer.append(PdfReader(io.BytesIO(pdf)))
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


REPORT_PAGES = [
    "Board report Q3\nRevenue grew in every region this quarter.",
    "",  # an empty page keeps its number
    "Decisions\nThe board approved the budget for the new office.",
]


def load_quietly(folder: Path) -> DocumentFolder:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DocumentLoadWarning)
        return scan_folder(folder)


def test_default_patterns_include_pdf_and_html():
    assert {"*.pdf", "*.html", "*.htm"} <= set(DEFAULT_PATTERNS)


def test_pdf_becomes_its_text_layer_with_page_starts_and_title(tmp_path: Path):
    write(tmp_path / "reports" / "q3_board_report.PDF", text_pdf(REPORT_PAGES, title="Board report"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (doc,) = load_documents(tmp_path)
    assert doc.id == "reports/q3_board_report.PDF"
    assert doc.text == (
        "Board report Q3\nRevenue grew in every region this quarter.\n\n\n\n"
        "Decisions\nThe board approved the budget for the new office."
    )
    starts = doc.metadata["page_starts"]
    assert starts == (0, 60, 62) and doc.metadata["pages"] == 3
    assert doc.text[starts[2]:].startswith("Decisions")
    assert doc.metadata["title"] == "Board report" and doc.metadata["extension"] == "pdf"
    assert doc.metadata["category"] == "reports" and "encoding" not in doc.metadata


def test_pdf_chunks_say_on_which_pages_they_start_and_end(tmp_path: Path):
    write(tmp_path / "report.pdf", text_pdf(REPORT_PAGES))
    (doc,) = load_documents(tmp_path)
    chunks = chunk_documents([doc], CharacterSplitter(45, 5))
    starts = doc.metadata["page_starts"]
    for chunk in chunks:
        first = chunk.start + len(chunk.text) - len(chunk.text.lstrip())
        last = chunk.start + len(chunk.text.rstrip()) - 1
        assert chunk.metadata["page"] == page_at(starts, first)
        assert chunk.metadata["page_end"] == page_at(starts, last)
        # A vector store keeps scalars only: the page list stays with the document.
        assert "page_starts" not in chunk.metadata
        assert all(isinstance(v, (str, int, float, bool)) for v in chunk.metadata.values())
    assert [(c.metadata["page"], c.metadata["page_end"]) for c in chunks] == [(1, 1), (1, 3), (3, 3), (3, 3)]


def test_chunk_pages_skip_the_blank_line_between_pages():
    doc = Document("a.pdf", "one one\n\ntwo two\n\nthree", "a.pdf", {"page_starts": (0, 9, 18), "pages": 3})
    spans = [(0, 7), (7, 16), (16, 23), (0, 23)]
    chunks = chunk_documents([doc], lambda text: spans)
    assert [(c.metadata["page"], c.metadata["page_end"]) for c in chunks] == [(1, 1), (2, 2), (3, 3), (1, 3)]
    assert all("page_starts" not in c.metadata and c.metadata["pages"] == 3 for c in chunks)


def test_page_keys_come_only_from_page_starts():
    """A document without page offsets (e.g. rebuilt from an index) gives its chunks no stale page."""
    doc = Document("a.md", "some text", "a.md", {"page": 7, "page_end": 8, "category": "root"})
    (chunk,) = chunk_documents([doc])
    assert chunk.metadata == {"category": "root"}


def test_unusable_pdfs_are_listed_with_what_to_do(tmp_path: Path):
    good = text_pdf(REPORT_PAGES)
    write(tmp_path / "good.pdf", good)
    write(tmp_path / "locked.pdf", encrypted(good, "secret"))
    write(tmp_path / "scan.pdf", image_pdf())
    write(tmp_path / "blank.pdf", text_pdf([""]))
    write(tmp_path / "truncated.pdf", good[: len(good) // 2])
    write(tmp_path / "renamed.pdf", b"Just some notes saved with the wrong extension.\n")
    with pytest.warns(DocumentLoadWarning) as caught:
        folder = scan_folder(tmp_path)
    assert [d.id for d in folder.documents] == ["good.pdf"]
    skipped = {s.id: s for s in folder.skipped}
    assert sorted(skipped) == ["blank.pdf", "locked.pdf", "renamed.pdf", "scan.pdf", "truncated.pdf"]
    assert skipped["locked.pdf"].reason.startswith("encrypted PDF: it needs a password; save an unprotected copy")
    assert skipped["scan.pdf"].reason == (
        "image-only PDF: no text layer (0 letters or digits in 1 page); run OCR first "
        "(e.g. `ocrmypdf in.pdf out.pdf`) and add the result"
    )
    assert skipped["blank.pdf"].reason.startswith("no text in the PDF (0 letters or digits in 1 page)")
    assert skipped["truncated.pdf"].reason.startswith("not a readable PDF (")
    assert "damaged or incomplete" in skipped["truncated.pdf"].reason
    assert skipped["renamed.pdf"].reason.startswith("not a PDF (no %PDF- header)")
    # Cannot be read now but may be fine: the index keeps the old chunks. Nothing to index: removed.
    assert {i: s.keep_indexed for i, s in skipped.items()} == {
        "blank.pdf": False, "locked.pdf": True, "renamed.pdf": False, "scan.pdf": False, "truncated.pdf": True
    }
    assert sorted(str(w.message) for w in caught) == sorted(f"Skipped {s}" for s in folder.skipped)


def test_pdf_locked_only_against_editing_is_read(tmp_path: Path):
    write(tmp_path / "owner_only.pdf", encrypted(text_pdf(REPORT_PAGES), user_password=""))
    (doc,) = load_documents(tmp_path)
    assert doc.text.startswith("Board report Q3") and doc.metadata["pages"] == 3


def test_pdf_with_a_scanned_page_is_loaded_with_a_warning(tmp_path: Path):
    write(tmp_path / "mixed.pdf", merged(text_pdf(REPORT_PAGES[:1]), image_pdf()))
    with pytest.warns(DocumentLoadWarning, match=r"mixed\.pdf: no text layer on page 2 of 2 .*ocrmypdf"):
        (doc,) = load_documents(tmp_path)
    assert doc.metadata["pages"] == 2 and doc.text.startswith("Board report Q3")


def test_pdf_with_a_garbled_text_layer_is_skipped(tmp_path: Path):
    controls = "".join(chr(c) for c in range(1, 28) if not chr(c).isspace())
    write(tmp_path / "garbled.pdf", text_pdf(["Quarterly figures for 2024 follow " + controls * 3]))
    folder = load_quietly(tmp_path)
    (skipped,) = folder.skipped
    assert skipped.reason.startswith("the PDF's text layer is unreadable (") and "--force-ocr" in skipped.reason
    assert folder.documents == []


def test_without_pypdf_a_pdf_is_skipped_and_kept_indexed(tmp_path: Path, monkeypatch):
    write(tmp_path / "report.pdf", text_pdf(REPORT_PAGES))
    write(tmp_path / "notes.txt", "still loaded")
    monkeypatch.setitem(sys.modules, "pypdf", None)  # `import pypdf` now raises ImportError
    folder = load_quietly(tmp_path)
    assert [d.id for d in folder.documents] == ["notes.txt"]
    (skipped,) = folder.skipped
    assert "needs the pypdf package" in skipped.reason and skipped.keep_indexed


INTRANET_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Parking in Leeds · Quillnet</title>
<style>.cookie { position: fixed }</style>
<script>window.dataLayer = []; track("page_view");</script></head>
<body>
<a class="skip-link" href="#content">Skip to main content</a>
<header class="site-header"><a href="/">Quillnet</a>
  <nav><ul><li><a href="/news">News</a></li><li><a href="/people">People</a></li></ul></nav></header>
<div class="cookie-banner" role="dialog"><p>We use cookies.</p><button>Accept all</button></div>
<div class="layout with-sidebar">
<nav class="breadcrumbs"><a href="/">Quillnet</a> › Offices</nav>
<main id="content"><article>
  <header><h1>Parking in Leeds</h1><p class="byline">By Gareth Pryce · 4 March 2024</p></header>
  <p>The car park is <strong>closed</strong> on Friday.<br>Use the
     public car park on Wellington Street.</p>
  <h2>Permits</h2>
  <ul><li>Apply in Pebble<ul><li>by Thursday</li></ul></li><li>Show the permit <em>on the dashboard</em></li></ul>
  <ol start="3"><li>Third step</li></ol>
  <table><thead><tr><th>Level</th><th>Spaces</th></tr></thead>
    <tbody><tr><td>P1</td><td>24 | 2 EV</td></tr><tr><td>P2</td><td><p>30</p><p>none</p></td></tr></tbody></table>
  <aside class="note">Bikes go in the basement.</aside>
  <blockquote><p>Park nose-in.</p></blockquote>
  <div hidden>Draft text nobody should see.</div>
  <!-- an HTML comment -->
</article></main>
<aside class="sidebar"><h2>Related</h2><ul><li>Leeds office guide</li></ul></aside></div>
<footer><p>© 2024 Quillfeather Systems · Privacy</p></footer>
<script src="/static/app.js"></script>
</body></html>
"""

INTRANET_TEXT = """# Parking in Leeds

By Gareth Pryce · 4 March 2024

The car park is closed on Friday.
Use the public car park on Wellington Street.

## Permits

- Apply in Pebble
  - by Thursday
- Show the permit on the dashboard

3. Third step

| Level | Spaces |
|---|---|
| P1 | 24 \\| 2 EV |
| P2 | 30 none |

Bikes go in the basement.

> Park nose-in.
"""


def test_html_becomes_its_main_text_with_markdown_structure(tmp_path: Path):
    write(tmp_path / "intranet" / "parking.html", INTRANET_PAGE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (doc,) = load_documents(tmp_path)
    assert doc.text == INTRANET_TEXT
    assert doc.metadata["title"] == "Parking in Leeds · Quillnet"
    assert doc.metadata["encoding"] == "utf-8" and doc.metadata["extension"] == "html"
    assert "page_starts" not in doc.metadata
    headings = [line for line in doc.text.splitlines() if is_heading(line)]
    assert headings == ["# Parking in Leeds", "## Permits"]


def test_html_without_h1_starts_with_its_title(tmp_path: Path):
    write(tmp_path / "note.htm", "<html><head><title>Lift notice</title></head><body><p>The lift is fixed.</p></body></html>")
    (doc,) = load_documents(tmp_path)
    assert doc.text == "# Lift notice\n\nThe lift is fixed.\n"


def test_html_without_main_text_or_with_binary_bytes_is_skipped(tmp_path: Path):
    app_shell = (
        "<html><head><title>Dashboard</title><script src='app.js'></script></head><body>"
        "<nav><a href='/'>Home</a></nav><noscript>You need to enable JavaScript.</noscript>"
        "<div id='root'></div><footer>© 2024</footer></body></html>"
    )
    write(tmp_path / "app.html", app_shell)
    write(tmp_path / "broken.html", b"<html>\x00\x01\x02" + bytes(range(256)) * 4)
    folder = load_quietly(tmp_path)
    assert folder.documents == []
    skipped = {s.id: s for s in folder.skipped}
    assert skipped["app.html"].reason.startswith("no main text in the HTML page")
    assert "JavaScript" in skipped["app.html"].reason
    assert skipped["broken.html"].reason.startswith("binary content")
    assert not skipped["app.html"].keep_indexed and not skipped["broken.html"].keep_indexed


def test_html_declared_charset_is_used_without_a_warning(tmp_path: Path):
    page = '<html><head><meta charset="iso-8859-1"></head><body><p>Café: 5 € a cup</p></body></html>'
    write(tmp_path / "cafe.html", page.encode("cp1252"))  # browsers read Latin-1 pages as cp1252
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (doc,) = load_documents(tmp_path)
    assert doc.text == "Café: 5 € a cup\n" and doc.metadata["encoding"] == "cp1252"


def test_undeclared_non_utf8_html_is_decoded_with_a_warning(tmp_path: Path):
    write(tmp_path / "old.html", "<p>Café costs 5 €</p>".encode("cp1252"))
    with pytest.warns(DocumentLoadWarning, match="old.html is not valid UTF-8; decoded it as cp1252"):
        (doc,) = load_documents(tmp_path)
    assert doc.text == "Café costs 5 €\n"


def test_loading_text_files_imports_no_pdf_or_html_parser(tmp_path: Path):
    write(tmp_path / "a.md", "# Notes\n\nPlain text.")
    code = (
        "import sys; from rag_helpers.documents import load_documents; "
        f"load_documents({str(tmp_path)!r}); print(sorted(m for m in ('pypdf', 'bs4') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
