"""Follow-up questions: the three strategies, condensing with a scripted model, and a `Conversation`
over the pipeline core; one slow test condenses with the course's own model (properties only)."""

from __future__ import annotations

from typing import Any

import pytest

from rag_helpers.answers import AnswerStream, Answerer
from rag_helpers.base import Prompt, RetrievedChunk
from rag_helpers.conversation import (
    CONDENSE_SYSTEM_PROMPT,
    MAX_REWRITE_CHARS,
    STRATEGIES,
    Conversation,
    Turn,
    alone,
    clean_rewrite,
    concatenate,
    condense,
    condense_details,
    condense_messages,
    lost_details,
    search_question,
)
from rag_helpers.generation import generated_answer
from rag_helpers.pipeline import Pipeline
from rag_helpers.query_expansion import LanguageModelRequiredError
from rag_helpers.questions import LabelledTurn

CHUNKS = [
    RetrievedChunk(f"travel.md_{n}", text, 0.2, 0.9 - n / 10, {"document_id": "travel.md", "start": 100 * n})
    for n, text in enumerate(["The standard cap is €165.", "In London the cap is £185.", "Rail is preferred."])
]
FIRST = "What is the standard hotel cap in the 2024 travel policy?"
REWRITE = "What is the hotel cap in London in the 2024 travel policy?"


class ScriptedLLM(Answerer):
    """A language model with one reply for rewrite requests and one for answers; it records every prompt."""

    backend, model = "scripted", "scripted-1"

    def __init__(self, rewrite: str = REWRITE, reply: str = "The cap is £185 [2].", finish: str = "stop") -> None:
        self.rewrite, self.reply, self.finish = rewrite, reply, finish
        self.rewrites: list[tuple[Prompt, dict]] = []
        self.answers: list[tuple[Prompt, dict]] = []

    def stream(self, prompt: Prompt, **params: Any) -> AnswerStream:
        condensing = prompt.messages[0]["content"] == CONDENSE_SYSTEM_PROMPT
        (self.rewrites if condensing else self.answers).append((prompt, params))
        text = self.rewrite if condensing else self.reply
        finish = self.finish if condensing else "stop"
        pieces = [word + " " for word in text.split(" ")[:-1]] + text.split(" ")[-1:]
        return AnswerStream(
            pieces, lambda whole: generated_answer(whole, prompt, self.backend, self.model, finish_reason=finish)
        )


class OfflineAnswerer(ScriptedLLM):
    """Stands in for the extractive answerer: it answers, but cannot rewrite a question."""

    backend, model = "offline", "extractive"


class RecordingRetriever:
    def __init__(self) -> None:
        self.queries: list[str] = []

    def __call__(self, query: str, k: int = 5) -> list[RetrievedChunk]:
        self.queries.append(query)
        return CHUNKS[:k]


def pipeline(answerer: Answerer, retriever: RecordingRetriever | None = None) -> Pipeline:
    return Pipeline(None, answerer, retriever or RecordingRetriever(), min_score=None)


# --- The strategies as functions ---------------------------------------------------------------------


def test_alone_ignores_the_history_and_concatenate_joins_the_earlier_questions():
    history = [(FIRST, "€165 [1]."), LabelledTurn("Is rail preferred?", "Yes.")]
    assert alone(history, "  And in London? ") == "And in London?"
    assert concatenate(history, "And in London?") == f"{FIRST} Is rail preferred? And in London?"
    assert concatenate([], "And in London?") == "And in London?"
    # Repeats are left out: the same question asked again is searched for once.
    assert concatenate([FIRST, FIRST.lower()], FIRST) == FIRST


def test_search_question_dispatches_and_a_first_question_is_searched_as_asked():
    llm = ScriptedLLM()
    assert [search_question(name, [], " And in London?", llm) for name in STRATEGIES] == ["And in London?"] * 3
    assert llm.rewrites == []  # no history, no rewrite request
    assert search_question("condense", [(FIRST, "€165.")], "And in London?", llm) == REWRITE
    with pytest.raises(ValueError, match="alone, concatenate, condense"):
        search_question("summarise", [], "Q?")


