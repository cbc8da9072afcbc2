"""Reliability (issue 13): no silent data loss, no garbage in the index, no secret in a message,
no traceback for a user mistake. Real Chroma (embedded and `chroma run`), the real model, and the
scripted loopback LLM server for replies a real server will not produce on demand."""

from __future__ import annotations

import codecs
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from llm_server import MODEL, Reply, completion
from test_store import ChromaServer, free_port

from rag_helpers import cli, store
from rag_helpers import ingest as ingest_module
from rag_helpers.base import Prompt
from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.config import Settings, safe_url
from rag_helpers.documents import BinaryContentError, DocumentLoadWarning, decode_text, scan_folder
from rag_helpers.environment import llm_rows
from rag_helpers.generation import LLMServerError, OpenAICompatibleLLM

DOCS = {
    "travel.txt": "Travel policy. Economy class for flights under six hours. Hotels are booked through the "
    "portal. Meals abroad are reimbursed up to fifty euros a day with receipts.",
    "engineering/security.txt": "Security handbook. Passwords have at least fourteen characters. Laptops "
    "lock after five minutes. Report phishing to the security desk.",
    "engineering/oncall.md": "On-call rota. Engineers are on call one week in six. Pages are acknowledged "
    "within fifteen minutes.",
    "kitchen.md": "Kitchen rules. Label your food with your name. The fridge is cleaned every Friday.",
}
CHUNK_ARGS = ["--chunk-size", "100", "--chunk-overlap", "10", "--precision", "fp32", "--quiet"]
SPLITTER = CharacterSplitter(100, 10)
COLLECTION = "reliability"
SECRET = "s3cr3t-pa55"


