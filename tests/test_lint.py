"""The README's one test line also checks the code: ruff's lints and formatting, and
mypy --strict over events, projections, client, server, tests and bench (the files
listed in pyproject's ``[tool.mypy]``). Each runs as a subprocess from the repository
root; a failure shows the tool's own output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CHECKS = {
    "ruff check": [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
    "ruff format": [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."],
    "mypy --strict": [sys.executable, "-m", "mypy", "--strict"],
}


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_code_passes(name: str) -> None:
    result = subprocess.run(
        CHECKS[name], cwd=ROOT, capture_output=True, text=True, timeout=280, check=False
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}{result.stderr}"