def test_the_rewrite_request_shows_the_conversation_and_asks_for_a_question_only():
    messages = condense_messages([(FIRST, "The standard cap is €165 [1]. " + "More. " * 100)], "And in London?")
    assert messages[0] == {"role": "system", "content": CONDENSE_SYSTEM_PROMPT}
    assert "Do not answer the question" in CONDENSE_SYSTEM_PROMPT
    assert [m["role"] for m in messages[1:-1]] == ["user", "assistant"] * ((len(messages) - 2) // 2)
    last = messages[-1]["content"]
    assert last.startswith(f"Conversation:\nUser: {FIRST}\nAssistant: The standard cap is €165.")
    assert "[1]" not in last and last.endswith("Last question: And in London?")
    assert "…" in last and len(last) < 500  # a long answer is shortened


def test_condense_uses_the_models_rewrite_with_a_short_greedy_call():
    llm = ScriptedLLM(rewrite='Rewritten question: "What is the hotel cap in London in the 2024 travel policy?"')
    assert condense([(FIRST, "€165.")], "And in London?", llm) == REWRITE
    ((prompt, params),) = llm.rewrites
    assert params == {"temperature": 0, "max_tokens": 64}
    assert "Last question: And in London?" in prompt.messages[-1]["content"]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("What is the cap in London?", "What is the cap in London?"),
        ('**Standalone question:** "What is the cap in London?"', "What is the cap in London?"),
        ("Question: List the steps to reset the S3\nThis asks about resetting.", "List the steps to reset the S3"),
        ("  \n", None),
        ("The cap in London is £185 [2].", None),  # an answer, cited
        ("In London, the cap is £185.", None),  # an answer: neither a question nor a request
        ("What " + "very " * 80 + "long?", None),
    ],
)
def test_clean_rewrite_strips_what_models_add_and_rejects_what_is_not_a_question(reply, expected):
    assert clean_rewrite(reply) == expected


@pytest.mark.parametrize(
    ("reply", "finish", "why"),
    [
        ("", "stop", "empty"),
        ("The cap in London is £185.", "stop", "an answer"),
        ("What is " + "the cap " * 50 + "?", "stop", "too long"),
        ("What is the cap in", "length", "cut off"),
        (FIRST, "stop", "left out London"),  # the rewrite dropped the follow-up's own detail
    ],
)
def test_an_unusable_rewrite_falls_back_to_concatenate_or_to_the_follow_up(reply, finish, why):
    history = [(FIRST, "€165.")]
    details = condense_details(history, "And in London?", ScriptedLLM(rewrite=reply, finish=finish))
    assert details.question == f"{FIRST} And in London?" and why in details.fallback
    assert details.reply == reply.strip()
    alone_fallback = condense(history, "And in London?", ScriptedLLM(rewrite=reply, finish=finish), fallback="alone")
    assert alone_fallback == "And in London?"


def test_a_follow_up_that_points_back_cannot_come_back_unchanged():
    history = [("How many SEV1 incidents were there in 2023?", "Six.")]
    details = condense_details(history, "Is the target lower than that?", ScriptedLLM(rewrite="Is the target lower than that?"))
    assert details.fallback and "unchanged" in details.fallback
    standalone = "Which office hosts the summer party?"
    assert condense(history, standalone, ScriptedLLM(rewrite=standalone)) == standalone  # already standalone


def test_lost_details_finds_numbers_and_names_missing_from_a_rewrite():
    assert lost_details("And in London?", FIRST) == ["London"]
    assert lost_details("What was it in 2023?", "What was the per diem in 2023?") == []
    assert lost_details("What about in the UK?", "What is the pension in the United Kingdom?") == []
    assert lost_details("Was that quicker than Nordhavn's roll-out?", "Was it quicker than the Nordhavn roll-out?") == []


def test_condense_needs_a_language_model():
    for llm in (None, OfflineAnswerer()):
        with pytest.raises(LanguageModelRequiredError, match="concatenate"):
            condense([(FIRST, "€165.")], "And in London?", llm)


# --- A conversation over the pipeline -------------------------------------------------------------------


def test_a_follow_up_is_condensed_searched_and_answered_with_the_rewrite():
    llm, retriever = ScriptedLLM(), RecordingRetriever()
    chat = Conversation(pipeline(llm, retriever))
    first = chat.ask(FIRST)
    assert retriever.queries == [FIRST] and llm.rewrites == [] and not first.notes
    answer = chat.ask("And in London?", temperature=0)
    assert retriever.queries == [FIRST, REWRITE]
    prompt, params = llm.answers[-1]
    assert prompt.question == REWRITE and params == {"temperature": 0}  # the prompt asks the rewrite too
    assert answer.notes[0].startswith(f"Searched for: {REWRITE} (rewritten by scripted-1 in ")
    assert answer.cited_ids == ["travel.md_1"] and answer.seconds >= answer.first_piece_seconds >= 0
    assert [(t.question, t.search, t.strategy) for t in chat.turns] == [
        (FIRST, FIRST, "alone"), ("And in London?", REWRITE, "condense"),
    ]
    assert chat.turns[-1].answer is answer


