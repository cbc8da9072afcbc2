"""Make the sample corpus's PDFs and intranet HTML pages from the HTML sources in data/sample_sources/.

    .venv/bin/python scripts/make_sample_documents.py          # writes into data/sample_corpus/
    .venv/bin/python scripts/make_sample_documents.py --out /tmp/corpus_files

- PDFs: each full page in data/sample_sources/pdf/ (styled by print.css there, explicit page breaks)
  is printed with headless Chromium (`apt-get install chromium`), then its dates are fixed with pypdf
  so that re-running changes no bytes on the same machine (fonts may differ on another machine).
- HTML: each article in data/sample_sources/intranet/ is wrapped in the intranet's page template
  (_template.html: navigation, breadcrumbs, cookie banner, sidebar, footer, scripts), which is the
  furniture `rag_helpers.documents` must leave out.

The generated files are committed with this script; run it again after editing a source. The files
the loader must refuse (encrypted, image-only and damaged PDFs, pages without text) are made by the
tests in a temporary folder instead, so the sample corpus holds only usable documents.
"""

from __future__ import annotations

import argparse
import io
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "data" / "sample_sources"
CORPUS = ROOT / "data" / "sample_corpus"

# source page in data/sample_sources/pdf/ -> document id in the corpus
PDFS = {
    "aurelia_dairy_tidewatch_sla_report_2024_11.html": "customers/aurelia_dairy_tidewatch_sla_report_2024_11.pdf",
    "porto_fire_drill_report_2024_10.html": "people/porto_fire_drill_report_2024_10.pdf",
    "business_travel_insurance_summary_2024.html": "policies/business_travel_insurance_summary_2024.pdf",
}

# source article in data/sample_sources/intranet/ -> (document id, title, section, related links)
INTRANET = {
    "montreal_second_floor.html": (
        "intranet/news_montreal_second_floor.html",
        "Montréal gets a second floor",
        "Offices",
        [("/offices/montreal", "Montréal office"), ("/people/remote-work", "Remote Work Policy 2024")],
    ),
    "phishing_simulation_autumn_2024.html": (
        "intranet/security_phishing_simulation_autumn_2024.html",
        "Autumn phishing simulation: results",
        "IT & Security",
        [("/it/security-policy", "Information Security Policy"), ("/it/report-phish", "How to report phishing")],
    ),
    "founders_day_2025.html": (
        "intranet/events_founders_day_2025.html",
        "Founders' Day 2025",
        "Events",
        [("/people/holidays", "Holiday calendar"), ("/people/handbook", "Employee Handbook")],
    ),
}

# Fixed PDF dates: the documents are dated by their content, not by when this script ran.
PDF_DATE = "D:20241215090000+00'00'"


def find_chromium() -> str:
    """The path of a Chromium (or Chrome) executable, or exit with how to install one."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("Chromium not found: install it (Debian/Ubuntu: `apt-get update && apt-get install -y chromium`).")


def print_pdf(chromium: str, source: Path, target: Path) -> None:
    """Print one HTML page to a PDF with headless Chromium, without header and footer lines."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        raw = Path(profile) / "out.pdf"
        command = [
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--no-pdf-header-footer", f"--print-to-pdf={raw}",
            source.as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0 or not raw.exists():
            sys.exit(f"Chromium could not print {source}:\n{done.stderr[-2000:]}")
        target.write_bytes(fixed_dates(raw.read_bytes()))


def fixed_dates(pdf: bytes) -> bytes:
    """The PDF with fixed creation and modification dates and a file id derived from its content."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.add_metadata({"/CreationDate": PDF_DATE, "/ModDate": PDF_DATE})
    writer.compress_identical_objects()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def intranet_page(article: str, title: str, section: str, related: list[tuple[str, str]]) -> str:
    """An article wrapped in the intranet page template."""
    template = string.Template((SOURCES / "intranet" / "_template.html").read_text(encoding="utf-8"))
    links = "\n".join(f'      <li><a href="{href}">{text}</a></li>' for href, text in related)
    return template.substitute(
        title=title.replace("&", "&amp;"),
        section=section.replace("&", "&amp;"),
        section_slug=section.lower().replace(" & ", "-").replace(" ", "-"),
        content=article.rstrip(),
        related=links,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS, help="corpus folder to write into")
    parser.add_argument("--only", choices=("pdf", "html"), help="make only the PDFs or only the HTML pages")
    args = parser.parse_args(argv)

    if args.only != "html":
        chromium = find_chromium()
        for name, doc_id in PDFS.items():
            target = args.out / doc_id
            target.parent.mkdir(parents=True, exist_ok=True)
            print_pdf(chromium, SOURCES / "pdf" / name, target)
            print(f"{doc_id}: {target.stat().st_size:,} bytes")
    if args.only != "pdf":
        for name, (doc_id, title, section, related) in INTRANET.items():
            article = (SOURCES / "intranet" / name).read_text(encoding="utf-8")
            target = args.out / doc_id
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(intranet_page(article, title, section, related), encoding="utf-8")
            print(f"{doc_id}: {target.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
