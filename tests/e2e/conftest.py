"""Fixtures for the end-to-end tests: a fresh ``milepost`` home per test (the CLI runner is
``milepost_testkit.cli.Cli``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from milepost_testkit.cli import Cli


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """A fresh home for one test."""
    return Cli(tmp_path / "home")


@pytest.fixture
def ready(cli: Cli) -> Cli:
    """A home where ``ava`` has run ``init``."""
    cli.ok("init", "--person", "ava", "--device", "laptop", "--team", "web")
    return cli


def event_count(cli: Cli) -> int:
    """How many events the log holds."""
    return len(cli.json("log", "--limit", "0"))