def test_the_rewriter_sees_the_earlier_rewrites_and_answers():
    llm = ScriptedLLM()
    chat = Conversation(pipeline(llm))
    chat.ask(FIRST)
    chat.ask("And in London?")
    llm.rewrite = "What was the hotel cap in London in the 2023 travel policy?"
    chat.ask("What was it in 2023?")
    last = llm.rewrites[-1][0].messages[-1]["content"]
    assert f"User: {FIRST}\nAssistant: The cap is £185." in last
    assert f"User: {REWRITE}\n" in last  # the condensed turn, not "And in London?"


def test_the_history_is_bounded_and_reset_starts_again():
    chat = Conversation(pipeline(ScriptedLLM(rewrite="What is the rail rule?")), max_turns=2)
    for question in (FIRST, "Is rail preferred?", "And for short trips?"):
        chat.ask(question)
    assert len(chat) == 2 and [t.question for t in chat.turns] == ["Is rail preferred?", "And for short trips?"]
    chat.reset()
    assert chat.turns == [] and chat.ask("And in London?").notes == ()  # asked on its own again


def test_a_streamed_turn_is_kept_once_it_is_read_to_the_end():
    chat = Conversation(pipeline(ScriptedLLM(reply="The standard cap is €165 [1].")))
    stream = chat.stream(FIRST)
    assert next(stream) == "The " and chat.turns == []
    assert "".join(stream) == "standard cap is €165 [1]."
    assert stream.answer.cited_ids == ["travel.md_0"] and len(chat.turns) == 1
    assert isinstance(chat.turns[0], Turn)


def test_offline_condense_becomes_concatenate_and_says_so_once():
    retriever = RecordingRetriever()
    chat = Conversation(pipeline(OfflineAnswerer(), retriever), "condense")
    assert chat.rewriter is None and chat.effective_strategy() == "concatenate"
    chat.ask(FIRST)
    second = chat.ask("And in London?")
    assert retriever.queries[-1] == f"{FIRST} And in London?"
    assert second.notes[0] == f"Searched for: {FIRST} And in London? (the earlier questions joined to this one)"
    assert "(concatenate) instead of condensing" in second.notes[1]
    third = chat.ask("And in Lisbon?")
    assert not any("instead of condensing" in note for note in third.notes)
    assert chat.turns[-1].strategy == "concatenate"
    chat.reset()
    chat.ask(FIRST)
    assert any("instead of condensing" in note for note in chat.ask("And in Lisbon?").notes)  # a new conversation


def test_an_explicit_rewriter_condenses_for_an_offline_pipeline():
    rewriter, retriever = ScriptedLLM(), RecordingRetriever()
    chat = Conversation(pipeline(OfflineAnswerer(), retriever), llm=rewriter)
    chat.ask(FIRST)
    chat.ask("And in London?")
    assert retriever.queries[-1] == REWRITE and len(rewriter.rewrites) == 1


def test_alone_and_concatenate_never_call_the_model_to_rewrite():
    for strategy, expected in (("alone", "And in London?"), ("concatenate", f"{FIRST} And in London?")):
        llm, retriever = ScriptedLLM(), RecordingRetriever()
        chat = Conversation(pipeline(llm, retriever), strategy)
        chat.ask(FIRST)
        answer = chat.ask("And in London?")
        assert retriever.queries[-1] == expected and llm.rewrites == []
        assert all(not note.startswith("Searched for") for note in answer.notes) == (strategy == "alone")


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Unknown follow-up strategy"):
        Conversation(pipeline(ScriptedLLM()), "guess")
    with pytest.raises(ValueError, match="max_turns"):
        Conversation(pipeline(ScriptedLLM()), max_turns=0)
    chat = Conversation(pipeline(ScriptedLLM()))
    with pytest.raises(ValueError, match="empty"):
        chat.ask("   ")
    assert chat.turns == []


# --- The course's own model ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_default_model_condenses_a_follow_up_into_a_question_without_answering_it():
    from rag_helpers.local_llm import LocalLLM

    history = [("How much is the meal per diem for a full travel day under the 2024 travel policy?", "€52 per full day.")]
    details = condense_details(history, "What was it in 2023?", LocalLLM(progress=None))
    rewrite = details.question
    assert rewrite != "What was it in 2023?" and rewrite.endswith("?")
    assert "2023" in rewrite and "diem" in rewrite.lower()
    assert len(rewrite) <= 2 * MAX_REWRITE_CHARS and "[" not in rewrite
    assert "45" not in details.reply  # the 2023 figure: a rewrite never answers
