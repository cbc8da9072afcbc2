"""A question-answering mini-app for notebooks, and the HTML helpers it renders with.

    app = QAApp(collection, model, settings=settings, documents=documents)
    app                                   # shows the app in Jupyter
    app.ask("What is the 2024 hotel cap?")  # or type a question and press "Ask"

The app has a question box, a k slider, a backend choice (offline, Hugging Face, an OpenAI-compatible
server), a retriever choice (every name in `rag_helpers.registry.RETRIEVERS`), and shows the answer with its citations and an accordion of the sources,
the cited sentences marked inside their document. Problems (an empty question, a backend that is not
configured, a provider error) appear as a message in the app instead of an exception.

It keeps a conversation (`conversation.Conversation`): a follow-up ("And in London?") is searched
for as a question of its own, with the "Follow-ups" strategy (condense: the language model rewrites
it; offline that becomes concatenate, and the answer says so). The earlier questions and short
answers appear above the answer; "New conversation" (or `app.new_conversation()`) clears them.

The rendering helpers (`marked_html`, `source_html`, `answer_html`) return plain HTML strings, so
they work with `IPython.display.HTML` too.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .answers import CITATION_PATTERN, REFUSAL_REASONS, Answer, Answerer, Source
from .backends import choose_backend, get_answerer
from .config import LLM_BACKENDS, Settings, redact
from .conversation import DEFAULT_STRATEGY, STRATEGIES, Conversation, Turn
from .documents import Document
from .generation import LLMError
from .pipeline import Pipeline
from .prompts import DEFAULT_BUDGET
from .store import query_encoder

BACKEND_LABELS = {
    "offline": "offline (extracts sentences, no LLM)",
    "local": "local: {model} (the course's own model, in this process)",
    "hf": "Hugging Face Inference Providers",
    "openai": "OpenAI-compatible server",
}
# Light yellow for the chunk inside its document, stronger for the sentences the answer quotes.
CHUNK_STYLE = "background:#fff5c2;padding:0"
QUOTE_STYLE = "background:#ffc94d;padding:0;font-weight:600"
_BOX_STYLE = "white-space:pre-wrap;font-family:monospace;font-size:0.85em;line-height:1.4"
# CSS classes on the app's parts, for styling and for the browser tests (tests/browser/).
APP_CLASS, ANSWER_CLASS, SOURCES_CLASS, STATUS_CLASS = "rag-qa-app", "rag-answer", "rag-sources", "rag-status"
CITE_CLASS, DONT_KNOW_CLASS = "rag-cite", "rag-dont-know"
HISTORY_CLASS, NEW_CONVERSATION_CLASS = "rag-history", "rag-new-conversation"
HISTORY_TURN_CLASS = "rag-history-turn"
STRATEGY_LABELS = {
    "condense": "condense (the model rewrites a follow-up)",
    "concatenate": "concatenate (earlier questions + follow-up)",
    "alone": "alone (the follow-up as asked)",
}
SHORT_ANSWER_CHARS = 200  # how much of an earlier answer the history shows


# --- HTML helpers ------------------------------------------------------------------------------


def _clip(spans: Iterable[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    clipped = []
    for start, end in spans:
        start, end = max(0, int(start)), min(length, int(end))
        if start < end:
            clipped.append((start, end))
    return clipped


def marked_html(text: str, layers: Sequence[tuple[Iterable[tuple[int, int]], str]]) -> str:
    """`text` as escaped HTML with each layer's (start, end) spans wrapped in `<mark style=...>`.

    Later layers win where spans overlap (a quoted sentence inside a highlighted chunk); spans are
    clipped to the text, so offsets that run past either end are harmless.
    """
    level = [0] * len(text)
    for number, (spans, _style) in enumerate(layers, start=1):
        for start, end in _clip(spans, len(text)):
            level[start:end] = [max(number, old) for old in level[start:end]]
    pieces, start = [], 0
    for position in range(1, len(text) + 1):
        if position == len(text) or level[position] != level[start]:
            run = html.escape(text[start:position])
            current = level[start]
            if current:
                run = f'<mark style="{layers[current - 1][1]}">{run}</mark>'
            pieces.append(run)
            start = position
    return "".join(pieces)


def whole_words(text: str, start: int, end: int) -> tuple[int, int]:
    """(start, end) shrunk so that neither end cuts a word of `text` ("wil|l be" -> "be").

    A span that holds no whole word is returned unchanged rather than emptied.
    """
    start, end = max(0, start), min(len(text), end)
    first, last = start, end
    if 0 < first < last and text[first - 1].isalnum() and text[first].isalnum():
        while first < last and not text[first].isspace():
            first += 1
        while first < last and text[first].isspace():
            first += 1
    if first < last < len(text) and text[last - 1].isalnum() and text[last].isalnum():
        while last > first and not text[last - 1].isspace():
            last -= 1
        while last > first and text[last - 1].isspace():
            last -= 1
    return (first, last) if first < last else (start, end)


def document_texts(documents: Mapping[str, str] | Iterable[Document] | None) -> dict[str, str]:
    """Document id -> full text, from a mapping or from `Document`s (empty for None)."""
    if documents is None:
        return {}
    if isinstance(documents, Mapping):
        return {str(key): str(value) for key, value in documents.items()}
    return {document.id: document.text for document in documents}


def source_html(source: Source, document_text: str | None = None, context_chars: int = 300) -> str:
    """One source as HTML: the chunk inside `context_chars` of its document, quoted sentences marked.

    Without `document_text` (or when the chunk's offsets do not match it) only the chunk is shown.
    """
    header = (
        f"<b>[{source.number}] {html.escape(source.document_id)}</b>, characters {source.start}-{source.end}"
    )
    if source.score is not None:
        header += f", similarity {source.score:.3f}"
    in_document = (
        document_text is not None
        and 0 <= source.start < source.end <= len(document_text)
        and document_text[source.start : source.end] == source.text
    )
    if in_document:
        assert document_text is not None
        first = max(0, source.start - context_chars)
        last = min(len(document_text), source.end + context_chars)
        window = document_text[first:last]
        # A chunk may start or end mid-word (character splitters): mark only its whole words.
        layers = [
            ([whole_words(window, source.start - first, source.end - first)], CHUNK_STYLE),
            ([whole_words(window, a - first, b - first) for a, b in source.highlights], QUOTE_STYLE),
        ]
        before = "…" if first > 0 else ""
        after = "…" if last < len(document_text) else ""
        body = before + marked_html(window, layers) + after
    else:
        shift = source.start if source.start >= 0 else 0
        quotes = [(a - shift, b - shift) for a, b in source.highlights] if source.start >= 0 else []
        body = marked_html(source.text, [(quotes, QUOTE_STYLE)])
    return f'<div>{header}</div><div style="{_BOX_STYLE}">{body}</div>'


def markdown_html(text: str) -> str:
    """Markdown (bold, lists, tables, code) as HTML; raw HTML in the text is escaped, never rendered."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable("table").render(text)


def _cited_html(text: str, sources: Mapping[int, Source]) -> str:
    """The text rendered from markdown, with [n] citations in bold, each with its document as a tooltip."""

    def cite(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.findall(r"\d+", match.group(1))]
        titles = "; ".join(sources[n].document_id for n in numbers if n in sources)
        tooltip = f' title="{html.escape(titles)}"' if titles else ""
        return f'<b class="{CITE_CLASS}" style="color:#1a5fb4"{tooltip}>{match.group(0)}</b>'

    # Citations are plain text to markdown, so they come out of it unchanged and are marked afterwards.
    return CITATION_PATTERN.sub(cite, markdown_html(text))


def answer_html(answer: Answer) -> str:
    """The answer text with its citations emphasised, then who answered and any notes."""
    by_number = {source.number: source for source in answer.context or answer.sources}
    body = _cited_html(answer.text, by_number)
    how = "extracted from the sources" if answer.extractive else "generated"
    if answer.refused:
        how = REFUSAL_REASONS.get(answer.refused, answer.refused)
    took = f" · {answer.seconds:.1f} s" if answer.seconds is not None else ""
    footer = f"{html.escape(answer.backend)} · {html.escape(answer.model)} · {how}{took}"
    notes = "".join(f"<div><i>{html.escape(note)}</i></div>" for note in answer.notes)
    kind = f"{ANSWER_CLASS} {DONT_KNOW_CLASS}" if answer.refused else ANSWER_CLASS
    return (
        f'<div class="{kind}" style="line-height:1.5;overflow-wrap:anywhere">{body}</div>{notes}'
        f'<div style="color:#666;font-size:0.85em">{footer}</div>'
    )


def history_html(turns: Sequence[Turn], limit: int = SHORT_ANSWER_CHARS) -> str:
    """Earlier turns as HTML: each question (and what was searched for, when that differs) and the
    start of its answer; empty for no turns."""
    if not turns:
        return ""
    items = []
    for turn in turns:
        searched = ""
        if turn.search != turn.question:
            searched = f'<div style="color:#666;font-size:0.85em">searched for: {html.escape(turn.search)}</div>'
        text = " ".join(turn.answer.text.split())
        short = text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
        style = "color:#666" if turn.answer.refused else ""
        items.append(
            f'<div class="{HISTORY_TURN_CLASS}" style="margin-bottom:0.4em"><div><b>Q:</b> '
            f"{html.escape(turn.question)}</div>{searched}"
            f'<div style="{style}"><b>A:</b> {html.escape(short)}</div></div>'
        )
    return (
        '<div style="border-left:3px solid #ccc;padding-left:0.6em;margin:0.3em 0">'
        f'<div style="color:#666;font-size:0.85em">Earlier in this conversation</div>{"".join(items)}</div>'
    )


def message_html(text: str, kind: str = "info") -> str:
    """A one-line status message; `kind` is info or error."""
    colour = "#a51d2d" if kind == "error" else "#555"
    return f'<div style="color:{colour}">{html.escape(text)}</div>'


# --- Choices -----------------------------------------------------------------------------------


def available_retrievers() -> tuple[list[str], str]:
    """The retriever names the app offers (the registry's) and the default one."""
    from .registry import DEFAULT_RETRIEVER, RETRIEVERS

    return list(RETRIEVERS), DEFAULT_RETRIEVER


def backend_options(settings: Settings) -> list[tuple[str, str]]:
    """(label, backend) pairs for the backend dropdown; unconfigured ones say what they need."""
    needs = {
        "hf": None if settings.hf_token else "set HF_TOKEN",
        "openai": None if settings.llm_base_url else "set LLM_BASE_URL",
    }
    from .local_models import get_local_model

    options = []
    for name in LLM_BACKENDS:
        label = BACKEND_LABELS[name].format(model=get_local_model(settings.local_model).display_name)
        if needs.get(name):
            label += f" (not configured: {needs[name]})"
        options.append((label, name))
    return options


# --- The app -----------------------------------------------------------------------------------


class QAApp:
    """Ask questions about a collection from a notebook (see the module docstring)."""

    def __init__(
        self,
        collection: Any,
        model: Any,
        *,
        settings: Settings,
        documents: Mapping[str, str] | Iterable[Document] | None = None,
        retrievers: Sequence[str] | None = None,
        default_retriever: str | None = None,
        k: int = 5,
        max_k: int = 10,
        budget: int | None = DEFAULT_BUDGET,
        llm_factory: Callable[[str], Answerer] | None = None,
        retriever_factory: Callable[[str], Callable[[str, int], Sequence[Any]]] | None = None,
    ) -> None:
        import ipywidgets as widgets

        if not 1 <= k <= max_k:
            raise ValueError(f"k ({k}) must be between 1 and max_k ({max_k})")
        self.collection = collection
        self.model = model
        self.settings = settings
        self.encoder = query_encoder(collection, model)  # one question vector for retriever, gate, answerer
        self.documents = document_texts(documents)
        self.budget = budget
        self._llm_factory = llm_factory
        self._retriever_factory = retriever_factory
        self._llms: dict[str, Answerer] = {}
        self._retrievers: dict[str, Callable[[str, int], Sequence[Any]]] = {}

        names, default = available_retrievers()
        if retrievers is not None:
            names = list(retrievers)
            default = names[0] if names else "dense"
        default = default_retriever or default
        if default not in names:
            raise ValueError(f"Default retriever {default!r} is not among the choices {names}.")
        try:
            backend = choose_backend(self.settings)
        except ValueError:
            backend = "offline"

        # Full width without overflowing the output area (width 100% plus margins would), labels
        # sized to their text, dropdowns to their longest option, rows that wrap on narrow screens.
        labels = {"description_width": "initial"}
        fit = widgets.Layout(width="auto")
        self.question = widgets.Textarea(
            placeholder="Ask a question about the documents, then press Ask",
            rows=2,
            layout=widgets.Layout(width="auto", align_self="stretch"),
        )
        self.k = widgets.IntSlider(value=k, min=1, max=max_k, description="k (chunks)", style=labels)
        self.backend = widgets.Dropdown(
            options=backend_options(self.settings), value=backend, description="Backend", style=labels,
            layout=fit,
        )
        self.retriever = widgets.Dropdown(
            options=names, value=default, description="Retriever", style=labels, layout=fit
        )
        self.strategy = widgets.Dropdown(
            options=[(STRATEGY_LABELS[name], name) for name in STRATEGIES], value=DEFAULT_STRATEGY,
            description="Follow-ups", style=labels, layout=fit,
        )
        self.ask_button = widgets.Button(description="Ask", button_style="primary", icon="search")
        self.new_button = widgets.Button(description="New conversation", icon="plus")
        self.history = widgets.HTML()
        self.status = widgets.HTML()
        self.answer_box = widgets.HTML()
        self.sources = widgets.Accordion(children=[])
        self.ask_button.on_click(lambda _button: self.ask())
        self.new_button.on_click(lambda _button: self.new_conversation())
        self.new_button.add_class(NEW_CONVERSATION_CLASS)
        self.history.add_class(HISTORY_CLASS)
        self.status.add_class(STATUS_CLASS)
        self.answer_box.add_class(ANSWER_CLASS)
        self.sources.add_class(SOURCES_CLASS)
        rows = widgets.Layout(flex_flow="row wrap")
        self.widget = widgets.VBox(
            [
                self.question,
                widgets.HBox([self.k, self.retriever, self.strategy], layout=rows),
                widgets.HBox([self.backend, self.ask_button, self.new_button], layout=rows),
                self.history,
                self.status,
                self.answer_box,
                self.sources,
            ]
        )
        self.widget.add_class(APP_CLASS)

        self.answer: Answer | None = None  # the last answer, None after an error
        self.error: str | None = None  # the last error message, None after a success
        self.seconds: float | None = None  # how long the last answer took
        self.conversation: Conversation | None = None  # made by the first question

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return (
            f"QAApp(collection={getattr(self.collection, 'name', None)!r}, k={self.k.value}, "
            f"backend={self.backend.value!r}, retriever={self.retriever.value!r}, turns={len(self.turns)})"
        )

    @property
    def turns(self) -> list[Turn]:
        """The turns of the conversation so far (question, search question, answer), oldest first."""
        return list(self.conversation.turns) if self.conversation is not None else []

    # -- building blocks, cached per name --

    def get_retriever(self, name: str) -> Callable[[str, int], Sequence[Any]]:
        """The retriever called `name`, built on first use."""
        if name not in self._retrievers:
            if self._retriever_factory is not None:
                self._retrievers[name] = self._retriever_factory(name)
            else:
                from .registry import make_retriever

                self._retrievers[name] = make_retriever(name, self.collection, self.encoder)
        return self._retrievers[name]

    def get_llm(self, backend: str) -> Answerer:
        """The answerer (LLM backend, or the extractive one) called `backend`, created on first use."""
        if backend not in self._llms:
            if self._llm_factory is not None:
                self._llms[backend] = self._llm_factory(backend)
            else:
                self._llms[backend] = get_answerer(self.settings, backend=backend, embedding_model=self.model)
        return self._llms[backend]

    # -- asking --

    def _fail(self, message: str) -> None:
        self.answer, self.seconds = None, None
        self.error = redact(message, [self.settings.hf_token, self.settings.llm_api_key])
        self.status.value = message_html(self.error, "error")
        self.answer_box.value = ""
        self.sources.children = []
        self.history.value = history_html(self.turns)  # no answer shown: every turn is history

    def new_conversation(self) -> None:
        """Forget the conversation: the next question is asked on its own, and the history is cleared."""
        if self.conversation is not None:
            self.conversation.reset()
        self.answer, self.error, self.seconds = None, None, None
        self.history.value = ""
        self.answer_box.value = ""
        self.sources.children = []
        self.status.value = message_html("New conversation: the next question is asked on its own.")

    def _conversation(self, pipeline: Pipeline) -> Conversation:
        """The app's conversation, answering with this question's pipeline and follow-up strategy."""
        if self.conversation is None:
            self.conversation = Conversation(pipeline, self.strategy.value)
        self.conversation.pipeline, self.conversation.strategy = pipeline, self.strategy.value
        return self.conversation

    def ask(self, question: str | None = None) -> Answer | None:
        """Answer the question in the box (or `question`, which is put in the box first)."""
        if question is not None:
            self.question.value = question
        text = self.question.value.strip()
        if not text:
            self._fail("Type a question first, then press Ask.")
            return None
        backend, name, k = self.backend.value, self.retriever.value, self.k.value
        self.error = None
        self.sources.children = []
        self.answer_box.value = ""
        self.status.value = message_html(f"Searching with {name} (k={k}) and answering with {backend}…")
        started = time.perf_counter()
        try:
            retriever = self.get_retriever(name)
            llm = self.get_llm(backend)
            pipeline = Pipeline(
                self.collection, llm, retriever, self.encoder, k, self.settings.min_score, budget=self.budget
            )
            stream = self._conversation(pipeline).stream(text)
            for _piece in stream:
                self.answer_box.value = f'<div style="white-space:pre-wrap">{html.escape(stream.text)}</div>'
            answer = stream.answer
        except LLMError as error:
            self._fail(f"The {backend} backend could not answer: {error}")
            return None
        except (ValueError, TypeError) as error:
            self._fail(str(error))
            return None
        except Exception as error:  # noqa: BLE001 - the app shows every failure instead of raising
            self._fail(f"Something went wrong ({type(error).__name__}): {error}")
            return None
        self.seconds = time.perf_counter() - started
        self.answer = answer
        self.history.value = history_html(self.turns[:-1])  # the last turn is the answer shown below
        self._render(answer, name, k)
        return answer

    def _render(self, answer: Answer, retriever: str, k: int) -> None:
        import ipywidgets as widgets

        cited = {source.number for source in answer.sources}
        shown = answer.context or answer.sources
        self.answer_box.value = answer_html(answer)
        children, titles = [], []
        for source in shown:
            full = next((s for s in answer.sources if s.number == source.number), source)
            children.append(widgets.HTML(source_html(full, self.documents.get(full.document_id))))
            mark = "cited" if source.number in cited else "not cited"
            titles.append(f"[{source.number}] {source.document_id} ({mark})")
        self.sources.children = children
        self.sources.titles = tuple(titles)
        first_cited = next((i for i, s in enumerate(shown) if s.number in cited), None)
        self.sources.selected_index = first_cited
        citing = ", ".join(f"[{n}]" for n in sorted(cited)) or "no source"
        turns = self.turns
        follow_up = f" A follow-up, searched for with {turns[-1].strategy}." if len(turns) > 1 else ""
        self.status.value = message_html(
            f"{len(shown)} chunks from the {retriever} retriever (k={k}); the answer cites {citing}. "
            f"{self.seconds:.1f} s.{follow_up}"
        )


__all__ = [
    "QAApp",
    "answer_html",
    "available_retrievers",
    "backend_options",
    "document_texts",
    "history_html",
    "markdown_html",
    "marked_html",
    "message_html",
    "source_html",
    "whole_words",
]
