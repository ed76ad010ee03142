"""Short references a person can type (``m12``): per kind, in order of arrival on the
device, stable, shown in every listing and accepted wherever a reference is."""

from __future__ import annotations

import sqlite3

from milepost_testkit.cli import Cli


def test_short_refs_are_numbered_accepted_and_shown(ready: Cli) -> None:
    cli = ready
    objective = cli.json("objective", "Grow", "--cycle", "2026-Q1")
    assert objective["short"] == "o1"
    assert cli.json("kr", "o1", "Signups", "--start", "0", "--target", "100")["short"] == "k1"
    assert cli.json("kr", "o1", "Churn", "--start", "0", "--target", "5")["short"] == "k2"
    assert cli.json("milestone", "add", "Launch", "--kr", "k1")["short"] == "m1"
    assert cli.json("task", "add", "m1", "Write the post")["short"] == "t1"
    assert cli.json("checkin", "K1", "10")["short"] == "c1"  # any case
    out = cli.ok("checkin", "m1", "40")
    assert out.startswith("c2  checkin.recorded  Launch: 40% on-track")
    cli.ok("task", "done", "t1")
    assert cli.json("indicator", "Empathy", "--stage", "asks")["short"] == "i1"
    assert cli.json("journal", "Paired on a bug")["short"] == "j1"
    # Shown in listings.
    status = cli.ok("status")
    for ref in ("o1 Grow", "k1 Signups", "k2 Churn", "m1 Launch", "i1 Empathy"):
        assert ref in status, status
    tree = cli.json("status")
    assert tree["objectives"][0]["short"] == "o1"
    assert "c2" in cli.ok("feed") and "c2" in cli.ok("log")
    prompt = cli.json("prompt", now="2026-01-20T09:00:00+00:00")
    assert {item["short"] for item in prompt["items"]} >= {"k2"}
    assert "k2 " in cli.ok("prompt", now="2026-01-20T09:00:00+00:00")
    # Wrong kind, unknown, retracted: one clear line.
    assert "m1 is a milestone (Launch), not an objective" in cli.fails("kr", "m1", "X")
    assert "no milestone m9 on this device" in cli.fails("checkin", "m9", "3")
    cli.ok("retract", "c2")
    assert "was retracted" in cli.fails("correct", "c2", "--note", "x")
    # Stable: a rebuild of the views keeps every number, new items continue the series.
    cli.ok("rebuild")
    assert cli.json("milestone", "add", "Second")["short"] == "m2"
    assert cli.json("status")["standalone_milestones"][0]["short"] == "m2"
    assert "k1 Signups" in cli.ok("status")


def test_a_version_1_database_gets_short_refs_in_log_order(ready: Cli) -> None:
    cli = ready
    cli.ok("objective", "First", "--cycle", "2026-Q1")
    cli.ok("objective", "Second", "--cycle", "2026-Q1")
    cli.ok("milestone", "add", "Alone")
    path = cli.home / "ava@laptop.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(
        "DROP TRIGGER refs_short_ref; DROP TABLE short_refs; DROP INDEX refs_parent;"
        " PRAGMA user_version = 1;"
    )
    db.close()
    status = cli.ok("status")
    assert "o1 First" in status and "o2 Second" in status and "m1 Alone" in status
    assert cli.json("objective", "Third", "--cycle", "2026-Q1")["short"] == "o3"
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (2,)
    db.close()
