"""The exercise checks turn every learner mistake into a one-line hint and pass only real solutions."""

from __future__ import annotations

import pytest

from rag_helpers.exercises import NOT_YET, PASSED, attempted, check


def test_passes_when_every_condition_holds(capsys):
    assert check("Exercise 1", ("a", lambda: True), ("b", lambda: 2 > 1)) is True
    assert capsys.readouterr().out.strip() == f"{PASSED} Exercise 1: all 2 checks passed."


def test_prints_the_first_failing_hint(capsys):
    assert check("Exercise 2", ("first", lambda: True), ("use chunk_size=300", lambda: False)) is False
    out = capsys.readouterr().out
    assert out.startswith(NOT_YET) and "use chunk_size=300" in out and "first" not in out


def test_placeholder_is_reported_as_not_attempted(capsys):
    answer = ...
    assert check("Exercise 3", ("unused", lambda: attempted(answer) == 3)) is False
    assert "not attempted yet" in capsys.readouterr().out


def test_errors_become_hints_not_tracebacks(capsys):
    assert check("Exercise 4", ("unused", lambda: undefined_name)) is False  # noqa: F821
    assert "undefined_name" in capsys.readouterr().out
    assert check("Exercise 4", ("unused", lambda: 1 / 0)) is False
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_attempted_returns_real_values():
    assert attempted([1, 2]) == [1, 2]
    assert attempted(0) == 0


def test_needs_a_condition():
    with pytest.raises(ValueError, match="at least one"):
        check("Exercise 5")
