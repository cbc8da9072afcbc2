"""Checks for the notebooks' exercises: a hint when something is off, never a traceback.

An exercise cell leaves a placeholder (`answer = ...`) for the learner; the next cell calls
`check("Exercise 1", ("hint if this fails", lambda: condition), ...)`. Each condition is a
function so that a name the learner has not defined yet, or a wrong type, becomes a hint too.
`check` prints one line per exercise and returns True only when every condition holds, so a
worked solution can `assert check(...)` while "Run All" on an unsolved notebook still runs through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Condition = tuple[str, Callable[[], Any]]

PASSED = "✅"
NOT_YET = "💡"


class NotAttemptedError(Exception):
    """A value is still the `...` placeholder of an exercise cell."""


def attempted(value: Any) -> Any:
    """Return `value`, or raise `NotAttemptedError` when it is still the `...` placeholder."""
    if value is Ellipsis:
        raise NotAttemptedError
    return value


def _explain(error: BaseException) -> str:
    """A one-line, learner-facing reading of an error raised while checking."""
    if isinstance(error, NotAttemptedError):
        return "not attempted yet: replace the `...` placeholder and run that cell first."
    if isinstance(error, NameError):
        return f"{error}; run your exercise cell first (or check the spelling)."
    return f"your code raised {type(error).__name__}: {error}"


def check(name: str, *conditions: Condition) -> bool:
    """Evaluate each `(hint, condition)` in order; print the first failing hint, or a success line."""
    if not conditions:
        raise ValueError("check() needs at least one (hint, condition) pair")
    for hint, condition in conditions:
        try:
            ok = bool(condition())
        except Exception as error:  # noqa: BLE001 - every learner mistake becomes a hint
            print(f"{NOT_YET} {name}: {_explain(error)}")
            return False
        if not ok:
            print(f"{NOT_YET} {name}: not yet. Hint: {hint}")
            return False
    print(f"{PASSED} {name}: all {len(conditions)} checks passed.")
    return True


__all__ = ["NOT_YET", "PASSED", "NotAttemptedError", "attempted", "check"]
