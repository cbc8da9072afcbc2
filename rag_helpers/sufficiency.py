"""Do the retrieved sources hold the answer? A check a language model makes before it answers.

    check = SufficiencyCheck(llm, threshold=0.5)
    check.score(prompt)       # 0..1: how sure the model is that the sources state the answer
    check(prompt)             # None when the model should answer, else the note that says why not

The similarity gate (`pipeline`) only notices questions far from every document. A question the
documents *nearly* answer ("What is the hotel cap in Lisbon?" beside a policy that lists other
cities) passes it, and a small model then answers anyway. The check asks the model, with the same
sources the answer would get, a yes/no question. With the course's own model (`local_llm`) the
score is the probability of YES against NO in its first token; a backend that gives no
probabilities replies in words, which count as 1.0 (YES) or 0.0 (NO). The check's messages start
exactly like the answer's, so llama.cpp reads the sources once for both (its prompt cache).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from .answers import Answerer
from .base import Prompt
from .prompts import ANSWER_INSTRUCTION

# Below this probability of YES the pipeline refuses; calibrated on the sample questions with
# `python bench/refusal.py` (docs/evaluation.md has the curve).
DEFAULT_THRESHOLD = 0.5

CHECK_INSTRUCTION = (
    "Before answering: do the sources above state the answer to this question? "
    "Reply with one word: YES if they do, NO if they do not."
)


def check_prompt(prompt: Prompt) -> Prompt:
    """The check's messages: the answer prompt with its last instruction replaced by the yes/no question.

    Only the grounded style ends with that instruction; for any other prompt the question is added.
    """
    *earlier, last = prompt.messages
    content = last["content"]
    if content.endswith(ANSWER_INSTRUCTION):
        content = content[: -len(ANSWER_INSTRUCTION)] + CHECK_INSTRUCTION
    else:
        content = f"{content}\n\n{CHECK_INSTRUCTION}"
    return replace(prompt, messages=[*earlier, {**last, "content": content}])


def verdict_from_text(text: str) -> float | None:
    """1.0 for a reply that starts with yes, 0.0 for no, None for anything else."""
    match = re.match(r"\W*(yes|no)\b", text, re.IGNORECASE)
    if match is None:
        return None
    return 1.0 if match.group(1).lower() == "yes" else 0.0


class SufficiencyCheck:
    """Refuse when the model judges that the sources do not state the answer (see the module docstring)."""

    def __init__(self, llm: Answerer, threshold: float = DEFAULT_THRESHOLD) -> None:
        if getattr(llm, "backend", "") == "offline":
            raise ValueError("The sufficiency check needs a language model; the extractive answerer cannot judge.")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be a probability between 0 and 1, got {threshold}")
        self.llm = llm
        self.threshold = threshold

    def __repr__(self) -> str:
        return f"SufficiencyCheck({self.llm!r}, threshold={self.threshold})"

    def score(self, prompt: Prompt) -> float:
        """How sure the model is that the prompt's sources state the answer (0..1)."""
        asked = check_prompt(prompt)
        yes_probability = getattr(self.llm, "yes_probability", None)
        if yes_probability is not None:
            return float(yes_probability(asked.messages))
        reply = self.llm.answer(asked, temperature=0, max_tokens=3).text
        verdict = verdict_from_text(reply)
        return 1.0 if verdict is None else verdict  # an unclear reply is no reason to refuse

    def __call__(self, prompt: Prompt, **_: Any) -> str | None:
        """None when the model should answer, else the note that says why it was not asked to."""
        score = self.score(prompt)
        if score >= self.threshold:
            return None
        return (
            f"Not answered: {self.llm.model} judged that the sources do not state the answer "
            f"(YES {score:.2f}, below the minimum {self.threshold:.2f}; RAG_CHECK sets it, off skips the check)."
        )


__all__ = ["DEFAULT_THRESHOLD", "SufficiencyCheck", "check_prompt", "verdict_from_text"]
