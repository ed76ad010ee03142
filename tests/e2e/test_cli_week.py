"""``milepost week`` and ``milepost done`` driven through a pseudo-terminal, as a person
answers them: every answer an ordinary event, quitting halfway keeps what was entered."""

from __future__ import annotations

import os
import pty
import re
import select
import sys
import time
from typing import Any

from milepost_testkit import ROOT
from milepost_testkit.cli import Cli

NOW = "2026-02-20T09:00:00+00:00"


class Terminal:
    """The CLI in a pseudo-terminal: ``expect`` text, ``send`` a line."""

    def __init__(self, cli: Cli, *args: str, now: str = NOW) -> None:
        env = {**cli.env, "MILEPOST_HOME": str(cli.home), "MILEPOST_NOW": now,
               "PYTHONPATH": str(ROOT), "COLUMNS": "120", "LINES": "200"}  # fmt: skip
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(sys.executable, [sys.executable, "-m", "client.cli", *args], env)
        self.seen = ""

    def expect(self, text: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {text!r} in:\n{self.seen}")
            ready, _, _ = select.select([self.fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.seen += re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", chunk.decode(errors="replace"))
        assert text in self.seen, self.seen
        before, _, self.seen = self.seen.partition(text)
        return before

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def finish(self) -> tuple[int, str]:
        rest = ""
        while True:
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            rest += chunk.decode(errors="replace")
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status), self.seen + rest


def _types(cli: Cli) -> list[dict[str, Any]]:
    return [e["event"] for e in cli.json("log", "--limit", "0", now=NOW)]


def _plan(cli: Cli) -> None:
    cli.ok("objective", "Grow", "--cycle", "2026-Q1")
    cli.ok("kr", "o1", "Visitors", "--start", "0", "--target", "3000", "--unit", "visitors")
    cli.ok("checkin", "k1", "400", "--confidence", "at-risk")
    cli.ok("milestone", "add", "Improve SEO", "--kr", "k1", "--due", "2026-02-25")
    cli.ok("milestone", "add", "Launch blog", "--kr", "k1", "--due", "2026-03-01")
    cli.ok("milestone", "add", "Old idea")  # planned on Jan 5, never looked at again
    cli.ok("milestone", "add", "Older idea")


def test_weekly_review_walks_through_everything(ready: Cli) -> None:
    cli = ready
    _plan(cli)
    before = len(_types(cli))
    term = Terminal(cli, "week")
    term.expect("Weekly review, 2026-02-20")
    term.expect("k1 Visitors (key result)")
    term.expect("now 400 visitors, target 3,000 visitors")
    term.expect("New value (Enter skips): ")
    term.send("lots")  # not a number: asked again
    term.expect("is not a number")
    term.expect("New value (Enter skips): ")
    term.send("1,250")
    term.expect("Confidence (Enter: at-risk): ")
    term.send("")
    term.expect("Note (optional): ")
    term.send("newsletter helped")
    term.expect("check-in 1,250 at-risk")
    term.expect("m1 Improve SEO (milestone)")
    term.expect("'done' if it is finished (Enter skips): ")
    term.send("done")
    term.expect("What did you do? ")
    term.send("Rewrote every title")
    term.expect("Why did it matter? ")
    term.send("Search brings readers")
    term.expect("What was the outcome? ")
    term.send("+30% visits")
    term.expect("completed Improve SEO")
    term.expect("Due within two weeks:")
    term.expect("m2 Launch blog — due 2026-03-01")
    term.expect("(Enter skips): ")
    term.send("60")
    term.expect("Confidence (Enter: on-track): ")
    term.send("a")
    term.expect("Note (optional): ")
    term.send("")
    term.expect("Not looked at for a month:")
    term.expect("m3 Old idea")
    term.expect("Keep, reschedule or drop? [k/r/d] (Enter: keep): ")
    term.send("r")
    term.expect("New due date (YYYY-MM-DD): ")
    term.send("2026-13-01")
    term.expect("invalid due date")
    term.send("2026-04-30")
    term.expect("Why? (optional): ")
    term.send("after the launch")
    term.expect("m4 Older idea")
    term.expect("Keep, reschedule or drop? [k/r/d] (Enter: keep): ")
    term.send("")
    term.expect("kept Older idea")
    term.expect("One win or lesson from this week (Enter skips): ")
    term.send("Paired with support on the billing bug")
    term.expect("A win or a lesson? [w/l] (Enter: win): ")
    term.send("l")
    code, rest = term.finish()
    assert code == 0, rest
    assert "6 answers saved" in rest, rest
    new = _types(cli)[before:]
    assert [e["body"]["type"] for e in new] == [
        "checkin.recorded", "milestone.completed", "checkin.recorded",
        "milestone.rescheduled", "checkin.recorded", "observation.recorded",
    ]  # fmt: skip
    assert new[0]["body"]["value"] == 1250 and new[0]["body"]["note"] == "newsletter helped"
    assert new[1]["body"]["did"] == "Rewrote every title"
    assert new[2]["body"]["percent"] == 60 and new[2]["body"]["confidence"] == "at-risk"
    assert new[3]["body"]["due_on"] == "2026-04-30"
    assert new[4]["body"]["note"] == "kept in the weekly review"
    assert new[4]["body"]["percent"] is None and new[4]["body"]["value"] is None
    assert new[5]["body"]["polarity"] == "negative"


def test_quitting_halfway_keeps_what_was_entered(ready: Cli) -> None:
    cli = ready
    _plan(cli)
    before = len(_types(cli))
    term = Terminal(cli, "week")
    term.expect("New value (Enter skips): ")
    term.send("900")
    term.expect("Confidence (Enter: at-risk): ")
    term.send("on")
    term.expect("Note (optional): ")
    term.send("")
    term.expect("'done' if it is finished (Enter skips): ")
    term.send("q")
    code, rest = term.finish()
    assert code == 0 and "Stopped. 1 answers saved." in rest, rest
    new = _types(cli)[before:]
    assert [(e["body"]["type"], e["body"]["value"]) for e in new] == [("checkin.recorded", 900)]
    assert new[0]["body"]["confidence"] == "on-track"


def test_done_in_a_terminal_asks_the_three_questions(ready: Cli) -> None:
    cli = ready
    _plan(cli)
    term = Terminal(cli, "done", "m2")
    term.expect("What did you do? ")
    term.send("Wrote five posts")
    term.expect("Why did it matter? ")
    term.send("Readers")
    term.expect("What was the outcome? ")
    term.send("200 subscribers")
    code, rest = term.finish()
    assert code == 0, rest
    [completion] = [e for e in _types(cli) if e["body"]["type"] == "milestone.completed"]
    assert completion["body"]["outcome"] == "200 subscribers"
    # A second `done` in the terminal is refused before any question is asked.
    again = Terminal(cli, "done", "m2")
    code, rest = again.finish()
    assert code == 1 and "already completed" in rest and "What did you do?" not in rest
