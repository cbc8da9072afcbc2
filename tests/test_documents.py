"""Loading a folder of documents: ids, order, and every kind of bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from rag_helpers.documents import DocumentLoadWarning, decode_text, load_documents


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
