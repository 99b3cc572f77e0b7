"""`mypy --strict` on a program written for 0.13.0 (its module paths, models, client
options, error names) passes against this package's stubs."""

from __future__ import annotations

from test_typing import HERE, mypy


def test_a_0_13_program_type_checks() -> None:
    result = mypy(HERE / "typecheck" / "app_0130.py")
    assert result.returncode == 0, result.stdout + result.stderr
