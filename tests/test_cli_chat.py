"""`python -m rag_helpers chat`: questions from standard input, answered as one conversation.

On a small real index: offline (the extractive answerer, so follow-ups are concatenated), with a
scripted language model in this process (so they are condensed), and once through a real pipe to a
separate process, line by line, to prove each answer is flushed before the next question is written.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
from typing import Any

import pytest

from rag_helpers import backends, cli
from rag_helpers.answers import AnswerStream, Answerer
from rag_helpers.base import Prompt
from rag_helpers.conversation import CONDENSE_SYSTEM_PROMPT, DEFAULT_STRATEGY, STRATEGIES
from rag_helpers.generation import LLMError, generated_answer

DOCS = {
    "policies/travel.md": "# Travel policy\n\nThe nightly hotel cap is €165, and £185 in London. "
    "Meals are covered by a per diem of €52 per full day.\n\nClaims are filed in Ledgerly within 21 days.",
    "people/kitchen.txt": "Kitchen rules. Label your food with your name. "
    "The fridge is cleaned every Friday afternoon.",
}
COLLECTION = "chat_test"
REWRITE = "What is the per diem for meals in the travel policy?"
BYLINE = re.compile(r"^\((offline|scripted): .*, \d+\.\d s(, [^)]*)?\)$", re.MULTILINE)


@pytest.fixture(scope="module")
def db(build_index):
    return build_index("chat", DOCS, COLLECTION)


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch):
    """Settings from the test's environment only, never from a developer's .env."""
    env: dict[str, str] = {"RAG_MIN_SCORE": "off", "RAG_CHECK": "off"}
    monkeypatch.setattr(cli.Settings, "load", classmethod(lambda cls, *a, **k: cls.from_mapping(env)))
    return env


class Terminal(io.StringIO):
    """Standard input typed at a terminal."""

    def isatty(self) -> bool:
        return True


def chat(capsys, monkeypatch, db, lines: str, *argv: Any, stdin: type[io.StringIO] = io.StringIO):
    monkeypatch.setattr(sys, "stdin", stdin(lines))
    try:
        code = cli.main(["chat", *map(str, argv), "--db", str(db), "--collection", COLLECTION])
    except SystemExit as stop:  # argparse refuses a bad argument with exit status 2
        code = stop.code
    out, err = capsys.readouterr()
    return code, out, err


class ScriptedLLM(Answerer):
    """A language model in this process: a fixed rewrite for rewrite requests, a fixed answer otherwise."""

    backend, model = "scripted", "scripted-1"

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.prompts: list[Prompt] = []

    def stream(self, prompt: Prompt, **params: Any) -> AnswerStream:
        self.prompts.append(prompt)
        if prompt.messages[0]["content"] == CONDENSE_SYSTEM_PROMPT:
            text = REWRITE
        elif self.fail_on and self.fail_on in prompt.question:
            raise LLMError("the scripted model is down (try again later)")
        else:
            text = "It is in the sources [1]."
        return AnswerStream([text], lambda whole: generated_answer(whole, prompt, self.backend, self.model))


@pytest.fixture
def scripted(monkeypatch) -> ScriptedLLM:
    llm = ScriptedLLM()
    monkeypatch.setattr(backends, "get_answerer", lambda *args, **kwargs: llm)
    return llm


def test_the_parser_offers_the_conversation_strategies():
    assert cli.STRATEGY_CHOICES == STRATEGIES and cli.DEFAULT_STRATEGY == DEFAULT_STRATEGY


def test_offline_chat_answers_each_line_with_the_conversation_so_far(capsys, monkeypatch, db):
    lines = "What is the hotel cap in London?\n\n   \nAnd the per diem?\n/new\nWhen is the fridge cleaned?\n"
    code, out, err = chat(capsys, monkeypatch, db, lines, "-k", 2)
    assert code == 0, err
    assert "answering offline" in err and "> " not in out  # no prompt when stdin is not a terminal
    assert len(BYLINE.findall(out)) == 3  # three questions, blank lines skipped
    first, second, third = re.split(r"^\(offline: .*\)$", out, flags=re.MULTILINE)[:3]
    assert "£185" in first and "Searched for" not in first and "Sources:\n  [1] policies/travel.md_0" in first
    # Offline, a follow-up is searched for with the earlier question joined to it, and the answer says so.
    assert "€52" in second
    assert "Searched for: What is the hotel cap in London? And the per diem? (the earlier questions" in second
    assert "(concatenate) instead of condensing" in second
    assert "New conversation." in third and "Friday" in third and "Searched for" not in third


def test_a_scripted_model_condenses_follow_ups(capsys, monkeypatch, db, scripted):
    lines = "What is the hotel cap in London?\nAnd the per diem?\n"
    code, out, err = chat(capsys, monkeypatch, db, lines, "--backend", "local", "-k", 1, "--temperature", 0)
    assert code == 0, err and "answering offline" not in err
    assert out.count("It is in the sources [1].") == 2 and len(BYLINE.findall(out)) == 2
    assert f"Searched for: {REWRITE} (rewritten by scripted-1 in " in out
    rewrite_request = next(p for p in scripted.prompts if p.messages[0]["content"] == CONDENSE_SYSTEM_PROMPT)
    assert "User: What is the hotel cap in London?" in rewrite_request.messages[-1]["content"]
    assert scripted.prompts[-1].question == REWRITE  # the answer's prompt asks the rewrite


def test_alone_strategy_searches_the_follow_up_as_asked(capsys, monkeypatch, db, scripted):
    code, out, _ = chat(capsys, monkeypatch, db, "London cap?\nAnd the per diem?\n", "--backend", "local",
                        "--strategy", "alone")
    assert code == 0 and "Searched for" not in out
    assert [p.question for p in scripted.prompts] == ["London cap?", "And the per diem?"]


def test_a_failed_question_is_one_error_line_and_the_chat_goes_on(capsys, monkeypatch, db):
    llm = ScriptedLLM(fail_on="fridge")
    monkeypatch.setattr(backends, "get_answerer", lambda *args, **kwargs: llm)
    code, out, err = chat(capsys, monkeypatch, db, "When is the fridge cleaned?\n/new\nLondon cap?\n",
                          "--backend", "local")
    assert code == 1  # a question failed
    assert err.strip() == "error: the scripted model is down (try again later)"
    assert out.count("It is in the sources [1].") == 1 and "Traceback" not in err


def test_a_terminal_gets_a_prompt_and_end_of_input_ends_cleanly(capsys, monkeypatch, db, scripted):
    code, out, _ = chat(capsys, monkeypatch, db, "London cap?\n", "--backend", "local", stdin=Terminal)
    assert code == 0 and out.startswith("> It is in the sources [1].") and out.rstrip().endswith(">")
    code, out, _ = chat(capsys, monkeypatch, db, "", "--backend", "local")
    assert (code, out) == (0, "")


def test_bad_options_and_a_missing_index_are_one_line_errors(capsys, monkeypatch, db, tmp_path):
    code, _, err = chat(capsys, monkeypatch, db, "London cap?\n", "--strategy", "guess")
    assert code == 2 and err.startswith("error: argument --strategy: invalid choice")
    monkeypatch.setattr(sys, "stdin", io.StringIO("London cap?\n"))
    code = cli.main(["chat", "--db", str(tmp_path / "none"), "--backend", "offline"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_script_drives_chat_through_a_pipe_one_line_at_a_time(db):
    """Another process writes a question, waits for its answer, then writes the next: each answer
    must be flushed as soon as it is done, and closing the pipe ends the chat with status 0."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "RAG_MIN_SCORE": "off"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rag_helpers", "chat", "--db", str(db), "--collection", COLLECTION,
         "--backend", "offline", "-k", "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    watchdog = threading.Timer(240, process.kill)  # a missing flush would block readline for ever
    watchdog.start()
    try:

        def answer_to(line: str) -> str:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write(line + "\n")
            process.stdin.flush()
            read = []
            while not BYLINE.match(read[-1] if read else ""):
                text = process.stdout.readline()
                assert text, f"chat ended early: {''.join(read)}"
                read.append(text.rstrip("\n"))
            return "\n".join(read)

        assert "£185" in answer_to("What is the hotel cap in London?")
        follow_up = answer_to("And the per diem?")
        assert "€52" in follow_up and "Searched for: What is the hotel cap in London? And the per diem?" in follow_up
        out, err = process.communicate("/new\n", timeout=60)  # then end of input: the pipe closes
    finally:
        watchdog.cancel()
    assert process.returncode == 0, err
    assert "New conversation." in out
