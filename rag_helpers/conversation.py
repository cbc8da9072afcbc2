"""Follow-up questions: answer each question with the conversation so far, through the pipeline core.

    chat = Conversation(pipeline)                        # strategy "condense" with a language model
    chat.ask("What is the standard hotel cap in the 2024 travel policy?")
    chat.ask("And in London?")                           # searched for as a question of its own
    chat.turns[-1].search                                # what retrieval and the prompt used
    chat.reset()                                         # a new conversation

"And in London?" finds nothing on its own: retrieval and the prompt need a *search question* that
stands alone. Three ways to get one (`STRATEGIES`), each a plain function of the history:

- ``"alone"``: the follow-up as asked (the naive baseline: it loses the subject).
- ``"concatenate"``: the earlier questions and the follow-up joined into one query (the other naive
  choice: the subject comes back, but so does the first question, whose passage may win).
- ``"condense"``: a language model rewrites the follow-up into a standalone question with one
  short, greedy call (`condense`); the rewrite never answers it. An unusable reply (empty, absurdly
  long, an answer instead of a question, a rewrite that lost the follow-up's own names or numbers)
  falls back to "concatenate" (or, asked to, to the follow-up itself).

A first question has no history and is searched for as asked, whatever the strategy. `Conversation`
wraps a `pipeline.Pipeline`: it keeps the last `max_turns` turns (question, search question, answer),
condenses with the pipeline's own answerer when that is a language model, and, offline (the
extractive answerer cannot rewrite), uses "concatenate" instead and says so once in a note. The
answer's notes say "Searched for: ..." whenever the search question differs from the one asked.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .answers import CITATION_PATTERN, Answer, AnswerStream, Answerer
from .base import Message, Prompt
from .pipeline import Pipeline
from .query_expansion import LanguageModelRequiredError

STRATEGIES: tuple[str, ...] = ("alone", "concatenate", "condense")
DEFAULT_STRATEGY = "condense"
OFFLINE_STRATEGY = "concatenate"  # what "condense" becomes without a language model
MAX_TURNS = 3  # turns a conversation keeps (and shows the rewriter)
ANSWER_CHARS = 300  # how much of an earlier answer the rewriter sees
MAX_REWRITE_CHARS = 300  # a longer "rewrite" is not a question; the follow-up is used instead
REWRITE_PARAMS: dict[str, Any] = {"temperature": 0, "max_tokens": 64}  # short and greedy (repeatable)

CONDENSE_SYSTEM_PROMPT = """\
You rewrite the last question of a conversation so that it can be understood without the conversation.

Rules:
1. The last question often changes one detail of the earlier question (a place, a year, a version, a
   product) or points back to it with words like "it", "they", "that" or "and ...". Write the full
   question with the new detail in place of the old one.
2. Keep the user's meaning. Do not answer the question and do not add facts of your own.
3. If the last question already stands on its own, repeat it unchanged.
4. Reply with the rewritten question only, on one line."""

# Worked examples, as earlier chat turns (small models follow a shown example better than a rule).
# Invented, and about nothing in the sample corpus, so they cannot leak an answer into a search.
CONDENSE_EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Conversation:\nUser: What is the warranty period of the Orbit X100 printer?\n"
        "Assistant: Two years from the date of purchase.\n\nLast question: And for the X200?",
        "What is the warranty period of the Orbit X200 printer?",
    ),
    (
        "Conversation:\nUser: How much is the monthly parking fee at the Oslo office in 2024?\n"
        "Assistant: 40 euros a month.\n\nLast question: What was it in 2022?",
        "How much was the monthly parking fee at the Oslo office in 2022?",
    ),
    (
        "Conversation:\nUser: Who wrote the 2022 facilities audit?\nAssistant: Dana Reyes wrote it.\n\n"
        "Last question: When was it published?",
        "When was the 2022 facilities audit published?",
    ),
)

# Words a question (or a request) starts with; a reply that starts otherwise and has no "?" is an answer.
_QUESTION_START = re.compile(
    r"^(what|which|who|whom|whose|when|where|why|how|is|are|was|were|do|does|did|can|could|should|"
    r"would|will|shall|may|might|must|has|have|had|am|list|name|give|show|describe|explain|tell|compare|"
    r"summari[sz]e|define|find)\b",
    re.IGNORECASE,
)
_PREFIX = re.compile(
    r"^\s*(?:(?:the\s+)?(?:rewritten|standalone|stand-alone|condensed|reformulated|new)\s+question|"
    r"question|rewrite|rewritten|answer|output|q)\s*[:：\-–]\s*",
    re.IGNORECASE,
)
_QUOTES = "\"'`“”‘’«»*_ "
# Words that point back into the conversation: a follow-up holding one is not standalone as it is.
_POINTER = re.compile(
    r"\b(it|its|that|this|they|them|their|those|these|there|then|he|she|him|her)\b|^\s*(and|but|what about|"
    r"how about)\b",
    re.IGNORECASE,
)
# A follow-up's own details (numbers, and names: capitalised words after the first) must survive a rewrite.
_DETAIL = re.compile(r"\d[\w.,-]*|(?<=\s)[A-ZÀ-Ý][\w'’.-]*")


# --- The history, whatever its items are --------------------------------------------------------


def _asked(item: Any) -> str:
    """The question of a history item as the user asked it."""
    if isinstance(item, str):
        return item
    if isinstance(item, tuple):
        return str(item[0])
    return str(getattr(item, "question", None) or getattr(item, "q", ""))


def _understood(item: Any) -> str:
    """The question as the conversation understood it: a turn's condensed rewrite, else as asked."""
    if isinstance(item, Turn) and item.strategy == "condense":
        return item.search
    return _asked(item)