class Contains(str):
    """Equal to any string that contains it (for readable comparisons of reports)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and str.__contains__(other, self)

    __hash__ = str.__hash__


def write_corpus(folder: Path, docs: dict[str, str | bytes] = DOCS) -> Path:
    for name, text in docs.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch) -> dict[str, str]:
    """Settings from the test's environment only, never from a developer's .env."""
    env: dict[str, str] = {}
    monkeypatch.setattr(cli.Settings, "load", classmethod(lambda cls, *a, **k: cls.from_mapping(env)))
    return env


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def ingest(capsys, folder: Path, db: Path, *extra) -> tuple[int, dict | str, str]:
    code, out, err = run(
        capsys, "ingest", folder, "--db", db, "--collection", COLLECTION, *CHUNK_ARGS, "--json", *extra
    )
    return code, (json.loads(out) if code == 0 else out), err


def open_index(db: Path):
    """The test collection of the embedded index at `db`."""
    client = store.get_client(Settings.from_mapping({"CHROMA_PATH": str(db)}))
    return store.open_collection(client, COLLECTION)


def stored_documents(db: Path) -> dict[str, int]:
    """Chunks per document id in the test collection."""
    collection = open_index(db)
    counts: dict[str, int] = {}
    for meta in collection.get(include=["metadatas"])["metadatas"]:
        counts[meta["document_id"]] = counts.get(meta["document_id"], 0) + 1
    return counts


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# --- 1. --prune never wipes an index by mistake ---------------------------------------------------


def test_prune_with_no_document_loaded_is_refused_and_removes_nothing(capsys, corpus, tmp_path, model):
    db = tmp_path / "db"
    code, first, _ = ingest(capsys, corpus, db)
    assert code == 0
    for path in corpus.rglob("*.*"):  # every file emptied: zero documents load
        path.write_text("")
    code, _, err = ingest(capsys, corpus, db, "--prune", "--force")
    assert code == 2
    assert "Refusing to prune: no document was loaded" in one_line_error(err)
    assert sum(stored_documents(db).values()) == first["count"]


def test_prune_of_most_of_the_collection_needs_force_and_says_what_would_go(capsys, corpus, tmp_path, model):
    db = tmp_path / "db"
    assert ingest(capsys, corpus, db)[0] == 0
    before = stored_documents(db)
    for name in ("travel.txt", "engineering/security.txt", "engineering/oncall.md"):
        (corpus / name).unlink()
    code, _, err = ingest(capsys, corpus, db, "--prune")
    assert code == 2
    message = one_line_error(err)
    gone = sum(before[n] for n in ("travel.txt", "engineering/security.txt", "engineering/oncall.md"))
    assert f"Refusing to prune {gone} of the collection's {sum(before.values())} chunks" in message
    assert "engineering/oncall.md, engineering/security.txt, travel.txt" in message and "--force" in message
    assert stored_documents(db) == before

    code, report, _ = ingest(capsys, corpus, db, "--prune", "--force")
    assert code == 0 and report["removed"] == gone
    assert stored_documents(db) == {"kitchen.md": before["kitchen.md"]}


def test_a_small_prune_needs_no_force(capsys, corpus, tmp_path, model):
    db = tmp_path / "db"
    assert ingest(capsys, corpus, db)[0] == 0
    before = stored_documents(db)
    (corpus / "kitchen.md").unlink()
    code, report, _ = ingest(capsys, corpus, db, "--prune")
    assert code == 0 and report["removed"] == before["kitchen.md"]


# --- 2. another root for the same collection ------------------------------------------------------


def test_a_sub_folder_of_the_ingested_root_is_refused_not_duplicated(
    capsys, corpus, tmp_path, model, monkeypatch
):
    db = tmp_path / "db"
    code, first, _ = ingest(capsys, corpus, db)
    assert code == 0

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the folder was checked")

    with monkeypatch.context() as patch:  # refused before the model loads
        patch.setattr("rag_helpers.embeddings.load_embedding_model", no_model)
        code, _, err = ingest(capsys, corpus / "engineering", db)
    assert code == 2
    message = one_line_error(err)
    assert f"was built from {corpus.resolve()}, not {(corpus / 'engineering').resolve()}" in message
    assert "--collection" in message and "--allow-other-root" in message
    assert sum(stored_documents(db).values()) == first["count"]

    # The same folder by another spelling is the same root.
    code, again, _ = ingest(capsys, Path(os.path.relpath(corpus)), db)
    assert code == 0 and again["added"] == 0 and again["skipped"] == first["count"]

    # Asked for explicitly, another root is ingested.
    code, mixed, _ = ingest(capsys, corpus / "engineering", db, "--allow-other-root")
    assert code == 0 and mixed["added"] == mixed["chunks"] > 0
    collection = open_index(db)
    assert collection.metadata[ingest_module.ROOT_KEY] == str(corpus.resolve())


# --- 3. an emptied file loses its chunks ---------------------------------------------------------


def test_a_file_that_became_empty_has_its_chunks_removed_and_is_reported(capsys, corpus, tmp_path, model):
    db = tmp_path / "db"
    assert ingest(capsys, corpus, db)[0] == 0
    before = stored_documents(db)
    (corpus / "travel.txt").write_text("   \n")
    code, report, _ = ingest(capsys, corpus, db)  # no --prune: the file is still there
    assert code == 0
    assert report["removed"] == before["travel.txt"]
    assert report["skipped_files"] == [{"id": "travel.txt", "reason": "empty file"}]
    assert "travel.txt" not in stored_documents(db)


# --- 4. binary and UTF-16/32 files ----------------------------------------------------------------


def test_byte_order_marks_are_decoded():
    text = "Zoë's café\r\nsecond line"
    for encoding in ("utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"):
        raw = text.encode(encoding)
        if encoding.endswith(("-le", "-be")):  # these codecs write no mark of their own
            raw = "\ufeff".encode(encoding) + raw
        decoded, used = decode_text(raw)
        assert decoded == "Zoë's café\nsecond line", encoding
        assert used.startswith(encoding[:6]), (encoding, used)


def test_binary_content_is_refused():
    with pytest.raises(BinaryContentError, match="NUL bytes"):
        decode_text("no mark".encode("utf-16-le"))
    with pytest.raises(BinaryContentError, match="control characters"):
        decode_text(bytes(range(1, 32)) * 4 + b"some text")
    with pytest.raises(BinaryContentError, match="byte-order mark but is not valid"):
        decode_text(codecs.BOM_UTF16_LE + b"\x00\xd8")  # a lone surrogate
    assert decode_text(b"tab\tand form feed\x0c are text")[1] == "utf-8"


def test_binary_and_utf16_files_are_skipped_or_decoded_and_reported(capsys, tmp_path, model):
    folder = write_corpus(tmp_path / "mixed", {
        "notes.txt": "Plain notes about the quarterly planning meeting.",
        "utf16.txt": "Le café est fermé le lundi.".encode("utf-16"),  # with a byte-order mark
        "utf16-nobom.txt": "Hidden NUL bytes everywhere.".encode("utf-16-le"),
        "utf8bom.md": codecs.BOM_UTF8 + "Résumé with a mark.".encode(),
        "ls.txt": Path(shutil.which("ls") or sys.executable).read_bytes(),
    })
    code, report, err = ingest(capsys, folder, tmp_path / "db")
    assert code == 0, err
    assert report["skipped_files"] == [
        {"id": "ls.txt", "reason": Contains("NUL bytes")},
        {"id": "utf16-nobom.txt", "reason": Contains("NUL bytes")},
    ]
    assert report["documents"] == 3
    got = open_index(tmp_path / "db").get(include=["documents", "metadatas"])
    texts = dict(zip([m["document_id"] for m in got["metadatas"]], got["documents"]))
    assert texts["utf16.txt"] == "Le café est fermé le lundi."
    assert texts["utf8bom.md"] == "Résumé with a mark."
    assert all("\x00" not in text for text in got["documents"])


def test_human_summary_lists_skipped_files(capsys, tmp_path, model):
    folder = write_corpus(tmp_path / "c", {"a.txt": "Real text about invoices.", "b.txt": b"\x00\x01binary"})
    code, out, err = run(
        capsys, "ingest", folder, "--db", tmp_path / "db", "--collection", COLLECTION, *CHUNK_ARGS
    )
    assert code == 0, err
    assert "1 file(s) not indexed:\n  b.txt: binary content (NUL bytes)" in out
    assert err.startswith("warning: Skipped b.txt: binary content (NUL bytes)") and "Warning:" not in err


# --- 5. credentials inside LLM_BASE_URL ----------------------------------------------------------

SECRET_URLS = (
    f"http://user:{SECRET}@127.0.0.1:{{port}}/v1",
    f"http://127.0.0.1:{{port}}/v1?api_key={SECRET}",
    f"http://127.0.0.1:{{port}}/v1#{SECRET}",
)


@pytest.mark.parametrize("template", SECRET_URLS)
def test_a_url_secret_never_shows_in_settings_reports_or_errors(template, capsys):
    port = free_port()  # nothing listens there
    url = template.format(port=port)
    settings = Settings.from_mapping({"LLM_BASE_URL": url, "LLM_MODEL": MODEL})
    assert safe_url(url) == f"http://127.0.0.1:{port}/v1"
    shown = [repr(settings), str(settings.describe()), str(llm_rows(settings))]
    llm = OpenAICompatibleLLM(MODEL, base_url=url, retries=0, timeout=5)
    shown.append(repr(llm))
    with pytest.raises(Exception) as info:
        llm.answer(Prompt([{"role": "user", "content": "hi"}]))
    shown.append(str(info.value))
    assert f"127.0.0.1:{port}" in shown[-1]
    for text in shown:
        assert SECRET not in text


def test_a_url_secret_never_shows_in_server_error_messages(server):
    url = server.url.replace("http://", f"http://user:{SECRET}@") + f"?api_key={SECRET}"
    server.script.append(Reply(status=500))
    llm = OpenAICompatibleLLM(MODEL, base_url=url, retries=0)
    with pytest.raises(LLMServerError) as info:
        llm.answer(Prompt([{"role": "user", "content": "hi"}]))
    assert "HTTP 500" in str(info.value) and SECRET not in str(info.value)


# --- 6. malformed streaming replies --------------------------------------------------------------

MALFORMED = {
    "invalid JSON": Reply(raw='data: {"id": "x", "choices": [\n\ndata: [DONE]\n\n'),
    "an HTML page": Reply(raw="<html><body>Welcome to nginx</body></html>", content_type="text/html"),
    "no choices": Reply(
        raw='data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}\n\n'
        "data: [DONE]\n\n"
    ),
}


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_reply_is_an_error_not_an_empty_answer(server, kind):
    server.script.append(MALFORMED[kind])
    llm = OpenAICompatibleLLM(MODEL, base_url=server.url, retries=0)
    with pytest.raises(LLMServerError) as info:
        llm.answer(Prompt([{"role": "user", "content": "hi"}]))  # every request streams
    message = str(info.value)
    assert "Expecting value" not in message
    if kind == "no choices":
        assert "without any answer in it (no choices)" in message
    else:
        assert f"The server at {server.url} did not return an OpenAI-compatible reply" in message


@pytest.fixture
def small_index(tmp_path, model) -> Path:
    folder = write_corpus(tmp_path / "small", {"travel.txt": DOCS["travel.txt"]})
    settings = Settings.from_mapping({"CHROMA_PATH": str(tmp_path / "db"), "CHROMA_COLLECTION": COLLECTION})
    ingest_module.ensure_index(settings, folder, model=model, progress=False)
    return tmp_path / "db"


def ask(capsys, db: Path, *argv) -> tuple[int, str, str]:
    return run(
        capsys, "ask", "How are hotels booked?", "--db", db, "--collection", COLLECTION,
        "--retriever", "dense", "--min-score", "off", *argv,
    )


def test_ask_stream_with_an_html_reply_exits_2_with_a_message(capsys, server, small_index, isolated_settings):
    isolated_settings.update(LLM_BASE_URL=server.url, LLM_MODEL=MODEL)
    server.script.append(MALFORMED["an HTML page"])
    code, _, err = ask(capsys, small_index, "--stream")
    assert code == 2
    assert "did not return an OpenAI-compatible reply" in one_line_error(err)


# --- 7. user-side faults end in a message, not a traceback ----------------------------------------


def test_db_pointing_at_a_file_is_a_message(capsys, corpus, tmp_path):
    a_file = tmp_path / "index.txt"
    a_file.write_text("not an index")
    for argv in (["ingest", corpus, *CHUNK_ARGS], ["query", "hotels"]):
        code, _, err = run(capsys, *argv, "--db", a_file)
        assert code == 2
        assert f"The index path {a_file} is a file, not a folder" in one_line_error(err)


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A folder outside pytest's private tmp tree, so another user can list it."""
    folder = Path(tempfile.mkdtemp(prefix="rag-reliability-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def read_as_nobody(function, *args):
    """Run `function` as an unprivileged user where root would read any file anyway."""
    if os.geteuid() != 0:
        return function(*args)
    os.setegid(65534)
    os.seteuid(65534)
    try:
        return function(*args)
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_an_unreadable_file_is_skipped_and_keeps_its_chunks(world_readable_dir, model):
    folder = write_corpus(
        world_readable_dir / "c", {"a.txt": "Readable text about invoices.", "b.txt": "Secret plans."}
    )
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    settings = Settings.from_mapping({"CHROMA_PATH": str(world_readable_dir / "db")})
    collection = store.get_collection(store.get_client(settings), COLLECTION, model)
    first = scan_folder(folder)
    chunks = chunk_documents(first.documents, SPLITTER)
    ingest_module.ingest(collection, chunks, model, progress=False, documents=first)

    (folder / "b.txt").chmod(0o000)
    with pytest.warns(DocumentLoadWarning, match="b.txt: cannot be read"):
        second = read_as_nobody(scan_folder, folder)
    assert [d.id for d in second.documents] == ["a.txt"]
    assert [(s.id, s.keep_indexed) for s in second.skipped] == [("b.txt", True)]
    chunks = chunk_documents(second.documents, SPLITTER)
    report = ingest_module.ingest(collection, chunks, model, progress=False, prune=True, documents=second)
    assert report.removed == 0
    assert report.skipped_files[0]["reason"].startswith("cannot be read (Permission denied)")
    assert sorted({m["document_id"] for m in collection.get()["metadatas"]}) == ["a.txt", "b.txt"]


def test_a_file_name_that_is_not_utf8_is_skipped_and_the_rest_ingested(capsys, tmp_path, model):
    folder = write_corpus(tmp_path / "c", {"a.txt": "Readable text about invoices."})
    (Path(os.fsdecode(bytes(folder) + b"/caf\xe9.txt"))).write_text("Latin-1 file name.")
    code, report, err = ingest(capsys, folder, tmp_path / "db")
    assert code == 0, err
    assert report["skipped_files"] == [
        {"id": "caf\\xe9.txt", "reason": "the file name is not valid UTF-8; rename the file"}
    ]
    assert report["documents"] == 1 and report["added"] == report["count"] > 0


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_server_killed_mid_ingest_then_restarted_resumes_exactly(capsys, tmp_path, model):
    # 40 documents of ~6 chunks, written 2 chunks per batch: long enough to kill the server mid-way.
    sentence = "Expense claim rule number {i} says receipts are kept for seven years by finance. "
    text = "".join(sentence.format(i=i) for i in range(7))
    folder = write_corpus(tmp_path / "big", {f"doc{d:02}.txt": text for d in range(40)})
    total = len(chunk_documents(scan_folder(folder).documents, SPLITTER))
    server = ChromaServer(tmp_path / "server_db", tmp_path / "server.log").start()
    args = [
        sys.executable, "-m", "rag_helpers", "ingest", str(folder), "--host", "127.0.0.1",
        "--port", str(server.port), "--collection", COLLECTION, "--batch-size", "2", *CHUNK_ARGS,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    try:
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        client = store.get_client(server.settings(COLLECTION))

        def some_committed() -> bool:
            try:
                return client.get_collection(COLLECTION, embedding_function=None).count() >= 4
            except Exception:  # noqa: BLE001 - not created yet
                return False

        _wait_for(some_committed, 180, "the first batches")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=15)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
        server.stop()
    assert process.returncode == 2, (out, err)
    message = one_line_error(err)  # and no "Loading weights" chatter: --quiet
    assert "Lost the connection to the Chroma server while ingesting" in message
    assert "run the same ingest again" in message

    server.port = free_port()
    server.start()
    try:
        committed = store.open_collection(store.get_client(server.settings(COLLECTION)), COLLECTION).count()
        assert 0 < committed < total
        code, out, err = run(
            capsys, "ingest", folder, "--host", "127.0.0.1", "--port", server.port,
            "--collection", COLLECTION,
            *CHUNK_ARGS, "--json",
        )
    finally:
        server.stop()
    assert code == 0, err
    report = json.loads(out)
    missing = total - committed
    assert (report["skipped"], report["added"], report["embedded"]) == (committed, missing, missing)
    assert report["count"] == total


# --- 8. links and extensions ---------------------------------------------------------------------


def test_links_out_of_the_folder_are_not_followed_unless_asked(capsys, tmp_path, model):
    outside = tmp_path / "outside.txt"
    outside.write_text("root:x:0:0:root:/root:/bin/bash private account list")
    folder = write_corpus(tmp_path / "c", {"a.txt": "Readable text about invoices."})
    (folder / "passwd.txt").symlink_to(outside)
    (folder / "inside.txt").symlink_to(folder / "a.txt")  # stays inside: loaded
    code, report, _ = ingest(capsys, folder, tmp_path / "db")
    assert code == 0
    assert report["skipped_files"] == [{"id": "passwd.txt", "reason": Contains("--follow-links")}]
    assert set(stored_documents(tmp_path / "db")) == {"a.txt", "inside.txt"}

    code, report, _ = ingest(capsys, folder, tmp_path / "db", "--follow-links")
    assert code == 0 and report["skipped_files"] == []
    assert set(stored_documents(tmp_path / "db")) == {"a.txt", "inside.txt", "passwd.txt"}


def test_extensions_match_in_any_case(tmp_path):
    folder = write_corpus(tmp_path / "c", {"UPPER.TXT": "upper", "Mixed.Md": "mixed", "skip.csv": "a,b"})
    assert [d.id for d in scan_folder(folder).documents] == ["Mixed.Md", "UPPER.TXT"]


# --- 9. read commands never write, and messages name real knobs ----------------------------------


@pytest.mark.parametrize(
    "command",
    [["query", "hotels"], ["ask", "hotels", "--backend", "offline", "--min-score", "off"], ["eval"]],
)
def test_read_commands_do_not_create_a_missing_index(capsys, tmp_path, command):
    missing = tmp_path / "no_index"
    code, _, err = run(capsys, *command, "--db", missing)
    assert code == 2
    assert f"No index at {missing}" in one_line_error(err)
    assert not missing.exists()
    missing.mkdir()  # an empty folder is not an index either, and stays empty
    code, _, err = run(capsys, *command, "--db", missing)
    assert code == 2 and "not a Chroma index" in err
    assert list(missing.iterdir()) == []


def test_ask_timeout_option_and_the_message_that_names_it(capsys, server, small_index, isolated_settings):
    isolated_settings.update(LLM_BASE_URL=server.url, LLM_MODEL=MODEL)
    server.script.append(Reply(body=completion("late"), delay=3))
    code, _, err = ask(capsys, small_index, "--timeout", "0.5")
    assert code == 2
    message = one_line_error(err)
    assert "within 0.5 seconds" in message and "--timeout SECONDS" in message


def test_ask_budget_option_and_the_message_that_names_it(capsys, small_index):
    code, _, err = ask(capsys, small_index, "--backend", "offline", "--budget", "10")
    assert code == 2
    assert "--budget N" in one_line_error(err)


def test_a_base_url_that_is_not_a_url_gets_a_message_about_the_url(capsys, small_index, isolated_settings):
    isolated_settings.update(LLM_BASE_URL="not-a-url")
    code, _, err = ask(capsys, small_index)
    assert code == 2
    assert "LLM_BASE_URL must be the http(s) address" in one_line_error(err) and "'not-a-url'" in err


# --- 10. --quiet, and two ingests at once --------------------------------------------------------


def test_a_second_ingest_waits_and_redoes_nothing_the_first_committed(tmp_path, corpus, model):
    db = tmp_path / "db"
    settings = Settings.from_mapping({"CHROMA_PATH": str(db)})
    args = [
        sys.executable, "-m", "rag_helpers", "ingest", str(corpus), "--db", str(db),
        "--collection", COLLECTION,
        *CHUNK_ARGS, "--json",
    ]
    lines: list[str] = []
    with ingest_module.ingest_lock(settings):  # the first ingest holds the index
        second = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        reader = threading.Thread(target=lambda: lines.extend(second.stderr), daemon=True)
        reader.start()
        _wait_for(lambda: any("waiting" in line for line in lines), 120, "the second ingest to wait")
        folder = scan_folder(corpus)
        chunks = chunk_documents(folder.documents, SPLITTER)
        collection = store.get_collection(store.get_client(settings), COLLECTION, model)
        first = ingest_module.ingest(collection, chunks, model, progress=False, documents=folder)
        assert first.added == len(chunks)
    out, _ = second.communicate(timeout=120)
    reader.join(timeout=10)
    assert second.returncode == 0, "".join(lines)
    report = json.loads(out)
    assert (report["added"], report["embedded"], report["skipped"]) == (0, 0, len(chunks))
    assert report["count"] == len(chunks)
    assert [line for line in lines if line.strip()] == [
        f"Another ingest into {db} is running; waiting for it to finish "
        "(what it commits is then skipped here)...\n"
    ]
