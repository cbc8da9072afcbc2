"""Settings read once from the environment and `.env`, plus the project's fixed paths.

Existing environment variables win over `.env`. Secrets are wrapped in `Secret`, which never
shows its value in `repr`, `str`, logs, tracebacks or notebook output.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dotenv import dotenv_values, find_dotenv

# Paths resolve from the package, never from the current directory: nbval starts kernels
# inside notebooks/, the CLI may run anywhere.
PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_DIR.parent
DATA_DIR = PROJECT_ROOT / "data"
SAMPLE_CORPUS_DIR = DATA_DIR / "sample_corpus"
SAMPLE_QUESTIONS_PATH = DATA_DIR / "sample_questions.jsonl"
CONVERSATIONS_PATH = DATA_DIR / "conversations.jsonl"
INJECTION_DIR = DATA_DIR / "injection"
INJECTION_DOCUMENTS_DIR = INJECTION_DIR / "documents"
INJECTION_CASES_PATH = INJECTION_DIR / "cases.jsonl"
DEFAULT_CHROMA_PATH = PROJECT_ROOT / "chroma_db"

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_LLM_MODEL = "Qwen/Qwen2.5-72B-Instruct"
DEFAULT_COLLECTION = "document_qa_collection"
# The course's own language model (`local` backend, `serve-llm`): a name in `local_models.LOCAL_MODELS`.
DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b-instruct"
# The "don't know" gate: answer only when the closest chunk's cosine similarity to the question is at
# least this. Calibrated on the sample questions (docs/evaluation.md): it refuses few answerable
# questions and most questions about documents left out of an index. It belongs to the embedding
# model, not to a corpus.
DEFAULT_MIN_SCORE = 0.45

# Who answers: a language model (the course's own `local` one, Hugging Face `hf`, an `openai`-compatible
# server) or, without one, the extractive answerer (`offline`); `auto` picks from what is configured.
LLM_BACKENDS: tuple[str, ...] = ("offline", "local", "hf", "openai")
BACKEND_CHOICES: tuple[str, ...] = ("auto", *LLM_BACKENDS)

# The answer-level "don't know" check: refuse when the language model's probability that the sources
# state the answer is below this (`sufficiency`); calibrated on the sample questions (docs/evaluation.md).
DEFAULT_CHECK_THRESHOLD = 0.5

# The original tutorial stored its token under this name; we accept it so old `.env` files keep working.
LEGACY_TOKEN_VARIABLE = "RAG_FUNDAMENTALS_ADVANCE_TECHNIQUES_TOKEN"


class Secret:
    """A string that hides itself: use `.get()` to read it, everything else shows a mask."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        """Return the real value (only pass it straight to the client that needs it)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def redact(text: str, secrets: Iterable[Secret | str | None]) -> str:
    """`text` with every non-empty secret in it replaced by ********: for errors shown to people."""
    for secret in secrets:
        value = secret.get() if isinstance(secret, Secret) else secret
        if value and value in text:
            text = text.replace(value, "********")
    return text


