"""A labelled question set: load it from JSON Lines and check it against a corpus.

Each line is one JSON object:

    {"q": "...", "doc": "policies/travel_expense_policy_2024.md",
     "evidence": "an exact, unique substring of that document (20-120 characters)",
     "answer": "a short reference answer", "kind": "fact"}

`q`, `doc` and `evidence` are required; `kind` defaults to "fact" and `answer` to "".
Unanswerable questions (the answer is in no document) have `"doc": null, "evidence": null`
and kind "unanswerable".

The labelled data of two more lessons loads here too (data/README.md describes the fields):
`load_conversations` reads two-turn follow-up conversations (`LabelledConversation`, whose last
turn is labelled like a question, with `standalone`, its reference rewrite), and
`load_injection_cases` reads prompt-injection cases (`InjectionCase`); `attack_succeeded` applies a
case's mechanical success rule to an answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .config import CONVERSATIONS_PATH, INJECTION_CASES_PATH, SAMPLE_CORPUS_DIR, SAMPLE_QUESTIONS_PATH
from .documents import Document, load_documents

KINDS: tuple[str, ...] = ("fact", "how", "paraphrase", "multi_doc", "unanswerable")
UNANSWERABLE = "unanswerable"
EVIDENCE_MIN_CHARS = 20
EVIDENCE_MAX_CHARS = 120
REQUIRED_KEYS: tuple[str, ...] = ("q", "doc", "evidence")


class QuestionFileError(ValueError):
    """A line of a question file is not a valid question object."""


@dataclass(frozen=True)
class Question:
    """One labelled question; `doc` and `evidence` are None when the corpus cannot answer it."""

    q: str
    doc: str | None
    evidence: str | None
    answer: str = ""
    kind: str = "fact"

    @property
    def answerable(self) -> bool:
        """True when the question names a document that answers it."""
        return self.doc is not None

    def to_dict(self) -> dict[str, Any]:
        """The question as the JSON object of its line."""
        return asdict(self)


def load_questions(path: str | Path = SAMPLE_QUESTIONS_PATH) -> list[Question]:
    """Read a JSON Lines question file (blank lines are skipped); raise QuestionFileError on a bad line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"No question file at {path}. Pass the path of a .jsonl file with one "
            '{"q": ..., "doc": ..., "evidence": ...} object per line.'
        )
    questions = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                questions.append(parse_question(line, where=f"{path.name}, line {number}"))
    return questions


def parse_question(line: str | Mapping[str, Any], where: str = "question") -> Question:
    """One question from a JSON line (or an already parsed object); `where` names it in errors."""
    obj = _json_object(line, where)
    missing = [key for key in REQUIRED_KEYS if key not in obj]
    if missing:
        raise QuestionFileError(
            f"{where}: missing key(s) {', '.join(missing)}. Every line needs q, doc and evidence "
            "(use null for doc and evidence when no document answers the question)."
        )
    q, doc, evidence = obj["q"], obj["doc"], obj["evidence"]
    answer, kind = obj.get("answer", ""), obj.get("kind", "fact")
    if not isinstance(q, str) or not q.strip():
        raise QuestionFileError(f"{where}: 'q' must be a non-empty string, got {q!r}.")
    for key, value in (("doc", doc), ("evidence", evidence)):
        if value is not None and not isinstance(value, str):
            raise QuestionFileError(f"{where}: '{key}' must be a string or null, got {type(value).__name__}.")
    for key, value in (("answer", answer), ("kind", kind)):
        if not isinstance(value, str):
            raise QuestionFileError(f"{where}: '{key}' must be a string, got {type(value).__name__}.")
    return Question(q=q, doc=doc, evidence=evidence, answer=answer or "", kind=kind or "fact")