def _answer_text(item: Any) -> str:
    if isinstance(item, str):
        return ""
    answer = item[1] if isinstance(item, tuple) and len(item) > 1 else getattr(item, "answer", "")
    return answer.text if isinstance(answer, Answer) else str(answer or "")


def _short(text: str, limit: int = ANSWER_CHARS) -> str:
    text = re.sub(rf"\s*(?:{CITATION_PATTERN.pattern})", "", text, flags=re.IGNORECASE)  # [n], and its space
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _same(a: str, b: str) -> bool:
    def norm(text: str) -> str:
        return re.sub(r"\s+", " ", text).strip().rstrip("?.! ").casefold()

    return norm(a) == norm(b)


# --- The three strategies -------------------------------------------------------------------------


def alone(history: Sequence[Any], question: str) -> str:
    """The follow-up as asked: the conversation is ignored."""
    return question.strip()


def concatenate(history: Sequence[Any], question: str) -> str:
    """The earlier questions and the follow-up, oldest first, joined into one query (repeats left out).

    `history` items may be `Turn`s, labelled turns (`.q`), (question, answer) pairs or plain questions.
    """
    question = question.strip()
    earlier: list[str] = []
    for item in history:
        asked = _asked(item).strip()
        if asked and not _same(asked, question) and not any(_same(asked, seen) for seen in earlier):
            earlier.append(asked)
    return " ".join([*earlier, question])


def condense_messages(history: Sequence[Any], question: str) -> list[Message]:
    """The rewrite request: the rules, the worked examples, then the conversation and its last question."""
    lines = []
    for item in history:
        lines.append(f"User: {_short(_understood(item))}")
        answer = _answer_text(item)
        if answer.strip():
            lines.append(f"Assistant: {_short(answer)}")
    messages: list[Message] = [{"role": "system", "content": CONDENSE_SYSTEM_PROMPT}]
    for asked, rewritten in CONDENSE_EXAMPLES:
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": rewritten}]
    conversation = "\n".join(lines) or "(nothing yet)"
    messages.append(
        {"role": "user", "content": f"Conversation:\n{conversation}\n\nLast question: {question.strip()}"}
    )
    return messages