def safe_url(url: str) -> str:
    """A URL without user name, password, query or fragment (any of which may hold a secret).

    Every place that shows a URL (settings, reports, error messages) passes it through here.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _blank_to_none(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


@dataclass(frozen=True)
class Settings:
    """Every knob of the course in one place; see `.env.example` for what each one means."""

    hf_token: Secret | None = None
    llm_backend: str = "auto"  # one of BACKEND_CHOICES
    llm_model: str = DEFAULT_LLM_MODEL
    llm_base_url: str | None = None
    llm_api_key: Secret | None = None
    local_model: str = DEFAULT_LOCAL_MODEL
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    chroma_path: Path = DEFAULT_CHROMA_PATH
    chroma_host: str | None = None
    chroma_port: int = 8000
    collection: str = DEFAULT_COLLECTION
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    min_score: float | None = DEFAULT_MIN_SCORE  # None: never refuse before answering
    check_threshold: float | None = DEFAULT_CHECK_THRESHOLD  # None: no sufficiency check
    env_file: Path | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        if self.llm_base_url:
            shown["llm_base_url"] = safe_url(self.llm_base_url)
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    @classmethod
    def load(
        cls,
        env_file: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
        use_dotenv: bool = True,
    ) -> Settings:
        """Read settings from `environ` (default: `os.environ`) and a `.env` file.

        The `.env` file is `env_file` if given, else the project's `.env`, else the nearest one
        above the current directory. Variables already set in the environment win.
        """
        env = dict(os.environ if environ is None else environ)
        found = _find_env_file(env_file) if use_dotenv else None
        if found is not None:
            file_values = {k: v for k, v in dotenv_values(found).items() if v is not None}
            env = {**file_values, **env}
        return cls.from_mapping(env, env_file=found)

    @classmethod
    def from_mapping(cls, env: Mapping[str, str], env_file: Path | None = None) -> Settings:
        """Build settings from a plain mapping of variable names to values."""

        def get(name: str) -> str | None:
            return _blank_to_none(env.get(name))

        token = get("HF_TOKEN") or get(LEGACY_TOKEN_VARIABLE)
        api_key = get("LLM_API_KEY")
        port_text = get("CHROMA_PORT") or "8000"
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"CHROMA_PORT must be a whole number, got {port_text!r}") from None
        backend = (get("LLM_BACKEND") or "auto").lower()
        if backend not in BACKEND_CHOICES:
            raise ValueError(f"LLM_BACKEND must be one of {', '.join(BACKEND_CHOICES)}; got {backend!r}")
        return cls(
            hf_token=Secret(token) if token else None,
            llm_backend=backend,
            llm_model=get("LLM_MODEL") or DEFAULT_LLM_MODEL,
            llm_base_url=get("LLM_BASE_URL"),
            llm_api_key=Secret(api_key) if api_key else None,
            local_model=(get("LLM_LOCAL_MODEL") or DEFAULT_LOCAL_MODEL).lower(),
            embedding_model=get("EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL,
            chroma_path=Path(get("CHROMA_PATH") or DEFAULT_CHROMA_PATH).expanduser(),
            chroma_host=get("CHROMA_HOST"),
            chroma_port=port,
            collection=get("CHROMA_COLLECTION") or DEFAULT_COLLECTION,
            device=(get("RAG_DEVICE") or "auto").lower(),
            precision=(get("RAG_PRECISION") or "auto").lower(),
            min_score=_setting_min_score(get("RAG_MIN_SCORE")),
            check_threshold=_setting_check(get("RAG_CHECK")),
            env_file=env_file,
        )

    def describe(self) -> dict[str, str]:
        """A printable summary with every secret replaced by 'set' / 'not set'."""
        summary: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Secret) or f.name in {"hf_token", "llm_api_key"}:
                summary[f.name] = "set (hidden)" if value else "not set"
            elif f.name == "llm_base_url" and value:
                summary[f.name] = safe_url(value)
            else:
                summary[f.name] = "" if value is None else str(value)
        return summary


def _number_or_off(text: str, low: float, high: float, what: str) -> float | None:
    """A number between `low` and `high` from text, or None for "off"/"none"; else a ValueError naming `what`."""
    if text.strip().lower() in {"off", "none"}:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ValueError(f"expected {what} between {low:g} and {high:g}, or off; got {text!r}")
    return value


def parse_min_score(text: str) -> float | None:
    """A "don't know" threshold from text: a cosine similarity between -1 and 1, or off (None)."""
    return _number_or_off(text, -1.0, 1.0, "a cosine similarity")


def _setting_min_score(text: str | None) -> float | None:
    if text is None:
        return DEFAULT_MIN_SCORE
    try:
        return parse_min_score(text)
    except ValueError as error:
        raise ValueError(f"RAG_MIN_SCORE: {error}") from None


def _setting_check(text: str | None) -> float | None:
    if text is None:
        return DEFAULT_CHECK_THRESHOLD
    try:
        return _number_or_off(text, 0.0, 1.0, "a probability")
    except ValueError as error:
        raise ValueError(f"RAG_CHECK: {error}") from None


def _find_env_file(env_file: str | Path | None) -> Path | None:
    if env_file is not None:
        path = Path(env_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"No settings file at {path}. Copy .env.example to .env and edit it.")
        return path
    project_env = PROJECT_ROOT / ".env"
    if project_env.is_file():
        return project_env
    nearest = find_dotenv(usecwd=True)
    return Path(nearest) if nearest else None