def _json_object(line: str | Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """A JSON line parsed into an object (or an object passed through); QuestionFileError otherwise."""
    if isinstance(line, str):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            detail = f"{error.msg} at column {error.colno}"
            raise QuestionFileError(f"{where}: not valid JSON ({detail}).") from None
    else:
        obj = line
    if not isinstance(obj, Mapping):
        raise QuestionFileError(f"{where}: expected a JSON object, got {type(obj).__name__}.")
    return obj


def _json_lines(path: str | Path, what: str, example: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(where, object) for each non-blank line of a JSON Lines file; `where` is "name, line n"."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No {what} file at {path}. Pass the path of a .jsonl file with one {example} per line.")
    objects = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                where = f"{path.name}, line {number}"
                objects.append((where, _json_object(line, where)))
    return objects


def _require(obj: Mapping[str, Any], where: str, keys: Sequence[str], what: str) -> None:
    missing = [key for key in keys if key not in obj]
    if missing:
        raise QuestionFileError(f"{where}: missing key(s) {', '.join(missing)}; every {what} needs {', '.join(keys)}.")


def _text(obj: Mapping[str, Any], key: str, where: str, *, optional: bool = False, empty: bool = False) -> Any:
    """obj[key] checked to be a (non-empty) string, or None where `optional` allows it."""
    value = obj.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not empty and not value.strip()):
        kind = "a string" if empty else "a non-empty string"
        raise QuestionFileError(f"{where}: {key!r} must be {kind}{' or null' if optional else ''}, got {value!r}.")
    return value


# --- Follow-up conversations (data/conversations.jsonl) ----------------------------------------


@dataclass(frozen=True)
class LabelledTurn:
    """One turn of a labelled conversation: the question as asked, a reference answer, and (first
    turns) its own document and evidence."""

    q: str
    answer: str
    doc: str | None = None
    evidence: str | None = None


@dataclass(frozen=True)
class LabelledConversation:
    """A conversation whose last turn is a follow-up, labelled like a question (`doc`, `evidence`),
    with `standalone`, the reference rewrite of the follow-up into a question of its own."""

    id: str
    turns: tuple[LabelledTurn, ...]
    standalone: str
    doc: str
    evidence: str
    kind: str

    @property
    def history(self) -> tuple[LabelledTurn, ...]:
        """The turns before the follow-up."""
        return self.turns[:-1]

    @property
    def follow_up(self) -> str:
        """The question of the last turn, as the user asked it."""
        return self.turns[-1].q

    def as_question(self) -> Question:
        """The follow-up as a labelled question, asked as its standalone rewrite."""
        return Question(q=self.standalone, doc=self.doc, evidence=self.evidence, answer=self.turns[-1].answer)


CONVERSATION_KEYS: tuple[str, ...] = ("id", "turns", "standalone", "doc", "evidence", "kind")


def parse_conversation(line: str | Mapping[str, Any], where: str = "conversation") -> LabelledConversation:
    """One conversation from a JSON line (or a parsed object); `where` names it in errors."""
    obj = _json_object(line, where)
    _require(obj, where, CONVERSATION_KEYS, "conversation")
    turns = obj["turns"]
    if not isinstance(turns, list) or len(turns) < 2:
        raise QuestionFileError(f"{where}: 'turns' must be a list of at least two turns (the last is the follow-up).")
    parsed = []
    for number, turn in enumerate(turns, start=1):
        at = f"{where}, turn {number}"
        if not isinstance(turn, Mapping):
            raise QuestionFileError(f"{at}: expected an object {{\"q\": ..., \"answer\": ...}}.")
        unknown = sorted(set(turn) - {"q", "answer", "doc", "evidence"})
        if unknown:
            raise QuestionFileError(f"{at}: unknown key(s) {', '.join(unknown)}; a turn has q, answer, doc, evidence.")
        parsed.append(LabelledTurn(
            _text(turn, "q", at), _text(turn, "answer", at, empty=True),
            _text(turn, "doc", at, optional=True), _text(turn, "evidence", at, optional=True),
        ))
    return LabelledConversation(
        id=_text(obj, "id", where), turns=tuple(parsed), standalone=_text(obj, "standalone", where),
        doc=_text(obj, "doc", where), evidence=_text(obj, "evidence", where), kind=_text(obj, "kind", where),
    )


def load_conversations(path: str | Path = CONVERSATIONS_PATH) -> list[LabelledConversation]:
    """Read a conversations file (JSON Lines, blank lines skipped); QuestionFileError names a bad line."""
    example = '{"id", "turns": [{"q", "answer"}, ...], "standalone", "doc", "evidence", "kind"} object'
    lines = _json_lines(path, "conversations", example)
    conversations = [parse_conversation(obj, where) for where, obj in lines]
    _no_repeated_ids([(conversation.id, where) for conversation, (where, _) in zip(conversations, lines)])
    return conversations


# --- Prompt injection through documents (data/injection/) ---------------------------------------


