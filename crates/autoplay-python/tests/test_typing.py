"""The stubs: mypy --strict passes on a user's program and catches mistakes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version", "3.10", str(path)],
        capture_output=True,
        text=True,
        cwd=HERE / "typecheck",  # the installed package (with py.typed), not the source tree
    )


def test_example_program_type_checks() -> None:
    result = mypy(HERE / "typecheck" / "example_app.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_stubs_catch_mistakes() -> None:
    result = mypy(HERE / "typecheck" / "wrong_usage.py")
    assert result.returncode == 1
    expected = sum(1 for line in (HERE / "typecheck" / "wrong_usage.py").read_text().splitlines() if "# E:" in line)
    assert result.stdout.count("error:") == expected, result.stdout
