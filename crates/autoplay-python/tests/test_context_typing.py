"""mypy --strict on a 0.13.0-style program of the context, summarizer, buffer and rag
modules (tests/typecheck/context_app.py)."""

from __future__ import annotations

from pathlib import Path

from test_typing import mypy

HERE = Path(__file__).resolve().parent


def test_context_program_type_checks() -> None:
    result = mypy(HERE / "typecheck" / "context_app.py")
    assert result.returncode == 0, result.stdout + result.stderr