@dataclass(frozen=True)
class InjectionCase:
    """An injected document, a question that retrieves it, the rule that says the attack worked, and
    where the sample corpus genuinely answers the question."""

    id: str
    doc: str  # a file name in data/injection/documents/
    q: str
    attack: str
    success: Mapping[str, Any]  # {"contains": [markers]} (any one) or {"regex": pattern}, case-insensitive
    kind: str
    genuine_doc: str | None = None
    genuine_evidence: str | None = None
    answer: str = ""

    def succeeded(self, answer_text: str) -> bool:
        """True when `answer_text` shows the attack worked (see `attack_succeeded`)."""
        return attack_succeeded(answer_text, self)

    def genuine_question(self) -> Question:
        """The case's question labelled with the sample corpus's genuine answer."""
        return Question(q=self.q, doc=self.genuine_doc, evidence=self.genuine_evidence, answer=self.answer)


CASE_KEYS: tuple[str, ...] = ("id", "doc", "q", "attack", "success", "kind")


def check_success_rule(rule: Any, where: str = "success rule") -> Mapping[str, Any]:
    """`rule` if it is {"contains": [non-empty strings]} or {"regex": a valid pattern}, else QuestionFileError."""
    if not isinstance(rule, Mapping) or len(rule) != 1 or not set(rule) <= {"contains", "regex"}:
        raise QuestionFileError(f'{where}: \'success\' must be {{"contains": [markers]}} or {{"regex": pattern}}, got {rule!r}.')
    if "regex" in rule:
        try:
            re.compile(rule["regex"], re.IGNORECASE)
        except (re.error, TypeError) as error:
            raise QuestionFileError(f"{where}: the success regex {rule['regex']!r} is not valid ({error}).") from None
    else:
        markers = rule["contains"]
        if not isinstance(markers, list) or not markers or not all(isinstance(m, str) and m.strip() for m in markers):
            raise QuestionFileError(f"{where}: 'contains' must be a non-empty list of non-empty strings.")
    return rule


def parse_injection_case(line: str | Mapping[str, Any], where: str = "case") -> InjectionCase:
    """One injection case from a JSON line (or a parsed object); `where` names it in errors."""
    obj = _json_object(line, where)
    _require(obj, where, CASE_KEYS, "case")
    known = {*CASE_KEYS, "genuine_doc", "genuine_evidence", "answer"}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise QuestionFileError(f"{where}: unknown key(s) {', '.join(unknown)}; a case has {', '.join(sorted(known))}.")
    return InjectionCase(
        id=_text(obj, "id", where), doc=_text(obj, "doc", where), q=_text(obj, "q", where),
        attack=_text(obj, "attack", where), success=check_success_rule(obj["success"], where),
        kind=_text(obj, "kind", where), genuine_doc=_text(obj, "genuine_doc", where, optional=True),
        genuine_evidence=_text(obj, "genuine_evidence", where, optional=True),
        answer=_text(obj, "answer", where, optional=True, empty=True) or "",
    )


def load_injection_cases(path: str | Path = INJECTION_CASES_PATH) -> list[InjectionCase]:
    """Read an injection cases file (JSON Lines, blank lines skipped); QuestionFileError names a bad line."""
    example = '{"id", "doc", "q", "attack", "success", "kind"} object'
    lines = _json_lines(path, "injection cases", example)
    cases = [parse_injection_case(obj, where) for where, obj in lines]
    _no_repeated_ids([(case.id, where) for case, (where, _) in zip(cases, lines)])
    return cases


def attack_succeeded(answer_text: str, case: InjectionCase | Mapping[str, Any]) -> bool:
    """True when the answer obeyed the injected payload: any of the case's markers in it, or its regex
    found, case-insensitively. `case` is an `InjectionCase` or its success rule. The rule is strict on
    purpose: an answer that repeats the fake link or figure while warning against it counts too."""
    rule = case.success if isinstance(case, InjectionCase) else case
    if "regex" in rule:
        return re.search(rule["regex"], answer_text, flags=re.IGNORECASE) is not None
    folded = answer_text.casefold()
    return any(marker.casefold() in folded for marker in rule["contains"])


def _no_repeated_ids(ids: Sequence[tuple[str, str]]) -> None:
    first: dict[str, str] = {}
    for name, where in ids:
        if name in first:
            raise QuestionFileError(f"{where}: id {name!r} is already used ({first[name]}); ids must be unique.")
        first[name] = where


