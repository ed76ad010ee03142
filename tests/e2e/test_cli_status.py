"""A status that tells the truth: health from the facts beside the confidence said,
ended cycles, indicators, drift grouped by item, a pager on a terminal."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from milepost_testkit import ROOT
from milepost_testkit.cli import Cli

APRIL = "2026-04-02T09:00:00+00:00"


def _setup(cli: Cli) -> dict[str, str]:
    refs: dict[str, str] = {}
    refs["o"] = cli.new("objective", "Show people how Roads works", "--cycle", "2026-Q1")
    refs["visitors"] = cli.new(
        "kr", refs["o"], "Visitors", "--start", "0", "--target", "3000", "--unit", "visitors"
    )
    refs["bounce"] = cli.new(
        "kr", refs["o"], "Bounce rate", "--kind", "decrease", "--start", "65", "--target", "40",
        "--unit", "%",
    )  # fmt: skip
    cli.ok("checkin", refs["visitors"], "420", "--confidence", "on-track")
    refs["seo"] = cli.new("milestone", "add", "Improve SEO", "--kr", refs["visitors"], "--due",
                          "2026-02-28")  # fmt: skip
    refs["blog"] = cli.new("milestone", "add", "Launch blog", "--kr", refs["visitors"])
    cli.ok("done", refs["blog"], "--did", "Wrote it", "--why", "Reach", "--outcome", "Readers")
    cli.ok("checkin", refs["seo"], "0", "--confidence", "on-track")
    return refs


def _node(tree: dict[str, Any], ref: str) -> dict[str, Any]:
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if str(node.get("id", "")).replace("-", "").endswith(ref):
                return node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise AssertionError(ref)


def test_health_beside_confidence_and_ended_cycles(ready: Cli) -> None:
    cli = ready
    refs = _setup(cli)
    # In March the quarter runs: the overdue milestone is off-track whatever was said.
    march = cli.json("status", now="2026-03-10T09:00:00+00:00")
    seo = _node(march, refs["seo"])
    assert seo["confidence"] == "on-track"
    assert seo["health"]["level"] == "off-track"
    assert "overdue" in seo["health"]["reason"]
    assert _node(march, refs["blog"])["health"]["level"] == "done"
    text = cli.ok("status", now="2026-03-10T09:00:00+00:00")
    line = next(x for x in text.splitlines() if x.split(maxsplit=1)[1].startswith("Improve SEO"))
    assert "off-track" in line and "overdue" in line and "you said on-track" in line
    assert "completed, done" not in text
    assert "65 → 40 %" in text and "65/40" not in text
    # In April the quarter has ended: status says so, drift explains where to look.
    april = cli.json("status", now=APRIL)
    objective = _node(april, refs["o"])
    assert objective["ended"] is True
    assert objective["health"]["level"] == "off-track"
    assert "ended on 2026-03-31" in objective["health"]["reason"]
    visitors = _node(april, refs["visitors"])
    assert visitors["health"]["level"] == "off-track"
    assert "14%" in visitors["health"]["reason"]
    text = cli.ok("status", now=APRIL)
    assert "[2026-Q1, ended 2026-03-31]" in text


def test_indicators_show_their_stage_and_latest_observations(ready: Cli) -> None:
    cli = ready
    indicator = cli.new(
        "indicator", "Customer empathy", "--stage", "asks users", "--stage", "anticipates"
    )
    cli.ok("observe", "Called three users", "--indicator", indicator, "--stage", "2")
    cli.ok("observe", "Forgot to ask about pricing", "--indicator", indicator, "--negative")
    text = cli.ok("status")
    assert "Customer empathy — stage 2 of 2: anticipates" in text
    assert "+ Called three users [anticipates]" in text
    assert "− Forgot to ask about pricing" in text
    [shown] = cli.json("status")["indicators"]
    assert (shown["stage"], shown["stage_name"]) == (2, "anticipates")
    assert shown["latest"][0]["text"] == "Forgot to ask about pricing"
    # The stored-view path and the replay path (--as-of) agree.
    as_of = cli.json("status", "--as-of", "2026-01-05")["indicators"]
    assert as_of == [{**shown}]


def test_drift_grouped_by_item_with_exit_code(ready: Cli) -> None:
    cli = ready
    refs = _setup(cli)
    now = "2026-03-20T09:00:00+00:00"
    text = cli.ok("drift", now=now)
    lines = text.splitlines()
    headers = [x for x in lines if not x.startswith(" ")]
    assert len(headers) == len(set(headers))  # each item once
    assert any(x.endswith("Improve SEO") for x in headers)
    signal_lines = [x for x in lines if x.startswith("  ")]
    assert signal_lines and all(re.match(r"  (alert|warning) +[a-z-]+: ", x) for x in signal_lines)
    assert cli.run("drift", now=now).returncode == 0
    done = cli.run("drift", "--exit-code", now=now)
    assert done.returncode == 1 and done.stderr == ""
    quiet = cli.run("drift", "--exit-code", now="2026-01-05T10:00:00+00:00")
    assert quiet.returncode == 0, quiet.stdout
    assert refs


def test_log_and_feed_read_naturally(ready: Cli) -> None:
    cli = ready
    _setup(cli)
    log = cli.ok("log", "--limit", "3")
    assert "None" not in log and "pending" in log
    feed = cli.ok("feed")
    assert "ava ava" not in feed and "you " in feed


def _run_in_terminal(args: list[str], env: dict[str, str], rows: int = 10) -> str:
    """Run the CLI with a pseudo-terminal as stdin/stdout; returns what it wrote."""
    import fcntl
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of ``rows`` lines
        os.execve(sys.executable, [sys.executable, "-m", "client.cli", *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 100, 0, 0))
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.decode(errors="replace"))


def test_long_output_goes_through_the_pager_only_on_a_terminal(ready: Cli, tmp_path: Path) -> None:
    cli = ready
    _setup(cli)
    for index in range(12):
        cli.ok("milestone", "add", f"Extra {index}")
    paged = tmp_path / "paged.txt"
    pager = tmp_path / "pager.sh"
    pager.write_text(f"#!/bin/sh\ncat > {paged}\n")
    pager.chmod(0o755)
    env = {**cli.env, "MILEPOST_HOME": str(cli.home), "MILEPOST_NOW": cli.now,
           "PYTHONPATH": str(ROOT), "MILEPOST_PAGER": str(pager), "COLUMNS": "100",
           "LINES": "10"}  # fmt: skip
    shown = _run_in_terminal(["status"], env)
    assert "Extra 11" not in shown
    assert "Extra 11" in paged.read_text()
    paged.unlink()
    # Piped: never a pager.
    piped = subprocess.run(
        [sys.executable, "-m", "client.cli", "status"], env=env, capture_output=True, text=True
    )
    assert "Extra 11" in piped.stdout and not paged.exists()
    # Short output on a terminal: printed directly.
    short = _run_in_terminal(["feed", "--limit", "2"], env, rows=40)
    assert "you " in short and not paged.exists()