def clean_rewrite(reply: str, limit: int = MAX_REWRITE_CHARS) -> str | None:
    """The question in a model's rewrite reply (prefixes, quotes and markup stripped), or None when the
    reply is unusable: empty, longer than `limit`, or an answer (a citation, or a sentence that is
    neither a question nor a request)."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip(_QUOTES + "\t")]
    if not lines:
        return None
    text = lines[0]
    for _ in range(2):  # "**Rewritten question:** "What ...?"" has a prefix inside markup
        text = _PREFIX.sub("", text.strip(_QUOTES)).strip(_QUOTES)
    text = re.sub(r"\s+", " ", text).strip()
    if not text or len(text) > limit or CITATION_PATTERN.search(text):
        return None
    if not text.endswith("?") and not _QUESTION_START.match(text):
        return None
    return text


def _require_llm(llm: Any) -> None:
    if llm is None or getattr(llm, "backend", "") == "offline":
        raise LanguageModelRequiredError(
            "condense needs a language model to rewrite the follow-up, and "
            f"{'none' if llm is None else 'the offline backend'} was given. Use the course's own model "
            "(backends.get_llm(settings, 'local')), or the 'concatenate' strategy offline."
        )


@dataclass(frozen=True)
class Condensed:
    """What condensing made of a follow-up: the search question, the model's reply, and why the
    reply was not used (None when it was)."""

    question: str
    reply: str
    fallback: str | None = None


def _kept(detail: str, rewrite: str) -> bool:
    if detail.casefold() in rewrite.casefold():
        return True
    # An abbreviation may come back spelled out: "UK" as "United Kingdom".
    initials = "".join(word[0] for word in re.findall(r"[A-Z][a-z]+", rewrite))
    return detail.isupper() and len(detail) > 1 and detail in initials


def lost_details(follow_up: str, rewrite: str) -> list[str]:
    """The follow-up's numbers and names ("2023", "London") that its rewrite left out."""
    details = [re.sub(r"['’]s$", "", detail.rstrip(".,?!")) for detail in _DETAIL.findall(follow_up)]
    return [detail for detail in details if detail and detail != "I" and not _kept(detail, rewrite)]


def condense_details(
    history: Sequence[Any], question: str, llm: Answerer, *, fallback: str = OFFLINE_STRATEGY, **params: Any
) -> Condensed:
    """`condense`, saying what the model replied and why its reply was not used (see `condense`)."""
    _require_llm(llm)
    if fallback not in ("alone", "concatenate"):
        raise ValueError(f"fallback must be 'alone' or 'concatenate', got {fallback!r}")
    question = question.strip()
    if not history:
        return Condensed(question, "")
    reply = llm.answer(Prompt(condense_messages(history, question)), **{**REWRITE_PARAMS, **params})
    rewrite = clean_rewrite(reply.text)
    reason = None
    if reply.finish_reason == "length":
        reason = "the reply was cut off: it was writing more than a question"
    elif rewrite is None:
        reason = "the reply was empty, too long, or an answer rather than a question"
    elif lost := lost_details(question, rewrite):
        reason = f"the rewrite left out {', '.join(lost)} of the follow-up"
    elif _same(rewrite, question) and _POINTER.search(question):
        reason = "the follow-up came back unchanged although it points back into the conversation"
    if reason is None:
        return Condensed(rewrite, reply.text)  # type: ignore[arg-type]
    made = concatenate(history, question) if fallback == "concatenate" else question
    return Condensed(made, reply.text, reason)


def condense(
    history: Sequence[Any], question: str, llm: Answerer, *, fallback: str = OFFLINE_STRATEGY, **params: Any
) -> str:
    """`question` rewritten by `llm` into a question that stands without `history`: one short, greedy
    call (`params` override `REWRITE_PARAMS`) that never answers it. Without history, the question itself.

    When the reply is unusable (empty, cut off, absurdly long, an answer; or a rewrite that drops the
    follow-up's own names and numbers, or returns a follow-up that points back unchanged), the
    `fallback` strategy's query: "concatenate" by default (the earlier questions and the follow-up;
    on the sample conversations it finds the evidence far more often than the follow-up alone), or
    "alone" (the follow-up itself). `condense_details` also says why.
    """
    return condense_details(history, question, llm, fallback=fallback, **params).question


def search_question(strategy: str, history: Sequence[Any], question: str, llm: Answerer | None = None) -> str:
    """The query that `strategy` (one of `STRATEGIES`) makes of `question` after `history`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"Unknown follow-up strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")
    if strategy == "condense":
        return condense(history, question, llm)  # type: ignore[arg-type]
    return concatenate(history, question) if strategy == "concatenate" else alone(history, question)


# --- A conversation over the pipeline --------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One turn: the question as asked, the question searched for (and put in the prompt), the answer,
    and the strategy that made the search question ("alone" for a first question)."""

    question: str
    search: str
    answer: Answer
    strategy: str = "alone"


