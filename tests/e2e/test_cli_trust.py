"""A record that can't be overwritten by accident: the CLI refuses what would
silently damage the log, in one line of the product's words."""

from __future__ import annotations

from pathlib import Path

from milepost_testkit.cli import Cli
from tests.e2e.conftest import event_count


def _goal(cli: Cli) -> tuple[str, str, str]:
    objective = cli.new("objective", "Grow", "--cycle", "2026-Q1")
    kr = cli.new("kr", objective, "Signups", "--start", "0", "--target", "100")
    milestone = cli.new("milestone", "add", "Launch", "--kr", kr, "--due", "2026-02-01")
    return objective, kr, milestone


def _milestone(cli: Cli, ref: str) -> dict:  # type: ignore[type-arg]
    tree = cli.json("status")
    for objective in tree["objectives"]:
        for kr in objective["key_results"]:
            for m in kr["milestones"]:
                if m["id"].replace("-", "").endswith(ref):
                    return m  # type: ignore[no-any-return]
    raise AssertionError(ref)


def test_completing_a_completed_milestone_is_refused(ready: Cli) -> None:
    cli = ready
    _, _, milestone = _goal(cli)
    completion = cli.json(
        "done", milestone, "--did", "Shipped", "--why", "Reach", "--outcome", "ok"
    )["short"]
    assert completion == "d1"
    before = event_count(cli)
    line = cli.fails("done", milestone)
    assert "already completed" in line
    assert f"milepost correct {completion}" in line
    assert "milepost milestone reopen" in line
    assert "milestone done" not in line or "reopen" in line
    cli.fails("milestone", "done", milestone, "--did", "again")
    assert event_count(cli) == before
    # After a reopen it may be completed again.
    cli.ok("milestone", "reopen", milestone)
    cli.ok("done", milestone, "--did", "Second time")
    assert _milestone(cli, milestone)["answers"]["did"] == "Second time"


def test_retracting_a_completion_falls_back_to_the_earlier_one(ready: Cli) -> None:
    cli = ready
    _, _, milestone = _goal(cli)
    cli.ok(
        "done", milestone, "--did", "Shipped", "--at", "2026-01-06", now="2026-01-07T09:00:00+00:00"
    )
    cli.ok("milestone", "reopen", milestone, now="2026-01-07T10:00:00+00:00")
    second = cli.new("done", milestone, "--did", "Oops", now="2026-01-07T11:00:00+00:00")
    reopen_refs = [e["event"]["id"] for e in cli.json("log", "--type", "milestone.reopened")]
    assert len(reopen_refs) == 1
    cli.ok("retract", second, now="2026-01-08T09:00:00+00:00")
    assert _milestone(cli, milestone)["state"] == "open"  # the reopen stands
    cli.ok("retract", reopen_refs[0][-8:], now="2026-01-08T10:00:00+00:00")
    view = _milestone(cli, milestone)
    assert view["state"] == "completed"
    assert view["answers"]["did"] == "Shipped"
    assert view["completed_at"].startswith("2026-01-06")
    assert cli.json("rebuild", "--check")["agree"] is True


def test_checkin_without_confidence_keeps_the_previous_one(ready: Cli) -> None:
    cli = ready
    _, kr, milestone = _goal(cli)
    cli.ok("checkin", kr, "10", "--confidence", "at-risk")
    checkin = cli.json("checkin", kr, "1000")
    assert checkin["title"].endswith("at-risk")
    objective = cli.json("status")["objectives"][0]
    assert objective["key_results"][0]["confidence"] == "at-risk"
    first = cli.json("checkin", milestone, "20")
    assert first["title"].endswith("on-track")  # no earlier check-in: on-track
    cli.ok("checkin", milestone, "30", "--confidence", "off-track")
    assert cli.json("checkin", milestone, "40")["title"].endswith("off-track")


def test_non_finite_numbers_are_refused(ready: Cli) -> None:
    cli = ready
    objective, kr, _ = _goal(cli)
    before = event_count(cli)
    for text in ("1e309", "nan", "inf", "-inf"):
        line = cli.fails("checkin", kr, text)
        assert "not a finite number" in line, line
    assert "not a finite number" in cli.fails(
        "kr", objective, "Huge", "--start", "0", "--target", "1e309"
    )
    assert "finite" in cli.fails("correct", kr, "--target", "nan")
    assert event_count(cli) == before


def test_checkin_before_the_goal_existed_is_refused(ready: Cli) -> None:
    cli = ready
    _, kr, milestone = _goal(cli)
    line = cli.fails("checkin", kr, "5", "--at", "1999-01-01")
    assert "created on 2026-01-05" in line
    cli.fails("done", milestone, "--did", "x", "--at", "2025-12-31")
    cli.ok("checkin", kr, "5", "--at", "2026-01-05")


def test_line_breaks_in_titles_are_refused(ready: Cli) -> None:
    cli = ready
    objective, _, milestone = _goal(cli)
    before = event_count(cli)
    for bad in ("Two\nlines", "Tab\there", "Bell\x07"):
        line = cli.fails("objective", bad, "--cycle", "2026-Q1")
        assert "one line" in line, line
    assert "one line" in cli.fails("milestone", "add", "A\nB")
    assert "one line" in cli.fails("task", "add", milestone, "A\rB")
    assert "one line" in cli.fails("correct", objective, "--title", "X\nY")
    assert "one line" in cli.fails("indicator", "Empathy", "--stage", "a\nb")
    assert event_count(cli) == before


def test_errors_use_product_words_not_validator_internals(ready: Cli) -> None:
    cli = ready
    objective = cli.new("objective", "Grow", "--cycle", "2026-Q1")
    cases = [
        (("objective", "Bad", "--cycle", "2026-Q5"), "2026-Q1"),
        (("objective", "x" * 300), "at most 200 characters"),
        (("kr", objective, "W", "--weight", "0"), "greater than 0"),
        (("kr", objective, "U", "--unit", "u" * 50), "at most 40 characters"),
        (("correct", objective, "--title", "t" * 201), "at most 200 characters"),
        (("config", "drift.behind_pace_points", "500"), "behind pace points must be at most 100"),
    ]
    for args, expected in cases:
        line = cli.fails(*args)
        assert expected in line, line
        assert "Expected" not in line and "regex" not in line, line


def test_csv_import_reports_an_oversized_field_as_a_row_error(ready: Cli, tmp_path: Path) -> None:
    cli = ready
    big = tmp_path / "big.csv"
    big.write_text(
        "date,indicator,observation,impact\n"
        f"2026-01-02,Empathy,{'x' * 1_000_000},positive\n"
        "2026-01-03,Empathy,Called a user,positive\n"
        f"2026-01-04,{'i' * 300},Fine,positive\n"
    )
    done = cli.run("import", str(big))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith(f"{big}:2: observation is 1,000,000 characters long"), lines
    assert lines[1].startswith(f"{big}:4: indicator is 300 characters long"), lines
    assert "2 bad of 3 rows" in lines[-1]
    assert "internal error" not in done.stderr
    assert event_count(cli) == 0