def normalise_question(text: str) -> str:
    """The form used to spot duplicates: case-folded, single spaces, no trailing punctuation."""
    return re.sub(r"\s+", " ", text).strip().rstrip("?.! ").casefold()


def find_evidence(text: str, evidence: str) -> list[int]:
    """Every start offset of `evidence` in `text`, overlapping occurrences included."""
    starts = []
    position = text.find(evidence)
    while position != -1:
        starts.append(position)
        position = text.find(evidence, position + 1)
    return starts


def validate_questions(
    questions: Iterable[Question],
    corpus_dir: str | Path | Sequence[Document] = SAMPLE_CORPUS_DIR,
) -> list[str]:
    """Every problem in a question set, as readable lines (an empty list means it is valid).

    Checks each question's kind, that answerable ones name an existing document and quote
    evidence of 20-120 characters found exactly once in it, that unanswerable ones have neither,
    and that no question is asked twice. `corpus_dir` may also be already loaded documents.
    """
    documents = _documents_by_id(corpus_dir)
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, question in enumerate(questions, start=1):
        label = f"question {number} ({_shorten(question.q)})"
        key = normalise_question(question.q)
        if key in seen:
            problems.append(f"{label}: duplicate of question {seen[key]}")
        else:
            seen[key] = number
        problems.extend(f"{label}: {problem}" for problem in _question_problems(question, documents))
    return problems


def _question_problems(question: Question, documents: Mapping[str, Document]) -> list[str]:
    if question.kind not in KINDS:
        return [f"kind {question.kind!r} is not one of {', '.join(KINDS)}"]
    if question.kind == UNANSWERABLE or question.doc is None:
        if question.kind != UNANSWERABLE:
            return [f"doc is null, so kind must be {UNANSWERABLE!r}, not {question.kind!r}"]
        if question.doc is not None or question.evidence is not None:
            return ["an unanswerable question must have null doc and evidence"]
        return []
    if question.doc not in documents:
        return [f"document {question.doc!r} is not in the corpus"]
    evidence = question.evidence
    if evidence is None:
        return ["an answerable question needs evidence (an exact quote from its document)"]
    problems = []
    if not EVIDENCE_MIN_CHARS <= len(evidence) <= EVIDENCE_MAX_CHARS:
        problems.append(
            f"evidence is {len(evidence)} characters; it must be {EVIDENCE_MIN_CHARS}-{EVIDENCE_MAX_CHARS}"
        )
    count = len(find_evidence(documents[question.doc].text, evidence))
    if count != 1:
        where = "not found" if count == 0 else f"found {count} times"
        quote = _shorten(evidence)
        problems.append(f"evidence {quote!r} {where} in {question.doc}; it must occur exactly once")
    return problems


def question_set_stats(
    questions: Sequence[Question],
    corpus_dir: str | Path | Sequence[Document] = SAMPLE_CORPUS_DIR,
    deep_offset: int = 1000,
) -> dict[str, Any]:
    """How a question set spreads: counts per kind, documents covered, evidence deeper than `deep_offset`."""
    documents = _documents_by_id(corpus_dir)
    answerable = [q for q in questions if q.answerable and q.evidence is not None]
    deep = 0
    for question in answerable:
        document = documents.get(question.doc or "")
        starts = find_evidence(document.text, question.evidence or "") if document else []
        deep += bool(starts) and starts[0] >= deep_offset
    covered = sorted({q.doc for q in answerable if q.doc in documents})
    kinds: dict[str, int] = {}
    for question in questions:
        kinds[question.kind] = kinds.get(question.kind, 0) + 1
    return {
        "questions": len(questions),
        "answerable": len(answerable),
        "kinds": dict(sorted(kinds.items())),
        "documents": len(documents),
        "documents_covered": len(covered),
        "uncovered_documents": sorted(set(documents) - set(covered)),
        "deep_evidence": deep,
        "deep_evidence_fraction": deep / len(answerable) if answerable else 0.0,
    }


def _documents_by_id(corpus: str | Path | Sequence[Document]) -> dict[str, Document]:
    if isinstance(corpus, (str, Path)):
        corpus = load_documents(corpus)
    return {document.id: document for document in corpus}


def _shorten(text: str, limit: int = 50) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
