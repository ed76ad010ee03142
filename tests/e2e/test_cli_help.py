"""Help a person can read: every command described, line breaks kept, examples,
no library noise; shell completion; ``--help`` starts fast (no cyclopts import)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from client.cli import _COMMANDS
from milepost_testkit import ROOT
from milepost_testkit.cli import Cli


def test_top_level_help_describes_every_command_without_importing_cyclopts(cli: Cli) -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "client.cli", "--help"],
        env={**cli.env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    for name, _, _, summary in _COMMANDS:
        assert any(line.split()[:1] == [name] and summary in line for line in lines), name
    assert "Start:  milepost init --person ava --device laptop" in lines
    assert any(line.startswith("Then:   milepost objective") for line in lines)
    assert "cyclopts" not in done.stderr and "rich" not in done.stderr
    assert cli.run().stdout == done.stdout  # no arguments: the same page
    assert cli.ok("--version").strip() == "0.1.0"


def test_command_pages_keep_line_breaks_and_have_no_library_noise(cli: Cli) -> None:
    pages = {name: cli.ok(name, "--help") for name, *_ in _COMMANDS}
    for name, page in pages.items():
        for noise in ("--empty-", "[default: ()]", "[default: False]", '[default: ""]'):
            assert noise not in page, (name, noise)
        assert "milepost " in page.split("╭")[0], f"{name} has no example"
    assert "For example:\n    milepost milestone add" in pages["milestone"]
    assert "milepost task add m1" in pages["task"]
    sync = pages["sync"].split("╭")[0]
    assert "Example: milepost sync\nExample: milepost sync --watch" in sync
    assert "[default:" in pages["objective"] and "weekly]" in pages["objective"]  # real ones stay


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_scripts(cli: Cli, shell: str) -> None:
    script = cli.ok("completion", shell)
    assert "milepost" in script and "checkin" in script and "--confidence" in script
    if shell == "bash" and shutil.which("bash"):
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert 'Choose from: "bash", "zsh", "fish"' in cli.fails("completion", "tcsh", code=2)
