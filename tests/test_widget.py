"""The question-answering mini-app: built, driven programmatically, on a real tiny collection.

The offline backend answers (no network); the provider path runs the real OpenAI-compatible client
against a scripted server on 127.0.0.1.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from rag_helpers.chunking import CharacterSplitter, chunk_documents
from rag_helpers.config import Settings
from rag_helpers.documents import load_documents
from rag_helpers.answers import Answer, Source
from rag_helpers.ingest import update_indexes
from rag_helpers.ingest import ingest
from rag_helpers.store import get_client, get_collection
from rag_helpers.widget import (
    HISTORY_CLASS,
    NEW_CONVERSATION_CLASS,
    QAApp,
    answer_html,
    available_retrievers,
    backend_options,
    document_texts,
    history_html,
    markdown_html,
    marked_html,
    source_html,
    whole_words,
)

pytestmark = pytest.mark.slow

TOKEN = "hf_" + "WIDGETtokenThatMustNeverBeShown0042"  # built at run time: no token-like literal in the repo

DOCUMENTS = {
    "travel.md": (
        "# Travel policy\n\nEmployees book trains for trips under five hours.\n\n"
        "## Hotels\n\nThe nightly hotel cap in Lisbon is 140 euros. The nightly hotel cap in London is "
        "185 pounds. Receipts must be uploaded within 30 days of the trip.\n"
    ),
    "kitchen.md": (
        "# Office kitchen\n\nThe coffee machine on the second floor is descaled every Monday. "
        "Fruit is delivered on Tuesdays and Thursdays. Please label food in the shared fridge.\n"
    ),
    "gateway.md": (
        "# Gateway manual\n\n"
        + "The gateway records temperatures every minute and keeps them when the network is down. " * 4
        + "\n\n## Reset\n\nTo reset the gateway, hold the Reset button for ten seconds until the light "
        "blinks blue. The battery lasts 14 hours without mains power.\n"
    ),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, model):
    """A three-document collection (small chunks, so one document has several) and its texts."""
    root = tmp_path_factory.mktemp("widget")
    folder = root / "docs"
    folder.mkdir()
    for name, text in DOCUMENTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    documents = load_documents(folder, progress=False)
    settings = Settings.from_mapping({"CHROMA_PATH": str(root / "db")})
    collection = get_collection(get_client(settings), "widget_test", model)
    ingest(collection, chunk_documents(documents, CharacterSplitter(200, 20)), model, progress=False)
    update_indexes(collection, model)
    return collection, documents, settings


@pytest.fixture
def app(corpus, model):
    collection, documents, settings = corpus
    app = QAApp(collection, model, settings=settings, documents=documents, default_retriever="dense")
    return app


# --- Building the app ------------------------------------------------------------------------------


def test_app_starts_with_defaults_from_settings_and_the_retriever_registry(corpus, model):
    collection, _, settings = corpus
    app = QAApp(collection, model, settings=settings)
    names, default = available_retrievers()
    assert app.k.value == 5 and (app.k.min, app.k.max) == (1, 10)
    assert app.backend.value == "offline"  # no token and no server in these settings
    assert list(app.retriever.options) == names
    assert app.retriever.value == default
    assert app.answer is None and app.error is None
    assert "dense" in names


def test_available_retrievers_follow_the_registry():
    from rag_helpers.registry import DEFAULT_RETRIEVER, RETRIEVERS

    names, default = available_retrievers()
    assert names == list(RETRIEVERS) and default == DEFAULT_RETRIEVER


def test_backend_options_say_what_an_unconfigured_backend_needs():
    labels = dict((name, label) for label, name in backend_options(Settings.from_mapping({})))
    assert list(labels) == ["offline", "local", "hf", "openai"]
    assert "HF_TOKEN" in labels["hf"] and "LLM_BASE_URL" in labels["openai"]
    configured = dict(
        (name, label)
        for label, name in backend_options(Settings.from_mapping({"HF_TOKEN": TOKEN}))
    )
    assert "not configured" not in configured["hf"]
    assert TOKEN not in " ".join(configured.values())


def test_invalid_construction_is_refused(corpus, model):
    collection, _, settings = corpus
    with pytest.raises(ValueError, match="between 1 and max_k"):
        QAApp(collection, model, settings=settings, k=20)
    with pytest.raises(ValueError, match="not among the choices"):
        QAApp(collection, model, settings=settings, retrievers=["dense"], default_retriever="bm25")


def test_app_displays_as_a_widget(app):
    bundle = app._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "QAApp(collection='widget_test'" in repr(app)


# --- Asking ----------------------------------------------------------------------------------------


def test_ask_button_answers_with_citations_and_expandable_sources(app):
    app.question.value = "What is the nightly hotel cap in Lisbon?"
    app.ask_button.click()

    assert app.error is None, app.error
    answer = app.answer
    assert isinstance(answer, Answer) and answer.backend == "offline"
    assert "140 euros" in answer.text and answer.sources
    cited = answer.sources[0]
    assert cited.document_id == "travel.md"
    # The answer box shows the text with the citation emphasised.
    assert "140 euros" in app.answer_box.value and f"[{cited.number}]</b>" in app.answer_box.value
    # One accordion panel per chunk given to the answerer, the first cited one open.
    assert len(app.sources.children) == len(answer.context) == 5
    assert app.sources.titles[cited.number - 1] == f"[{cited.number}] travel.md (cited)"
    assert app.sources.selected_index == cited.number - 1
    panel = app.sources.children[cited.number - 1].value
    assert "<mark" in panel and "140 euros" in panel
    assert "cites [" in app.status.value and "dense" in app.status.value


def test_cited_sentence_is_marked_inside_its_document(app):
    answer = app.ask("How long does the gateway battery last without mains power?")
    assert answer is not None and "14 hours" in answer.text
    source = next(s for s in answer.sources if s.document_id == "gateway.md")
    assert source.start > 0  # a later chunk of the document: offsets matter
    panel = app.sources.children[source.number - 1].value
    quoted = panel.split('font-weight:600">')[1].split("</mark>")[0]
    assert "14 hours" in quoted


def test_k_slider_sets_how_many_chunks_are_used(app):
    app.k.value = 2
    answer = app.ask("When is fruit delivered?")
    assert answer is not None
    assert len(answer.context) == len(app.sources.children) == 2
    assert "k=2" in app.status.value


def test_each_retriever_choice_answers(app, corpus, model):
    collection, documents, settings = corpus
    names, _ = available_retrievers()
    for name in [n for n in names if n in ("dense", "bm25", "hybrid", "mmr")]:
        app.retriever.value = name
        answer = app.ask("What is the nightly hotel cap in London?")
        assert app.error is None, f"{name}: {app.error}"
        assert answer is not None and "185 pounds" in answer.text, name
        assert name in app.status.value


def test_empty_question_shows_a_message_instead_of_raising(app):
    app.ask("What is the nightly hotel cap in Lisbon?")
    app.question.value = "   "
    app.ask_button.click()
    assert app.answer is None
    assert app.error == "Type a question first, then press Ask."
    assert "Type a question first" in app.status.value and "#a51d2d" in app.status.value
    assert app.answer_box.value == "" and len(app.sources.children) == 0


def test_unconfigured_backend_shows_what_to_set(app):
    app.backend.value = "hf"
    answer = app.ask("What is the nightly hotel cap in Lisbon?")
    assert answer is None
    assert "HF_TOKEN" in app.error and "hf backend" in app.error


def test_retriever_failure_is_shown(corpus, model):
    collection, documents, settings = corpus

    def broken(name: str) -> Any:
        raise RuntimeError(f"the {name} index is missing")

    app = QAApp(collection, model, settings=settings, retrievers=["dense"], retriever_factory=broken)
    assert app.ask("What is the nightly hotel cap in Lisbon?") is None
    assert app.error == "Something went wrong (RuntimeError): the dense index is missing"


def test_app_recovers_after_an_error(app):
    app.backend.value = "hf"
    app.ask("What is the nightly hotel cap in Lisbon?")
    assert app.error
    app.backend.value = "offline"
    assert app.ask() is not None and app.error is None


# --- The conversation ------------------------------------------------------------------------------


def test_the_app_keeps_a_conversation_and_shows_earlier_turns_above_the_answer(app):
    assert app.strategy.value == "condense" and app.turns == [] and app.history.value == ""
    assert HISTORY_CLASS in app.history._dom_classes and NEW_CONVERSATION_CLASS in app.new_button._dom_classes
    children = list(app.widget.children)
    assert children.index(app.history) < children.index(app.answer_box)

    first = app.ask("What is the nightly hotel cap in Lisbon?")
    assert first is not None and "140 euros" in first.text
    assert app.history.value == "" and len(app.turns) == 1  # the only turn is the answer shown

    # Offline, "condense" becomes "concatenate": the follow-up is searched with the first question.
    answer = app.ask("And in London?")
    assert app.error is None, app.error
    assert answer is not None and "185 pounds" in answer.text
    assert answer.notes[0].startswith("Searched for: What is the nightly hotel cap in Lisbon? And in London?")
    assert "Searched for" in app.answer_box.value and "instead of condensing" in app.answer_box.value
    assert "A follow-up, searched for with concatenate." in app.status.value
    history = app.history.value
    assert "What is the nightly hotel cap in Lisbon?" in history and "140 euros" in history
    assert "And in London?" not in history  # shown below, as the answer
    assert [turn.question for turn in app.turns] == ["What is the nightly hotel cap in Lisbon?", "And in London?"]

    app.ask("When is fruit delivered?")
    assert history_html(app.turns[:-1]) == app.history.value and "And in London?" in app.history.value
    assert app.history.value.count('class="rag-history-turn"') == 2
    assert "turns=3" in repr(app)


def test_new_conversation_clears_the_history_and_the_next_question_stands_alone(app):
    app.ask("What is the nightly hotel cap in Lisbon?")
    app.ask("And in London?")
    assert app.history.value
    app.new_button.click()
    assert app.turns == [] and app.history.value == "" and app.answer_box.value == ""
    assert app.answer is None and len(app.sources.children) == 0 and "New conversation" in app.status.value
    answer = app.ask("When is fruit delivered?")
    assert answer is not None and not any(note.startswith("Searched for") for note in answer.notes)
    assert app.history.value == "" and "follow-up" not in app.status.value
    app.new_conversation()  # the method behind the button
    assert app.turns == []


def test_the_follow_up_strategy_is_a_choice(app):
    app.strategy.value = "alone"
    app.ask("What is the nightly hotel cap in Lisbon?")
    answer = app.ask("And in London?")
    assert answer is not None and not any(note.startswith("Searched for") for note in answer.notes)
    assert app.turns[-1].search == "And in London?" and app.turns[-1].strategy == "alone"


def test_a_failed_follow_up_keeps_the_conversation(app):
    app.ask("What is the nightly hotel cap in Lisbon?")
    app.backend.value = "hf"  # not configured: the question fails
    assert app.ask("And in London?") is None and app.error
    assert len(app.turns) == 1 and "What is the nightly hotel cap in Lisbon?" in app.history.value


def test_history_html_escapes_shortens_and_shows_what_was_searched_for():
    from rag_helpers.conversation import Turn

    long = Answer("The cap <b>is</b> " + "very " * 100 + "high [1].", backend="offline", model="m")
    turns = [
        Turn("Cap in <Lisbon>?", "Cap in <Lisbon>?", long),
        Turn("And London?", "Cap in <Lisbon>? And London?", Answer("£185 [1].", backend="offline", model="m"),
             "concatenate"),
    ]
    shown = history_html(turns)
    assert "Cap in &lt;Lisbon&gt;?" in shown and "<b>is</b>" not in shown and "…" in shown
    assert shown.count("searched for:") == 1 and "Cap in &lt;Lisbon&gt;? And London?" in shown
    assert history_html([]) == ""


# --- A provider backend (scripted OpenAI-compatible server on 127.0.0.1) ----------------------------


class ScriptedServer:
    """Answers /v1/chat/completions with a fixed status and, for 200, a streamed text."""

    def __init__(self) -> None:
        self.status = 200
        self.pieces: list[str] = []
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                owner.requests.append(json.loads(self.rfile.read(length) or b"{}"))
                if owner.status != 200:
                    body = json.dumps({"error": {"message": f"refused ({owner.status})"}}).encode()
                    self.send_response(owner.status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.end_headers()
                for piece in owner.pieces:
                    event = {
                        "id": "c1",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": "m",
                        "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                    }
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def provider(monkeypatch) -> Iterator[ScriptedServer]:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    server = ScriptedServer()
    yield server
    server.close()


def _provider_app(corpus, model, server: ScriptedServer) -> QAApp:
    collection, documents, _ = corpus
    settings = Settings.from_mapping(
        {"LLM_BASE_URL": server.url, "LLM_MODEL": "test-model", "LLM_API_KEY": TOKEN, "CHROMA_PATH": "unused"}
    )
    return QAApp(collection, model, settings=settings, documents=documents, retrievers=["dense"])


def test_provider_answer_is_streamed_and_its_citations_resolved(corpus, model, provider):
    provider.pieces = ["The Lisbon cap ", "is 140 euros per night ", "[1]."]
    app = _provider_app(corpus, model, provider)
    assert app.backend.value == "openai"
    answer = app.ask("What is the nightly hotel cap in Lisbon?")
    assert app.error is None, app.error
    assert answer is not None and answer.backend == "openai" and not answer.extractive
    assert answer.text == "The Lisbon cap is 140 euros per night [1]."
    assert [s.number for s in answer.sources] == [1]
    assert "generated" in app.answer_box.value
    # The prompt sent was the grounded one, with numbered sources.
    sent = provider.requests[0]["messages"]
    assert sent[0]["role"] == "system" and '<source id="1"' in sent[1]["content"]
    # Without quoted sentences, the whole chunk is marked in its document.
    assert "<mark" in app.sources.children[0].value


def test_provider_error_is_shown_without_the_key(corpus, model, provider):
    provider.status = 401
    app = _provider_app(corpus, model, provider)
    assert app.ask("What is the nightly hotel cap in Lisbon?") is None
    assert "HTTP 401" in app.error and "openai backend" in app.error
    assert TOKEN not in app.error and TOKEN not in app.status.value


# --- HTML helpers ----------------------------------------------------------------------------------


def test_marked_html_escapes_and_nests_layers():
    text = "a <b> & c"
    assert marked_html(text, []) == "a &lt;b&gt; &amp; c"
    out = marked_html("0123456789", [([(2, 8)], "S1"), ([(4, 6), (5, 20)], "S2")])
    assert out == '01<mark style="S1">23</mark><mark style="S2">456789</mark>'
    assert marked_html("abc", [([(-5, 1), (2, 2)], "S")]) == '<mark style="S">a</mark>bc'


def test_source_html_shows_the_chunk_in_its_document_or_alone():
    document = "intro. " * 60 + "The cap is 140 euros. Then more text." + " outro." * 60
    start = document.index("The cap")
    end = start + len("The cap is 140 euros. Then more text.")
    quote = (start + len("The cap is "), start + len("The cap is 140 euros."))
    source = Source(1, "d_3", "d.md", start, end, document[start:end], 0.81234, (quote,))
    shown = source_html(source, document, context_chars=20)
    assert "<b>[1] d.md</b>, characters" in shown and "similarity 0.812" in shown
    assert shown.count("…") == 2  # the window is cut on both sides
    assert '<mark style="background:#ffc94d;padding:0;font-weight:600">140 euros.</mark>' in shown
    # Offsets that do not match the text given: the chunk alone, the quote still marked.
    alone = source_html(source, "something else")
    assert "intro" not in alone and ">140 euros.</mark>" in alone


def test_answer_html_emphasises_citations_and_shows_notes():
    source = Source(2, "d_0", "doc <1>.md", 0, 10, "text")
    answer = Answer(
        "Cap is 5 [2] & more [9].", (source,), "offline", "extractive", extractive=True,
        notes=("Note: 1 lower-ranked source was left out.",), context=(source,),
    )
    shown = answer_html(answer)
    assert '<b class="rag-cite" style="color:#1a5fb4" title="doc &lt;1&gt;.md">[2]</b>' in shown
    assert "&amp; more" in shown and '<b class="rag-cite" style="color:#1a5fb4">[9]</b>' in shown
    assert "extracted from the sources" in shown and "left out" in shown


def test_document_texts_accepts_documents_or_a_mapping(corpus):
    _, documents, _ = corpus
    texts = document_texts(documents)
    assert sorted(texts) == sorted(DOCUMENTS) and texts["travel.md"] == DOCUMENTS["travel.md"]
    assert document_texts({"a": "b"}) == {"a": "b"} and document_texts(None) == {}


# --- Rendering fixes the browser showed (tests/browser/) ---------------------------------------------


def test_whole_words_never_cuts_a_word():
    text = "close to where you will be working today"
    start, end = text.index("ll be"), text.index("king")  # "ll be wor": cut at both ends
    assert text[slice(*whole_words(text, start, end))] == "be"
    assert whole_words(text, 0, len(text)) == (0, len(text))
    at_spaces = (text.index(" be") + 1, text.index(" working"))
    assert whole_words(text, *at_spaces) == at_spaces  # already on word boundaries: unchanged
    inside = (text.index("ill"), text.index("ill") + 2)
    assert whole_words(text, *inside) == inside  # no whole word inside: unchanged rather than emptied


def test_source_html_marks_only_whole_words_of_a_chunk_cut_mid_word():
    document = "Book hotels close to where you will be working. The nightly cap is 165 euros."
    start = document.index("ll be")
    source = Source(1, "travel.md_3", "travel.md", start, len(document), document[start:], None)
    panel = source_html(source, document)
    assert 'wil<mark' not in panel and "will <mark" in panel


def test_answers_render_markdown_and_keep_their_citations():
    answer = Answer(
        text=(
            "Extracted:\n- The **nightly cap** is: Standard: €165 [1]\n"
            "- <script>x</script> London: £185 [2]"
        ),
        backend="offline",
        model="extractive",
        extractive=True,
        sources=(Source(1, "a.md_0", "a.md", 0, 10, "x"), Source(2, "b.md_0", "b.md", 0, 10, "y")),
    )
    rendered = answer_html(answer)
    assert "<strong>nightly cap</strong>" in rendered and "**" not in rendered
    assert "<li>" in rendered and "<script>" not in rendered  # raw HTML in an answer is shown, not run
    assert 'class="rag-cite"' in rendered and 'title="b.md">[2]</b>' in rendered
    assert "rag-dont-know" not in rendered
    assert "<table>" in markdown_html("| a | b |\n|---|---|\n| 1 | 2 |")


def test_a_refusal_is_marked_as_dont_know_by_its_reason_not_its_words():
    from rag_helpers.answers import DONT_KNOW, REFUSED_ANSWERER

    refused = Answer(text="Sorry, no idea.", backend="openai", model="m", refused=REFUSED_ANSWERER)
    rendered = answer_html(refused)
    assert "rag-dont-know" in rendered and "the answerer found no answer in the sources" in rendered
    assert "rag-dont-know" not in answer_html(Answer(text=DONT_KNOW + " (quoted)", backend="openai", model="m"))