class Conversation:
    """Questions answered with the conversation so far, through one `Pipeline` (see the module docstring).

    `pipeline` may be swapped between questions (another retriever, k or answerer); the turns stay.
    `llm` rewrites follow-ups for "condense" (default: the pipeline's answerer, when it is a language
    model). Only the last `max_turns` turns are kept.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        strategy: str = DEFAULT_STRATEGY,
        llm: Answerer | None = None,
        max_turns: int = MAX_TURNS,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"Unknown follow-up strategy {strategy!r}; use one of {', '.join(STRATEGIES)}.")
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a whole number of at least 1, got {max_turns!r}")
        self.pipeline, self.strategy, self.llm, self.max_turns = pipeline, strategy, llm, max_turns
        self.turns: list[Turn] = []
        self._told_offline = False

    def __repr__(self) -> str:
        return f"Conversation(strategy={self.strategy!r}, turns={len(self.turns)}, max_turns={self.max_turns})"

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def rewriter(self) -> Answerer | None:
        """The language model that condenses follow-ups: `llm`, else the pipeline's answerer if it is one."""
        llm = self.llm if self.llm is not None else self.pipeline.answerer
        return None if getattr(llm, "backend", "") == "offline" else llm

    def effective_strategy(self) -> str:
        """The strategy follow-ups get now: `strategy`, or "concatenate" for "condense" without a model."""
        if self.strategy == "condense" and self.rewriter is None:
            return OFFLINE_STRATEGY
        return self.strategy

    def reset(self) -> None:
        """Forget every turn: the next question starts a new conversation."""
        self.turns.clear()
        self._told_offline = False

    def rewrite(self, question: str) -> tuple[str, str, tuple[str, ...]]:
        """(search question, strategy used, notes) for `question` after the turns so far."""
        if not isinstance(question, str) or not question.strip():
            raise ValueError("The question is empty; pass the text of a question.")
        question = question.strip()
        if not self.turns:
            return question, "alone", ()
        strategy, notes = self.effective_strategy(), []
        if strategy != self.strategy and not self._told_offline:
            self._told_offline = True
            notes.append(
                "No language model to rewrite follow-up questions (the offline backend): searching with the "
                "earlier questions and this one joined (concatenate) instead of condensing."
            )
        started = time.perf_counter()
        search = search_question(strategy, self.turns, question, self.rewriter)
        if not _same(search, question):
            how = {
                "condense": f"rewritten by {getattr(self.rewriter, 'model', 'the model')} in "
                f"{time.perf_counter() - started:.1f} s",
                "concatenate": "the earlier questions joined to this one",
            }.get(strategy, strategy)
            notes.insert(0, f"Searched for: {search} ({how})")
        return search, strategy, tuple(notes)

    def stream(self, question: str, **params: Any) -> AnswerStream:
        """The answer to `question` with the conversation so far, piece by piece; the turn is kept once
        the stream is read to the end. `params` are generation parameters, as for `Pipeline.stream`."""
        started = time.perf_counter()
        search, strategy, notes = self.rewrite(question)
        rewrite_seconds = time.perf_counter() - started
        inner = self.pipeline.stream(search, **params)

        def pieces() -> Iterator[str]:
            yield from inner

        def finish(_text: str) -> Answer:
            answer = inner.answer
            first = answer.first_piece_seconds
            answer = replace(
                answer,
                notes=(*notes, *answer.notes),
                seconds=time.perf_counter() - started,
                first_piece_seconds=None if first is None else first + rewrite_seconds,
            )
            self.turns.append(Turn(question.strip(), search, answer, strategy))
            del self.turns[: -self.max_turns]
            return answer

        return AnswerStream(pieces(), finish)

    def ask(self, question: str, **params: Any) -> Answer:
        """The complete answer to `question` with the conversation so far (the stream, read to the end)."""
        return self.stream(question, **params).answer


__all__ = [
    "DEFAULT_STRATEGY",
    "MAX_TURNS",
    "STRATEGIES",
    "Condensed",
    "Conversation",
    "Turn",
    "alone",
    "clean_rewrite",
    "concatenate",
    "condense",
    "condense_details",
    "condense_messages",
    "lost_details",
    "search_question",
]
