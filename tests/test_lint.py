"""The README's one test line also checks the code: ruff's lints and formatting, and
mypy --strict over the packages, milepost_testkit, tests and bench (the files listed in
pyproject's ``[tool.mypy]``), each as a subprocess from the repository root whose
output a failure shows; and that bench/ and tests/ share code only through
milepost_testkit/."""

from __future__ import annotations

import ast
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


def _imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports (absolute imports only)."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize(("folder", "other"), [("bench", "tests"), ("tests", "bench")])
def test_bench_and_tests_share_only_the_testkit(folder: str, other: str) -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / folder).rglob("*.py"))
        if other in _imported_packages(path)
    ]
    assert offenders == [], f"{folder}/ imports {other}/ (share code via milepost_testkit/)"
